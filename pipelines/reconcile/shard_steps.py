"""The sharded steps of a run (called by ``pipelines.stages``).

What needs the whole registry or every subscription runs in its own step:
``search_candidates`` (rows whose document leads nowhere, searched one registry
shard at a time: ``pipelines.reconcile.search``) and ``spanning_flags`` (EXCESS_SUBSCRIPTIONS,
BULK_ACTIVATION, DUPLICATE_MSISDN over a few columns of every subscription);
``gather`` then assembles each telco's rows in ``source_row`` order and applies
the per-row rules. Every step is a pure function of its inputs, rows are
assembled in a defined order, and registry-wide statistics (name frequencies,
CMNDs shared by several citizens) are computed once when the snapshot is
prepared: the results are the same whatever the number of shards.
"""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from matching import flags as rules
from matching.columns import as_bool_mask
from pipelines.config import MatchingSettings, RunConfig
from pipelines.intake.normalise import NORMALISED_SCHEMA
from pipelines.reconcile import match, search
from pipelines.reconcile.run_state import shard_plan, snapshot_of_run
from pipelines.reconcile.sharding import (
    LegacyShards,
    concat,
    route_subscriptions,
    row_positions,
    shard_parts,
    split_by_shard,
    stable_hash,
)
from pipelines.registry.snapshot import LEGACY_INDEX, SHARD_SCHEMA, shard_file
from pipelines.storage.files import (
    AtomicArrowWriter,
    AtomicParquetWriter,
    arrow_rows,
    parquet_batches,
    read_arrow,
    read_json,
    write_arrow,
    write_json,
    write_parquet,
)
from pipelines.storage.paths import RunPaths

log = logging.getLogger("simrecon.shards")


def partition_telco(paths: RunPaths, telco: str, batch_rows: int = 1 << 18,
                    group_rows: int = 1 << 20) -> dict:
    """Cut one telco's normalised subscriptions into the run's shards, streaming: read
    and routed ``batch_rows`` at a time, each shard's rows written as one row group per
    ``group_rows`` rows read (the batches are held until then, and each shard's part is
    taken from them and written before the next: every row is copied once on its way to
    the writers); the legacy index held as 12 bytes per number (``LegacyShards``).
    Memory is bounded by ``group_rows``, whatever the telco's size. The marker is
    written last."""

    snapshot = snapshot_of_run(paths)
    shards = snapshot.shards
    paths.partitioned(telco).unlink(missing_ok=True)
    folder = paths.partitioned(telco).parent
    shutil.rmtree(folder, ignore_errors=True)
    legacy = LegacyShards(parquet_batches(pq.ParquetFile(snapshot.verify(LEGACY_INDEX)),
                                          batch_rows, columns=["legacy_id", "shard"]))
    source = pq.ParquetFile(paths.normalised(telco))
    # Working files read once each by match_shard (whole) and gate_export (some columns):
    # Arrow IPC (1M world, 56k rows, against LZ4 Parquet: write 0.038 -> 0.017 CPU s,
    # a whole read 0.021 -> 0.004 s; 3.0 -> 5.8 MB).
    writers = [AtomicArrowWriter(paths.subscription_shard(telco, k)) for k in range(shards)]
    rows = np.zeros(shards, dtype=np.int64)
    held: list[tuple[pa.Table, np.ndarray]] = []

    def flush() -> None:
        if not held:
            return
        table = pa.concat_tables([t for t, _ in held])
        shard = np.concatenate([s for _, s in held])
        held.clear()
        for k, part in enumerate(shard_parts(table, shard, shards)):
            if part.num_rows:
                writers[k].write(part)
                rows[k] += part.num_rows
            del part

    try:
        count = 0
        for table in parquet_batches(source, batch_rows):
            held.append((table, route_subscriptions(table["id_type"], table["id_number"],
                                                    table["source_row"], legacy, shards)))
            count += table.num_rows
            if count >= group_rows:
                flush()
                count = 0
        flush()
        for writer in writers:
            writer.close(empty=source.schema_arrow)
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    counts = {"telco": telco, "shards": shards, "rows": int(rows.sum()),
              "largest_shard": int(rows.max()) if shards else 0}
    write_json({**counts, "rows_per_shard": rows.tolist()}, paths.partitioned(telco))
    return counts


def plan_shards(paths: RunPaths, telcos: list[str]) -> dict:
    """Fix the telcos the shard tasks match (those cut into shards), the shard count and
    the rows they hold."""
    snapshot = snapshot_of_run(paths)
    cut = {t: read_json(paths.partitioned(t)) for t in telcos if paths.partitioned(t).exists()}
    ready = [t for t, counts in cut.items() if counts["shards"] == snapshot.shards]  # type: ignore[index]
    plan = {"shards": snapshot.shards, "telcos": ready,
            "rows": sum(int(cut[t]["rows"]) for t in ready)}  # type: ignore[index]
    write_json(plan, paths.shard_plan)
    return plan


def _no_search(settings: MatchingSettings) -> MatchingSettings:
    return settings.model_copy(update={"candidate_search": False})


# Rows per row group (record batch) of the per-shard files: small enough that a reader's
# filter (one telco, a range of rows, one number) skips most of a shard.
ROW_GROUP_ROWS = 65_536


def match_shard(config: RunConfig, paths: RunPaths, shard: int) -> dict:
    """Link one shard's subscriptions (every telco) to the same shard of the registry
    (the candidate search for rows whose document leads nowhere comes after); written
    as one file sorted by (telco, source_row)."""
    plan, snapshot = shard_plan(paths), snapshot_of_run(paths)
    if not 0 <= shard < plan["shards"]:
        raise ValueError(f"shard {shard} is not one of the run's {plan['shards']} shards")
    registry = pq.read_table(snapshot.verify(shard_file(shard)))
    parts = [read_arrow(paths.subscription_shard(t, shard)) for t in plan["telcos"]]
    subscriptions = concat(parts, parts[0].schema if parts else NORMALISED_SCHEMA)
    matched = match.match(subscriptions, registry, _no_search(config.matching),
                          statistics=snapshot.statistics)
    # A working file, read whole or by column (and filtered row by row: unlinked rows are
    # everywhere) by the search, the rules that span shards and the flags: Arrow's IPC
    # format, written ~2x and read ~4x as fast as LZ4 Parquet (``AtomicArrowWriter``).
    write_arrow(matched, paths.matched_shard(shard), ROW_GROUP_ROWS)
    linked = matched.num_rows - matched["matched_citizen_id"].null_count
    return {"shard": shard, "subscriptions": matched.num_rows, "linked": linked,
            "citizens": registry.num_rows}


def search_candidates(config: RunConfig, paths: RunPaths) -> dict:
    """The candidate search in this process: the rows whose document leads to no citizen
    (passports excepted), from every shard: each batch routed (``search.route_search_batch``),
    each partition of the registry's search layout searched
    (``search.search_partition``), then the best candidates chosen over all of them and
    written back per subscription shard (``search.choose_candidates``). Peak memory: one
    partition plus one batch."""
    plan = shard_plan(paths)
    if not plan["shards"]:
        return {"searched": 0, "with_candidate": 0}
    for task in search.collect_searched(config, paths):
        search.route_search_batch(config, paths, task["batch"])
    for task in search.partition_tasks(snapshot_of_run(paths).search_present):
        search.search_partition(config, paths, task["partition"])
    return search.choose_candidates(config, paths)


# --- Rules that span shards: DUPLICATE_MSISDN and BULK_ACTIVATION --------------------------
# Their groups (a number; a point of sale on a day) cross shards and telcos. Each rule's
# rows are cut into buckets by a hash of the group's key, so every group lies whole in
# one bucket: a bucket at a time (every shard's rows of it) gives exactly the masks the
# whole run would, with memory set by a bucket, not by the run. EXCESS_SUBSCRIPTIONS
# needs none of this: every subscription of a holder is in the holder's shard.
_DUPLICATE_KEYS = ("msisdn",)
_BULK_KEYS = ("telco", "point_of_sale", "activation_date", "id_number")


def spanning_buckets(total_rows: int, rows_per_bucket: int = 4_000_000) -> int:
    return max(1, -(-total_rows // rows_per_bucket))


def bucket_of(keys: pa.ChunkedArray | pa.Array, buckets: int) -> np.ndarray:
    """Each row's bucket, ``stable_hash(key) % buckets`` (int32); none hashed when there
    is a single bucket (hashing a point of sale from its bytes is a quarter of the step's
    CPU). Hashing once per distinct key does not pay: in a shard most points of sale
    occur once (their rows are spread over the shards by holder)."""
    if buckets == 1:
        return np.zeros(len(keys), dtype=np.int32)
    return (stable_hash(keys) % np.uint64(buckets)).astype(np.int32)


def spanning_flags(config: RunConfig, paths: RunPaths) -> dict:
    """DUPLICATE_MSISDN and BULK_ACTIVATION of every subscription of the run, a bucket
    of keys at a time (see above); per shard, a file of the two masks in the matched
    order, and the points of sale with the most bulk activations (exact: a point of sale
    lies whole in one bucket)."""
    plan = shard_plan(paths)
    settings = config.flags
    columns = ["telco", "source_row", "msisdn", "line_status", "point_of_sale",
               "activation_date", "id_number"]
    sizes = [arrow_rows(paths.matched_shard(k)) for k in range(plan["shards"])]
    buckets = spanning_buckets(sum(sizes))
    staging = paths.work / "spanning" / "buckets"
    shutil.rmtree(staging, ignore_errors=True)
    writers: dict[tuple[str, int], AtomicParquetWriter] = {}

    def put(rule: str, bucket_of: np.ndarray, table: pa.Table) -> None:
        for b, part in enumerate(split_by_shard(table, bucket_of, buckets)):
            if part.num_rows:
                key = (rule, b)
                if key not in writers:
                    # read back once, then deleted: lz4, cheaper than zstd both ways
                    writers[key] = AtomicParquetWriter(
                        staging / rule / f"{b:04d}.parquet", compression="lz4",
                        plain=("position", "msisdn", "id_number"))
                writers[key].write(part)

    try:
        for k in range(plan["shards"]):
            rows = read_arrow(paths.matched_shard(k), columns)
            position = pa.array(np.arange(rows.num_rows, dtype=np.int32))
            shard = pa.array(np.full(rows.num_rows, k, dtype=np.int16))
            counted = as_bool_mask(pc.is_valid(rows["msisdn"])) & ~as_bool_mask(pc.is_in(
                rows["line_status"], value_set=pa.array(settings.duplicate_ignores_statuses,
                                                         pa.string())))
            numbers = rows.filter(pa.array(counted))
            put("duplicate", bucket_of(numbers["msisdn"], buckets),
                pa.table({"shard": shard.filter(pa.array(counted)),
                          "position": position.filter(pa.array(counted)),
                          "msisdn": numbers["msisdn"]}))
            sold = as_bool_mask(pc.and_(pc.is_valid(rows["point_of_sale"]),
                                        pc.is_valid(rows["activation_date"])))
            sales = rows.filter(pa.array(sold))
            put("bulk", bucket_of(sales["point_of_sale"], buckets),
                pa.table({"shard": shard.filter(pa.array(sold)),
                          "position": position.filter(pa.array(sold)),
                          **{c: sales[c] for c in _BULK_KEYS}}))
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise

    masks = {name: [np.zeros(n, dtype=bool) for n in sizes]
             for name in ("DUPLICATE_MSISDN", "BULK_ACTIVATION")}
    for b in range(buckets):
        path = staging / "duplicate" / f"{b:04d}.parquet"
        if path.exists():
            part = pq.read_table(path)
            hit = rules.duplicate_msisdn(part["msisdn"], np.ones(part.num_rows, dtype=bool))
            _scatter(masks["DUPLICATE_MSISDN"], part, hit)
        path = staging / "bulk" / f"{b:04d}.parquet"
        if path.exists():
            part = pq.read_table(path)
            hit = rules.bulk_activation(
                part["point_of_sale"], part["activation_date"],
                pc.coalesce(part["id_number"], pa.scalar("", pa.string())),
                min_activations=settings.bulk_min_activations,
                max_distinct_documents=settings.bulk_max_distinct_ids)
            _scatter(masks["BULK_ACTIVATION"], part, hit)
    shutil.rmtree(staging, ignore_errors=True)
    for k in range(plan["shards"]):
        write_parquet(pa.table({name: pa.array(masks[name][k]) for name in masks}),
                      paths.spanning_flags(k))
    return {"subscriptions": sum(sizes), "buckets": buckets,
            **{name.lower(): int(sum(m.sum() for m in masks[name])) for name in masks}}


def _scatter(masks: list[np.ndarray], part: pa.Table, hit: np.ndarray) -> None:
    shard = np.asarray(part["shard"].to_numpy(), dtype=np.int64)
    position = np.asarray(part["position"].to_numpy(), dtype=np.int64)
    for k in np.unique(shard[hit]):
        chosen = hit & (shard == k)
        masks[int(k)][position[chosen]] = True


def flag_inputs(paths: RunPaths, shard: int) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """Shard ``shard``'s matched rows in (telco, source_row) order, the rows searched for
    candidates taken from ``search_candidates``, and the masks of the rules spanning
    shards for those rows."""
    table = _with_candidates(paths, shard)
    spanning = pq.read_table(paths.spanning_flags(shard))
    if spanning.num_rows != table.num_rows:
        raise RuntimeError(f"shard {shard}: spanning flags do not cover the matched rows "
                           "(rerun the whole date)")
    masks = {name: np.asarray(spanning[name].to_numpy(zero_copy_only=False), dtype=bool)
             for name in spanning.column_names}
    return table, masks


def _with_candidates(paths: RunPaths, shard: int) -> pa.Table:
    """The matched shard (in (telco, source_row) order) with the search's columns of its
    searched rows replaced by those of ``paths.candidates`` (same (telco, source_row)):
    column by column, only the columns that file carries, each read column let go once
    replaced (memory: the shard once; no concatenation of whole rows, no sort)."""
    found = pq.read_table(paths.candidates(shard))
    table = read_arrow(paths.matched_shard(shard))
    if not found.num_rows:
        return table
    position = row_positions(found, table)
    if (position < 0).any():
        raise RuntimeError(f"shard {shard}: candidates for rows not in the shard "
                           "(rerun the whole date)")
    # Row i comes from the shard, or from found when it is one of found's rows.
    index = np.arange(table.num_rows, dtype=np.int64)
    index[position] = table.num_rows + np.arange(found.num_rows, dtype=np.int64)
    take = pa.array(index)
    schema = table.schema
    columns = []
    for name in schema.names:
        column = table[name]
        table = table.drop_columns([name])
        if name in found.column_names and name not in ("telco", "source_row"):
            kind = schema.field(name).type
            both = pa.chunked_array([*column.chunks, *found[name].cast(kind).chunks], kind)
            del column
            column = both.take(take)
            del both
        columns.append(column)
    return pa.table(columns, schema=schema)


def empty_matched(settings: MatchingSettings) -> pa.Table:
    """A matched table without rows (a run in which no telco could be processed)."""
    return match.match(NORMALISED_SCHEMA.empty_table(), SHARD_SCHEMA.empty_table(),
                       _no_search(settings))
