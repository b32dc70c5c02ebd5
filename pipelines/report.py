"""Report stage: ``summary.json`` for machines and ``report.html`` for compliance staff.

The report shows counts by telco, status and flag, what was quarantined and
why, which telcos failed, and a sample of flagged rows with the field-level
evidence. ID numbers are masked: the report is read by people who need
rates and reasons, not identities.
"""

from __future__ import annotations

import html
from collections import Counter
from datetime import UTC, datetime
from importlib import resources

import jinja2
import pyarrow as pa
import pyarrow.compute as pc

from matching.compare import DOB_LEVEL_LABELS, GENDER_LEVEL_LABELS, DobLevel, GenderLevel
from matching.flags import FLAGS
from matching.ids import mask_id
from matching.names import NAME_LEVEL_LABELS, NameLevel
from pipelines.reasons import reason_descriptions
from pipelines.schema import STATUSES

SAMPLE_ROWS_PER_FLAG = 5


def _counts(column: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    if len(column) == 0:
        return {}
    counted = pc.value_counts(column)
    return {str(v): int(c) for v, c in zip(counted.field("values").to_pylist(),
                                            counted.field("counts").to_pylist(), strict=True)}


def summarise(results: pa.Table, quarantine: pa.Table, telco_stats: dict[str, dict],
              failed: dict[str, str], run_date: str) -> dict:
    """Counts by telco x status and telco x flag, quarantine reasons, conservation."""
    by_telco: dict[str, dict] = {}
    for telco in sorted(set(telco_stats) | set(failed)):
        if telco in failed:
            by_telco[telco] = {"failed": failed[telco]}
            continue
        rows = results.filter(pc.equal(results["telco"], telco))
        flags = pc.list_flatten(rows["flags"])
        q = quarantine.filter(pc.equal(quarantine["telco"], telco))
        by_telco[telco] = {
            "subscriptions": rows.num_rows,
            "by_status": {s: _counts(rows["status"]).get(s, 0) for s in STATUSES},
            "by_flag": {f: _counts(flags).get(f, 0) for f in FLAGS},
            "flagged": int(pc.sum(pc.greater(pc.list_value_length(rows["flags"]), 0)).as_py()
                           or 0),
            "quarantined": q.num_rows,
            "quarantine_reasons": _counts(q["reason"]),
            **telco_stats[telco],
        }
    flags_all = pc.list_flatten(results["flags"])
    return {
        "run_date": run_date,
        "subscriptions": results.num_rows,
        "quarantined": quarantine.num_rows,
        "by_status": {s: _counts(results["status"]).get(s, 0) for s in STATUSES},
        "by_flag": {f: _counts(flags_all).get(f, 0) for f in FLAGS},
        "telcos": by_telco,
        "failed_telcos": failed,
    }


def _sample_rows(results: pa.Table) -> list[dict]:
    """A few flagged rows per flag, with masked IDs and readable evidence."""
    flagged = results.filter(pc.greater(pc.list_value_length(results["flags"]), 0))
    if flagged.num_rows == 0:
        return []
    picked: list[int] = []
    seen: Counter[str] = Counter()
    flag_lists = flagged["flags"].to_pylist()  # flagged rows only, bounded by the sample
    for index, row_flags in enumerate(flag_lists):
        if any(seen[f] < SAMPLE_ROWS_PER_FLAG for f in row_flags):
            picked.append(index)
            seen.update(row_flags)
        if len(picked) >= SAMPLE_ROWS_PER_FLAG * len(FLAGS):
            break
    sample = flagged.take(pa.array(picked, pa.int64()))
    masked_ids = mask_id(sample["id_number"]).to_pylist()
    rows = []
    for i, row in enumerate(sample.to_pylist()):
        rows.append({
            "telco": row["telco"],
            "source_row": row["source_row"],
            "msisdn": row["msisdn"] or row["msisdn_raw"] or "",
            "id_type": row["id_type"] or "",
            "id_masked": masked_ids[i] or "",
            "status": row["status"],
            "flags": row["flags"],
            "name": NAME_LEVEL_LABELS.get(NameLevel(row["name_level"]), "")
            if row["matched_citizen_id"] else "not compared",
            "name_score": "" if row["name_score"] is None or row["name_score"] != row["name_score"]
            else f"{row['name_score']:.0f}",
            "dob": DOB_LEVEL_LABELS[DobLevel(row["dob_level"])] if row["matched_citizen_id"]
            else "not compared",
            "gender": GENDER_LEVEL_LABELS[GenderLevel(row["gender_level"])]
            if row["matched_citizen_id"] else "not compared",
            "suggestion": "yes" if row["suggested_citizen_id"] else "",
            "explanation": explanation(row),
        })
    return rows


WATERFALL_PX_PER_BIT = 4
_WATERFALL_FIELDS = (
    ("id", "ID number", "id_level", "id_weight"),
    ("name", "Name", "name_level", "name_weight"),
    ("dob", "Date of birth", "dob_level", "dob_weight"),
    ("gender", "Gender", "gender_level", "gender_weight"),
)


def explanation(row: dict) -> dict | None:
    """Field-by-field Fellegi–Sunter waterfall of one result row (docs/matching.md).

    For a linked row it explains the document's citizen; for a row whose
    document leads nowhere, the best candidate of the search. No citizen data:
    only levels, weights (bits) and the probability.
    """
    if row.get("match_weight") is None:
        return None
    from matching.model import ID_LEVEL_LABELS, IdLevel

    labels = {"id": (IdLevel, ID_LEVEL_LABELS), "name": (NameLevel, NAME_LEVEL_LABELS),
              "dob": (DobLevel, DOB_LEVEL_LABELS), "gender": (GenderLevel, GENDER_LEVEL_LABELS)}
    steps, running = [], 0.0
    for key, title, level_col, weight_col in _WATERFALL_FIELDS:
        weight = float(row.get(weight_col) or 0.0)
        enum, texts = labels[key]
        level = row.get(level_col)
        text = texts.get(enum(level), "") if level is not None else ""
        if key == "name" and row.get("name_frequency"):
            text += f" (name shared by 1 in {max(1, round(1 / row['name_frequency'])):,})"
        start = running
        running += weight
        steps.append({"field": title, "level": text, "weight": f"{weight:+.1f}",
                      "offset": round(min(start, running) * WATERFALL_PX_PER_BIT),
                      "width": max(1, round(abs(weight) * WATERFALL_PX_PER_BIT)),
                      "positive": weight >= 0})
    low = min(0.0, *(s["offset"] for s in steps))
    for step in steps:
        step["offset"] -= low
    return {
        "of": "document" if row.get("matched_citizen_id") else "best search candidate",
        "steps": steps,
        "total": f"{float(row['match_weight']):+.1f}",
        "probability": f"{float(row['match_probability']):.6f}",
        "band": row.get("match_band") or "",
        "model": row.get("model_version") or "",
    }


def render_report(summary: dict, results: pa.Table, quarantine: pa.Table) -> str:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: resources.files("pipelines").joinpath(f"templates/{name}")
            .read_text("utf-8")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    reasons = reason_descriptions()
    max_flag = max([1, *summary["by_flag"].values()])
    q_reasons = _counts(quarantine["reason"]) if quarantine.num_rows else {}
    return env.get_template("report.html.j2").render(
        summary=summary,
        statuses=STATUSES,
        flags=FLAGS,
        reasons=reasons,
        max_flag=max_flag,
        quarantine_reasons=q_reasons,
        samples=_sample_rows(results),
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        escape=html.escape,
    )


# --- Data-quality gates (issue 5): read gates/*.json for summary.json and the report ---


def gate_results(folder) -> list[dict]:  # type: ignore[no-untyped-def]
    """Every gate result in ``folder`` (``gates/*.json`` of the run), sorted by gate name.

    The files are written by ``pipelines.gates`` with ID numbers already masked;
    the report shows, per gate, whether it passed and each failed expectation
    with its row count and examples.
    """
    import json
    from pathlib import Path

    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
