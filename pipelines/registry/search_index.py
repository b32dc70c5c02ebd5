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
(``numbers.parquet``, written a partition at a time and read a row group at a time),
and the pairs found go to the partitions of the citizens found.

Files (relative to the snapshot folder)::

    search/part=PPP/citizens.parquet   SEARCH_COLUMNS of the partition's citizens, in
                                       registry order
    search/part=PPP/blocks.parquet     their blocking keys, sorted (RegistryIndex)
    search/part=PPP/names.parquet      the dictionaries the keys' name codes index
    search/numbers.parquet             width, value, partition, position, registry_row
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from matching.candidates import RegistryIndex, numbers_found, registry_index, registry_parts
from matching.columns import as_bool_mask
from pipelines.storage.files import AtomicParquetWriter, write_parquet

_PARTS = ("given", "surname", "canonical")
NUMBERS_FILE = "search/numbers.parquet"
# Rows per row group of the numbers file: what a look-up holds at once.
NUMBERS_ROW_GROUP = 1 << 20
NUMBERS_SCHEMA = pa.schema([("width", pa.int8()), ("value", pa.int64()),
                            ("partition", pa.int32()), ("position", pa.int32())])
# As written: with the holder's row in the registry (one holder per number).
_HELD_SCHEMA = NUMBERS_SCHEMA.append(pa.field("registry_row", pa.int64()))


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
    for name, table in (("blocks", blocks), ("names", names)):
        write_parquet(table, root / files[name])
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
    citizens (in registry order, with ``legacy_citizens``), then :meth:`finish`. Memory:
    one bucket, plus the few CMND numbers held by several citizens (kept to leave only
    their first holder)."""

    root: Path
    schema: pa.Schema  # the citizens' columns (snapshot.SEARCH_COLUMNS, typed)
    written: dict[str, int] = field(default_factory=dict)
    present: list[int] = field(default_factory=list)  # partitions with citizens
    _numbers: AtomicParquetWriter | None = None
    _shared: list[pa.Table] = field(default_factory=list)

    def add(self, partition: int, citizens: pa.Table, index: RegistryIndex) -> None:
        """``index``: :func:`index_of` these citizens (the build makes it with their
        block sizes)."""
        sharing = np.asarray(pc.fill_null(citizens["legacy_citizens"], 0), np.int64)
        citizens = citizens.select(self.schema.names).cast(self.schema).combine_chunks()
        files = partition_files(partition)
        write_parquet(citizens, self.root / files["citizens"])
        self.written[files["citizens"]] = citizens.num_rows
        self.written.update(_write_index(index, self.root, partition))
        if self._numbers is None:
            self._numbers = AtomicParquetWriter(self.root / NUMBERS_FILE, _HELD_SCHEMA,
                                                row_group_rows=NUMBERS_ROW_GROUP)
        for width, (values, rows) in index.numbers.items():  # 12: CCCD, 9: CMND
            table = pa.table({
                "width": pa.array(np.full(len(values), width, np.int8)),
                "value": pa.array(values, pa.int64()),
                "partition": pa.array(np.full(len(values), partition, np.int32)),
                "position": pa.array(rows.astype(np.int32)),
                "registry_row": pc.take(citizens["registry_row"], pa.array(rows, pa.int64())),
            }, schema=_HELD_SCHEMA)
            # A CMND several citizens hold (rare) waits for its first holder in registry
            # order, which may be in a later bucket; every other number is written now.
            shared = sharing[rows] > 1 if width == 9 else np.zeros(len(rows), bool)
            self._numbers.write(table.filter(pa.array(~shared)))
            if shared.any():
                self._shared.append(table.filter(pa.array(shared)))
        self.present.append(partition)

    def finish(self) -> dict[str, int]:
        """Write the shared numbers' first holders and close the numbers file; returns
        every file written with its rows."""
        writer = self._numbers or AtomicParquetWriter(self.root / NUMBERS_FILE, _HELD_SCHEMA)
        if self._shared:
            shared = pa.concat_tables(self._shared).sort_by(
                [("value", "ascending"), ("registry_row", "ascending")])
            value = np.asarray(shared["value"], np.int64)
            first = np.r_[True, value[1:] != value[:-1]] if len(value) else np.zeros(0, bool)
            writer.write(shared.filter(pa.array(first)))
        writer.close(_HELD_SCHEMA)
        self.written[NUMBERS_FILE] = writer.rows
        self._numbers, self._shared = None, []
        return dict(self.written)


@dataclass(frozen=True)
class NumbersFound:
    """Pairs found through numbers: the searched value's position (as given), and the
    partition and position of the citizen holding it."""

    at: np.ndarray
    partition: np.ndarray
    position: np.ndarray


def _row_groups(path: Path) -> Iterator[pa.Table]:
    file = pq.ParquetFile(path)
    for group in range(file.num_row_groups):
        yield file.read_row_group(group, columns=NUMBERS_SCHEMA.names)


def find_numbers(path: Path, wanted: list[tuple[int, np.ndarray, np.ndarray]]
                 ) -> NumbersFound:
    """Every wanted value found in the numbers file, a row group at a time (memory: one
    row group and the values wanted). ``wanted``: (width, where, values) triples, the
    values sorted and ``where`` each stands among the caller's (the shape of
    ``SearchedSide.variant_sorted``'s items); ``at`` of what is found is that ``where``."""
    ats, parts, positions = [], [], []
    for group in _row_groups(path):
        widths = np.asarray(group["width"], np.int64)
        values = np.asarray(group["value"], np.int64)
        for width, where, ordered in wanted:
            sel = np.flatnonzero(widths == width)
            at, entry = numbers_found(where, ordered, (values[sel], sel))
            if not len(at):
                continue
            ats.append(at)
            parts.append(np.asarray(group["partition"], np.int32)[entry])
            positions.append(np.asarray(group["position"], np.int32)[entry])
    if not ats:
        none = np.empty(0, np.int64)
        return NumbersFound(none, none.astype(np.int32), none.astype(np.int32))
    return NumbersFound(np.concatenate(ats), np.concatenate(parts), np.concatenate(positions))
