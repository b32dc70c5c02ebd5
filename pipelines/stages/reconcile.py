"""Sharded matching and flagging: plan, match per shard, candidate search, spanning
rules, flag, and the results gate.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.correction_cycle import review
from pipelines.errors import (
    GateFailedError,
)
from pipelines.quality import gates
from pipelines.reconcile import flag, shard_steps
from pipelines.stages.common import (
    _normalised_telcos,
    _planned_context,
    _write_gate,
    log,
    store_of,
)
from pipelines.stages.intake import partition_telco
from pipelines.storage import files


def plan_shards(config_path: str, run_date: str) -> list[int]:
    """Fix the telcos to match (every gated telco cut into shards) and return the shard
    numbers, one mapped ``match_shard`` task each."""
    config, paths = _planned_context(config_path, run_date)
    paths.shard_plan.unlink(missing_ok=True)
    plan = shard_steps.plan_shards(paths, _normalised_telcos(config, paths))
    log.info("plan_shards %s: %d shard(s), telcos %s", run_date, plan["shards"], plan["telcos"])
    return list(range(plan["shards"]))


def match_shard(config_path: str, run_date: str, shard: int | str) -> dict:
    """Link one shard's subscriptions to its shard of the registry."""
    config, paths = _planned_context(config_path, run_date)
    return shard_steps.match_shard(config, paths, int(shard))


def search_candidates(config_path: str, run_date: str) -> dict:
    """Search the whole registry for the rows whose document led to no citizen."""
    config, paths = _planned_context(config_path, run_date)
    return shard_steps.search_candidates(config, paths)


def spanning_flags(config_path: str, run_date: str) -> dict:
    """The flag rules over every subscription of the run, on a few columns."""
    config, paths = _planned_context(config_path, run_date)
    return shard_steps.spanning_flags(config, paths)


def match_subscriptions(config_path: str, run_date: str) -> dict:
    """Every matching step in this process: cut the gated telcos not cut yet into
    shards, plan, match each shard, search candidates, spanning flags."""
    config, paths = _planned_context(config_path, run_date)
    for telco in _normalised_telcos(config, paths):
        if not paths.partitioned(telco).exists():
            partition_telco(config_path, run_date, telco)
    shard_numbers = plan_shards(config_path, run_date)
    counts = [match_shard(config_path, run_date, k) for k in shard_numbers]
    search_candidates(config_path, run_date)
    spanning_flags(config_path, run_date)
    return {"telcos": shard_steps.shard_plan(paths)["telcos"], "shards": len(shard_numbers),
            "subscriptions": sum(c["subscriptions"] for c in counts)}


def flag_subscriptions(config_path: str, run_date: str) -> dict:
    """Assemble each telco's matched rows in ``source_row`` order, apply the flag rules
    (the spanning ones as computed across shards) and reviewers' decisions; write
    ``results.parquet`` telco by telco and the review queue."""
    config, paths = _planned_context(config_path, run_date)
    plan = shard_steps.shard_plan(paths)
    # Reviewers' decisions apply to rows whose own data is unchanged
    # (pipelines/correction_cycle/review.py); filled-in queues dropped in the review drop
    # folder are imported first.
    drop = config.correction_cycle.review_drop_dir
    if drop:
        review.import_drop_folder(config.resolve(drop), store_of(config))
    store = store_of(config)
    writer = files.AtomicParquetWriter(paths.results)
    queues, rows, decided = [], 0, 0
    try:
        for telco in plan["telcos"]:
            matched, spanning = shard_steps.gathered(paths, plan, telco)
            results = flag.flag(matched, config.flags, spanning=spanning)
            results = review.apply_decisions(results, review.row_hashes(matched), store)
            writer.write(results)
            queues.append(review.queue(results, matched))
            rows += results.num_rows
            decided += results.num_rows - results["review_decision"].null_count
        if not plan["telcos"]:  # no telco could be processed: an empty, well-formed run
            matched = shard_steps.empty_matched(config.matching)
            none = {name: np.zeros(0, dtype=bool) for name in flag.SPANNING_FLAGS}
            results = review.apply_decisions(flag.flag(matched, config.flags, spanning=none),
                                             review.row_hashes(matched), store)
            writer.write(results)
            queues.append(review.queue(results, matched))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    queued = pa.concat_tables(queues)
    review.write_queue(queued, paths.staging / "review")
    return {"subscriptions": rows, "review_queue": queued.num_rows, "decided": decided}


def gate_results(config_path: str, run_date: str) -> dict:
    """Validate results.parquet (one row per usable subscription, known statuses).

    A failure is a defect of the run itself: ``GateFailedError``, nothing is published.
    """
    from expectations.results import results_suite

    config, paths = _planned_context(config_path, run_date)
    telcos = _normalised_telcos(config, paths)
    expected = sum(pq.ParquetFile(paths.normalised(t)).metadata.num_rows for t in telcos)
    results = pq.read_table(paths.results,
                            columns=["telco", "source_row", "status", "matched_citizen_id"])
    suite = gates.run_suite(results_suite(expected_rows=expected, telcos=telcos),
                            gates.to_frame(results), max_examples=config.gates.example_rows)
    result = gates.gate_result("results", "results", [suite])
    _write_gate(paths, result)
    if not result["success"]:
        raise GateFailedError(f"run {run_date}: {gates.failure_reason(result)}")
    return {"success": True, "subscriptions": results.num_rows}
