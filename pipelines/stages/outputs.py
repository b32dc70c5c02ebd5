"""What a run hands out: correction lists (per telco, streamed) and their gate, the
report, approval, publication and the final check.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from pipelines.config import RunConfig
from pipelines.correction_cycle import history
from pipelines.delivery import correction_lists, transport
from pipelines.errors import RunIncompleteError
from pipelines.lookup import delivery as lookup_delivery
from pipelines.quality import facts, gates
from pipelines.reconcile import shard_steps
from pipelines.reporting import aggregates, report
from pipelines.reporting.workbook import write_workbook
from pipelines.results.dataset import RunResults
from pipelines.stages.common import (
    context,
    failed_telcos,
    log,
    planned_context,
    processed_telcos,
    quarantine_batches,
    quarantine_files,
    stats_of,
    store_of,
    write_gate,
)
from pipelines.storage import modes, objectstore
from pipelines.storage.files import (
    parquet_batches,
    read_json,
    sha256_of,
    swap_into_place,
    write_json,
    write_parquet,
    write_text,
)
from pipelines.storage.paths import RunPaths
from pipelines.storage.workarea import in_work_area

_DELIVERY_SUFFIXES = (".csv", ".xlsx", ".manifest.json")


def _flagged_keys(paths: RunPaths, shards: int, telco: str | None = None) -> pa.Table:
    """The flagged keys (compact) of every shard, or of one telco's rows, with the shard
    they are in."""
    parts = [_flagged_keys_of_shard(paths, k, telco) for k in range(shards)]
    return pa.concat_tables(parts) if parts else \
        aggregates.FLAGGED_SCHEMA.append(pa.field("shard", pa.int32())).empty_table()


def _flagged_keys_of_shard(paths: RunPaths, shard: int, telco: str | None = None
                           ) -> pa.Table:
    part = pq.read_table(paths.flagged(shard), filters=pc.field("telco") == telco) \
        if telco else pq.read_table(paths.flagged(shard))
    return part.append_column("shard", pa.array([shard] * part.num_rows, pa.int32()))


@in_work_area("run")
def write_corrections(config_path: str, run_date: str, telco: str | None = None) -> dict:
    """Write a telco's delivery (every usable telco's without ``telco``): its correction
    list as CSV and workbook, streamed in source order, its resolved and resend lists and
    its delivery manifest; keep its classified flag keys for the flag history."""
    config, paths = planned_context(config_path, run_date)
    processed = processed_telcos(config, paths)
    if telco and telco not in processed:
        return {"telcos": [], "skipped": telco, "listed": 0}
    telcos = [telco] if telco else processed
    plan = shard_steps.shard_plan(paths)
    results = RunResults(paths.staging)
    counts = {}
    for name in telcos:
        for suffix in _DELIVERY_SUFFIXES:
            (paths.corrections_dir / f"{name}{suffix}").unlink(missing_ok=True)
        (paths.corrections_dir / "requests" / f"{name}.csv").unlink(missing_ok=True)
        paths.checked_columns(name).unlink(missing_ok=True)
        # The look-up service's verification requests to this telco (requests/<telco>.csv).
        asked = lookup_delivery.telco_request_files(config, name, paths.corrections_dir)
        counts[name] = correction_lists.write_delivery(
            paths.corrections_dir, name, run_date, results=results,
            flagged=_flagged_keys(paths, plan["shards"], name),
            quarantine=quarantine_files(paths, name), store=store_of(config),
            policy=config.correction_cycle.deadlines, keys_out=paths.flag_keys(name),
            checked_out=paths.checked_columns(name), extra_files=asked)
        write_json(counts[name], paths.tracking(name))
    return {"telcos": telcos, "listed": sum(c["flagged"] for c in counts.values())}


def _header(path: Path) -> list[str]:
    """The list's header as the CSV holds it (only its first block is read)."""
    return pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(block_size=1 << 16)
                           ).schema.names


def _checked_parts(paths: RunPaths, telco: str) -> Iterator[pa.Table]:
    """The columns of the telco's list its gate checks, slice by slice, as text (empty as
    null): as written beside the list (``correction_lists.checked_columns``), else read
    back from the list itself (a list written before they were kept)."""
    kept = paths.checked_columns(telco)
    if kept.exists():
        for batch in pq.ParquetFile(kept).iter_batches(batch_size=1 << 16):
            yield pa.Table.from_batches([batch])
        return
    columns = list(correction_lists.CHECKED_COLUMNS)
    reader = pa_csv.open_csv(
        paths.corrections_dir / f"{telco}.csv",
        read_options=pa_csv.ReadOptions(block_size=1 << 22),
        convert_options=pa_csv.ConvertOptions(column_types={c: pa.string() for c in columns},
                                              include_columns=columns,
                                              strings_can_be_null=True))
    for batch in reader:
        yield pa.Table.from_batches([batch])


@in_work_area("run")
def gate_corrections(config_path: str, run_date: str, telco: str | None = None) -> dict:
    """Validate a telco's correction list (every usable telco's without ``telco``), slice
    by slice: the facts of its rows (merged), from the columns it checks as they were
    written (``correction_lists.checked_columns``: the list is not parsed back), and its
    header (read from the file) and row count against the flagged rows the results hold.
    A list that fails is withdrawn with its delivery and its telco recorded as failed;
    the other lists go on."""
    from expectations.corrections import correction_list_shape_suite, correction_list_suite

    config, paths = planned_context(config_path, run_date)
    processed = processed_telcos(config, paths)
    if telco and telco not in processed:
        return {"success": True, "skipped": telco, "failed_telcos": []}
    telcos = [telco] if telco else processed
    shards = shard_steps.shard_plan(paths)["shards"]
    columns = list(correction_lists.CORRECTION_COLUMNS)
    examples = config.gates.example_rows
    failed = []
    for name in telcos:
        path = paths.corrections_dir / f"{name}.csv"
        expected = aggregates.listed_rows((paths.aggregates(k) for k in range(shards)), name)
        header: list[str] = []
        rows = 0

        def parts(path: Path = path, name: str = name):  # type: ignore[no-untyped-def]
            nonlocal header, rows
            previous = None
            header = _header(path)
            if not set(columns) <= set(header):
                return
            for table in _checked_parts(paths, name):
                if table.num_rows == 0:
                    continue
                found = facts.correction_facts(table, name, previous)
                previous = pc.max(pc.cast(table["source_row"], pa.int64())).as_py()
                rows += table.num_rows
                yield found, table

        checked = gates.validate_parts(correction_list_suite(telco=name), parts(),
                                       max_examples=examples) if path.exists() else None
        shape = gates.validate(
            correction_list_shape_suite(columns=columns, expected_rows=expected),
            pd.DataFrame({**{c: [None] for c in header}, "rows": [rows]}), max_examples=0)
        suites = [*([checked.summary()] if checked is not None else []), shape.summary()]
        if not path.exists():
            suites[-1]["success"] = False
            suites[-1]["failed"].append({
                "expectation": "file_exists", "column": None,
                "description": f"corrections/{name}.csv was written",
                "unexpected_count": None, "unexpected_percent": None,
                "observed_value": "missing", "examples": []})
        result = gates.gate_result(f"corrections.{name}", name, suites)
        if not result["success"]:  # withdraw first: a crash here never leaves it published
            _withdraw(paths, name)
            write_json({"telco": name, "stage": "gate", "error": gates.failure_reason(result)},
                       paths.telco_error(name))
            failed.append(name)
        write_gate(paths, result)
    return {"success": not failed, "failed_telcos": failed}


def _withdraw(paths: RunPaths, telco: str) -> None:
    """Remove a telco's delivery files from the run (its list failed its gate)."""
    folder = paths.corrections_dir
    for path in (folder / f"{telco}.csv", folder / f"{telco}.xlsx",
                 folder / "resolved" / f"{telco}.csv", folder / "resend" / f"{telco}.csv",
                 folder / "requests" / f"{telco}.csv",
                 folder / f"{telco}.manifest.json", paths.flag_keys(telco),
                 paths.tracking(telco), paths.checked_columns(telco)):
        path.unlink(missing_ok=True)


def _delivered_telcos(corrections: Path) -> list[str]:
    return sorted(p.name.removesuffix(".manifest.json")
                  for p in corrections.glob("*.manifest.json")) if corrections.exists() else []


def _after_swap(config: RunConfig, paths: RunPaths, run_date: str,
                final: Path) -> dict[str, str | None]:
    """Record the published flags in the history, then deliver each telco's files."""
    if config.publish_url:  # output_dir is a URL: copy the run there, _SUCCESS marker last
        objectstore.publish_folder(final, f"{config.publish_url}/{run_date}")
        log.info("publish %s: copied to %s", run_date,
                 objectstore.redact(f"{config.publish_url}/{run_date}"))
    corrections = final / "corrections"
    telcos = _delivered_telcos(corrections)
    recorded = [t for t in telcos if paths.flag_keys(t).exists()]
    if recorded:
        def batches():  # type: ignore[no-untyped-def]
            # Arrow, not pandas, and in key order (correction_lists.write_keys): the
            # history appends them fast (history.record_batches).
            for telco in recorded:
                yield from parquet_batches(pq.ParquetFile(paths.flag_keys(telco)),
                                           history.INSERT_BATCH)

        history.record_batches(store_of(config), run_date, recorded, batches(),
                               datetime.now(UTC).isoformat(timespec="seconds"))
    delivered = {}
    for telco in telcos:
        manifest = corrections / f"{telco}.manifest.json"
        names = [e["path"] for e in read_json(manifest)["files"]]  # type: ignore[index]
        delivered[telco] = transport.deliver(
            corrections, names, manifest.name,
            config.correction_cycle.delivery.for_telco(telco), run_date, config.base_dir)
    return delivered


def _tracking(config: RunConfig, paths: RunPaths, run_date: str) -> dict:
    """New/persisting/resolved per telco list of this run, and the flag trend over runs."""
    store = store_of(config)
    by_telco, trend = {}, []
    for telco in _delivered_telcos(paths.corrections_dir):
        counts = read_json(paths.tracking(telco))
        assert isinstance(counts, dict)
        by_telco[telco] = {key: counts[key] for key in ("flagged", "new", "persisting",
                                                         "resolved")}
        earlier = history.trend(store, [telco])
        trend += [{"telco": telco, "run_date": r, "flags": int(n)}
                  for r, n in zip(earlier["run_date"], earlier["flags"], strict=True)
                  if r < run_date]
        keys = pq.ParquetFile(paths.flag_keys(telco)).metadata.num_rows
        trend.append({"telco": telco, "run_date": run_date, "flags": keys})
    return {"by_telco": by_telco, "trend": trend}


@in_work_area("plan")
def approve_publication(config_path: str, run_date: str) -> dict:
    """Whether publication of this run is approved without asking (``auto_approve``).

    In Airflow the DAG asks a person instead (``ApprovalOperator``) unless the
    setting is on; ``simrecon run`` stands for an operator who approves by running it.
    """
    config, _ = planned_context(config_path, run_date)
    return {"auto": config.correction_cycle.auto_approve}


def _telco_stats(config: RunConfig, paths: RunPaths) -> dict[str, dict]:
    telco_stats = {}
    for telco in processed_telcos(config, paths):
        stats = stats_of(paths, telco, "ingest", "normalise", "gate")
        stats.pop("telco", None)
        conserved = stats["rows_in_file"] == (
            stats["rows_normalised"] + stats["quarantined_at_ingest"]
            + stats["quarantined_at_normalise"])
        if not conserved:
            raise AssertionError(f"{telco}: rows in file != rows normalised + quarantined")
        stats["rows_conserved"] = conserved
        telco_stats[telco] = stats
    return telco_stats


_SAMPLE_TOTAL, _SAMPLE_LIMIT = b"simrecon.flagged_total", b"simrecon.sample_limit"


def _report_sample(paths: RunPaths, settings: dict) -> tuple[pa.Table, int]:
    """The report's sample of flagged rows read from the staged results, and how many
    rows are flagged in all. The candidates a shard at a time: never every flagged row
    of the run."""
    candidates = report.FlaggedCandidates(report.sample_limit(settings))
    for k in range(shard_steps.shard_plan(paths)["shards"]):
        candidates.add(_flagged_keys_of_shard(paths, k))
    return candidates.fetch(RunResults(paths.staging))


def _kept_report_sample(paths: RunPaths, settings: dict) -> tuple[pa.Table, int] | None:
    """The sample ``gather_report_sample`` kept, if it was gathered for this size."""
    if not paths.report_sample().exists():
        return None
    table = pq.read_table(paths.report_sample())
    meta = table.schema.metadata or {}
    if meta.get(_SAMPLE_LIMIT) != str(report.sample_limit(settings)).encode():
        return None
    return table.replace_schema_metadata(None), int(meta[_SAMPLE_TOTAL])


@in_work_area("run")
def gather_report_sample(config_path: str, run_date: str) -> dict:
    """Read the report's sample of flagged rows from the gated results (whole rows, a
    shard's candidates at a time) and keep it for :func:`build_report`: most of the
    report's work, and it needs neither the correction lists nor their gates, so it runs
    beside them. Without it the report reads the sample itself."""
    config, paths = planned_context(config_path, run_date)
    settings = report.settings_of(config)
    flagged, total = _report_sample(paths, settings)
    write_parquet(flagged.replace_schema_metadata({
        _SAMPLE_TOTAL: str(total).encode(),
        _SAMPLE_LIMIT: str(report.sample_limit(settings)).encode()}), paths.report_sample(),
        compression="lz4", statistics=False)
    return {"rows": flagged.num_rows, "flagged": total}


@in_work_area("run")
def build_report(config_path: str, run_date: str) -> dict:
    """Write summary.json, the compliance report (report.html) and its workbook
    (report.xlsx) into staging, from the shards' merged aggregates and a bounded sample
    of flagged rows; ID numbers masked (pipelines/reporting/report.py)."""
    config, paths = planned_context(config_path, run_date)
    plan = shard_steps.shard_plan(paths)
    shards = plan["shards"]
    settings = report.settings_of(config)
    merged = aggregates.merge_folders([paths.aggregates(k) for k in range(shards)],
                                      aggregates.pos_buckets(plan["rows"]), settings["top"])
    quarantined = report.quarantine_counts(pa.concat_tables(
        [*quarantine_batches(paths, columns=["telco", "reason"]),
         pa.table({"telco": pa.array([], pa.string()), "reason": pa.array([], pa.string())})]))
    failed = failed_telcos(paths)
    summary = report.summarise(merged, quarantined, _telco_stats(config, paths), failed,
                               run_date)
    summary["gates"] = report.gate_results(paths.staging / "gates")
    summary["tracking"] = _tracking(config, paths, run_date)
    # The run's namesake prior (docs/matching.md §4): what the search's probabilities
    # assumed of the holders.
    if paths.search_prior.exists():
        summary["namesake_prior"] = read_json(paths.search_prior)
    write_json(summary, paths.summary)
    flagged, total = _kept_report_sample(paths, settings) or _report_sample(paths, settings)
    reasons: dict[str, int] = {}
    for per_telco in quarantined.values():
        for reason, n in per_telco.items():
            reasons[reason] = reasons.get(reason, 0) + n
    # Trend: this run and the summaries of the runs published before it (report.trend_runs).
    content = report.build_from(
        summary, merged, flagged, total, dict(sorted(reasons.items())),
        previous=report.previous_summaries(paths.output_dir, run_date,
                                           settings["trend_runs"] - 1), **settings)
    content.lookup = lookup_delivery.report_section(config, run_date)
    write_text(report.render_html(content), paths.report)
    write_workbook(content, paths.staging / "report.xlsx")
    return {"subscriptions": summary["subscriptions"], "failed_telcos": sorted(failed),
            "flagged": content.flagged_total}


def _publish_engineering(paths: RunPaths, run_date: str) -> str | None:
    """Publish the engineer-only folder (``<private_dir>/<date>``: normalised and
    quarantined rows) with its own manifest, owner-only; return that manifest's sha256
    for the published manifest. A retry after it was swapped finds it in place."""
    staging, final = paths.engineering_staging, paths.engineering
    if staging.exists():
        write_json({"run_date": run_date, "audience": "engineers",
                    "files": correction_lists.describe_outputs(staging)},
                   staging / "manifest.json")
        modes.restrict_tree(staging)
        swap_into_place(staging, final)
    manifest = final / "manifest.json"
    return sha256_of(manifest) if manifest.exists() else None


@in_work_area("publish")
def publish_run(config_path: str, run_date: str) -> dict:
    """Publish the engineer-only folder, then write the run's manifest (which vouches
    for it by sha256) and atomically replace runs/<run_date> by the staging folder."""
    config, paths = planned_context(config_path, run_date)
    if not paths.staging.exists() and (paths.final / "manifest.json").exists():
        # A retry after the swap already happened: finish the clean-up only.
        _after_swap(config, paths, run_date, paths.final)
        shutil.rmtree(paths.work, ignore_errors=True)
        return _published(paths, read_json(paths.final / "summary.json"))  # type: ignore[arg-type]
    # The deliveries were written and gated before the report (write_corrections,
    # gate_corrections); a list whose gate failed was withdrawn there.
    lists = _delivered_telcos(paths.corrections_dir)
    failed = failed_telcos(paths)
    engineering = _publish_engineering(paths, run_date)
    manifest = {
        "run_date": run_date,
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": str(Path(config_path).resolve()),
        "failed_telcos": failed,
        "files": correction_lists.describe_outputs(paths.staging),
        # normalised/ and quarantine/ are engineer-only, in <private_dir>/<run_date>/
        # (docs/deployment.md, "Where data lands"); their manifest's sha256:
        "engineering_manifest_sha256": engineering,
    }
    write_json(manifest, paths.manifest)
    _set_modes(config, paths)
    swap_into_place(paths.staging, paths.final)
    _after_swap(config, paths, run_date, paths.final)
    shutil.rmtree(paths.work, ignore_errors=True)
    log.info("publish %s: run folder %s, %d correction list(s)", run_date, paths.final,
             len(lists))
    return _published(paths, {"failed_telcos": failed})


def _set_modes(config: RunConfig, paths: RunPaths) -> None:
    """The run folder as published: owner-only, or opened to ``outputs.group``
    (storage/modes.py), set on the staging folder so the swap publishes it so."""
    if config.outputs.group_readable:
        modes.share_with_group(paths.staging, config.outputs.group,
                               parents=(paths.output_dir,))
    else:
        modes.restrict_tree(paths.staging)


def _published(paths: RunPaths, summary: dict) -> dict:
    return {
        "run_dir": str(paths.final),
        "report": str(paths.final / "report.html"),
        "correction_lists": sorted(str(p) for p in (paths.final / "corrections").glob("*.csv")),
        "failed_telcos": sorted(summary["failed_telcos"]),
    }


@in_work_area("published")
def check_run(config_path: str, run_date: str) -> dict:
    """Fail (raise ``RunIncompleteError``) when any telco could not be processed."""
    _, paths = context(config_path, run_date)
    summary = read_json(paths.final / "summary.json")
    failed = summary["failed_telcos"]  # type: ignore[index]
    if failed:
        details = "; ".join(f"{t}: {e}" for t, e in failed.items())
        raise RunIncompleteError(f"run {run_date}: {len(failed)} telco(s) not processed: {details}")
    return {"run_date": run_date, "complete": True}
