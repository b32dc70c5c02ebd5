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

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import (
    delivery,
    flag,
    gates,
    history,
    ingest,
    normalise,
    objectstore,
    publish,
    registry_prepare,
    report,
    review,
    shards,
    storage,
)
from pipelines.config import RunConfig, load_config, parse_run_date
from pipelines.errors import (
    GateFailedError,
    RegistryError,
    RunIncompleteError,
    RunNotPlannedError,
    TelcoInputError,
)
from pipelines.quarantine import empty_quarantine
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
             "quarantined_at_ingest": result.quarantine.num_rows,
             "encoding": result.encoding}  # declared, or detected with `auto`
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


def _previous_run(paths: RunPaths, telco: str) -> dict:
    """The telco's counts in the latest published run before this run date, if any."""
    dated = sorted((p for p in paths.output_dir.glob("[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]")
                    if p.name < paths.run_date), reverse=True)
    for folder in dated:
        summary_path = folder / "summary.json"
        if not summary_path.is_file():
            continue
        stats = read_json(summary_path).get("telcos", {}).get(telco)  # type: ignore[union-attr]
        if stats and "failed" not in stats and stats.get("rows_read"):
            return {"run_date": folder.name, **stats}
    return {}


def _write_gate(paths: RunPaths, result: dict) -> None:
    write_json(result, paths.gate(result["gate"]))
    log.info("gate %s: %s (%d failed expectation(s))", result["gate"],
             "passed" if result["success"] else "FAILED",
             sum(len(s["failed"]) for s in result["suites"]))


def gate_registry(config_path: str, run_date: str) -> dict:
    """Choose the run's prepared registry snapshot and check it cheaply; a failure stops
    the whole run (``RegistryError``).

    With ``prepared_registry.prepare_in_run`` the snapshot of ``registry`` cut into
    ``prepared_registry.shards`` is used, prepared here first (validated by the
    ``registry_prepared`` suite as of the run date) when it does not exist yet;
    otherwise the latest snapshot the registry refresh published. The check reads no
    row: manifest, files, counts, the snapshot's gate, no birth after the run date.
    """
    config, paths = _planned_context(config_path, run_date)
    settings, folder = config.prepared_registry, config.prepared_registry_path
    day = parse_run_date(run_date)
    paths.registry_snapshot.unlink(missing_ok=True)
    prepared = False
    if settings.prepare_in_run:
        try:
            snapshot, prepared = registry_prepare.prepare(
                config.registry_path, folder, settings.shards, as_of=day,
                example_rows=config.gates.example_rows, set_latest=False, keep=settings.keep)
        except registry_prepare.RegistryGateFailed as exc:
            _write_gate(paths, exc.result)
            raise
    else:
        snapshot = registry_prepare.latest(folder)
        if snapshot is None:
            raise RegistryError(
                f"{folder}: no prepared registry snapshot; run the citizen_registry_refresh "
                "DAG or `simrecon registry prepare` first")
        if snapshot.shards != settings.shards:
            log.warning("registry snapshot %s has %d shards (prepared_registry.shards: %d): "
                        "the run uses the snapshot's", snapshot.id, snapshot.shards,
                        settings.shards)
    prepared_gate = snapshot.gate_result()
    suites = [*prepared_gate["suites"], registry_prepare.check(snapshot, day)]
    result = gates.gate_result("registry", "registry", suites)
    result["registry_snapshot"] = snapshot.identity()
    _write_gate(paths, result)
    if not result["success"]:
        raise RegistryError(f"{snapshot.path}: {gates.failure_reason(result)}")
    write_json({"path": str(snapshot.path), "snapshot": snapshot.id,
                "shards": snapshot.shards, "citizens": snapshot.citizens}, paths.registry_snapshot)
    return {"success": True, "citizens": snapshot.citizens, "shards": snapshot.shards,
            "snapshot": snapshot.id, "prepared": prepared}


def gate_export(config_path: str, run_date: str, telco: str) -> dict:
    """Validate one telco's export (mapped, normalised, row accounting, drift vs the
    previous run). A failure stops that telco only: it is recorded as failed with the
    gate's reason and ``TelcoInputError`` is raised; its correction list is not published.
    """
    import pyarrow.compute as pc

    from expectations import telco_export

    config, paths = _planned_context(config_path, run_date)
    paths.telco_error(telco).unlink(missing_ok=True)
    paths.gate(f"export.{telco}").unlink(missing_ok=True)
    if not paths.normalised(telco).exists():
        raise TelcoInputError(telco, str(paths.normalised(telco)),
                              "no normalised rows: the normalise stage did not succeed")
    settings = config.gates
    ingested = pq.read_table(paths.ingested(telco))
    normalised_rows = pq.read_table(paths.normalised(telco))
    stats = {**_stats(paths, telco, "ingest"), **_stats(paths, telco, "normalise")}

    # 1.0 where the raw name is not NFC, 0.0 where it is, NaN without a name (the
    # suite's mean, like the share kept for the next run, is over named rows).
    names = ingested["full_name"]
    not_nfc = pc.cast(pc.not_equal(names, pc.utf8_normalize(names, "NFC")), pa.float64())
    nfd_share = round(pc.mean(not_nfc).as_py() or 0.0, 6)
    frame_in = gates.to_frame(ingested)
    frame_in[telco_export.NFD_COLUMN] = not_nfc.to_numpy(zero_copy_only=False)
    previous = _previous_run(paths, telco)
    rows_accounted = (stats["rows_normalised"] + stats["quarantined_at_ingest"]
                      + stats["quarantined_at_normalise"])
    counts = _pd_frame({"rows_in_file": [stats["rows_in_file"]],
                       "rows_accounted": [rows_accounted]})
    examples = settings.example_rows
    suites = [
        gates.run_suite(telco_export.ingested_suite(
            settings, previous_rows=previous.get("rows_read"),
            previous_nfd_share=previous.get("raw_name_not_nfc_share")), frame_in,
            max_examples=examples),
        gates.run_suite(telco_export.normalised_suite(settings, run_date=parse_run_date(run_date)),
                        gates.to_frame(normalised_rows, _NORMALISED_GATE_COLUMNS),
                        max_examples=examples),
        gates.run_suite(telco_export.conservation_suite(), counts, max_examples=0),
    ]
    result = gates.gate_result(f"export.{telco}", telco, suites)
    result["previous_run"] = previous.get("run_date")
    _write_gate(paths, result)
    gate_stats = {"raw_name_not_nfc_share": nfd_share, "gate_passed": result["success"]}
    write_json(gate_stats, paths.stats(telco, "gate"))
    if not result["success"]:
        reason = gates.failure_reason(result)
        write_json({"telco": telco, "stage": "gate", "error": reason}, paths.telco_error(telco))
        log.error("gate export.%s failed", telco)
        raise TelcoInputError(telco, stats.get("source_file", ""), reason)
    return {"telco": telco, "success": True, "rows": normalised_rows.num_rows}


_NORMALISED_GATE_COLUMNS = [
    "telco", "source_file", "source_row", "msisdn", "full_name", "date_of_birth",
    "dob_precision", "gender", "id_type", "id_number", "activation_date",
    "subscription_type", "line_status", "point_of_sale",
]


def _pd_frame(data: dict):  # type: ignore[no-untyped-def]
    import pandas as pd

    return pd.DataFrame(data)


def _normalised_telcos(config: RunConfig, paths: RunPaths) -> list[str]:
    """Telcos processed so far without failure (once the shards are planned, those the
    shard tasks match)."""
    failed = _failed_telcos(paths)
    return [m.telco for m in config.telcos()
            if m.telco not in failed and paths.normalised(m.telco).exists()]


# --- Sharded matching (pipelines/shards.py) ---------------------------------------------
# partition_telco (per telco) -> plan_shards -> match_shard (per shard) ->
# search_candidates and spanning_flags (across shards) -> flag_subscriptions (per telco).


def partition_telco(config_path: str, run_date: str, telco: str) -> dict:
    """Cut one gated telco's subscriptions into the run's shards (by document number)."""
    _, paths = _planned_context(config_path, run_date)
    if not paths.normalised(telco).exists():
        raise TelcoInputError(telco, str(paths.normalised(telco)),
                              "no normalised rows: the normalise stage did not succeed")
    return shards.partition_telco(paths, telco)


def plan_shards(config_path: str, run_date: str) -> list[int]:
    """Fix the telcos to match (every gated telco cut into shards) and return the shard
    numbers, one mapped ``match_shard`` task each."""
    config, paths = _planned_context(config_path, run_date)
    paths.shard_plan.unlink(missing_ok=True)
    plan = shards.plan_shards(paths, _normalised_telcos(config, paths))
    log.info("plan_shards %s: %d shard(s), telcos %s", run_date, plan["shards"], plan["telcos"])
    return list(range(plan["shards"]))


def match_shard(config_path: str, run_date: str, shard: int | str) -> dict:
    """Link one shard's subscriptions to its shard of the registry."""
    config, paths = _planned_context(config_path, run_date)
    return shards.match_shard(config, paths, int(shard))


def search_candidates(config_path: str, run_date: str) -> dict:
    """Search the whole registry for the rows whose document led to no citizen."""
    config, paths = _planned_context(config_path, run_date)
    return shards.search_candidates(config, paths)


def spanning_flags(config_path: str, run_date: str) -> dict:
    """The flag rules over every subscription of the run, on a few columns."""
    config, paths = _planned_context(config_path, run_date)
    return shards.spanning_flags(config, paths)


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
    return {"telcos": shards.shard_plan(paths)["telcos"], "shards": len(shard_numbers),
            "subscriptions": sum(c["subscriptions"] for c in counts)}


def import_review_inbox(config_path: str) -> dict:
    """Record the filled-in review queues dropped in ``correction_cycle.review_drop_dir``.

    Run by the ``review_inbox`` DAG every few minutes, so a reviewer's decisions are
    validated and recorded (who, when) as soon as the file lands, and a refused file
    gets its ``.error.txt`` within minutes, not at the next daily run. The flag stage
    imports the folder again before it applies decisions, so nothing waits on this DAG.
    """
    config = load_config(config_path)
    drop = config.correction_cycle.review_drop_dir
    if not drop:
        log.info("review inbox: correction_cycle.review_drop_dir is not set; nothing to do")
        return {"files": 0, "imported": 0, "refused": 0}
    done = review.import_drop_folder(config.resolve(drop), store_of(config))
    log.info("review inbox: %d file(s), %d decision(s) recorded, %d file(s) refused",
             done["files"], done["imported"], done["refused"])
    return done


def flag_subscriptions(config_path: str, run_date: str) -> dict:
    """Assemble each telco's matched rows in ``source_row`` order, apply the flag rules
    (the spanning ones as computed across shards) and reviewers' decisions; write
    ``results.parquet`` telco by telco and the review queue."""
    config, paths = _planned_context(config_path, run_date)
    plan = shards.shard_plan(paths)
    # Reviewers' decisions apply to rows whose own data is unchanged (pipelines/review.py);
    # filled-in queues dropped in the review drop folder are imported first.
    drop = config.correction_cycle.review_drop_dir
    if drop:
        review.import_drop_folder(config.resolve(drop), store_of(config))
    store = store_of(config)
    writer = storage.AtomicParquetWriter(paths.results)
    queues, rows, decided = [], 0, 0
    try:
        for telco in plan["telcos"]:
            matched, spanning = shards.gathered(paths, plan, telco)
            results = flag.flag(matched, config.flags, spanning=spanning)
            results = review.apply_decisions(results, review.row_hashes(matched), store)
            writer.write(results)
            queues.append(review.queue(results, matched))
            rows += results.num_rows
            decided += results.num_rows - results["review_decision"].null_count
        if not plan["telcos"]:  # no telco could be processed: an empty, well-formed run
            matched = shards.empty_matched(config.matching)
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


def write_corrections(config_path: str, run_date: str) -> dict:
    """Write one correction list per usable telco into staging."""
    config, paths = _planned_context(config_path, run_date)
    results = pq.read_table(paths.results)
    lists = []
    for telco in _normalised_telcos(config, paths):
        path = paths.corrections_dir / f"{telco}.csv"
        listed = publish.correction_list(results, telco, run_date=run_date,
                                         store=store_of(config),
                                         policy=config.correction_cycle.deadlines)
        publish.write_correction_csv(listed, path)
        lists.append(telco)
    return {"telcos": lists}


def gate_corrections(config_path: str, run_date: str) -> dict:
    """Validate every correction list read back from disk. A list that fails is removed
    (not published) and its telco recorded as failed; the other lists go on."""
    import pyarrow.csv as pa_csv

    from expectations.corrections import correction_list_suite

    config, paths = _planned_context(config_path, run_date)
    results = pq.read_table(paths.results)
    columns = list(publish.CORRECTION_COLUMNS)
    failed = []
    for telco in _normalised_telcos(config, paths):
        path = paths.corrections_dir / f"{telco}.csv"
        expected = publish.correction_list(results, telco, run_date=run_date).num_rows
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


def store_of(config: RunConfig) -> history.Store:
    """The flag-history and review-decision store (``correction_cycle.history_store``):
    an SQLite file path or a database URL (pipelines/history.py)."""
    return history.configured_store(config.correction_cycle.history_store, config.base_dir,
                                    config.output_path)


def _delivery_files(config: RunConfig, paths: RunPaths, run_date: str) -> list[str]:
    """Per published list: XLSX, resolved and resend sections, delivery manifest."""
    results = pq.read_table(paths.results)
    quarantine = _all_quarantine(paths)
    telcos = []
    for path in sorted(paths.corrections_dir.glob("*.csv")) \
            if paths.corrections_dir.exists() else []:
        telco = path.stem
        listed = publish.correction_list(results, telco, run_date=run_date,
                                         store=store_of(config),
                                         policy=config.correction_cycle.deadlines)
        publish.write_delivery(paths.corrections_dir, telco, listed,
                               publish.resolved_list(results, telco, run_date, store_of(config)),
                               publish.resend_list(quarantine, telco), run_date)
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
    keys = [publish.tracked_keys(results, t) for t in telcos]
    if keys:
        import pandas as pd

        history.record(store_of(config), run_date, pd.concat(keys, ignore_index=True), telcos,
                       datetime.now(UTC).isoformat(timespec="seconds"))
    delivered = {}
    for telco in telcos:
        manifest = corrections / f"{telco}.manifest.json"
        names = [e["path"] for e in read_json(manifest)["files"]]  # type: ignore[index]
        delivered[telco] = delivery.deliver(
            corrections, names, manifest.name,
            config.correction_cycle.delivery.for_telco(telco), run_date, config.base_dir)
    return delivered


def _tracking(config: RunConfig, paths: RunPaths, run_date: str, results: pa.Table) -> dict:
    """New/persisting/resolved per telco list of this run, and the flag trend over runs."""
    store = store_of(config)
    by_telco, trend = {}, []
    listed = sorted(paths.corrections_dir.glob("*.csv")) if paths.corrections_dir.exists() else []
    for telco in (p.stem for p in listed):
        keys, resolved = history.classify(store, run_date, publish.tracked_keys(results, telco),
                                          [telco])
        rows = publish.correction_list(results, telco, run_date=run_date, store=store,
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


def _all_quarantine(paths: RunPaths) -> pa.Table:
    files = sorted((paths.staging / "quarantine").glob("*.parquet"))
    tables = [pq.read_table(f) for f in files]
    return pa.concat_tables(tables) if tables else empty_quarantine()


def build_report(config_path: str, run_date: str) -> dict:
    """Write summary.json, the compliance report (report.html) and its workbook
    (report.xlsx) into staging; ID numbers masked (pipelines/report.py)."""
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
    from pipelines.report_workbook import write_workbook

    # Trend: this run and the summaries of the runs published before it (report.trend_runs).
    content = report.from_config(config, summary, results, quarantine, paths.output_dir)
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
        "files": publish.describe_outputs(paths.staging),
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


# --- Registry refresh (dags/citizen_registry_refresh.py, `simrecon registry prepare`) -----


def _registry_context(config_path: str, as_of: str) -> tuple[RunConfig, Path, int]:
    parse_run_date(as_of)
    config = load_config(config_path)
    return config, config.prepared_registry_path, config.prepared_registry.shards


def prepare_registry(config_path: str, as_of: str) -> dict:
    """Refresh step 1: read, validate and normalise the raw snapshot (``registry``) and cut
    it into ``prepared_registry.shards`` shards in a staging folder; nothing to do when
    that snapshot (same source content, same shard count) is already published."""
    config, folder, count = _registry_context(config_path, as_of)
    digest = registry_prepare.source_digest(config.registry_path)
    existing = registry_prepare.find(folder, registry_prepare.snapshot_id(digest, count))
    if existing is not None:
        return {"snapshot": existing.id, "staging": "", "citizens": existing.citizens,
                "shards": existing.shards, "reused": True}
    staging = registry_prepare.stage(config.registry_path, folder, count, digest)
    return {"snapshot": registry_prepare.snapshot_id(digest, count), "staging": str(staging),
            "citizens": read_json(staging / "draft.json")["citizens"],  # type: ignore[index]
            "shards": count, "reused": False}


def gate_prepared_registry(config_path: str, as_of: str, staging: str) -> dict:
    """Refresh step 2: the ``registry_prepared`` suite over the staged snapshot (as of
    ``as_of``); a failure discards it (``RegistryError``; result kept in ``rejected/``)."""
    config, _, _ = _registry_context(config_path, as_of)
    if not staging:
        return {"success": True, "reused": True}
    result = registry_prepare.gate(Path(staging), parse_run_date(as_of),
                                   config.gates.example_rows)
    return {"success": result["success"], "reused": False}


def publish_registry(config_path: str, as_of: str, snapshot: str, staging: str) -> dict:
    """Refresh step 3: put the staged snapshot in place and make it the latest.
    ``changed`` is False when it already was the latest (nothing new to announce)."""
    config, folder, _ = _registry_context(config_path, as_of)
    if staging:
        published = registry_prepare.publish(Path(staging), folder,
                                             keep=config.prepared_registry.keep)
    else:
        found = registry_prepare.find(folder, snapshot)
        if found is None:
            raise RegistryError(f"{folder}: snapshot {snapshot} is not there any more")
        published = found
    changed = registry_prepare.set_latest_snapshot(folder, published)
    log.info("registry %s: snapshot %s (%d citizens, %d shards)%s", as_of, published.id,
             published.citizens, published.shards, "" if changed else ", already the latest")
    return {"snapshot": published.id, "path": str(published.path), "changed": changed,
            "citizens": published.citizens, "shards": published.shards,
            "source_sha256": published.manifest["source"]["sha256"]}


def refresh_registry(config_path: str, as_of: str) -> dict:
    """The three refresh steps in this process (``simrecon registry prepare``)."""
    prepared = prepare_registry(config_path, as_of)
    gate_prepared_registry(config_path, as_of, prepared["staging"])
    published = publish_registry(config_path, as_of, prepared["snapshot"], prepared["staging"])
    return {**published, "prepared": not prepared["reused"]}


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
    return {**published, "timings": timings}
