"""Per-telco stages: ingest, normalise, the export gate, and cutting into shards.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.config import parse_run_date
from pipelines.errors import (
    TelcoInputError,
)
from pipelines.intake import ingest, normalise
from pipelines.quality import gates
from pipelines.reconcile import shard_steps
from pipelines.stages.common import (
    _pd_frame,
    _planned_context,
    _stats,
    _write_gate,
    log,
)
from pipelines.storage.files import (
    read_json,
    write_json,
)
from pipelines.storage.paths import RunPaths


def ingest_telco(config_path: str, run_date: str, telco: str) -> dict:
    """Read one telco's export and map its columns to canonical fields, streaming it to
    ``paths.ingested(telco)`` in chunks (``intake.chunk_mb``).

    Raises ``TelcoInputError`` (after recording it in staging) when the file
    itself is unusable; unreadable rows are quarantined. Logs what the mapping
    leaves undone (rules that cannot fire; ``simrecon mapping check`` shows more).
    """
    from pipelines.intake.mapping_check import rule_warnings

    config, paths = _planned_context(config_path, run_date)
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


def normalise_telco(config_path: str, run_date: str, telco: str) -> dict:
    """Normalise one telco's ingested rows in batches (``intake.normalise_batch_rows``);
    unnormalisable rows are quarantined."""
    config, paths = _planned_context(config_path, run_date)
    if not paths.ingested(telco).exists():
        raise TelcoInputError(telco, str(paths.ingested(telco)),
                              "no ingested rows: the ingest stage did not succeed")
    normalised, quarantined = normalise.normalise_file(
        paths.ingested(telco), config.telco(telco), run_date=parse_run_date(run_date),
        rows_path=paths.normalised(telco), quarantine_path=paths.quarantine(telco, "normalise"),
        batch_rows=config.intake.normalise_batch_rows)
    stats = {"telco": telco, "rows_normalised": normalised,
             "quarantined_at_normalise": quarantined}
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


def partition_telco(config_path: str, run_date: str, telco: str) -> dict:
    """Cut one gated telco's subscriptions into the run's shards (by document number)."""
    _, paths = _planned_context(config_path, run_date)
    if not paths.normalised(telco).exists():
        raise TelcoInputError(telco, str(paths.normalised(telco)),
                              "no normalised rows: the normalise stage did not succeed")
    return shard_steps.partition_telco(paths, telco)
