"""Per-telco stages: ingest, normalise, cutting into shards, and the export gate.
"""

from __future__ import annotations

import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.config import parse_run_date
from pipelines.errors import (
    TelcoInputError,
)
from pipelines.intake import ingest, normalise
from pipelines.quality import facts, gates
from pipelines.reconcile import shard_steps
from pipelines.stages.common import (
    export_gate_result,
    log,
    planned_context,
    stats_of,
    write_gate,
)
from pipelines.storage.files import (
    arrow_batches,
    arrow_schema,
    parquet_batches,
    read_json,
    write_json,
)
from pipelines.storage.paths import RunPaths
from pipelines.storage.workarea import in_work_area

# The export gate reads a shard this many rows at a time and validates about
# EXPORT_GATE_VALIDATION_ROWS at once: GX holds several copies of the frame it validates
# (~300 B a row) and costs ~0.3 s per validation, so 500k rows is the measured balance
# (10M world: 0.73 GiB at main's CPU; 250k rows: 0.56 GiB but ~10% more CPU).
EXPORT_GATE_BATCH_ROWS = 1 << 16
EXPORT_GATE_VALIDATION_ROWS = 500_000


@in_work_area("telco", item="telco")
def ingest_telco(config_path: str, run_date: str, telco: str) -> dict:
    """Read one telco's export and map its columns to canonical fields, streaming it to
    ``paths.ingested(telco)`` in chunks (``intake.chunk_mb``).

    Raises ``TelcoInputError`` (after recording it in staging) when the file
    itself is unusable; unreadable rows are quarantined. Logs what the mapping
    leaves undone (rules that cannot fire; ``simrecon mapping check`` shows more).
    """
    from pipelines.intake.mapping_check import rule_warnings

    config, paths = planned_context(config_path, run_date)
    paths.telco_error(telco).unlink(missing_ok=True)
    mapping = config.telco(telco)
    warnings = rule_warnings(mapping, config.flags)
    for warning in warnings:
        log.warning("mapping %s: %s", telco, warning)
    try:
        report = ingest.ingest_to_files(mapping, paths.ingested(telco),
                                        paths.quarantine(telco, "ingest"), config.intake)
    except TelcoInputError as exc:
        write_json({"telco": telco, "stage": "ingest", "error": str(exc)},
                   paths.telco_error(telco))
        log.error("ingest %s failed: %s", telco, exc)
        raise
    stats = report.stats()
    if warnings:
        stats["mapping_warnings"] = warnings
    write_json(stats, paths.stats(telco, "ingest"))
    return stats


@in_work_area("telco", item="telco")
def normalise_telco(config_path: str, run_date: str, telco: str) -> dict:
    """Normalise one telco's ingested rows in batches (``intake.normalise_batch_rows``);
    unnormalisable rows are quarantined."""
    config, paths = planned_context(config_path, run_date)
    if not paths.ingested(telco).exists():
        raise TelcoInputError(telco, str(paths.ingested(telco)),
                              "no ingested rows: the ingest stage did not succeed")
    done = normalise.normalise_file(
        paths.ingested(telco), config.telco(telco), run_date=parse_run_date(run_date),
        rows_path=paths.normalised(telco), quarantine_path=paths.quarantine(telco, "normalise"),
        batch_rows=config.intake.normalise_batch_rows)
    stats = {"telco": telco, "rows_normalised": done.normalised,
             "quarantined_at_normalise": done.quarantined}
    write_json(stats, paths.stats(telco, "normalise"))
    # For the export gate (kept out of the normalise stats, which the summary shows).
    write_json({"names": done.names, "not_nfc": done.names_not_nfc},
               paths.stats(telco, RAW_NAMES))
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


# Stats of the names as ingested, counted by normalise: {"names": n, "not_nfc": k}.
RAW_NAMES = "raw_names"


def _raw_names_not_nfc(paths: RunPaths, telco: str) -> tuple[int, int]:
    """(names as ingested not in NFC, names): as normalise counted them, else (a telco
    normalised before it counted them) read a batch at a time."""
    if paths.stats(telco, RAW_NAMES).exists():
        counted = read_json(paths.stats(telco, RAW_NAMES))
        return int(counted["not_nfc"]), int(counted["names"])  # type: ignore[index]
    path = paths.ingested(telco)
    not_nfc = named = 0
    for batch in arrow_batches(path, 1 << 16, columns=["full_name"]):
        names = batch.column(0).drop_null()
        named += len(names)
        not_nfc += int(pc.sum(pc.not_equal(names, pc.utf8_normalize(names, "NFC"))).as_py()
                       or 0)
    return not_nfc, named


@in_work_area("telco", item="telco")
def gate_export(config_path: str, run_date: str, telco: str) -> dict:
    """Validate one telco's export: its columns and counts (with drift since the previous
    run), the facts of every normalised row batch by batch (merged into one verdict:
    ``pipelines/quality/gates.py``) and its row accounting. A failure stops that telco
    only: it is recorded as failed with the gate's reason and ``TelcoInputError`` is
    raised; it is not cut into shards and its correction list is not published. One bad
    row never fails it: row checks have shares (``gates`` settings). It reads only the
    normalised rows, not the registry: a run checks the export while the registry snapshot
    is still being prepared or gated."""
    from expectations import telco_export

    config, paths = planned_context(config_path, run_date)
    paths.telco_error(telco).unlink(missing_ok=True)
    paths.gate(f"export.{telco}").unlink(missing_ok=True)
    if not paths.normalised(telco).exists():
        raise TelcoInputError(telco, str(paths.normalised(telco)),
                              "no normalised rows: the normalise stage did not succeed")
    settings = config.gates
    examples = settings.example_rows
    stats = stats_of(paths, telco, "ingest", "normalise")
    not_nfc, named = _raw_names_not_nfc(paths, telco)
    nfd_share = round(not_nfc / named, 6) if named else 0.0
    previous = _previous_run(paths, telco)
    counts = pd.DataFrame({
        **{name: [None] for name in arrow_schema(paths.ingested(telco)).names},
        telco_export.ROWS_READ: [stats["rows_read"]], telco_export.NFD_SHARE: [nfd_share]})
    ingested = gates.validate(telco_export.ingested_suite(
        settings, previous_rows=previous.get("rows_read"),
        previous_nfd_share=previous.get("raw_name_not_nfc_share")), counts, max_examples=0)

    day = parse_run_date(run_date)

    def parts():  # type: ignore[no-untyped-def]
        # A batch at a time: what is held is bounded by the validation's rows, not by
        # the telco.
        for rows in parquet_batches(pq.ParquetFile(paths.normalised(telco)),
                                    EXPORT_GATE_BATCH_ROWS, columns=facts.EXPORT_COLUMNS):
            yield facts.export_facts(rows, run_date=day,
                                     earliest_activation=settings.earliest_activation), rows

    normalised = gates.validate_parts(telco_export.normalised_suite(settings), parts(),
                                      max_examples=examples,
                                      rows_per_validation=EXPORT_GATE_VALIDATION_ROWS)
    assert normalised is not None

    accounted = (stats["rows_normalised"] + stats["quarantined_at_ingest"]
                 + stats["quarantined_at_normalise"])
    conservation = gates.validate(telco_export.conservation_suite(), pd.DataFrame(
        {"rows_in_file": [stats["rows_in_file"]], "rows_accounted": [accounted]}),
        max_examples=0)
    result = gates.gate_result(f"export.{telco}", telco, [
        ingested.summary(), normalised.summary(), conservation.summary()])
    result["previous_run"] = previous.get("run_date")
    write_gate(paths, result)
    write_json({"raw_name_not_nfc_share": nfd_share, "gate_passed": result["success"]},
               paths.stats(telco, "gate"))
    if not result["success"]:
        reason = gates.failure_reason(result)
        write_json({"telco": telco, "stage": "gate", "error": reason}, paths.telco_error(telco))
        log.error("gate export.%s failed", telco)
        raise TelcoInputError(telco, stats.get("source_file", ""), reason)
    return {"telco": telco, "success": True, "rows": normalised.rows}


@in_work_area("telco", item="telco")
def partition_telco(config_path: str, run_date: str, telco: str) -> dict:
    """Cut one telco's normalised subscriptions into the run's shards (by document
    number), once its export passed its gate (``gate_export``)."""
    _, paths = planned_context(config_path, run_date)
    if not paths.normalised(telco).exists():
        raise TelcoInputError(telco, str(paths.normalised(telco)),
                              "no normalised rows: the normalise stage did not succeed")
    gate = export_gate_result(paths, telco)
    if gate is None or not gate["success"]:
        raise TelcoInputError(telco, str(paths.normalised(telco)),
                              "not cut into shards: its export gate did not pass")
    return shard_steps.partition_telco(paths, telco)
