"""Sharded matching and flagging: plan, match per shard, candidate search, spanning
rules, flag per shard, the review queue, and the results gate.

After ``match_shard`` the work stays per shard: ``flag_shard`` applies the flag rules
(those spanning shards as ``spanning_flags`` computed them) and reviewers' decisions
to one shard's rows and writes that shard's part of the results dataset, its partial
aggregates for the report, its compact flagged keys and its part of the review queue.
"""

from __future__ import annotations

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.correction_cycle import review
from pipelines.errors import GateFailedError
from pipelines.quality import facts, gates
from pipelines.reconcile import flag, search, shard_steps
from pipelines.reconcile.run_state import snapshot_of_run
from pipelines.reporting import aggregates
from pipelines.results.dataset import merge_sorted
from pipelines.stages.common import (
    log,
    planned_context,
    processed_telcos,
    store_of,
    write_gate,
)
from pipelines.stages.intake import partition_telco
from pipelines.storage.files import AtomicCsvWriter, write_parquet
from pipelines.storage.workarea import in_work_area
from pipelines.storage.xlsx import XlsxWriter


@in_work_area("run")
def plan_shards(config_path: str, run_date: str) -> list[int]:
    """Fix the telcos to match (every telco through its gate) and return the shard
    numbers, one mapped ``match_shard`` task each. Also records the review decisions
    dropped since the last import (``correction_cycle.review_drop_dir``), so every
    ``flag_shard`` task applies the same decisions."""
    config, paths = planned_context(config_path, run_date)
    paths.shard_plan.unlink(missing_ok=True)
    drop = config.correction_cycle.review_drop_dir
    if drop:
        review.import_drop_folder(config.resolve(drop), store_of(config))
    plan = shard_steps.plan_shards(paths, processed_telcos(config, paths))
    log.info("plan_shards %s: %d shard(s), telcos %s", run_date, plan["shards"], plan["telcos"])
    return list(range(plan["shards"]))


@in_work_area("shard", item="shard")
def match_shard(config_path: str, run_date: str, shard: int | str) -> dict:
    """Link one shard's subscriptions to its shard of the registry."""
    config, paths = planned_context(config_path, run_date)
    return shard_steps.match_shard(config, paths, int(shard))


@in_work_area("run")
def search_candidates(config_path: str, run_date: str) -> dict:
    """Search the whole registry for the rows whose document led to no citizen."""
    config, paths = planned_context(config_path, run_date)
    return shard_steps.search_candidates(config, paths)


@in_work_area("run")
def collect_searched(config_path: str, run_date: str) -> list[dict]:
    """Gather the rows whose document led to no citizen (every shard), cut them into
    batches and return the routing tasks, one mapped ``route_search_batch`` task each
    (``{"batch": b}``)."""
    config, paths = planned_context(config_path, run_date)
    return search.collect_searched(config, paths)


@in_work_area("run")
def plan_search(config_path: str, run_date: str) -> list[dict]:
    """The search tasks, one mapped ``search_partition`` task per partition of the
    registry's search layout that holds citizens (``{"partition": p}``)."""
    _, paths = planned_context(config_path, run_date)
    return search.partition_tasks(snapshot_of_run(paths).search_present)


def _item(task: dict | int | str, key: str) -> int:
    return int(task[key]) if isinstance(task, dict) else int(task)


@in_work_area("run")  # a narrower scope (its batch) would fetch less
def route_search_batch(config_path: str, run_date: str, task: dict | int | str) -> dict:
    """Where one batch of the gathered rows is searched: the citizens their numbers
    lead to and the partitions of their birth years (``task``: an item of
    ``collect_searched``, or a batch number)."""
    config, paths = planned_context(config_path, run_date)
    return search.route_search_batch(config, paths, _item(task, "batch"))


@in_work_area("run")
def search_partition(config_path: str, run_date: str, task: dict | int | str) -> dict:
    """The candidates of every batch's rows routed to one partition of the registry's
    search layout (``task``: an item of ``plan_search``, or a partition number)."""
    config, paths = planned_context(config_path, run_date)
    return search.search_partition(config, paths, _item(task, "partition"))


@in_work_area("run")
def choose_candidates(config_path: str, run_date: str) -> dict:
    """The best candidates over every search partition, written back per subscription
    shard."""
    config, paths = planned_context(config_path, run_date)
    return search.choose_candidates(config, paths)


@in_work_area("run")
def spanning_flags(config_path: str, run_date: str) -> dict:
    """The flag rules whose groups cross shards (duplicate numbers, bulk activation), a
    bucket of keys at a time."""
    config, paths = planned_context(config_path, run_date)
    return shard_steps.spanning_flags(config, paths)


@in_work_area("run")
def match_subscriptions(config_path: str, run_date: str) -> dict:
    """Every matching step in this process: cut the gated telcos not cut yet into
    shards, plan, match each shard, search candidates, spanning flags."""
    config, paths = planned_context(config_path, run_date)
    for telco in processed_telcos(config, paths):
        if not paths.partitioned(telco).exists():
            partition_telco(config_path, run_date, telco)
    shard_numbers = plan_shards(config_path, run_date)
    counts = [match_shard(config_path, run_date, k) for k in shard_numbers]
    search_candidates(config_path, run_date)
    spanning_flags(config_path, run_date)
    return {"telcos": shard_steps.shard_plan(paths)["telcos"], "shards": len(shard_numbers),
            "subscriptions": sum(c["subscriptions"] for c in counts)}


@in_work_area("shard", item="shard")
def flag_shard(config_path: str, run_date: str, shard: int | str) -> dict:
    """Flag one shard's subscriptions and apply reviewers' decisions; write its part of
    the results, its partial aggregates, its flagged keys and its review queue rows."""
    config, paths = planned_context(config_path, run_date)
    shard = int(shard)
    matched, spanning = shard_steps.flag_inputs(paths, shard)
    results = flag.flag(matched, config.flags, spanning=spanning)
    results = review.apply_decisions(results, matched, store_of(config))
    write_parquet(results, paths.results_part(shard), shard_steps.ROW_GROUP_ROWS,
                  plain=flag.PLAIN_COLUMNS)
    settings = config.report
    aggregates.of_results(
        results, top=settings.top,
        provinces_file=config.resolve(settings.provinces_file) if settings.provinces_file
        else None).write(paths.aggregates(shard),
                         pos_buckets=aggregates.pos_buckets(shard_steps.shard_plan(paths)["rows"]))
    write_parquet(aggregates.flagged_keys(results), paths.flagged(shard))
    queued = review.queue(results, matched)
    write_parquet(queued, paths.review_part(shard))
    decided = results.num_rows - results["review_decision"].null_count
    return {"shard": shard, "subscriptions": results.num_rows, "review_queue": queued.num_rows,
            "decided": decided}


@in_work_area("run")
def flag_subscriptions(config_path: str, run_date: str) -> dict:
    """Every shard's ``flag_shard`` in this process, then the review queue."""
    _, paths = planned_context(config_path, run_date)
    counts = [flag_shard(config_path, run_date, k)
              for k in range(shard_steps.shard_plan(paths)["shards"])]
    queue = write_review_queue(config_path, run_date)
    return {"subscriptions": sum(c["subscriptions"] for c in counts),
            "review_queue": queue["rows"], "decided": sum(c["decided"] for c in counts)}


@in_work_area("run")
def write_review_queue(config_path: str, run_date: str) -> dict:
    """``review/queue.csv`` and ``review/queue.xlsx``: every shard's queued rows, telco by
    telco in ``source_row`` order, streamed."""
    _, paths = planned_context(config_path, run_date)
    plan = shard_steps.shard_plan(paths)
    parts = [paths.review_part(k) for k in range(plan["shards"])]
    schema = pq.read_schema(parts[0])
    folder = paths.review_dir
    csv = AtomicCsvWriter(folder / "queue.csv", schema)
    workbook = XlsxWriter(folder / "queue.xlsx")
    rows = 0
    try:
        sheet = workbook.sheet("queue", schema)
        for telco in plan["telcos"]:
            streams = [_telco_stream(path, telco) for path in parts]
            for table in merge_sorted(streams, "source_row"):
                csv.write(table)
                sheet.append(table)
                rows += table.num_rows
        sheet.close()
        instructions = review.instructions()
        sheet = workbook.sheet("decisions", instructions.schema)
        sheet.append(instructions)
        sheet.close()
        csv.close()
        workbook.close()
    except BaseException:
        csv.abort()
        workbook.abort()
        raise
    return {"rows": rows}


def _telco_stream(path, telco: str):  # type: ignore[no-untyped-def]
    table = pq.read_table(path, filters=pc.field("telco") == telco)
    if table.num_rows:
        yield table


@in_work_area("run")
def gate_results(config_path: str, run_date: str) -> dict:
    """Validate the results dataset shard by shard (facts of every row, merged) and its
    total (one row per usable subscription).

    A failure is a defect of the run itself: ``GateFailedError``, nothing is published.
    """
    from expectations.results import results_count_suite, results_suite

    config, paths = planned_context(config_path, run_date)
    plan = shard_steps.shard_plan(paths)
    telcos = plan["telcos"]
    expected = sum(pq.ParquetFile(paths.normalised(t)).metadata.num_rows for t in telcos)
    examples = config.gates.example_rows
    rows = 0

    def parts():  # type: ignore[no-untyped-def]
        nonlocal rows
        for k in range(plan["shards"]):
            results = pq.read_table(paths.results_part(k), columns=[
                "telco", "source_row", "status", "matched_citizen_id"])
            rows += results.num_rows
            yield facts.results_facts(results, telcos), results

    outcome = gates.validate_parts(results_suite(), parts(), max_examples=examples)
    checked = [outcome] if outcome is not None else []
    total = gates.validate(results_count_suite(expected_rows=expected),
                           pd.DataFrame({"rows": [rows]}), max_examples=0)
    result = gates.gate_result("results", "results",
                               [*(c.summary() for c in checked), total.summary()])
    write_gate(paths, result)
    if not result["success"]:
        raise GateFailedError(f"run {run_date}: {gates.failure_reason(result)}")
    return {"success": True, "subscriptions": rows}

