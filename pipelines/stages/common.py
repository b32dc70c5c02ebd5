"""Helpers shared by the stage entry points: a stage's context, failed telcos,
per-stage counts, gate records and the history store.
"""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.config import RunConfig, load_config, parse_run_date
from pipelines.correction_cycle import history
from pipelines.errors import (
    RunNotPlannedError,
)
from pipelines.intake.quarantine import empty_quarantine
from pipelines.quality import gates
from pipelines.storage.files import (
    read_json,
    write_json,
)
from pipelines.storage.paths import RunPaths

log = logging.getLogger("simrecon.stages")


def _context(config_path: str, run_date: str) -> tuple[RunConfig, RunPaths]:
    parse_run_date(run_date)
    config = load_config(config_path)
    return config, RunPaths(config.output_path, run_date)


def _planned_context(config_path: str, run_date: str) -> tuple[RunConfig, RunPaths]:
    """Context of a stage that needs a planned, not yet published run."""
    config, paths = _context(config_path, run_date)
    if not paths.plan.exists():
        raise RunNotPlannedError(
            f"run {run_date} has no plan (never planned, or already published): "
            "start again from the plan stage (rerun the whole date)")
    return config, paths


def _failed_telcos(paths: RunPaths) -> dict[str, str]:
    """Telcos with a recorded error, or planned but never normalised (a crashed task)."""
    folder = paths.work / "errors"
    failed = {p.stem: read_json(p)["error"] for p in sorted(folder.glob("*.json"))} \
        if folder.exists() else {}
    planned = read_json(paths.plan)["telcos"] if paths.plan.exists() else []  # type: ignore[index]
    # Once the shards are planned, a gated telco left out of the plan was not cut into shards.
    sharded = read_json(paths.shard_plan)["telcos"] \
        if paths.shard_plan.exists() else None  # type: ignore[index]
    for telco in planned:
        if telco not in failed and not paths.normalised(telco).exists():
            failed[telco] = "ingest or normalise did not complete (see the task log)"
        elif telco not in failed:
            gate = paths.gate(f"export.{telco}")
            if not gate.exists():
                failed[telco] = "the export gate did not run (see the task log)"
            elif not (result := read_json(gate))["success"]:  # type: ignore[index]
                failed[telco] = gates.failure_reason(result)  # type: ignore[arg-type]
            elif sharded is not None and telco not in sharded:
                failed[telco] = "cutting it into shards did not complete (see the task log)"
    return failed


def _stats(paths: RunPaths, telco: str, stage: str) -> dict:
    path = paths.stats(telco, stage)
    return read_json(path) if path.exists() else {}  # type: ignore[return-value]


def _write_gate(paths: RunPaths, result: dict) -> None:
    write_json(result, paths.gate(result["gate"]))
    log.info("gate %s: %s (%d failed expectation(s))", result["gate"],
             "passed" if result["success"] else "FAILED",
             sum(len(s["failed"]) for s in result["suites"]))


def _pd_frame(data: dict):  # type: ignore[no-untyped-def]
    import pandas as pd

    return pd.DataFrame(data)


def _normalised_telcos(config: RunConfig, paths: RunPaths) -> list[str]:
    """Telcos processed so far without failure (once the shards are planned, those the
    shard tasks match)."""
    failed = _failed_telcos(paths)
    return [m.telco for m in config.telcos()
            if m.telco not in failed and paths.normalised(m.telco).exists()]


def store_of(config: RunConfig) -> history.Store:
    """The flag-history and review-decision store (``correction_cycle.history_store``):
    an SQLite file path or a database URL (pipelines/correction_cycle/history.py)."""
    return history.configured_store(config.correction_cycle.history_store, config.base_dir,
                                    config.output_path)


def _all_quarantine(paths: RunPaths) -> pa.Table:
    files = sorted((paths.staging / "quarantine").glob("*.parquet"))
    tables = [pq.read_table(f) for f in files]
    return pa.concat_tables(tables) if tables else empty_quarantine()
