"""``report.xlsx``: the compliance report's tables as an Excel workbook.

Compliance staff work in Excel: every table of ``report.html`` is a sheet here
(header row frozen, auto-filter on, columns sized), ID numbers masked as in
the HTML. The bytes depend only on the content (fixed document dates, fixed
zip entry times), so a rerun of the same data gives the same sha256 in the
manifest. A text value that starts with ``=`` is written as text, never as a
formula (telco-sent values reach the ``flagged`` sheet).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from matching.flags import FLAGS
from pipelines.delivery.reasons import reason_descriptions, reason_table
from pipelines.reporting.report import TREND_COLUMNS, Report
from pipelines.schema import STATUSES
from pipelines.storage.xlsx import write_xlsx


def _about(report: Report) -> pa.Table:
    s = report.summary
    shown = report.sheet_flagged.num_rows
    items = [
        ("run_date", s["run_date"]),
        ("id_numbers", f"shown in full for role {report.role}" if report.reveal_ids
         else "masked (*********234)"),
        ("subscriptions", s["subscriptions"]),
        ("flagged_subscriptions", report.flagged_total),
        ("flagged_rows_in_sheet", f"{shown:,} of {report.flagged_total:,} (every telco and "
                                  "flag represented; all rows: results/)"),
        ("quarantined_rows", s["quarantined"]),
        ("failed_telcos", ", ".join(f"{t}: {e}" for t, e in s["failed_telcos"].items())
         or "none"),
        ("trend_runs", report.settings.get("trend_runs")),
        ("flags_and_thresholds", "docs/flags.md"),
        # As the HTML's header (issue 16): personal data, who may read it, the follow-ups.
        ("personal_data", "Dữ liệu cá nhân — personal data of subscribers (Decree "
                          "13/2023/ND-CP): do not forward"),
        ("audience", ", ".join(report.audience) or "the compliance team"),
        ("correction_lists", ", ".join(c["path"] for c in
                                       report.locations.get("corrections", [])) or "none"),
        ("review_queue", report.locations.get("review_queue", "")),
    ]
    return pa.table({"item": [k for k, _ in items], "value": [str(v) for _, v in items]})


def _totals(report: Report) -> pa.Table:
    s = report.summary
    rows = [("subscriptions", s["subscriptions"], None),
            ("flagged", report.flagged_total, _pct(report.flagged_total, s["subscriptions"]))]
    rows += [(f"status {k}", s["by_status"][k], _pct(s["by_status"][k], s["subscriptions"]))
             for k in STATUSES]
    rows += [(f"flag {f}", s["by_flag"][f], _pct(s["by_flag"][f], s["subscriptions"]))
             for f in FLAGS]
    rows.append(("quarantined rows", s["quarantined"], None))
    return pa.table({"measure": [r[0] for r in rows], "count": [r[1] for r in rows],
                     "pct_of_subscriptions": pa.array([r[2] for r in rows], pa.float64())})


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 2) if whole else None


def _by_telco_status(report: Report) -> pa.Table:
    rows = []
    for telco, t in report.summary["telcos"].items():
        if "failed" in t:
            rows.append({"telco": telco, "processed": f"no: {t['failed']}"})
            continue
        n = t["subscriptions"]
        row = {"telco": telco, "processed": "yes", "subscriptions": n}
        for status in STATUSES:
            row[status] = t["by_status"][status]
            row[f"{status}_pct"] = _pct(t["by_status"][status], n)
        row |= {"flagged": t["flagged"], "flagged_pct": _pct(t["flagged"], n),
                "quarantined": t["quarantined"]}
        rows.append(row)
    columns = ["telco", "processed", "subscriptions"]
    for status in STATUSES:
        columns += [status, f"{status}_pct"]
    columns += ["flagged", "flagged_pct", "quarantined"]
    return pa.table({c: [r.get(c) for r in rows] for c in columns})


def _by_telco_flag(report: Report) -> pa.Table:
    s = report.summary
    telcos = [t for t, v in s["telcos"].items() if "failed" not in v]
    reasons = reason_descriptions()
    data: dict[str, list] = {"flag": list(FLAGS), "meaning_en": [reasons[f]["en"] for f in FLAGS],
                             "meaning_vi": [reasons[f]["vi"] for f in FLAGS]}
    for telco in telcos:
        data[telco] = [s["telcos"][telco]["by_flag"][f] for f in FLAGS]
        data[f"{telco}_pct"] = [_pct(s["telcos"][telco]["by_flag"][f],
                                     s["telcos"][telco]["subscriptions"]) for f in FLAGS]
    data["all"] = [s["by_flag"][f] for f in FLAGS]
    data["all_pct"] = [_pct(s["by_flag"][f], s["subscriptions"]) for f in FLAGS]
    return pa.table(data)


def _trend(report: Report) -> pa.Table:
    return pa.table({c: [r[c] for r in report.trend] for c in TREND_COLUMNS})


def _score_bands(report: Report) -> pa.Table:
    bands = report.scores["bands"]
    return pa.table({"status": [r["status"] for r in report.scores["table"]],
                     **{b: [r[b] for r in report.scores["table"]] for b in bands}})


def sheets(report: Report) -> dict[str, pa.Table]:
    return {
        "about": _about(report),
        "totals": _totals(report),
        "by_telco_status": _by_telco_status(report),
        "by_telco_flag": _by_telco_flag(report),
        "trend": _trend(report),
        "match_scores": report.scores["sheet"],
        "score_bands": _score_bands(report),
        "provinces_2025": report.provinces["unit_sheet"],
        "provinces_old": report.provinces["old_sheet"],
        "top_points_of_sale": report.top_pos,
        "top_holders": report.top_holders,
        "flagged": report.sheet_flagged,
        "reason_codes": reason_table(),
    }


def write_workbook(report: Report, path: Path) -> Path:
    """Write ``report.xlsx``: text stays text (never a formula), same bytes on a re-run."""
    return write_xlsx(sheets(report), path)
