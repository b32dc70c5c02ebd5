"""A whole run in this process (``simrecon run``) and its first step, the plan.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from pipelines.errors import (
    TelcoInputError,
)
from pipelines.stages.common import (
    _context,
    log,
)
from pipelines.stages.intake import gate_export, ingest_telco, normalise_telco, partition_telco
from pipelines.stages.lookup import refresh_lookup_index
from pipelines.stages.outputs import (
    approve_publication,
    build_report,
    gate_corrections,
    publish_run,
    write_corrections,
)
from pipelines.stages.reconcile import (
    flag_subscriptions,
    gate_results,
    match_shard,
    plan_shards,
    search_candidates,
    spanning_flags,
)
from pipelines.stages.registry import gate_registry
from pipelines.storage.files import (
    reset_dir,
    write_json,
)


def plan_run(config_path: str, run_date: str) -> list[str]:
    """Reset the staging folder for ``run_date``; return the telco names to process."""
    config, paths = _context(config_path, run_date)
    telcos = [m.telco for m in config.telcos()]
    reset_dir(paths.staging)
    reset_dir(paths.work)
    write_json({"run_date": run_date, "telcos": telcos,
                "started_at": datetime.now(UTC).isoformat(timespec="seconds")}, paths.plan)
    log.info("plan %s: telcos %s, staging %s", run_date, telcos, paths.staging)
    return telcos


def run_all(config_path: str, run_date: str) -> dict:
    """Every stage in order, in this process (the CLI's ``simrecon run``)."""
    timings: dict[str, float] = {}

    def timed(name: str, fn, *args):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            timings[name] = round(time.perf_counter() - start, 3)
            log.info("stage %s done in %.2fs", name, timings[name])

    telcos = timed("plan", plan_run, config_path, run_date)
    timed("gate_registry", gate_registry, config_path, run_date)
    for telco in telcos:
        try:
            timed(f"ingest[{telco}]", ingest_telco, config_path, run_date, telco)
            timed(f"normalise[{telco}]", normalise_telco, config_path, run_date, telco)
            timed(f"gate_export[{telco}]", gate_export, config_path, run_date, telco)
            timed(f"partition[{telco}]", partition_telco, config_path, run_date, telco)
        except TelcoInputError as exc:
            log.error("telco %s skipped: %s", telco, exc)
    for shard in timed("plan_shards", plan_shards, config_path, run_date):
        timed(f"match_shard[{shard:03d}]", match_shard, config_path, run_date, shard)
    timed("search_candidates", search_candidates, config_path, run_date)
    timed("spanning_flags", spanning_flags, config_path, run_date)
    timed("flag", flag_subscriptions, config_path, run_date)
    timed("gate_results", gate_results, config_path, run_date)
    timed("corrections", write_corrections, config_path, run_date)
    timed("gate_corrections", gate_corrections, config_path, run_date)
    timed("report", build_report, config_path, run_date)
    timed("approve", approve_publication, config_path, run_date)
    published = timed("publish", publish_run, config_path, run_date)
    timed("lookup_index", refresh_lookup_index, config_path, run_date)
    return {**published, "timings": timings}
