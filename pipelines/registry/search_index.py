"""The candidate search's layout of the registry, written with the snapshot: citizens by
birth year.

Every blocking key of the candidate search carries a birth date or a birth year
(``matching.candidates``: day + name part, year + name, birth year + given name + sex),
so a searched row can only meet, through its keys, the citizens born in the years it
names: the year of its date of birth and the birth year its CCCD number encodes. The
registry is therefore laid out a second time, by birth year: partition ``p`` holds every
citizen born in a year ``y`` with ``y % partitions == p`` (the year buckets
``pipelines.registry.build`` already makes: at most ``BUCKET_ROWS`` citizens each on
average, and at least one per shard;
citizens without a date of birth in partition 0, where only their numbers lead). A
search task is one partition and the rows routed to it, so the registry is read once
per run, not once per batch of searched rows, and the work grows with the run, not
with its square.

Numbers are the exception: a number one typing slip from a row's can belong to anyone.
They are looked up in one file, every CCCD (12 digits) and old CMND (9 digits) of the
registry with the partition and position of its (first, in registry order) citizen
(``numbers.parquet``), and the pairs found go to the partitions of the citizens found.
The file is written by bucket of value (:func:`number_bucket`), each bucket sorted, so
a routing task reads it a row group at a time and looks up in each only its own
variants of that bucket: the look-up's work grows with the variants, the registry's
side is one sequential read (it looked every registry number up among a batch's ~10M
variants, which made the routing grow with batches × registry).

Files (relative to the snapshot folder)::

    search/part=PPP/citizens.parquet   SEARCH_COLUMNS of the partition's citizens, in
                                       registry order
    search/part=PPP/blocks.parquet     their blocking keys, sorted (RegistryIndex)
    search/part=PPP/names.parquet      the dictionaries the keys' name codes index
    search/numbers.parquet             width, value, partition, position, registry_row
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from matching.candidates import RegistryIndex, registry_index, registry_parts
from matching.columns import as_bool_mask
from pipelines.storage.files import AtomicParquetWriter, write_parquet
from pipelines.storage.spill import BucketSpill

_PARTS = ("given", "surname", "canonical")
NUMBERS_FILE = "search/numbers.parquet"
# Rows per row group of the numbers file: what a look-up holds at once.
NUMBERS_ROW_GROUP = 1 << 20
# The numbers file is written by bucket of value (number_bucket): 2^6 buckets, ~0.6M
# numbers each at 30M citizens, 2M at 127M (a registry bucket is held while written).
_BUCKET_BITS = 6
NUMBER_BUCKETS = 1 << _BUCKET_BITS
_GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / golden ratio: Knuth's multiplicative hash
NUMBERS_SCHEMA = pa.schema([("width", pa.int8()), ("value", pa.int64()),
                            ("partition", pa.int32()), ("position", pa.int32())])
# The citizens' columns nearly unique per citizen: written without a dictionary (it
# overflows and is thrown away). The snapshot's citizen files (shards, search partitions)
# are read whole, never filtered: written without statistics too.
CITIZEN_PLAIN_COLUMNS = ("citizen_id", "legacy_id", "full_name", "registry_row",
                         "name_year_frequency")
# The snapshot's files are read whole by every run and written once per snapshot, on the
# run's critical path when the run prepares it: LZ4, not zstd (1M citizens: staging
# 8.0 -> 7.6 CPU s; files ~1.5x as large).
SNAPSHOT_COMPRESSION = "lz4"
# As written: with the holder's row in the registry (one holder per number).
HELD_NUMBERS_SCHEMA = NUMBERS_SCHEMA.append(pa.field("registry_row", pa.int64()))


def partition_files(partition: int) -> dict[str, str]:
    """The files of one partition, relative to the snapshot folder."""
    folder = f"search/part={partition:03d}"
    return {"citizens": f"{folder}/citizens.parquet", "blocks": f"{folder}/blocks.parquet",
            "names": f"{folder}/names.parquet"}


def partition_of_year(years: np.ndarray, known: np.ndarray, partitions: int) -> np.ndarray:
    """The partition of each birth year (-1 where unknown)."""
    return np.where(known, np.mod(years, max(partitions, 1)), -1).astype(np.int32)


def partition_of_citizen(birth_year: pa.Array | pa.ChunkedArray, partitions: int
                         ) -> np.ndarray:
    """Each citizen's partition: its birth year's (:func:`partition_of_year`, what the
    search routes by); without a date of birth, partition 0 (only numbers lead there)."""
    known = as_bool_mask(pc.is_valid(birth_year))
    years = np.asarray(pc.fill_null(birth_year, 0).to_numpy(zero_copy_only=False), np.int64)
    return np.maximum(partition_of_year(years, known, partitions), 0)


def number_bucket(values: np.ndarray) -> np.ndarray:
    """The bucket (0 .. NUMBER_BUCKETS - 1) of each number's int64 value: the top bits of
    a multiplicative hash, so every bucket gets about as many numbers (the values
    themselves crowd by province code and birth year)."""
    hashed = np.asarray(values, np.int64).view(np.uint64) * np.uint64(_GOLDEN)
    # uint8: NumPy's stable argsort of 8-bit keys is a radix sort (linear)
    return (hashed >> np.uint64(64 - _BUCKET_BITS)).astype(np.uint8)


def index_of(citizens: pa.Table) -> RegistryIndex:
    """The candidate search's index of some citizens (columns of SEARCH_COLUMNS)."""
    parts = registry_parts(citizens["full_name"], citizens["date_of_birth"],
                           citizens["dob_precision"], citizens["gender"])
    return registry_index(parts, citizens["citizen_id"].combine_chunks(),
                          citizens["legacy_id"].combine_chunks())


def _write_index(index: RegistryIndex, root: Path, partition: int) -> dict[str, int]:
    files = partition_files(partition)
    blocks = pa.table({"key": pa.array(index.block_keys, pa.int64()),
                       "citizen": pa.array(index.block_citizens, pa.int32())})
    dictionaries = [(part, index.dictionaries[part]) for part in _PARTS]
    dictionaries.append(("sex", index.sexes))
    names = pa.table({
        "part": pa.array([p for p, values in dictionaries for _ in range(len(values))],
                         pa.string()),
        "value": pa.concat_arrays([values.cast(pa.string()) for _, values in dictionaries])})
    written = {}
    # The blocks' keys are sorted and nearly all distinct: no dictionary (zstd alone
    # writes them in half the time, and smaller).
    for name, table, plain in (("blocks", blocks, ("key", "citizen")), ("names", names, ())):
        write_parquet(table, root / files[name], plain=plain, compression=SNAPSHOT_COMPRESSION)
        written[files[name]] = table.num_rows
    return written


def read_index(blocks_path: Path, names_path: Path) -> RegistryIndex:
    """A partition's index from its files (without numbers: those are looked up in the
    numbers file)."""
    blocks = pq.read_table(blocks_path)
    names = pq.read_table(names_path)
    part = names["part"].combine_chunks()
    value = names["value"].combine_chunks()

    def dictionary(name: str) -> pa.Array:
        return value.filter(pc.equal(part, name))

    none = (np.empty(0, np.int64), np.empty(0, np.int64))
    return RegistryIndex(
        dictionaries={p: dictionary(p) for p in _PARTS}, sexes=dictionary("sex"),
        block_keys=np.asarray(blocks["key"].to_numpy(), np.int64),
        block_citizens=np.asarray(blocks["citizen"].to_numpy(), np.int64),
        numbers={12: none, 9: none})


@dataclass
class SearchLayout:
    """Writes the layout while the snapshot is built: :meth:`add` each year bucket's
    citizens (in registry order), then :meth:`finish`. Memory:
    one year bucket, then one bucket of numbers (``numbers``: where they wait, by
    :func:`number_bucket`, until every partition is added)."""

    root: Path
    schema: pa.Schema  # the citizens' columns (snapshot.SEARCH_COLUMNS, typed)
    numbers: BucketSpill  # of HELD_NUMBERS_SCHEMA
    written: dict[str, int] = field(default_factory=dict)
    present: list[int] = field(default_factory=list)  # partitions with citizens

    def add(self, partition: int, citizens: pa.Table, index: RegistryIndex) -> None:
        """``index``: :func:`index_of` these citizens (the build makes it with their
        block sizes)."""
        citizens = citizens.select(self.schema.names).cast(self.schema).combine_chunks()
        files = partition_files(partition)
        write_parquet(citizens, self.root / files["citizens"], plain=CITIZEN_PLAIN_COLUMNS,
                      statistics=False, compression=SNAPSHOT_COMPRESSION)
        self.written[files["citizens"]] = citizens.num_rows
        self.written.update(_write_index(index, self.root, partition))
        for width, (values, rows) in index.numbers.items():  # 12: CCCD, 9: CMND
            table = pa.table({
                "width": pa.array(np.full(len(values), width, np.int8)),
                "value": pa.array(values, pa.int64()),
                "partition": pa.array(np.full(len(values), partition, np.int32)),
                "position": pa.array(rows.astype(np.int32)),
                "registry_row": pc.take(citizens["registry_row"], pa.array(rows, pa.int64())),
            }, schema=HELD_NUMBERS_SCHEMA)
            self.numbers.write(table, number_bucket(np.asarray(values, np.int64)))
        self.present.append(partition)

    def finish(self) -> dict[str, int]:
        """Write the numbers file a bucket at a time, each sorted by (width, value) and
        with one holder per number (a CMND several citizens hold: the first in registry
        order, who may be in any partition); returns every file written with its rows."""
        with AtomicParquetWriter(self.root / NUMBERS_FILE, HELD_NUMBERS_SCHEMA,
                                 row_group_rows=NUMBERS_ROW_GROUP, compression="lz4",
                                 plain=("value", "position", "registry_row"),
                                 statistics=False) as writer:
            for bucket in self.numbers.buckets():
                held = self.numbers.read(bucket)
                width = np.asarray(held["width"], np.int64)
                value = np.asarray(held["value"], np.int64)
                order = np.lexsort((np.asarray(held["registry_row"], np.int64), value, width))
                width, value = width[order], value[order]
                first = np.r_[True, (value[1:] != value[:-1]) | (width[1:] != width[:-1])]
                # each write is row groups of its own: a group holds one bucket
                writer.write(held.take(pa.array(order[first])))
            writer.close(HELD_NUMBERS_SCHEMA)
        self.written[NUMBERS_FILE] = writer.rows
        return dict(self.written)


@dataclass(frozen=True)
class NumbersFound:
    """Pairs found through numbers: the searched value's position (as given), and the
    partition and position of the citizen holding it."""

    at: np.ndarray
    partition: np.ndarray
    position: np.ndarray


def _by_bucket(where: np.ndarray, ordered: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``where`` and ``ordered`` (values sorted) regrouped by :func:`number_bucket`, still
    sorted within each bucket, and each bucket's bounds in them."""
    bucket = number_bucket(ordered)
    order = np.argsort(bucket, kind="stable")
    bounds = np.searchsorted(bucket[order], np.arange(NUMBER_BUCKETS + 1))
    return where[order], ordered[order], bounds


def find_numbers(path: Path, wanted: list[tuple[int, np.ndarray, np.ndarray]]
                 ) -> NumbersFound:
    """Every wanted value found in the numbers file, a row group at a time (memory: one
    row group and the values wanted). ``wanted``: (width, where, values) triples, the
    values sorted and ``where`` each stands among the caller's (the shape of
    ``SearchedSide.variant_sorted``'s items); ``at`` of what is found is that ``where``.

    A row group holds numbers of one :func:`number_bucket`, sorted by (width, value): only
    the wanted values of that bucket are looked up in it, so a look-up costs about the
    values wanted, and the registry's side is one sequential read of the file."""
    grouped = [(width, *_by_bucket(where, ordered)) for width, where, ordered in wanted]
    ats, parts, positions = [], [], []
    file = pq.ParquetFile(path)
    for group_index in range(file.num_row_groups):
        group = file.read_row_group(group_index, columns=NUMBERS_SCHEMA.names)
        if not group.num_rows:
            continue
        widths = np.asarray(group["width"], np.int64)
        values = np.asarray(group["value"], np.int64)
        bucket = int(number_bucket(values[:1])[0])
        partition = position = None
        for width, where, ordered, bounds in grouped:
            start, stop = np.searchsorted(widths, [width, width + 1])
            known = values[start:stop]
            sought = ordered[bounds[bucket]:bounds[bucket + 1]]
            if not len(known) or not len(sought):
                continue
            entry = np.minimum(np.searchsorted(known, sought), len(known) - 1)
            hit = np.flatnonzero(known[entry] == sought)
            if not len(hit):
                continue
            if partition is None:
                partition = np.asarray(group["partition"], np.int32)
                position = np.asarray(group["position"], np.int32)
            ats.append(where[bounds[bucket]:bounds[bucket + 1]][hit])
            parts.append(partition[start + entry[hit]])
            positions.append(position[start + entry[hit]])
    if not ats:
        none = np.empty(0, np.int64)
        return NumbersFound(none, none.astype(np.int32), none.astype(np.int32))
    return NumbersFound(np.concatenate(ats), np.concatenate(parts), np.concatenate(positions))
