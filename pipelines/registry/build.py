"""The files of a prepared snapshot, built from the raw registry in bounded memory.

The registry is read a batch at a time (``BATCH_ROWS``) and never held whole:

1. each batch is normalised (``source.normalise``), its names keyed once, and counted
   into the registry-wide tallies that stay small (distinct names, birth dates, years);
   its rows go to spill files by birth year (``year % buckets``) and its legacy numbers
   to spill files by their first two characters;
2. each legacy bucket gives its slice of the legacy index (already in ``legacy_id``
   order across buckets) and the legacy numbers held by more than one citizen;
3. each year bucket holds every citizen born in its years, so every count keyed by
   birth date or year (the candidate-search blocks, name within birth year) is exact
   there; its rows get the registry-wide columns and go to spill files by shard;
   the same rows, in registry order, are the candidate search's partition of those
   birth years (``pipelines.registry.search_index``);
4. each shard is put back in registry order and written.

Peak memory is about two buckets or two shards plus one batch (the next bucket's
columns are computed, and two shards sorted and written, in threads: the second core),
whatever the registry's size (``BUCKET_ROWS`` citizens per year bucket), plus what
grows with the distinct names alone (their tally and typo shares: a few copies of the
distinct name keys, ``matching.model.typo_shares``): benchmarks/RESULTS.md has the
figures (1.0-1.2 GiB at 10M citizens in 8 shards). The files are the same, byte for
byte, as those of the whole registry prepared at once (tests/test_registry_prepare.py).
Spill files are Arrow IPC in an owner-only folder, removed when done.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching.candidates import RegistryIndex, index_block_sizes
from matching.model import (
    NAME_YEAR_PRIOR_CITIZENS,
    BirthDateAgreement,
    RegistryStatistics,
    agreement_of_shares,
    pair_share_of_counts,
    per_name,
    typo_shares,
)
from matching.names import sequence_and_canonical_keys
from matching.namesakes import NAMESAKE_BLOCK_FAMILY, has_namesake
from pipelines.errors import RegistryError
from pipelines.reconcile.sharding import shard_of
from pipelines.registry import source as registry_source
from pipelines.registry.search_index import (
    CITIZEN_PLAIN_COLUMNS,
    HELD_NUMBERS_SCHEMA,
    SNAPSHOT_COMPRESSION,
    SearchLayout,
    index_of,
    partition_of_citizen,
)
from pipelines.schema import REGISTRY_FIELDS
from pipelines.storage import objectstore
from pipelines.storage.files import AtomicParquetWriter, write_parquet
from pipelines.storage.spill import BucketSpill
from pipelines.threads import ahead

# Rows read (and normalised) at once.
BATCH_ROWS = 1 << 18
# Citizens per year bucket (the registry-wide counts keyed by birth date or year).
BUCKET_ROWS = 1_000_000
# Rows per row group of the legacy index: pyarrow's default, as when written at once.
LEGACY_ROW_GROUP = 1 << 20


class _Tally:
    """Rows per distinct key over batches, merged as they come: bounded by the distinct
    keys, not the rows."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self._parts: list[pa.Table] = []
        self._pending = 0
        self._merged: pa.Table | None = None

    def add(self, table: pa.Table) -> None:
        counted = table.group_by(self.keys, use_threads=False).aggregate([([], "count_all")])
        self._parts.append(counted.rename_columns([*self.keys, "count"]))
        self._pending += counted.num_rows
        if self._pending > max(1 << 20, self._merged.num_rows if self._merged else 0):
            self._merge()

    def _merge(self) -> None:
        parts = self._parts + ([self._merged] if self._merged is not None else [])
        if parts:
            merged = pa.concat_tables(parts).group_by(self.keys, use_threads=False) \
                .aggregate([("count", "sum")])
            self._merged = merged.rename_columns([*self.keys, "count"]).combine_chunks()
        self._parts, self._pending = [], 0

    def result(self) -> pa.Table:
        self._merge()
        if self._merged is None:
            return pa.table({**{k: pa.array([], pa.null()) for k in self.keys},
                             "count": pa.array([], pa.int64())})
        return self._merged


def _lookup(values: pa.Array | pa.ChunkedArray, counted: pa.Table, key: str, *,
            nulls: bool = False) -> np.ndarray:
    """Each value's count in ``counted`` (0: absent). A null value counts as 0, or with
    ``nulls`` as the null key's count (as ``pc.value_counts`` with ``pc.index_in`` do)."""
    universe = counted[key].combine_chunks() if counted.num_rows else pa.array([], values.type)
    at = pc.index_in(values, value_set=universe.cast(values.type), skip_nulls=not nulls)
    return np.asarray(pc.fill_null(pc.take(counted["count"], at), 0)
                      .to_numpy(zero_copy_only=False), np.float64)


def _pair_counts(key: pa.ChunkedArray, year: pa.ChunkedArray) -> np.ndarray:
    """Citizens of the bucket sharing each row's (name key, birth year): all of the
    registry's, since a year lies in one bucket (0 where either is missing). Counted on
    the pair's dictionary codes (one integer per row), not on joined strings."""
    key_code, year_code = (
        np.asarray(pc.fill_null(pc.dictionary_encode(c.combine_chunks()).indices, -1)
                   .to_numpy(zero_copy_only=False), np.int64) for c in (key, year))
    known = (key_code >= 0) & (year_code >= 0)
    pair = key_code * (int(year_code.max(initial=0)) + 1) + year_code
    _, inverse, counts = np.unique(pair[known], return_inverse=True, return_counts=True)
    out = np.zeros(len(pair), np.float64)
    out[known] = counts[inverse]
    return out


def _day_dates(dates: pa.Array | pa.ChunkedArray,
               precision: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The date where it has day precision, else null."""
    day = pc.equal(pc.fill_null(precision, "day"), "day")
    return pc.if_else(day, pc.cast(dates, pa.date32()), pa.scalar(None, pa.date32()))


def _legacy_bucket(legacy: pa.Array) -> np.ndarray:
    """First two bytes of each (non-null) legacy number: buckets in ``legacy_id`` order."""
    padded = pc.utf8_rpad(legacy, width=2, padding="\0")
    raw = pc.binary_slice(pc.cast(padded, pa.binary()), 0, 2)
    first = np.frombuffer(pc.cast(raw, pa.binary()).buffers()[2], np.uint8)
    offsets = np.frombuffer(raw.buffers()[1], np.int32)[raw.offset:raw.offset + len(raw) + 1]
    return first[offsets[:-1]].astype(np.int32) * 256 + first[offsets[:-1] + 1]


ROWS = pa.schema([
    ("citizen_id", pa.string()), ("legacy_id", pa.string()), ("full_name", pa.string()),
    ("date_of_birth", pa.date32()), ("dob_precision", pa.string()), ("gender", pa.string()),
    ("date_of_death", pa.date32()), ("registry_row", pa.int64()), ("shard", pa.int32()),
    ("sequence_key", pa.string()), ("canonical_key", pa.string()),
])
LEGACY_ROWS = pa.schema([("legacy_id", pa.string()), ("registry_row", pa.int64()),
                         ("citizen_id", pa.string()), ("shard", pa.int32())])


@dataclass
class Built:
    """What the draft manifest says about the registry, counted while building."""

    citizens: int = 0
    with_legacy_id: int = 0
    shared_legacy_ids: int = 0
    max_date_of_birth: object = None
    statistics: RegistryStatistics | None = None
    shard_rows: list[int] = field(default_factory=list)
    legacy_rows: int = 0
    search_partitions: int = 0
    search_files: dict[str, int] = field(default_factory=dict)  # path -> rows
    search_present: list[int] = field(default_factory=list)  # partitions with citizens


def _read(source: Path | objectstore.RemoteFile, shards: int, year_buckets: int,
          rows: BucketSpill, legacy: BucketSpill) -> tuple[Built, dict[str, _Tally]]:
    """Step 1: normalise batch by batch, tally, spill by birth year and legacy number."""
    built = Built()
    tallies = {"names": _Tally(["sequence", "canonical"]), "days": _Tally(["day"]),
               "years": _Tally(["year"])}
    problems = {"without_citizen_id": 0, "unparsed_birth_dates": 0}

    def normalised(batch: pa.Table) -> tuple[pa.Table, dict[str, int], pa.Array, pa.Array]:
        table, found = registry_source.normalise(batch)
        return table, found, *sequence_and_canonical_keys(table["full_name"])

    # The next two batches are normalised and keyed in threads (Arrow, the GIL mostly
    # released) while this one is tallied and spilled.
    for table, found, sequence, canonical in ahead(
            normalised, objectstore.iter_parquet_batches(source, list(REGISTRY_FIELDS),
                                                         BATCH_ROWS),
            workers=2, name="registry-read"):
        for name, count in found.items():
            problems[name] += count
        if problems["without_citizen_id"] or problems["unparsed_birth_dates"]:
            built.citizens += table.num_rows
            continue  # refused below, once every breach is counted
        n = table.num_rows
        rows_of = np.arange(built.citizens, built.citizens + n, dtype=np.int64)
        built.citizens += n
        births = table["date_of_birth"]
        tallies["names"].add(pa.table({"sequence": sequence, "canonical": canonical}))
        year = pc.year(births)
        tallies["days"].add(pa.table({"day": _day_dates(births, table["dob_precision"])}))
        tallies["years"].add(pa.table({"year": year}))
        latest = pc.max(births).as_py()
        if latest is not None and (built.max_date_of_birth is None
                                   or latest > built.max_date_of_birth):
            built.max_date_of_birth = latest
        shard = shard_of(table["citizen_id"], shards)
        table = (table.append_column("registry_row", pa.array(rows_of))
                 .append_column("shard", pa.array(shard, pa.int32()))
                 .append_column("sequence_key", sequence)
                 .append_column("canonical_key", canonical))
        # The year buckets are the candidate search's partitions (search_index.py).
        rows.write(table, partition_of_citizen(year, year_buckets))
        has = pc.is_valid(table["legacy_id"])
        held = table.filter(has)
        built.with_legacy_id += held.num_rows
        legacy.write(held, _legacy_bucket(held["legacy_id"].combine_chunks()))
    registry_source.check(source, problems)
    return built, tallies


def _legacy_index(legacy: BucketSpill, path: Path, schema: pa.Schema) -> tuple[pa.Table, int]:
    """Step 2: the legacy index, bucket by bucket in ``legacy_id`` order (one row per
    number: its first citizen in registry order, that citizen's shard, how many hold
    it); returns the numbers held by more than one citizen and the index's rows."""
    shared, held, rows = [], [], 0
    with AtomicParquetWriter(path, schema, compression=SNAPSHOT_COMPRESSION) as writer:
        def flush(last: bool = False) -> None:
            """Write whole row groups of what is held (and, ``last``, the rest)."""
            nonlocal held
            table = pa.concat_tables(held) if held else schema.empty_table()
            while table.num_rows >= LEGACY_ROW_GROUP or (last and table.num_rows):
                writer.write(table.slice(0, LEGACY_ROW_GROUP))
                table = table.slice(LEGACY_ROW_GROUP)
            held = [table] if table.num_rows else []

        for bucket in legacy.buckets():
            part = legacy.read(bucket)
            grouped = part.group_by("legacy_id", use_threads=False).aggregate(
                [("registry_row", "min"), ("registry_row", "count")])
            at = pc.index_in(grouped["registry_row_min"], value_set=part["registry_row"]
                             .combine_chunks())
            index = pa.table({
                "legacy_id": grouped["legacy_id"],
                "citizen_id": pc.take(part["citizen_id"], at),
                "shard": pc.take(part["shard"], at),
                "citizens": pc.cast(grouped["registry_row_count"], pa.int32()),
            }, schema=schema).sort_by("legacy_id")
            shared.append(index.filter(pc.greater(index["citizens"], 1))
                          .select(["legacy_id", "citizens"]))
            held.append(index)
            rows += index.num_rows
            flush()
        flush(last=True)
        writer.close(schema)
    together = pa.concat_tables(shared) if shared else pa.table(
        {"legacy_id": pa.array([], pa.string()), "citizens": pa.array([], pa.int32())})
    return together, rows


@dataclass(frozen=True)
class _Whole:
    """The registry-wide tallies a year bucket's rows are scored against."""

    citizens: int
    names: pa.Table  # sequence, canonical, count, typo share
    canonical: pa.Table  # canonical, count
    days: pa.Table
    years: pa.Table
    agreement: BirthDateAgreement | None
    shared_legacy: pa.Table  # legacy_id, citizens (> 1)


def _whole(built: Built, tallies: dict[str, _Tally], shared_legacy: pa.Table) -> _Whole:
    names = tallies["names"].result()
    keyed = names.filter(pc.is_valid(names["sequence"]))
    share = typo_shares(keyed["sequence"].combine_chunks(), keyed["canonical"].combine_chunks(),
                        np.asarray(keyed["count"], np.float64), built.citizens)
    canonical = names.group_by(["canonical"], use_threads=False).aggregate([("count", "sum")]) \
        .rename_columns(["canonical", "count"])
    days, years = tallies["days"].result(), tallies["years"].result()
    agreement = agreement_of_shares(
        pair_share_of_counts(np.asarray(days.filter(pc.is_valid(days["day"]))["count"])),
        pair_share_of_counts(np.asarray(years.filter(pc.is_valid(years["year"]))["count"])))
    built.statistics = RegistryStatistics(citizens=built.citizens, birth_dates=agreement)
    return _Whole(built.citizens, keyed.append_column("typo", pa.array(share, pa.float64())),
                  canonical, days, years, agreement, shared_legacy)


def _registry_wide(part: pa.Table, whole: _Whole, block_columns: tuple[str, ...]
                   ) -> tuple[pa.Table, RegistryIndex]:
    """Step 3, one year bucket: the columns that need the whole registry (see
    ``snapshot.SHARD_SCHEMA``), exact because every citizen of these birth years is here;
    and the bucket's candidate-search index."""
    n = max(whole.citizens, 1)
    canonical, sequence = part["canonical_key"], part["sequence_key"]
    tf = _lookup(canonical, whole.canonical, "canonical", nulls=True) / n
    tf[tf == 0] = np.nan
    births, precision = part["date_of_birth"], part["dob_precision"]
    year = pc.year(births)
    pair_count = _pair_counts(canonical, year)
    year_count = _lookup(year, whole.years, "year")
    k = NAME_YEAR_PRIOR_CITIZENS
    name_year = (pair_count + k * tf) / (year_count + k)
    known = (np.asarray(pc.is_valid(canonical)) & np.asarray(pc.is_valid(year))
             & np.isfinite(tf))
    name_year = np.where(known, name_year, np.nan)
    typo = per_name(np.asarray(whole.names["typo"]), whole.names["sequence"],
                    whole.names["canonical"], sequence.combine_chunks(),
                    canonical.combine_chunks())
    if whole.agreement is None or not part.num_rows:
        dob_tf = year_tf = np.full(part.num_rows, np.nan)
    else:
        day_count = _lookup(_day_dates(births, precision), whole.days, "day")
        dob_tf = np.where(day_count > 0, day_count / (whole.citizens + 1.0
                                                      / whole.agreement.same_date), np.nan)
        year_tf = np.where(year_count > 0, year_count / (whole.citizens + 1.0
                                                         / whole.agreement.same_year), np.nan)
    legacy = part["legacy_id"]
    shared = _lookup(legacy, whole.shared_legacy.rename_columns(["legacy_id", "count"]),
                     "legacy_id")
    sharing = np.where(np.asarray(pc.is_valid(legacy)), np.maximum(shared, 1), 0)
    table = part.select(["citizen_id", "legacy_id", "full_name", "date_of_birth",
                         "dob_precision", "gender", "date_of_death", "registry_row"])
    table = (table.append_column("name_frequency", pa.array(tf, pa.float64()))
             .append_column("name_typo_frequency", pa.array(typo, pa.float64()))
             .append_column("name_year_frequency", pa.array(name_year, pa.float64()))
             .append_column("dob_frequency", pa.array(dob_tf, pa.float64()))
             .append_column("year_frequency", pa.array(year_tf, pa.float64()))
             .append_column("legacy_citizens", pa.array(sharing, pa.int32())))
    # The bucket's search index (written with the layout) gives its block sizes too: every
    # key carries a birth year, so the bucket's blocks are the whole registry's.
    index = index_of(part)
    sizes = index_block_sizes(index.block_keys, index.block_citizens, part.num_rows)
    for k, column in enumerate(block_columns):
        table = table.append_column(column, pa.array(sizes[:, k], pa.int32()))
    return table, index


def build(source: Path | objectstore.RemoteFile, staging: Path, shards: int, *,
          shard_schema: pa.Schema, legacy_schema: pa.Schema, legacy_file: str,
          shard_file: Callable[[int], str], search_columns: tuple[str, ...]) -> Built:
    """Write the snapshot's shard files, legacy index and the candidate search's layout
    (``search_columns`` of each year bucket: ``registry.search_index``) into ``staging``
    (steps 1-4 of the module docstring); spill files go to ``staging``'s sibling
    ``.spill`` folder and are removed whatever happens."""
    registry_source.check_columns(source)
    rows_total = objectstore.parquet_rows(source)
    # At least one bucket per shard: the buckets are also the candidate search's
    # partitions, one search task each, so a small registry still spreads over workers.
    year_buckets = max(1, shards, math.ceil(rows_total / BUCKET_ROWS))
    spill = staging.with_name(staging.name + ".spill")
    block_columns = tuple(n for n in shard_schema.names if n.startswith("block_"))
    spills: list[BucketSpill] = []
    try:
        by_year = BucketSpill(spill / "years", ROWS)
        legacy = BucketSpill(spill / "legacy", LEGACY_ROWS)
        by_shard = BucketSpill(spill / "shards", shard_schema)
        spills += [by_year, legacy, by_shard]
        built, tallies = _read(source, shards, year_buckets, by_year, legacy)
        shared, built.legacy_rows = _legacy_index(legacy, staging / legacy_file, legacy_schema)
        built.shared_legacy_ids = shared.num_rows
        whole = _whole(built, tallies, shared)
        del tallies
        numbers = BucketSpill(spill / "numbers", HELD_NUMBERS_SCHEMA)
        spills.append(numbers)
        layout = SearchLayout(staging,
                              pa.schema([shard_schema.field(c) for c in search_columns]),
                              numbers)

        def registry_wide(bucket: int, whole: _Whole = whole
                          ) -> tuple[pa.Table, RegistryIndex, np.ndarray]:
            part = by_year.read(bucket)
            wide, index = _registry_wide(part, whole, block_columns)
            return wide, index, np.asarray(part["shard"], np.int32)

        # The next two buckets' columns and indexes are computed (in threads: Arrow and
        # NumPy, the GIL mostly released) while this one's are written: three buckets in
        # memory at most.
        buckets = by_year.buckets()
        with_namesake = 0
        for bucket, (wide, index, shard) in zip(
                buckets, ahead(registry_wide, buckets, workers=2, name="registry-build"),
                strict=True):
            # a date lies in one bucket: its namesake blocks are the whole registry's
            with_namesake += int(has_namesake(np.asarray(
                wide[f"block_{NAMESAKE_BLOCK_FAMILY}"], np.int64)).sum())
            by_shard.write(wide, shard)
            layout.add(bucket, wide, index)  # the bucket's citizens, in registry order
            del wide, index, shard
        built.search_partitions = year_buckets
        if built.statistics is not None:
            built.statistics = replace(built.statistics, with_namesake=with_namesake)
        built.search_files = layout.finish()
        built.search_present = layout.present
        del layout
        # the distinct names' tallies are not held while shards are sorted
        del whole, registry_wide
        pa.default_memory_pool().release_unused()

        def write_shard(k: int) -> int:
            table = by_shard.read(k)
            if table.num_rows:
                table = table.take(pa.array(np.argsort(np.asarray(table["registry_row"]),
                                                       kind="stable")))
                if pc.count_distinct(table["citizen_id"]).as_py() != table.num_rows:
                    # a citizen_id lies in one shard: unique in each is unique in all
                    raise RegistryError(f"{source}: citizen_id is not unique")
            write_parquet(table.cast(shard_schema), staging / shard_file(k),
                          plain=CITIZEN_PLAIN_COLUMNS, statistics=False,
                          compression=SNAPSHOT_COMPRESSION)
            return table.num_rows

        # Two shards at a time (sorting and compressing release the GIL).
        with ThreadPoolExecutor(max_workers=2) as threads:
            built.shard_rows = list(threads.map(write_shard, range(shards)))
    finally:
        for opened in spills:
            opened.close()
        shutil.rmtree(spill, ignore_errors=True)
    return built
