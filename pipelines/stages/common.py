"""Helpers shared by the stage entry points: a stage's context, failed telcos,
per-stage counts, gate records and the history store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.config import RunConfig, load_config, parse_run_date
from pipelines.correction_cycle import history
from pipelines.errors import RunNotPlannedError
from pipelines.intake.quarantine import empty_quarantine
from pipelines.quality import gates
from pipelines.storage.files import parquet_batches, read_json, write_json
from pipelines.storage.paths import RunPaths

log = logging.getLogger("simrecon.stages")


def context(config_path: str, run_date: str) -> tuple[RunConfig, RunPaths]:
    parse_run_date(run_date)
    config = load_config(config_path)
    return config, RunPaths(config.output_path, run_date, config.private_path)


def planned_context(config_path: str, run_date: str) -> tuple[RunConfig, RunPaths]:
    """Context of a stage that needs a planned, not yet published run."""
    config, paths = context(config_path, run_date)
    if not paths.plan.exists():
        raise RunNotPlannedError(
            f"run {run_date} has no plan (never planned, or already published): "
            "start again from the plan stage (rerun the whole date)")
    return config, paths


def export_gate_result(paths: RunPaths, telco: str) -> dict | None:
    """The telco's export gate result of this run (``gates/export.<telco>.json``), or None
    when the gate has not run."""
    gate = paths.gate(f"export.{telco}")
    return read_json(gate) if gate.exists() else None  # type: ignore[return-value]


def failed_telcos(paths: RunPaths) -> dict[str, str]:
    """Telcos with a recorded error, or planned but never through their chain (a crashed
    task): ingest, normalise, the export gate, cutting into shards."""
    folder = paths.work / "errors"
    failed = {p.stem: read_json(p)["error"] for p in sorted(folder.glob("*.json"))} \
        if folder.exists() else {}
    planned = read_json(paths.plan)["telcos"] if paths.plan.exists() else []  # type: ignore[index]
    for telco in planned:
        if telco in failed:
            continue
        if not paths.normalised(telco).exists():
            failed[telco] = "ingest or normalise did not complete (see the task log)"
        elif (result := export_gate_result(paths, telco)) is None:
            failed[telco] = "the export gate did not run (see the task log)"
        elif not result["success"]:
            failed[telco] = gates.failure_reason(result)
        elif not paths.partitioned(telco).exists():
            failed[telco] = "cutting it into shards did not complete (see the task log)"
    return failed


def stats_of(paths: RunPaths, telco: str, *stages: str) -> dict:
    """A telco's recorded counts of ``stages`` (ingest, normalise, gate), merged."""
    merged: dict = {}
    for stage in stages:
        path = paths.stats(telco, stage)
        if path.exists():
            merged.update(read_json(path))  # type: ignore[arg-type]
    return merged


def write_gate(paths: RunPaths, result: dict) -> None:
    write_json(result, paths.gate(result["gate"]))
    log.info("gate %s: %s (%d failed expectation(s))", result["gate"],
             "passed" if result["success"] else "FAILED",
             sum(len(s["failed"]) for s in result["suites"]))


def processed_telcos(config: RunConfig, paths: RunPaths) -> list[str]:
    """Telcos processed so far without failure, in configuration order."""
    failed = failed_telcos(paths)
    return [m.telco for m in config.telcos()
            if m.telco not in failed and paths.normalised(m.telco).exists()]


def store_of(config: RunConfig) -> history.Store:
    """The flag-history and review-decision store (``correction_cycle.history_store``):
    an SQLite file path or a database URL (pipelines/correction_cycle/history.py)."""
    return history.configured_store(config.correction_cycle.history_store, config.base_dir,
                                    config.output_path)


def quarantine_files(paths: RunPaths, telco: str | None = None) -> list:
    folder = paths.engineering_staging / "quarantine"
    return sorted(folder.glob(f"{telco}.*.parquet" if telco else "*.parquet"))


# Quarantined rows read at once (a row group at a time: storage.files.parquet_batches).
QUARANTINE_BATCH_ROWS = 65_536


def quarantine_batches(paths: RunPaths, telco: str | None = None,
                       columns: list[str] | None = None) -> Iterator[pa.Table]:
    """The run's quarantined rows (or one telco's), a file's batch at a time."""
    for path in quarantine_files(paths, telco):
        yield from parquet_batches(pq.ParquetFile(path), QUARANTINE_BATCH_ROWS, columns)


def all_quarantine(paths: RunPaths) -> pa.Table:
    """Every quarantined row of the run (small: rows that could not be read)."""
    tables = list(quarantine_batches(paths))
    return pa.concat_tables(tables) if tables else empty_quarantine()
