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
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.config import MatchingSettings, RunConfig
from pipelines.intake.normalise import NORMALISED_SCHEMA
from pipelines.reconcile import flag, match, search
from pipelines.reconcile.run_state import shard_plan, snapshot_of_run
from pipelines.reconcile.sharding import (
    concat,
    read_tables,
    route_subscriptions,
    split_by_shard,
)
from pipelines.registry.snapshot import LEGACY_INDEX, SHARD_SCHEMA, shard_file
from pipelines.storage.files import AtomicParquetWriter, read_json, write_json, write_parquet
from pipelines.storage.paths import RunPaths

log = logging.getLogger("simrecon.shards")


def partition_telco(paths: RunPaths, telco: str, batch_rows: int = 1 << 20) -> dict:
    """Cut one telco's normalised subscriptions into the run's shards, streaming: at
    most ``batch_rows`` rows are held at once. The marker is written last."""

    snapshot = snapshot_of_run(paths)
    shards = snapshot.shards
    paths.partitioned(telco).unlink(missing_ok=True)
    folder = paths.partitioned(telco).parent
    shutil.rmtree(folder, ignore_errors=True)
    legacy = pq.read_table(snapshot.verify(LEGACY_INDEX), columns=["legacy_id", "shard"])
    source = pq.ParquetFile(paths.normalised(telco))
    writers = [AtomicParquetWriter(paths.subscription_shard(telco, k)) for k in range(shards)]
    rows = np.zeros(shards, dtype=np.int64)
    try:
        for batch in source.iter_batches(batch_size=batch_rows):
            table = pa.Table.from_batches([batch])
            shard = route_subscriptions(table["id_type"], table["id_number"],
                                        table["source_row"], legacy, shards)
            for k, part in enumerate(split_by_shard(table, shard, shards)):
                if part.num_rows:
                    writers[k].write(part)
                    rows[k] += part.num_rows
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
    """Fix the telcos the shard tasks match (those cut into shards) and the shard count."""
    snapshot = snapshot_of_run(paths)
    ready = [t for t in telcos if paths.partitioned(t).exists()
             and read_json(paths.partitioned(t))["shards"] == snapshot.shards]  # type: ignore[index]
    plan = {"shards": snapshot.shards, "telcos": ready}
    write_json(plan, paths.shard_plan)
    return plan


def _no_search(settings: MatchingSettings) -> MatchingSettings:
    return settings.model_copy(update={"candidate_search": False})


def match_shard(config: RunConfig, paths: RunPaths, shard: int) -> dict:
    """Link one shard's subscriptions to the same shard of the registry (the candidate
    search for rows whose document leads nowhere is ``search_candidates``)."""

    plan, snapshot = shard_plan(paths), snapshot_of_run(paths)
    if not 0 <= shard < plan["shards"]:
        raise ValueError(f"shard {shard} is not one of the run's {plan['shards']} shards")
    registry = pq.read_table(snapshot.verify(shard_file(shard)))
    parts = [pq.read_table(paths.subscription_shard(t, shard)) for t in plan["telcos"]]
    if not parts:
        return {"shard": shard, "subscriptions": 0, "citizens": registry.num_rows}
    subscriptions = concat(parts, parts[0].schema)
    matched = match.match(subscriptions, registry, _no_search(config.matching),
                          statistics=snapshot.statistics)
    offset = 0
    for telco, part in zip(plan["telcos"], parts, strict=True):
        write_parquet(matched.slice(offset, part.num_rows), paths.matched_shard(telco, shard))
        offset += part.num_rows
    linked = matched.num_rows - matched["matched_citizen_id"].null_count
    return {"shard": shard, "subscriptions": matched.num_rows, "linked": linked,
            "citizens": registry.num_rows}


def _matched_parts(paths: RunPaths, plan: dict, telco: str,
                   columns: Sequence[str] | None = None) -> list[pa.Table]:
    return read_tables((paths.matched_shard(telco, k) for k in range(plan["shards"])), columns)


def search_candidates(config: RunConfig, paths: RunPaths) -> dict:
    """The candidate search in this process: the rows whose document leads to no citizen
    (passports excepted), from every shard, searched one registry shard at a time
    (``search.search_registry_shard``), then the best candidates chosen over all of them
    (``search.choose_candidates``), written per telco in ``source_row`` order. Peak
    memory: one registry shard plus the searched rows."""

    plan = shard_plan(paths)
    if not plan["telcos"] or not plan["shards"]:
        return {"searched": 0, "with_candidate": 0}
    search.collect_searched(config, paths)
    for registry_shard in range(snapshot_of_run(paths).shards):
        search.search_registry_shard(config, paths, registry_shard)
    return search.choose_candidates(config, paths)


def spanning_flags(config: RunConfig, paths: RunPaths) -> dict:
    """EXCESS_SUBSCRIPTIONS, BULK_ACTIVATION and DUPLICATE_MSISDN over a few columns of
    every subscription of the run (every telco, every shard)."""
    plan = shard_plan(paths)
    parts = [p for t in plan["telcos"]
             for p in _matched_parts(paths, plan, t, flag.SPANNING_COLUMNS)]
    if not parts:
        return {"subscriptions": 0}
    rows = concat(parts, parts[0].schema)
    masks = flag.spanning_masks(rows, config.flags)
    out = rows.select(["telco", "source_row"])
    for name in flag.SPANNING_FLAGS:
        out = out.append_column(name, pa.array(masks[name], pa.bool_()))
    for telco in plan["telcos"]:
        write_parquet(out.filter(pc.equal(out["telco"], telco)).sort_by("source_row"),
                      paths.spanning_flags(telco))
    return {"subscriptions": rows.num_rows,
            **{name.lower(): int(masks[name].sum()) for name in flag.SPANNING_FLAGS}}


def gathered(paths: RunPaths, plan: dict, telco: str) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """One telco's matched rows in ``source_row`` order (rows searched for candidates
    taken from ``search_candidates``) and their spanning-rule masks."""
    parts = _matched_parts(paths, plan, telco)
    table = concat(parts, parts[0].schema)
    found = pq.read_table(paths.candidates(telco))
    if found.num_rows:
        replaced = pc.is_in(table["source_row"], value_set=found["source_row"])
        table = concat([table.filter(pc.invert(replaced)), found], table.schema)
    table = table.sort_by("source_row")
    spanning = pq.read_table(paths.spanning_flags(telco))
    if not spanning["source_row"].equals(table["source_row"]):
        raise RuntimeError(f"{telco}: spanning flags do not cover the matched rows "
                           "(rerun the whole date)")
    masks = {name: np.asarray(spanning[name].to_numpy(), dtype=bool)
             for name in flag.SPANNING_FLAGS}
    return table, masks


def empty_matched(settings: MatchingSettings) -> pa.Table:
    """A matched table without rows (a run in which no telco could be processed)."""

    return match.match(NORMALISED_SCHEMA.empty_table(), SHARD_SCHEMA.empty_table(),
                       _no_search(settings))
