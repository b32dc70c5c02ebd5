"""Stage entry points with plain string arguments, for Airflow tasks and the CLI.

Each function is one stage of a run for one run date. They communicate only
through files in the run's staging folder, so any of them can be retried on
its own; each returns a small JSON-able summary (fit for XCom). Logs carry
counts only, never citizen data.
"""

from __future__ import annotations

import logging
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import flag, ingest, match, normalise, publish, report
from pipelines.config import RunConfig, load_config, parse_run_date
from pipelines.errors import RunIncompleteError, RunNotPlannedError, TelcoInputError
from pipelines.quarantine import empty_quarantine
from pipelines.registry import load_registry
from pipelines.storage import (
    RunPaths,
    read_json,
    reset_dir,
    swap_into_place,
    write_json,
    write_parquet,
    write_text,
)

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
    for telco in planned:
        if telco not in failed and not paths.normalised(telco).exists():
            failed[telco] = "ingest or normalise did not complete (see the task log)"
    return failed


def _stats(paths: RunPaths, telco: str, stage: str) -> dict:
    path = paths.stats(telco, stage)
    return read_json(path) if path.exists() else {}  # type: ignore[return-value]


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


def ingest_telco(config_path: str, run_date: str, telco: str) -> dict:
    """Read one telco's export and map its columns to canonical fields.

    Raises ``TelcoInputError`` (after recording it in staging) when the file
    itself is unusable; unreadable rows are quarantined.
    """
    config, paths = _planned_context(config_path, run_date)
    paths.telco_error(telco).unlink(missing_ok=True)
    mapping = config.telco(telco)
    try:
        result = ingest.ingest(mapping)
    except TelcoInputError as exc:
        write_json({"telco": telco, "stage": "ingest", "error": str(exc)},
                   paths.telco_error(telco))
        log.error("ingest %s failed: %s", telco, exc)
        raise
    write_parquet(result.rows, paths.ingested(telco))
    write_parquet(result.quarantine, paths.quarantine(telco, "ingest"))
    stats = {"telco": telco, "source_file": mapping.source_path().name,
             "rows_in_file": result.rows_in_file, "rows_read": result.rows.num_rows,
             "quarantined_at_ingest": result.quarantine.num_rows}
    write_json(stats, paths.stats(telco, "ingest"))
    return stats


def normalise_telco(config_path: str, run_date: str, telco: str) -> dict:
    """Normalise one telco's ingested rows; unnormalisable rows are quarantined."""
    config, paths = _planned_context(config_path, run_date)
    if not paths.ingested(telco).exists():
        raise TelcoInputError(telco, str(paths.ingested(telco)),
                              "no ingested rows: the ingest stage did not succeed")
    rows = pq.read_table(paths.ingested(telco))
    result = normalise.normalise(rows, config.telco(telco), run_date=parse_run_date(run_date))
    write_parquet(result.rows, paths.normalised(telco))
    write_parquet(result.quarantine, paths.quarantine(telco, "normalise"))
    stats = {"telco": telco, "rows_normalised": result.rows.num_rows,
             "quarantined_at_normalise": result.quarantine.num_rows}
    write_json(stats, paths.stats(telco, "normalise"))
    return stats


def _normalised_telcos(config: RunConfig, paths: RunPaths) -> list[str]:
    failed = _failed_telcos(paths)
    return [m.telco for m in config.telcos()
            if m.telco not in failed and paths.normalised(m.telco).exists()]


def match_subscriptions(config_path: str, run_date: str) -> dict:
    """Link every normalised subscription of every usable telco to the registry."""
    config, paths = _planned_context(config_path, run_date)
    telcos = _normalised_telcos(config, paths)
    tables = [pq.read_table(paths.normalised(t)) for t in telcos]
    subscriptions = (pa.concat_tables(tables) if tables
                     else normalise.NORMALISED_SCHEMA.empty_table())
    registry = load_registry(config.registry_path)
    matched = match.match(subscriptions, registry, config.matching)
    write_parquet(matched, paths.matched)
    return {"telcos": telcos, "subscriptions": matched.num_rows, "citizens": registry.num_rows}


def flag_subscriptions(config_path: str, run_date: str) -> dict:
    """Apply the flag rules (including those spanning telcos) and decide statuses."""
    config, paths = _planned_context(config_path, run_date)
    results = flag.flag(pq.read_table(paths.matched), config.flags)
    write_parquet(results, paths.results)
    return {"subscriptions": results.num_rows}


def _all_quarantine(paths: RunPaths) -> pa.Table:
    files = sorted((paths.staging / "quarantine").glob("*.parquet"))
    tables = [pq.read_table(f) for f in files]
    return pa.concat_tables(tables) if tables else empty_quarantine()


def build_report(config_path: str, run_date: str) -> dict:
    """Write summary.json and the HTML compliance report into staging."""
    config, paths = _planned_context(config_path, run_date)
    results = pq.read_table(paths.results)
    quarantine = _all_quarantine(paths)
    failed = _failed_telcos(paths)
    telco_stats = {}
    for telco in _normalised_telcos(config, paths):
        stats = {**_stats(paths, telco, "ingest"), **_stats(paths, telco, "normalise")}
        stats.pop("telco", None)
        conserved = stats["rows_in_file"] == (
            stats["rows_normalised"] + stats["quarantined_at_ingest"]
            + stats["quarantined_at_normalise"])
        if not conserved:
            raise AssertionError(f"{telco}: rows in file != rows normalised + quarantined")
        stats["rows_conserved"] = conserved
        telco_stats[telco] = stats
    summary = report.summarise(results, quarantine, telco_stats, failed, run_date)
    write_json(summary, paths.summary)
    write_text(report.render_report(summary, results, quarantine), paths.report)
    return {"subscriptions": summary["subscriptions"], "failed_telcos": sorted(failed)}


def publish_run(config_path: str, run_date: str) -> dict:
    """Write correction lists and manifest, then atomically replace runs/<run_date>."""
    config, paths = _planned_context(config_path, run_date)
    if not paths.staging.exists() and (paths.final / "manifest.json").exists():
        # A retry after the swap already happened: finish the clean-up only.
        shutil.rmtree(paths.work, ignore_errors=True)
        return _published(paths, read_json(paths.final / "summary.json"))  # type: ignore[arg-type]
    results = pq.read_table(paths.results)
    lists = []
    for telco in _normalised_telcos(config, paths):
        table = publish.correction_list(results, telco)
        path = paths.corrections_dir / f"{telco}.csv"
        publish.write_correction_csv(table, path)
        lists.append(path.name)
    failed = _failed_telcos(paths)
    manifest = {
        "run_date": run_date,
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": str(Path(config_path).resolve()),
        "failed_telcos": failed,
        "files": publish.describe_outputs(paths.staging),
    }
    write_json(manifest, paths.manifest)
    swap_into_place(paths.staging, paths.final)
    shutil.rmtree(paths.work, ignore_errors=True)
    log.info("publish %s: run folder %s, %d correction list(s)", run_date, paths.final,
             len(lists))
    return _published(paths, {"failed_telcos": failed})


def _published(paths: RunPaths, summary: dict) -> dict:
    return {
        "run_dir": str(paths.final),
        "report": str(paths.final / "report.html"),
        "correction_lists": sorted(str(p) for p in (paths.final / "corrections").glob("*.csv")),
        "failed_telcos": sorted(summary["failed_telcos"]),
    }


def check_run(config_path: str, run_date: str) -> dict:
    """Fail (raise ``RunIncompleteError``) when any telco could not be processed."""
    _, paths = _context(config_path, run_date)
    summary = read_json(paths.final / "summary.json")
    failed = summary["failed_telcos"]  # type: ignore[index]
    if failed:
        details = "; ".join(f"{t}: {e}" for t, e in failed.items())
        raise RunIncompleteError(f"run {run_date}: {len(failed)} telco(s) not processed: {details}")
    return {"run_date": run_date, "complete": True}


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
    for telco in telcos:
        try:
            timed(f"ingest[{telco}]", ingest_telco, config_path, run_date, telco)
            timed(f"normalise[{telco}]", normalise_telco, config_path, run_date, telco)
        except TelcoInputError as exc:
            log.error("telco %s skipped: %s", telco, exc)
    timed("match", match_subscriptions, config_path, run_date)
    timed("flag", flag_subscriptions, config_path, run_date)
    timed("report", build_report, config_path, run_date)
    published = timed("publish", publish_run, config_path, run_date)
    return {**published, "timings": timings}
