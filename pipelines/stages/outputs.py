"""What a run hands out: correction lists and their gate, the report, approval,
publication and the final check.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.config import RunConfig
from pipelines.correction_cycle import history
from pipelines.delivery import correction_lists, transport
from pipelines.errors import (
    RunIncompleteError,
)
from pipelines.lookup import delivery as lookup_delivery
from pipelines.quality import gates
from pipelines.reporting import report
from pipelines.stages.common import (
    _all_quarantine,
    _context,
    _failed_telcos,
    _normalised_telcos,
    _pd_frame,
    _planned_context,
    _stats,
    _write_gate,
    log,
    store_of,
)
from pipelines.storage import objectstore
from pipelines.storage.files import (
    read_json,
    swap_into_place,
    write_json,
    write_text,
)
from pipelines.storage.paths import RunPaths


def write_corrections(config_path: str, run_date: str) -> dict:
    """Write one correction list per usable telco into staging."""
    config, paths = _planned_context(config_path, run_date)
    results = pq.read_table(paths.results)
    lists = []
    for telco in _normalised_telcos(config, paths):
        path = paths.corrections_dir / f"{telco}.csv"
        listed = correction_lists.correction_list(results, telco, run_date=run_date,
                                         store=store_of(config),
                                         policy=config.correction_cycle.deadlines)
        correction_lists.write_correction_csv(listed, path)
        lists.append(telco)
    return {"telcos": lists}


def gate_corrections(config_path: str, run_date: str) -> dict:
    """Validate every correction list read back from disk. A list that fails is removed
    (not published) and its telco recorded as failed; the other lists go on."""
    import pyarrow.csv as pa_csv

    from expectations.corrections import correction_list_suite

    config, paths = _planned_context(config_path, run_date)
    results = pq.read_table(paths.results)
    columns = list(correction_lists.CORRECTION_COLUMNS)
    failed = []
    for telco in _normalised_telcos(config, paths):
        path = paths.corrections_dir / f"{telco}.csv"
        expected = correction_lists.correction_list(results, telco, run_date=run_date).num_rows
        suite = correction_list_suite(telco=telco, columns=columns, expected_rows=expected)
        if path.exists():
            table = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(
                column_types={c: pa.string() for c in columns}, strings_can_be_null=True))
            frame = gates.to_frame(table)
        else:
            frame = _pd_frame({c: [] for c in columns})
        checked = gates.run_suite(suite, frame, max_examples=config.gates.example_rows)
        if not path.exists():
            checked["success"] = False
            checked["failed"].append({"expectation": "file_exists", "column": None,
                                      "description": f"corrections/{telco}.csv was written",
                                      "unexpected_count": None, "unexpected_percent": None,
                                      "observed_value": "missing", "examples": []})
        result = gates.gate_result(f"corrections.{telco}", telco, [checked])
        if not result["success"]:  # withdraw first: a crash here never leaves it published
            path.unlink(missing_ok=True)
            write_json({"telco": telco, "stage": "gate", "error": gates.failure_reason(result)},
                       paths.telco_error(telco))
            failed.append(telco)
        _write_gate(paths, result)
    return {"success": not failed, "failed_telcos": failed}


def _delivery_files(config: RunConfig, paths: RunPaths, run_date: str) -> list[str]:
    """Per published list: XLSX, resolved and resend sections, delivery manifest."""
    results = pq.read_table(paths.results)
    quarantine = _all_quarantine(paths)
    telcos = []
    for path in sorted(paths.corrections_dir.glob("*.csv")) \
            if paths.corrections_dir.exists() else []:
        telco = path.stem
        listed = correction_lists.correction_list(results, telco, run_date=run_date,
                                         store=store_of(config),
                                         policy=config.correction_cycle.deadlines)
        resolved = correction_lists.resolved_list(results, telco, run_date, store_of(config))
        # The look-up service's verification requests to this telco (requests/<telco>.csv).
        asked = lookup_delivery.telco_request_files(config, telco, paths.corrections_dir)
        correction_lists.write_delivery(paths.corrections_dir, telco, listed, resolved,
                                        correction_lists.resend_list(quarantine, telco), run_date,
                                        extra_files=asked)
        telcos.append(telco)
    return telcos


def _after_swap(config: RunConfig, run_date: str, final: Path) -> dict[str, str | None]:
    """Record the published flags in the history, then deliver each telco's files."""
    if config.publish_url:  # output_dir is a URL: copy the run there, _SUCCESS marker last
        objectstore.publish_folder(final, f"{config.publish_url}/{run_date}")
        log.info("publish %s: copied to %s", run_date,
                 objectstore.redact(f"{config.publish_url}/{run_date}"))
    corrections = final / "corrections"
    telcos = sorted(p.stem for p in corrections.glob("*.manifest.json")) \
        if corrections.exists() else []
    telcos = [t.removesuffix(".manifest") for t in telcos]
    results = pq.read_table(final / "results.parquet")
    keys = [correction_lists.tracked_keys(results, t) for t in telcos]
    if keys:
        import pandas as pd

        history.record(store_of(config), run_date, pd.concat(keys, ignore_index=True), telcos,
                       datetime.now(UTC).isoformat(timespec="seconds"))
    delivered = {}
    for telco in telcos:
        manifest = corrections / f"{telco}.manifest.json"
        names = [e["path"] for e in read_json(manifest)["files"]]  # type: ignore[index]
        delivered[telco] = transport.deliver(
            corrections, names, manifest.name,
            config.correction_cycle.delivery.for_telco(telco), run_date, config.base_dir)
    return delivered


def _tracking(config: RunConfig, paths: RunPaths, run_date: str, results: pa.Table) -> dict:
    """New/persisting/resolved per telco list of this run, and the flag trend over runs."""
    store = store_of(config)
    by_telco, trend = {}, []
    listed = sorted(paths.corrections_dir.glob("*.csv")) if paths.corrections_dir.exists() else []
    for telco in (p.stem for p in listed):
        tracked = correction_lists.tracked_keys(results, telco)
        keys, resolved = history.classify(store, run_date, tracked, [telco])
        rows = correction_lists.correction_list(results, telco, run_date=run_date, store=store,
                                       policy=config.correction_cycle.deadlines)
        status = rows["flag_status"].to_pylist()
        by_telco[telco] = {"flagged": rows.num_rows, "new": status.count(history.NEW),
                           "persisting": status.count(history.PERSISTING),
                           "resolved": len(resolved)}
        earlier = history.trend(store, [telco])
        trend += [{"telco": telco, "run_date": r, "flags": int(n)}
                  for r, n in zip(earlier["run_date"], earlier["flags"], strict=True)
                  if r < run_date]
        trend.append({"telco": telco, "run_date": run_date, "flags": len(keys)})
    return {"by_telco": by_telco, "trend": trend}


def approve_publication(config_path: str, run_date: str) -> dict:
    """Whether publication of this run is approved without asking (``auto_approve``).

    In Airflow the DAG asks a person instead (``ApprovalOperator``) unless the
    setting is on; ``simrecon run`` stands for an operator who approves by running it.
    """
    config, _ = _planned_context(config_path, run_date)
    return {"auto": config.correction_cycle.auto_approve}


def build_report(config_path: str, run_date: str) -> dict:
    """Write summary.json, the compliance report (report.html) and its workbook
    (report.xlsx) into staging; ID numbers masked (pipelines/reporting/report.py)."""
    config, paths = _planned_context(config_path, run_date)
    results = pq.read_table(paths.results)
    quarantine = _all_quarantine(paths)
    failed = _failed_telcos(paths)
    telco_stats = {}
    for telco in _normalised_telcos(config, paths):
        stats = {**_stats(paths, telco, "ingest"), **_stats(paths, telco, "normalise"),
                 **_stats(paths, telco, "gate")}
        stats.pop("telco", None)
        conserved = stats["rows_in_file"] == (
            stats["rows_normalised"] + stats["quarantined_at_ingest"]
            + stats["quarantined_at_normalise"])
        if not conserved:
            raise AssertionError(f"{telco}: rows in file != rows normalised + quarantined")
        stats["rows_conserved"] = conserved
        telco_stats[telco] = stats
    summary = report.summarise(results, quarantine, telco_stats, failed, run_date)
    summary["gates"] = report.gate_results(paths.staging / "gates")
    summary["tracking"] = _tracking(config, paths, run_date, results)
    write_json(summary, paths.summary)
    from pipelines.reporting.workbook import write_workbook

    # Trend: this run and the summaries of the runs published before it (report.trend_runs).
    content = report.from_config(config, summary, results, quarantine, paths.output_dir)
    content.lookup = lookup_delivery.report_section(config, run_date)
    write_text(report.render_html(content), paths.report)
    write_workbook(content, paths.staging / "report.xlsx")
    return {"subscriptions": summary["subscriptions"], "failed_telcos": sorted(failed),
            "flagged": content.flagged_total}


def publish_run(config_path: str, run_date: str) -> dict:
    """Write the manifest, then atomically replace runs/<run_date> by the staging folder."""
    config, paths = _planned_context(config_path, run_date)
    if not paths.staging.exists() and (paths.final / "manifest.json").exists():
        # A retry after the swap already happened: finish the clean-up only.
        _after_swap(config, run_date, paths.final)
        shutil.rmtree(paths.work, ignore_errors=True)
        return _published(paths, read_json(paths.final / "summary.json"))  # type: ignore[arg-type]
    # The correction lists were written and gated before the report (write_corrections,
    # gate_corrections); a list whose gate failed was removed there.
    lists = sorted(paths.corrections_dir.glob("*.csv")) if paths.corrections_dir.exists() else []
    failed = _failed_telcos(paths)
    _delivery_files(config, paths, run_date)
    manifest = {
        "run_date": run_date,
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": str(Path(config_path).resolve()),
        "failed_telcos": failed,
        "files": correction_lists.describe_outputs(paths.staging),
    }
    write_json(manifest, paths.manifest)
    swap_into_place(paths.staging, paths.final)
    _after_swap(config, run_date, paths.final)
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
