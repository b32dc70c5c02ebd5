"""Hash partitioning of the registry and the subscriptions, and the sharded match steps.

A citizen lives in shard ``shard_of(citizen_id)``; a subscription goes to the shard
of the citizen its document can lead to, so each shard is matched on its own
(``match_shard``: one mapped Airflow task per shard, reading only its slice of the
registry and of the subscriptions):

* CCCD (and any other number): ``shard_of(id_number)``, the same hash of the same
  canonical text, so a CCCD meets its citizen;
* old CMND: the shard of the citizen the legacy index names for that number (the
  first citizen in registry order holding it, the one the document link picks);
* no number: a hash of ``source_row`` (such a row links to nobody; it only spreads
  the load).

What needs the whole registry or every subscription runs in its own step:
``search_candidates`` (rows whose document leads nowhere, searched in the whole
registry's compact columns) and ``spanning_flags`` (EXCESS_SUBSCRIPTIONS,
BULK_ACTIVATION, DUPLICATE_MSISDN over a few columns of every subscription);
``gather`` then assembles each telco's rows in ``source_row`` order and applies
the per-row rules. Every step is a pure function of its inputs, rows are
assembled in a defined order, and registry-wide statistics (name frequencies,
CMNDs shared by several citizens) are computed once when the snapshot is
prepared: the results are the same whatever the number of shards.

The hash (``HASH_NAME``) is part of the prepared snapshot's contract: changing it
means preparing every snapshot again (the run refuses a snapshot made with
another hash).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines import flag, match
from pipelines.config import MatchingSettings, RunConfig
from pipelines.errors import RegistryError
from pipelines.storage import AtomicParquetWriter, RunPaths, read_json, write_json, write_parquet

if TYPE_CHECKING:
    from pipelines.registry_prepare import Snapshot

log = logging.getLogger("simrecon.shards")

HASH_NAME = "simrecon-splitmix64-v1"
_DIGITS = r"^[0-9]{1,18}$"


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective, well-mixing map of 64-bit integers."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _bytes_hash(values: pa.Array) -> np.ndarray:
    """Hash of each (non-null) string's UTF-8 bytes, vectorised: every byte is mixed
    with its position, a row's mixes summed (mod 2**64), then mixed with the length."""
    n = len(values)
    out = np.zeros(n, dtype=np.uint64)
    if n == 0:
        return out
    binary = pc.cast(pc.take(values, pa.array(np.arange(n))), pa.large_binary())
    offsets = np.frombuffer(binary.buffers()[1], dtype=np.int64)[
        binary.offset:binary.offset + n + 1]
    lengths = np.diff(offsets)
    if not lengths.any():
        return out
    data = np.frombuffer(binary.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    starts = offsets[:-1] - offsets[0]
    position = np.arange(len(data), dtype=np.int64) - np.repeat(starts, lengths)
    mixed = _mix64((data.astype(np.uint64) + np.uint64(1))
                   | (position.astype(np.uint64) << np.uint64(8)))
    filled = lengths > 0
    with np.errstate(over="ignore"):
        sums = np.add.reduceat(mixed, starts[filled]).astype(np.uint64)
        out[filled] = _mix64(sums + lengths[filled].astype(np.uint64))
    return out


def stable_hash(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash of each text value that is the same on every machine and run.

    Numbers of up to 18 digits (every CCCD and CMND) are hashed from their integer
    value and length; anything else from its UTF-8 bytes. Null gives 0. No Python
    loop per row.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = pc.cast(values, pa.string())
    n = len(values)
    out = np.zeros(n, dtype=np.uint64)
    if n == 0:
        return out
    digits = np.asarray(pc.fill_null(pc.match_substring_regex(values, _DIGITS), False)
                        .to_numpy(zero_copy_only=False), dtype=bool)
    if digits.any():
        index = pa.array(np.flatnonzero(digits))
        numbers = pc.take(values, index)
        value = np.asarray(pc.cast(numbers, pa.uint64()).to_numpy(zero_copy_only=False),
                           dtype=np.uint64)
        length = np.asarray(pc.utf8_length(numbers).to_numpy(zero_copy_only=False),
                            dtype=np.uint64)
        with np.errstate(over="ignore"):
            out[digits] = _mix64(_mix64(value) + length)
    other = ~digits & np.asarray(pc.is_valid(values).to_numpy(zero_copy_only=False), dtype=bool)
    if other.any():
        out[other] = _bytes_hash(pc.take(values, pa.array(np.flatnonzero(other))))
    return out


def shard_of(values: pa.Array | pa.ChunkedArray, shards: int) -> np.ndarray:
    """The shard (0 … shards-1) of each value; -1 where the value is null."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    shard = (stable_hash(values) % np.uint64(shards)).astype(np.int32)
    shard[np.asarray(pc.is_null(values).to_numpy(zero_copy_only=False), dtype=bool)] = -1
    return shard


def shard_of_integers(values: np.ndarray, shards: int) -> np.ndarray:
    return (_mix64(np.asarray(values).astype(np.uint64)) % np.uint64(shards)).astype(np.int32)


def route_subscriptions(id_type: pa.Array | pa.ChunkedArray,
                        id_number: pa.Array | pa.ChunkedArray,
                        source_row: pa.Array | pa.ChunkedArray,
                        legacy_index: pa.Table, shards: int) -> np.ndarray:
    """The shard of each subscription (see the module docstring).

    ``legacy_index``: ``legacy_id`` and ``shard`` (of the first citizen in registry
    order holding that number), one row per distinct legacy number.
    """
    id_type = id_type.combine_chunks() if isinstance(id_type, pa.ChunkedArray) else id_type
    id_number = id_number.combine_chunks() if isinstance(id_number, pa.ChunkedArray) \
        else id_number
    shard = shard_of(id_number, shards)
    cmnd = np.asarray(pc.fill_null(pc.equal(id_type, "CMND"), False)
                      .to_numpy(zero_copy_only=False), dtype=bool)
    if cmnd.any() and legacy_index.num_rows:
        at = pc.index_in(id_number, value_set=legacy_index["legacy_id"].combine_chunks(),
                         skip_nulls=True)
        at = np.asarray(pc.fill_null(at, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
        via = cmnd & (at >= 0)
        legacy_shard = np.asarray(legacy_index["shard"].to_numpy(), dtype=np.int32)
        shard[via] = legacy_shard[at[via]]
    none = shard < 0
    if none.any():
        rows = np.asarray(pc.cast(source_row, pa.int64()).to_numpy(zero_copy_only=False))
        shard[none] = shard_of_integers(rows[none], shards)
    return shard


def split_by_shard(table: pa.Table, shard: np.ndarray, shards: int) -> list[pa.Table]:
    """``table``'s rows per shard, each in the table's order (one stable sort, no loop
    over rows)."""
    order = np.argsort(shard, kind="stable")
    ordered = table.take(pa.array(order))
    counts = np.bincount(shard, minlength=shards)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return [ordered.slice(int(bounds[k]), int(counts[k])) for k in range(shards)]


def read_tables(paths: Iterable[Path], columns: Sequence[str] | None = None) -> list[pa.Table]:
    return [pq.read_table(p, columns=list(columns) if columns else None) for p in paths]


def concat(tables: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """Tables of the same columns as one (an empty table of ``schema`` when none)."""
    tables = [t for t in tables if t.num_rows] or [schema.empty_table()]
    return pa.concat_tables([t.select(schema.names).cast(schema) for t in tables])


# --- The sharded steps of a run (called by pipelines/stages.py) ---------------------------
# They read and write the run's working state (RunPaths, under <output_dir>/.work/<date>/):
#   shards/<telco>/NNN.parquet     a telco's normalised subscriptions of shard NNN
#   matched/<telco>/NNN.parquet    the same rows after matching against registry shard NNN
#   candidates/<telco>.parquet     its rows whose document led nowhere, matched again with
#                                  the whole registry searched for candidates
#   spanning/<telco>.parquet       its rows' EXCESS_SUBSCRIPTIONS/BULK_ACTIVATION/
#                                  DUPLICATE_MSISDN over every subscription of the run


def snapshot_of_run(paths: RunPaths) -> Snapshot:
    """The prepared registry snapshot ``gate_registry`` chose for this run."""
    from pipelines.registry_prepare import open_snapshot

    if not paths.registry_snapshot.exists():
        raise RegistryError(f"run {paths.run_date}: no registry snapshot was chosen "
                            "(the gate_registry step did not succeed)")
    return open_snapshot(Path(read_json(paths.registry_snapshot)["path"]))  # type: ignore[index]


def shard_plan(paths: RunPaths) -> dict:
    if not paths.shard_plan.exists():
        raise RuntimeError(f"run {paths.run_date}: no shard plan (plan_shards did not run)")
    return read_json(paths.shard_plan)  # type: ignore[return-value]


def partition_telco(paths: RunPaths, telco: str, batch_rows: int = 1 << 20) -> dict:
    """Cut one telco's normalised subscriptions into the run's shards, streaming: at
    most ``batch_rows`` rows are held at once. The marker is written last."""
    from pipelines.registry_prepare import LEGACY_INDEX

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
    from pipelines.registry_prepare import shard_file

    plan, snapshot = shard_plan(paths), snapshot_of_run(paths)
    if not 0 <= shard < plan["shards"]:
        raise ValueError(f"shard {shard} is not one of the run's {plan['shards']} shards")
    registry = pq.read_table(snapshot.verify(shard_file(shard)))
    parts = [pq.read_table(paths.subscription_shard(t, shard)) for t in plan["telcos"]]
    if not parts:
        return {"shard": shard, "subscriptions": 0, "citizens": registry.num_rows}
    subscriptions = concat(parts, parts[0].schema)
    matched = match.match(subscriptions, registry, _no_search(config.matching))
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
    """Rows whose document leads to no citizen (passports excepted), from every shard,
    matched again against the whole registry's compact columns with the candidate
    search on; written per telco in ``source_row`` order."""
    from pipelines.registry_prepare import read_search_columns

    plan = shard_plan(paths)
    if not plan["telcos"] or not plan["shards"]:
        return {"searched": 0, "with_candidate": 0}
    schema = pq.read_schema(paths.matched_shard(plan["telcos"][0], 0))
    # Only the few unlinked rows, only the subscription's own columns: the reader
    # filters while it decodes, so the matched rows are never materialised.
    unlinked = pc.field("matched_citizen_id").is_null() & (
        pc.field("id_type").is_null() | (pc.field("id_type") != "PASSPORT"))
    searched_parts = []
    for telco in plan["telcos"]:
        own = pq.read_schema(paths.subscription_shard(telco, 0)).names
        searched_parts += [pq.read_table(paths.matched_shard(telco, k), columns=own,
                                         filters=unlinked) for k in range(plan["shards"])]
    searched = concat(searched_parts, searched_parts[0].schema)
    if searched.num_rows and config.matching.candidate_search:
        found = match.match(searched, read_search_columns(snapshot_of_run(paths)),
                            config.matching)
    else:
        found = schema.empty_table()
    for telco in plan["telcos"]:
        rows = found.filter(pc.equal(found["telco"], telco)).sort_by("source_row")
        write_parquet(rows.cast(schema), paths.candidates(telco))
    with_candidate = int(pc.sum(pc.greater(found["candidate_count"], 0)).as_py() or 0) \
        if found.num_rows else 0
    return {"searched": searched.num_rows, "with_candidate": with_candidate}


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
    from pipelines.normalise import NORMALISED_SCHEMA
    from pipelines.registry_prepare import SHARD_SCHEMA

    return match.match(NORMALISED_SCHEMA.empty_table(), SHARD_SCHEMA.empty_table(),
                       _no_search(settings))
