"""Report stage: ``summary.json`` for machines, ``report.html`` and ``report.xlsx`` for
compliance staff.

``report.html`` is one self-contained file read offline (no server, no CDN, no
external file): totals and rates by telco, status and flag; charts drawn as
inline SVG (``pipelines.reporting.charts``): flags by telco, the trend over the
last runs per telco, the match-score distribution, flags by the province of the
ID's birth registration (old 63 codes mapped to the 34 units of 2025,
``pipelines.reporting.provinces``); the top points of sale by ``BULK_ACTIVATION``; the
citizens with the most subscriptions; a bounded table of flagged subscriptions
with search, filters, paging and each row's field-by-field explanation (a few lines
of inline JavaScript), whose counters state the run's true totals
(:func:`filter_totals`) next to the sample's size. A header marks the file as
personal data, names who may read it (``report.audience``) and where the
correction lists and the review queue are; flags and statuses show short labels
(``pipelines.reporting.verdicts``), match scores are said as shares with the bits
one click away; the page fits a 1,366 px window. ``report.xlsx`` holds the same
tables (``pipelines.reporting.workbook``).

ID numbers are masked (``*********234``). Only a role listed in
``report.unmasked_roles`` may have a copy with full numbers rendered
(``simrecon report render --role``), outside the run folder; the published
report is always masked.

Every figure comes from per-shard partial aggregates merged
(``pipelines.reporting.aggregates``), and the flagged table from a bounded sample
read back from its shards: no step holds the run's results, and Python loops run
only over aggregates and the bounded table rows, so the report's size and cost
stay bounded for a run of any size.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from markupsafe import Markup

from matching.compare import DOB_LEVEL_LABELS, GENDER_LEVEL_LABELS, DobLevel, GenderLevel
from matching.flags import FLAGS
from matching.ids import mask_id
from matching.names import NAME_LEVEL_LABELS, NameLevel
from pipelines.delivery.reasons import reason_descriptions
from pipelines.reporting import aggregates, charts, provinces, verdicts
from pipelines.results.dataset import RunResults
from pipelines.schema import STATUSES

if TYPE_CHECKING:
    from pipelines.config import RunConfig

NOT_COMPARED = "not compared"


class RoleNotAllowedError(PermissionError):
    """A role asked for full ID numbers without being listed in ``report.unmasked_roles``."""


def reveal_ids_for(role: str | None, unmasked_roles: list[str]) -> bool:
    """Whether ``role`` may see full ID numbers: ``None`` (the published report) never;
    a role listed in ``report.unmasked_roles`` yes; any other role is refused."""
    if role is None:
        return False
    if role in unmasked_roles:
        return True
    allowed = ", ".join(unmasked_roles) if unmasked_roles else "no role"
    raise RoleNotAllowedError(
        f"role {role!r} may not see full ID numbers (report.unmasked_roles allows: "
        f"{allowed}); the published report.html, with ID numbers masked, is for everyone")


# --- counts -----------------------------------------------------------------------------


def quarantine_counts(quarantine: pa.Table) -> dict[str, dict[str, int]]:
    """Quarantined rows per telco and reason."""
    out: dict[str, dict[str, int]] = {}
    if quarantine.num_rows:
        grouped = quarantine.select(["telco", "reason"]).group_by(["telco", "reason"]) \
            .aggregate([([], "count_all")])
        for t, r, n in zip(*(grouped[c].to_pylist() for c in ("telco", "reason", "count_all")),
                           strict=True):
            out.setdefault(t, {})[r] = int(n)
    return out


def summarise(counts: aggregates.Aggregates, quarantined: dict[str, dict[str, int]],
              telco_stats: dict[str, dict], failed: dict[str, str], run_date: str) -> dict:
    """Counts by telco x status and telco x flag, quarantine reasons, conservation.

    ``quarantined``: rows per telco and reason (``quarantine_counts``)."""
    by_telco: dict[str, dict] = {}
    for telco in sorted(set(telco_stats) | set(failed)):
        if telco in failed:
            by_telco[telco] = {"failed": failed[telco]}
            continue
        mine = counts.telcos.get(telco, {})
        reasons = quarantined.get(telco, {})
        by_telco[telco] = {
            "subscriptions": mine.get("subscriptions", 0),
            "by_status": {s: mine.get("by_status", {}).get(s, 0) for s in STATUSES},
            "by_flag": {f: mine.get("by_flag", {}).get(f, 0) for f in FLAGS},
            "flagged": mine.get("flagged", 0),
            "flagged_by_status": {s: mine.get("flagged_by_status", {}).get(s, 0)
                                  for s in STATUSES},
            "by_flag_status": dict(sorted(mine.get("by_flag_status", {}).items())),
            "quarantined": sum(reasons.values()),
            "quarantine_reasons": dict(sorted(reasons.items())),
            **telco_stats[telco],
        }
    listed = [by_telco[t] for t in sorted(counts.telcos) if t in by_telco]
    return {
        "run_date": run_date,
        "subscriptions": counts.rows,
        "quarantined": sum(sum(r.values()) for r in quarantined.values()),
        "by_status": {s: sum(c["by_status"].get(s, 0) for c in counts.telcos.values())
                      for s in STATUSES},
        "by_flag": {f: sum(c["by_flag"].get(f, 0) for c in counts.telcos.values())
                    for f in FLAGS},
        "telcos": by_telco,
        "failed_telcos": failed,
        "flagged": sum(t.get("flagged", 0) for t in listed),
    }


def filter_totals(summary: dict) -> dict[str, int]:
    """Flagged subscriptions of the whole run for every combination of the flagged
    table's filters, ``"telco|flag|status"`` (an empty part = any): the counters the
    page shows next to the sample, so a filtered count is never read as a sample's."""
    processed = {t: s for t, s in summary["telcos"].items() if "failed" not in s}
    out: dict[str, int] = {}
    for telco in ["", *processed]:
        chosen = [processed[telco]] if telco else list(processed.values())
        for flag in ["", *FLAGS]:
            for status in ["", *STATUSES]:
                if not flag and not status:
                    n = sum(t.get("flagged", 0) for t in chosen)
                elif not status:
                    n = sum(t.get("by_flag", {}).get(flag, 0) for t in chosen)
                elif not flag:
                    n = sum(t.get("flagged_by_status", {}).get(status, 0) for t in chosen)
                else:
                    n = sum(t.get("by_flag_status", {}).get(f"{flag}|{status}", 0)
                            for t in chosen)
                out[f"{telco}|{flag}|{status}"] = n
    return out


def _rate(part: int | None, whole: int | None) -> float | None:
    if part is None or not whole:
        return None
    return round(100.0 * part / whole, 2)


# --- trend over runs --------------------------------------------------------------------


def previous_summaries(output_dir: Path, run_date: str, runs: int) -> list[dict]:
    """``summary.json`` of the latest ``runs`` published runs before ``run_date``, oldest
    first (``<output_dir>/<date>/summary.json``)."""
    if runs <= 0 or not Path(output_dir).is_dir():
        return []
    dated = sorted((p for p in Path(output_dir).glob("[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]")
                    if p.name < run_date and (p / "summary.json").is_file()), reverse=True)
    found = []
    for folder in dated[:runs]:
        try:
            found.append(json.loads((folder / "summary.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):  # a damaged summary leaves a gap, not a failed report
            continue
    return sorted(found, key=lambda s: s.get("run_date", ""))


TREND_COLUMNS = ("run_date", "telco", "subscriptions", "flagged", "flagged_pct", "listed",
                 "new", "persisting", "resolved", "processed")


def trend_rows(summaries: list[dict]) -> list[dict]:
    """Per run and telco: subscriptions, flagged, rate, and the correction cycle
    (on the telco's list, new, persisting, resolved since its previous list)."""
    telcos = sorted({t for s in summaries for t in s.get("telcos", {})})
    rows = []
    for summary in summaries:
        tracking = (summary.get("tracking") or {}).get("by_telco", {})
        for telco in telcos:
            stats = summary.get("telcos", {}).get(telco)
            processed = bool(stats) and "failed" not in stats
            cycle = tracking.get(telco, {}) if processed else {}
            rows.append({
                "run_date": summary["run_date"], "telco": telco,
                "subscriptions": stats.get("subscriptions") if processed else None,
                "flagged": stats.get("flagged") if processed else None,
                "flagged_pct": _rate(stats.get("flagged"), stats.get("subscriptions"))
                if processed else None,
                "listed": cycle.get("flagged"), "new": cycle.get("new"),
                "persisting": cycle.get("persisting"), "resolved": cycle.get("resolved"),
                "processed": processed,
            })
    return rows


def _trend_charts(rows: list[dict]) -> dict:
    runs = sorted({r["run_date"] for r in rows})
    telcos = sorted({r["telco"] for r in rows})
    at = {(r["run_date"], r["telco"]): r for r in rows}
    flagged = {t: [at[(d, t)]["flagged"] for d in runs] for t in telcos}
    line = charts.line_chart(
        "chart-trend", "Flagged subscriptions per run, by telco", runs, flagged,
        y_label="flagged subscriptions",
        desc=f"Flagged subscriptions of each telco over the last {len(runs)} run(s); "
             "a gap means the telco was not processed in that run.")
    cycles = []
    for telco in telcos:
        series = [at[(d, telco)] for d in runs]
        cycles.append({"telco": telco, "chart": charts.diverging_bars(
            f"chart-cycle-{telco}", f"Correction list of {telco}: new, persisting, resolved",
            runs, {"persisting": [r["persisting"] or 0 for r in series],
                   "new": [r["new"] or 0 for r in series]},
            {"resolved": [r["resolved"] or 0 for r in series]},
            desc=f"Per run, the rows on {telco}'s correction list (persisting from the "
                 "previous list, and new) above the axis, and the flags resolved since the "
                 "previous list below it.")})
    return {"line": line, "cycles": cycles, "runs": runs}


# --- flagged subscriptions: a bounded selection -----------------------------------------


def select_flagged(results: pa.Table, limit: int) -> tuple[pa.Table, int]:
    """At most ``limit`` flagged rows of ``results``, and how many rows are flagged in all
    (see :func:`select_flagged_keys`); in (telco, source_row) order."""
    bits = aggregates.flag_bits(aggregates.flags_array(results))
    flagged = results.filter(pa.array(bits != 0))
    keys = pa.table({"telco": flagged["telco"], "source_row": flagged["source_row"],
                     "flags": pa.array(bits[bits != 0], pa.int32())})
    chosen, total = select_flagged_keys(keys, limit)
    picked = pc.index_in(_row_keys(chosen), value_set=_row_keys(flagged))
    return flagged.take(picked), total


def select_flagged_keys(keys: pa.Table, limit: int, total: int | None = None
                        ) -> tuple[pa.Table, int]:
    """At most ``limit`` of the flagged rows ``keys`` (telco, source_row, flags as bits:
    ``aggregates.flagged_keys``), and how many there are (``total`` when ``keys`` were
    first cut down by :func:`first_of_groups`).

    The rows are taken round-robin over the (telco, flag) groups in source order:
    the first row of every group, then the second, and so on, so that a rare flag
    or a small telco is shown even when one flag has a million rows. The selection
    is returned in (telco, source_row) order. Vectorised: one sort over the flags.
    """
    total = keys.num_rows if total is None else total
    ordered = keys.take(pc.sort_indices(keys, [("telco", "ascending"),
                                               ("source_row", "ascending")]))
    if ordered.num_rows == 0 or limit <= 0:
        return ordered.slice(0, 0), total
    if ordered.num_rows <= limit:
        return ordered, total
    row_rank = _group_ranks(ordered)
    picked = np.lexsort((np.arange(ordered.num_rows), row_rank))[:limit]
    return ordered.take(pa.array(np.sort(picked))), total


def first_of_groups(keys: pa.Table, limit: int) -> pa.Table:
    """The rows of ``keys`` among the first ``limit`` of some (telco, flag) group in
    (telco, source_row) order: the only rows :func:`select_flagged_keys` can choose (a
    row's turn is its earliest place in its groups, and a group of ``limit`` rows fills
    the selection by turn ``limit``). Taken shard by shard and then together they choose
    exactly what the whole run's keys would, in memory bounded by a shard, not the run
    (the whole run's keys were the report's largest allocation: rows × flags)."""
    if keys.num_rows <= limit:
        return keys
    ordered = keys.take(pc.sort_indices(keys, [("telco", "ascending"),
                                               ("source_row", "ascending")]))
    return ordered.filter(pa.array(_group_ranks(ordered) < limit))


def _group_ranks(ordered: pa.Table) -> np.ndarray:
    """Each row's earliest place (0-based) among the rows of its (telco, flag) groups;
    ``ordered`` in (telco, source_row) order."""
    total = ordered.num_rows
    bits = np.asarray(ordered["flags"].to_numpy(), dtype=np.int64)
    matrix = ((bits[:, None] >> np.arange(len(FLAGS))) & 1).astype(bool)
    parents, flag_code = np.nonzero(matrix)  # row-major: rows in order, flags in order
    del matrix
    telco_code = np.asarray(pc.dictionary_encode(ordered["telco"]).combine_chunks().indices
                            .to_numpy(zero_copy_only=False), dtype=np.int64)
    group = telco_code[parents] * len(FLAGS) + flag_code
    order = np.lexsort((parents, group))
    sorted_groups = group[order]
    starts = np.r_[True, sorted_groups[1:] != sorted_groups[:-1]]
    position = np.arange(len(order))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = position - np.maximum.accumulate(np.where(starts, position, 0))
    row_rank = np.full(total, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(row_rank, parents, rank)
    return row_rank


def _in_source_order(table: pa.Table) -> pa.Table:
    return table.take(pc.sort_indices(table, [("telco", "ascending"),
                                              ("source_row", "ascending")]))


def _row_keys(table: pa.Table) -> pa.Array:
    return pc.binary_join_element_wise(table["telco"], pc.cast(table["source_row"], pa.string()),
                                       "\x1f")


def _label_lookup(enum_labels: dict) -> pa.Array:
    size = max(int(level) for level in enum_labels) + 1
    return pa.array([enum_labels.get(i, "") for i in range(size)], pa.string())


def _levels(table: pa.Table, column: str, labels: dict, linked: pa.Array) -> pa.Array:
    lookup = _label_lookup({int(k): v for k, v in labels.items()})
    level = pc.cast(table[column], pa.int32())
    text = pc.take(lookup, level)
    return pc.if_else(linked, text, pa.scalar(NOT_COMPARED))


def _ids(values: pa.ChunkedArray | pa.Array, reveal: bool) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
    return values if reveal else mask_id(values)


FLAGGED_SHEET_COLUMNS = (
    "telco", "source_file", "source_row", "msisdn", "msisdn_as_sent", "id_type", "id_number",
    "activation_date", "point_of_sale", "line_status", "status", "flags", "reasons_en",
    "reasons_vi", "name_comparison", "name_score", "dob_comparison", "gender_comparison",
    "id_weight", "doc_weight", "name_weight", "dob_weight", "gender_weight", "history_weight",
    "others_weight", "match_weight", "match_probability", "match_band", "suggested_citizen_id",
    "review_decision",
)


def flagged_sheet(rows: pa.Table, reveal: bool) -> pa.Table:
    """The flagged rows with their explanation as columns (vectorised)."""
    linked = pc.is_valid(rows["matched_citizen_id"])
    flags = aggregates.flags_array(rows)
    descriptions = reason_descriptions()
    codes = list(descriptions)
    flat = pc.list_flatten(flags)
    picked = pc.index_in(flat, value_set=pa.array(codes))

    def described(language: str) -> pa.Array:
        texts = pc.take(pa.array([descriptions[c][language] for c in codes]), picked)
        return pc.binary_join(pa.ListArray.from_arrays(flags.offsets, pc.fill_null(texts, "")),
                              " | ")

    return pa.table({
        "telco": rows["telco"], "source_file": rows["source_file"],
        "source_row": rows["source_row"], "msisdn": rows["msisdn"],
        "msisdn_as_sent": rows["msisdn_raw"], "id_type": rows["id_type"],
        "id_number": _ids(rows["id_number"], reveal),
        "activation_date": rows["activation_date"], "point_of_sale": rows["point_of_sale"],
        "line_status": rows["line_status"], "status": rows["status"],
        "flags": pc.binary_join(flags, "|"), "reasons_en": described("en"),
        "reasons_vi": described("vi"),
        "name_comparison": _levels(rows, "name_level", NAME_LEVEL_LABELS, linked),
        "name_score": rows["name_score"],
        "dob_comparison": _levels(rows, "dob_level", DOB_LEVEL_LABELS, linked),
        "gender_comparison": _levels(rows, "gender_level", GENDER_LEVEL_LABELS, linked),
        # The search's own evidence (doc, history, others) has a weight only on a row
        # explained by its best candidate; the weights of a row add up to match_weight.
        **{c: pc.round(rows[c], 2) for c in ("id_weight", "doc_weight", "name_weight",
                                              "dob_weight", "gender_weight", "history_weight",
                                              "others_weight", "match_weight")},
        "match_probability": pc.round(rows["match_probability"], 6),
        "match_band": rows["match_band"],
        "suggested_citizen_id": _ids(rows["suggested_citizen_id"], reveal),
        "review_decision": rows["review_decision"],
    })


def _text(value: object) -> str:
    return "" if value is None else str(value)


def flagged_html_rows(rows: pa.Table, reveal: bool) -> list[dict]:
    """The table's rows for the template, each with its explanation (bounded rows)."""
    ids = _ids(rows["id_number"], reveal).to_pylist()
    suggested = _ids(rows["suggested_citizen_id"], reveal).to_pylist()
    candidate = _ids(rows["candidate_citizen_id"], reveal).to_pylist()
    out = []
    for i, row in enumerate(rows.to_pylist()):
        linked = row["matched_citizen_id"] is not None
        score = row["name_score"]
        out.append({
            "telco": row["telco"], "source_file": row["source_file"],
            "source_row": row["source_row"],
            "msisdn": row["msisdn"] or "", "msisdn_raw": _text(row["msisdn_raw"]),
            "id_type": _text(row["id_type"]), "id": _text(ids[i]),
            "activation": _text(row["activation_date"]),
            "pos": _text(row["point_of_sale"]), "line_status": _text(row["line_status"]),
            "subscription_type": _text(row["subscription_type"]),
            "status": row["status"], "flags": row["flags"],
            "link_method": _text(row["link_method"]),
            "name": NAME_LEVEL_LABELS.get(NameLevel(row["name_level"]), "")
            if linked and row["name_level"] is not None else NOT_COMPARED,
            "name_score": "" if score is None or math.isnan(score) else f"{score:.0f}",
            "dob": DOB_LEVEL_LABELS.get(DobLevel(row["dob_level"]), "")
            if linked and row["dob_level"] is not None else NOT_COMPARED,
            "gender": GENDER_LEVEL_LABELS.get(GenderLevel(row["gender_level"]), "")
            if linked and row["gender_level"] is not None else NOT_COMPARED,
            "probability": "" if row["match_probability"] is None
            else f"{row['match_probability']:.4f}",
            "suggested": _text(suggested[i]), "candidate": _text(candidate[i]),
            "candidate_probability": "" if row["candidate_probability"] is None
            or math.isnan(row["candidate_probability"])
            else f"{row['candidate_probability']:.4f}",
            "candidate_count": row["candidate_count"] or 0,
            "review": _text(row["review_decision"]),
            "reviewer": _text(row["review_reviewer"]),
            "explanation": explanation(row),
        })
    return out


WATERFALL_PX_PER_BIT = 4
# The search's own evidence (number carried, its history, the same number elsewhere)
# is shown only for a row explained by its best search candidate.
_WATERFALL_FIELDS = (
    ("id", "ID number", "id_level", "id_weight"),
    ("doc", "Number carried", "doc_level", "doc_weight"),
    ("name", "Name", "name_level", "name_weight"),
    ("dob", "Date of birth", "dob_level", "dob_weight"),
    ("gender", "Gender", "gender_level", "gender_weight"),
    ("history", "Number's history", "history_level", "history_weight"),
    ("others", "Same number elsewhere", "others_level", "others_weight"),
)
_SEARCH_ONLY_FIELDS = ("doc", "history", "others")


def explanation(row: dict) -> dict | None:
    """Field-by-field Fellegi–Sunter waterfall of one result row (docs/matching.md).

    For a linked row it explains the document's citizen; for a row whose
    document leads nowhere, the best candidate of the search. No citizen data:
    only levels, weights (bits) and the probability.
    """
    if row.get("match_weight") is None:
        return None
    from matching.documents import DOC_LEVEL_LABELS, DocLevel
    from matching.model import (
        HISTORY_LEVEL_LABELS,
        ID_LEVEL_LABELS,
        OTHERS_LEVEL_LABELS,
        HistoryLevel,
        IdLevel,
        OthersLevel,
    )

    labels = {"id": (IdLevel, ID_LEVEL_LABELS), "name": (NameLevel, NAME_LEVEL_LABELS),
              "dob": (DobLevel, DOB_LEVEL_LABELS), "gender": (GenderLevel, GENDER_LEVEL_LABELS),
              "doc": (DocLevel, DOC_LEVEL_LABELS),
              "history": (HistoryLevel, HISTORY_LEVEL_LABELS),
              "others": (OthersLevel, OTHERS_LEVEL_LABELS)}
    searched = not row.get("matched_citizen_id")
    steps, running = [], 0.0
    for key, title, level_col, weight_col in _WATERFALL_FIELDS:
        if key in _SEARCH_ONLY_FIELDS and (not searched or row.get(weight_col) is None):
            continue
        if key == "id" and searched:
            title = "Prior (one citizen)"
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
    low = min(0, *(s["offset"] for s in steps))
    for step in steps:
        step["offset"] -= low
    probability = float(row["match_probability"])
    if searched and row.get("candidate_probability") is not None:
        # The row's candidates compete: the best one's probability is over all of them.
        probability = float(row["candidate_probability"])
    return {
        "of": "best search candidate" if searched else "document",
        "steps": steps,
        "total": f"{float(row['match_weight']):+.1f}",
        "probability": f"{probability:.6f}",
        "band": row.get("match_band") or "",
        "model": row.get("model_version") or "",
    }


# --- match-score distribution -----------------------------------------------------------


def _bits(probability: float) -> float:
    return math.log2(probability / (1.0 - probability))


def score_distribution(counts_of: aggregates.Aggregates, verify_above: float,
                       mismatch_below: float) -> dict:
    """Histogram of match weights (bits) by status, band thresholds, and status × band."""
    lo, hi = aggregates.SCORE_RANGE
    bin_bits, n_bins = aggregates.SCORE_BIN_BITS, aggregates.SCORE_BINS
    counts = counts_of.score_counts
    used = np.flatnonzero(counts.sum(axis=0))
    first, last = (int(used[0]), int(used[-1])) if len(used) else (0, -1)
    labels = []
    for b in range(first, last + 1):
        labels.append(f"<{lo}" if b == 0 else f"≥{hi}" if b == n_bins - 1
                      else f"{lo + (b - 1) * bin_bits}")
    stacks = {s: [int(v) for v in counts[i, first:last + 1]] for i, s in enumerate(STATUSES)}

    def position(bits: float) -> float:
        return (bits - lo) / bin_bits + 1 - first

    markers = [(position(_bits(mismatch_below)), f"mismatch below {mismatch_below:g}"),
               (position(_bits(verify_above)), f"verified from {verify_above:g}")]
    bands = list(aggregates.BANDS)
    table = [{"status": s, **{b: counts_of.bands.get(f"{s}|{b}", 0) for b in bands}}
             for s in STATUSES]
    unscored = counts_of.unscored
    chart = charts.stacked_histogram(
        "chart-scores", "Match-score distribution (bits), by status", labels, stacks,
        markers=markers, colours=charts.STATUS_COLOURS,
        desc=f"Number of subscriptions per {bin_bits}-bit bin of the match weight "
             f"(log2 odds), stacked by status; {unscored:,} subscription(s) "
             "have no score. Dashed lines: the band thresholds.")
    sheet = pa.table({"bin_from_bits": labels, **{s: stacks[s] for s in STATUSES}})
    return {"chart": chart, "bands": bands, "table": table, "unscored": unscored,
            "sheet": sheet, "plain": plain_scores(counts_of, verify_above, mismatch_below),
            "thresholds": {"verify_bits": round(_bits(verify_above), 2),
                           "mismatch_bits": round(_bits(mismatch_below), 2)}}


def plain_scores(counts_of: aggregates.Aggregates, verify_above: float,
                 mismatch_below: float) -> dict:
    """The match-score section in a compliance officer's words: the share of
    subscriptions per outcome and what each score band means, no bits or odds."""
    rows = counts_of.rows
    by_status = {s: sum(t.get("by_status", {}).get(s, 0) for t in counts_of.telcos.values())
                 for s in STATUSES}
    outcomes = [{"status": s, "verdict": verdicts.status(s), "count": by_status[s],
                 "pct": _rate(by_status[s], rows)} for s in STATUSES]
    per_band = {b: sum(n for k, n in counts_of.bands.items() if k.split("|", 1)[1] == b)
                for b in aggregates.BANDS}
    meaning = {
        "VERIFY": (f"{verify_above:.1%} sure or more that the registry's citizen is the "
                   "subscriber: accepted without a person looking",
                   f"chắc chắn từ {verify_above:.1%}: chấp nhận, không cần kiểm tra"),
        "REVIEW": (f"between {mismatch_below:.0%} and {verify_above:.1%}: the data neither "
                   "confirm nor rule out the holder, a person decides in the review queue",
                   "chưa rõ: cán bộ quyết định trong hàng đợi kiểm tra"),
        "MISMATCH": (f"under {mismatch_below:.0%}: the registry's citizen is almost certainly "
                     "not the subscriber",
                     f"dưới {mismatch_below:.0%}: gần như chắc chắn không phải chủ giấy tờ"),
        "no score": ("nothing to compare with: no ID number leading to a citizen and no "
                     "candidate found, or a passport",
                     "không có gì để so sánh (không có giấy tờ hợp lệ, hoặc hộ chiếu)"),
    }
    bands = [{"band": b, "count": per_band[b], "pct": _rate(per_band[b], rows),
              "en": meaning[b][0], "vi": meaning[b][1]} for b in aggregates.BANDS]
    return {"rows": rows, "outcomes": outcomes, "bands": bands,
            "verified_pct": _rate(by_status["VERIFIED"], rows),
            "review_pct": _rate(by_status["REVIEW"], rows),
            "unmatched_pct": _rate(by_status["MISMATCH"] + by_status["UNREGISTERED"], rows)}


# --- provinces --------------------------------------------------------------------------


def province_breakdown(counts: dict[str, dict],
                       provinces_file: str | Path | None = None) -> dict:
    """Subscriptions, flagged subscriptions and flags by the province of the ID's birth
    registration (``aggregates.province_counts``), old code and 2025 unit."""
    table = provinces.mapping(provinces_file or None)
    subs = {k: v["subscriptions"] for k, v in counts.items()}
    flagged = {k: v["flagged"] for k, v in counts.items()}
    flag_counts = {k: v["flags"] for k, v in counts.items()}

    old_rows = []
    for c, name, unit in zip(table["old_code"].to_pylist(), table["old_name"].to_pylist(),
                             table["unit"].to_pylist(), strict=True):
        old_rows.append({"code": c, "name": name, "unit": unit, "subscriptions": subs.get(c, 0),
                         "flagged": flagged.get(c, 0), "flags": flag_counts.get(c, {})})
    for other in (provinces.UNKNOWN, aggregates.NO_CCCD):
        old_rows.append({"code": "", "name": other, "unit": other,
                         "subscriptions": subs.get(other, 0), "flagged": flagged.get(other, 0),
                         "flags": flag_counts.get(other, {})})
    units: dict[str, dict] = {}
    for row in old_rows:
        unit = units.setdefault(row["unit"], {"unit": row["unit"], "old": [], "subscriptions": 0,
                                              "flagged": 0, "flags": {}})
        if row["code"]:
            unit["old"].append(f"{row['code']} {row['name']}")
        unit["subscriptions"] += row["subscriptions"]
        unit["flagged"] += row["flagged"]
        for f, n in row["flags"].items():
            unit["flags"][f] = unit["flags"].get(f, 0) + n
    extra = (provinces.UNKNOWN, aggregates.NO_CCCD)  # listed last, after the real units
    unit_rows = sorted(units.values(), key=lambda u: (u["unit"] in extra, -u["flagged"],
                                                      u["unit"]))
    for row in [*unit_rows, *old_rows]:
        row["flagged_pct"] = _rate(row["flagged"], row["subscriptions"])
        row["top_flags"] = ", ".join(f"{f} {n:,}" for f, n in sorted(
            row["flags"].items(), key=lambda x: (-x[1], x[0]))[:3])
    shown = [u for u in unit_rows if u["subscriptions"]]
    chart = charts.hbars(
        "chart-provinces", "Flagged subscriptions by province of birth registration "
        "(34 units since 1 July 2025)", [u["unit"] for u in shown],
        [u["flagged"] for u in shown],
        notes=[f"  ({u['flagged_pct']:.1f}% of {u['subscriptions']:,})"
               if u["flagged_pct"] is not None else "" for u in shown],
        desc="Flagged subscriptions per provincial unit after the 2025 merger (Resolution "
             "202/2025/QH15), from the old province code of the holder's CCCD; with the share "
             "of that unit's subscriptions.")
    flag_columns = {f: [r["flags"].get(f, 0) for r in unit_rows] for f in FLAGS}
    unit_sheet = pa.table({
        "unit_2025": [u["unit"] for u in unit_rows],
        "old_provinces": ["; ".join(u["old"]) for u in unit_rows],
        "subscriptions": [u["subscriptions"] for u in unit_rows],
        "flagged": [u["flagged"] for u in unit_rows],
        "flagged_pct": [u["flagged_pct"] for u in unit_rows], **flag_columns})
    old_sheet = pa.table({
        "old_code": [r["code"] for r in old_rows], "old_province": [r["name"] for r in old_rows],
        "unit_2025": [r["unit"] for r in old_rows],
        "subscriptions": [r["subscriptions"] for r in old_rows],
        "flagged": [r["flagged"] for r in old_rows],
        "flagged_pct": [r["flagged_pct"] for r in old_rows],
        **{f: [r["flags"].get(f, 0) for r in old_rows] for f in FLAGS}})
    return {"chart": chart, "units": unit_rows, "old": old_rows, "unit_sheet": unit_sheet,
            "old_sheet": old_sheet, "unit_count": len(provinces.units(provinces_file or None))}


# --- top points of sale and holders -----------------------------------------------------


def top_holders(candidates: pa.Table, reveal: bool) -> pa.Table:
    """The holders with the most active subscriptions (``aggregates``), ID numbers
    masked unless ``reveal``."""
    return candidates.set_column(0, "holder", _ids(candidates["holder"], reveal))


# --- rendering --------------------------------------------------------------------------


@dataclass
class Report:
    """Everything the HTML and the workbook show, computed once."""

    summary: dict
    reveal_ids: bool
    role: str | None
    flagged_total: int
    table_rows: list[dict]
    sheet_flagged: pa.Table
    trend: list[dict]
    scores: dict
    provinces: dict
    top_pos: pa.Table
    top_holders: pa.Table
    quarantine_reasons: dict[str, int]
    settings: dict = field(default_factory=dict)
    # The look-up service (pipelines/lookup/delivery.py, report_section): its public URL
    # (flagged numbers link to it) and the verification requests past their deadline.
    lookup: dict = field(default_factory=lambda: {"public_url": "", "overdue": []})
    # Who may read the report (``report.audience``) and where its follow-ups are.
    audience: list[str] = field(default_factory=list)
    locations: dict = field(default_factory=dict)


def build(summary: dict, results: pa.Table, quarantine: pa.Table, *, previous: list[dict],
          top: int = 20, provinces_file: str | Path | None = None,
          flagged_rows: int = 2000, workbook_flagged_rows: int = 20_000,
          **options: object) -> Report:
    """The report of ``results`` held in memory (a small run, a test): the same
    computation as a run's, which merges per-shard aggregates (:func:`build_from`)."""
    counts = aggregates.of_results(results, top=top, provinces_file=provinces_file)
    flagged, total = select_flagged(results, max(flagged_rows, workbook_flagged_rows))
    return build_from(summary, counts, flagged, total,
                      aggregates.value_counts(quarantine["reason"]) if quarantine.num_rows else {},
                      previous=previous, top=top, provinces_file=provinces_file,
                      flagged_rows=flagged_rows, workbook_flagged_rows=workbook_flagged_rows,
                      **options)  # type: ignore[arg-type]


def build_from(summary: dict, counts: aggregates.Aggregates, flagged: pa.Table,
               flagged_total: int, quarantine_reasons: dict[str, int], *,
               previous: list[dict], trend_runs: int = 14, flagged_rows: int = 2000,
               workbook_flagged_rows: int = 20_000, top: int = 20,
               verify_above: float = 0.999, mismatch_below: float = 0.01,
               provinces_file: str | Path | None = None, role: str | None = None,
               unmasked_roles: list[str] | None = None, audience: list[str] | None = None,
               review_drop_dir: str = "") -> Report:
    """Compute the report's content from the run's merged aggregates and its sample of
    flagged rows (``flagged``: chosen by :func:`select_flagged_keys` among all
    ``flagged_total``); ``role`` (checked against ``unmasked_roles``) decides whether ID
    numbers are shown in full."""
    reveal = reveal_ids_for(role, list(unmasked_roles or []))
    html_rows, _ = select_flagged(flagged, flagged_rows)
    workbook_rows, _ = select_flagged(flagged, workbook_flagged_rows)
    runs = [*previous[-(trend_runs - 1):], summary] if trend_runs > 1 else [summary]
    return Report(
        summary=summary, reveal_ids=reveal, role=role, flagged_total=flagged_total,
        table_rows=flagged_html_rows(html_rows, reveal),
        sheet_flagged=flagged_sheet(workbook_rows, reveal),
        trend=trend_rows(runs),
        scores=score_distribution(counts, verify_above, mismatch_below),
        provinces=province_breakdown(counts.provinces, provinces_file),
        top_pos=aggregates.top_points_of_sale(counts, top),
        top_holders=top_holders(counts.holders, reveal),
        quarantine_reasons=quarantine_reasons,
        settings={"trend_runs": trend_runs, "flagged_rows": flagged_rows,
                  "workbook_flagged_rows": workbook_flagged_rows, "top": top},
        audience=list(audience or []),
        locations=follow_up_locations(summary, review_drop_dir),
    )


def follow_up_locations(summary: dict, review_drop_dir: str = "") -> dict:
    """Where the report's follow-ups are, relative to the published run folder
    (``<output_dir>/<run_date>/``): each telco's correction list, the review queue,
    the full results, and the folder reviewers drop their decisions in."""
    telcos = [t for t, s in summary.get("telcos", {}).items() if "failed" not in s]
    return {"corrections": [{"telco": t, "path": f"corrections/{t}.csv"} for t in telcos],
            "review_queue": "review/queue.xlsx", "results": "results/",
            "workbook": "report.xlsx", "review_drop_dir": review_drop_dir}


def sample_limit(settings: dict) -> int:
    """Flagged rows the report's sample holds (:func:`settings_of`): enough for the
    workbook's table and the page's."""
    return max(settings["flagged_rows"], settings["workbook_flagged_rows"])


@dataclass
class FlaggedCandidates:
    """The flagged sample's candidates gathered a shard at a time (:meth:`add` each
    shard's ``aggregates.flagged_keys`` with their ``shard``): of each, only what
    :func:`first_of_groups` keeps, with the run's count; :meth:`fetch` then reads the
    sample the whole run's keys would give (:func:`fetch_flagged`)."""

    limit: int
    parts: list[pa.Table] = field(default_factory=list)
    total: int = 0

    def add(self, keys: pa.Table) -> None:
        self.total += keys.num_rows
        self.parts.append(first_of_groups(keys, self.limit))

    def fetch(self, results: RunResults) -> tuple[pa.Table, int]:
        keys = pa.concat_tables(self.parts) if self.parts else \
            aggregates.FLAGGED_SCHEMA.append(pa.field("shard", pa.int32())).empty_table()
        return fetch_flagged(results, keys, self.limit, self.total)


def fetch_flagged(results: RunResults, keys: pa.Table, limit: int,
                  total: int | None = None) -> tuple[pa.Table, int]:
    """The sample of flagged rows the report shows: at most ``limit`` of ``keys`` (the
    run's ``aggregates.flagged_keys`` with the ``shard`` they are in, or only those
    :func:`first_of_groups` keeps of them, with the ``total``), chosen by
    :func:`select_flagged_keys`, read from their shards of ``results``; and how many
    rows are flagged in all."""
    chosen, total = select_flagged_keys(keys, limit, total)
    parts = []
    shard = np.asarray(chosen["shard"].to_numpy(), dtype=np.int64) if chosen.num_rows \
        else np.zeros(0, np.int64)
    for k in np.unique(shard):
        parts.append(_read_rows(results.files[int(k)], chosen.filter(pa.array(shard == k))))
    table = pa.concat_tables(parts) if parts else pq.read_schema(results.files[0]).empty_table()
    return _in_source_order(table), total


def _read_rows(path: Path, wanted: pa.Table) -> pa.Table:
    """The rows of one results part whose (telco, source_row) are in ``wanted``: found
    from those two columns, then only the row groups holding them decoded whole (the
    sample sits in the first rows of each telco, so most row groups are skipped)."""
    part = pq.ParquetFile(path)
    keys = part.read(columns=["telco", "source_row"])
    positions = np.flatnonzero(pc.is_in(_row_keys(keys), value_set=_row_keys(wanted))
                               .to_numpy(zero_copy_only=False))
    sizes = [part.metadata.row_group(i).num_rows for i in range(part.num_row_groups)]
    starts = np.cumsum([0, *sizes])
    groups = np.unique(np.searchsorted(starts, positions, side="right") - 1)
    if len(groups) == 0:
        return part.schema_arrow.empty_table()
    # Each position within the row groups read, which sit back to back.
    group_of = np.searchsorted(starts, positions, side="right") - 1
    offset = np.cumsum([0, *(sizes[g] for g in groups)])
    local = positions - starts[group_of] + offset[np.searchsorted(groups, group_of)]
    return part.read_row_groups(groups.tolist()).take(pa.array(local))


def settings_of(config: RunConfig) -> dict:
    """:func:`build_from`'s options from the run configuration (``report``, ``matching``)."""
    settings = config.report
    return {"trend_runs": settings.trend_runs, "flagged_rows": settings.flagged_rows,
            "workbook_flagged_rows": settings.workbook_flagged_rows, "top": settings.top,
            "verify_above": config.matching.verify_above,
            "mismatch_below": config.matching.mismatch_below,
            "provinces_file": config.resolve(settings.provinces_file)
            if settings.provinces_file else None,
            "unmasked_roles": settings.unmasked_roles, "audience": settings.audience,
            "review_drop_dir": config.correction_cycle.review_drop_dir}


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(
            lambda name: resources.files("pipelines").joinpath(f"templates/{name}")
            .read_text("utf-8")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = lambda v: "" if v is None else f"{v:,}"
    env.filters["pct"] = lambda v: "" if v is None else f"{v:.1f}%"
    return env


def _script_json(value: object) -> Markup:
    """JSON safe inside ``<script type="application/json">`` (no ``</script>``, no ``<!--``)."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


# How the flagged table's sample is chosen (select_flagged_keys), said next to every count.
SAMPLE_METHOD = "round-robin over telco and flag, so that every telco and flag appears"
PAGE_SIZE = 50  # rows of the flagged table per page: the page stays short


def render_html(report: Report) -> str:
    summary = report.summary
    processed = {t: s for t, s in summary["telcos"].items() if "failed" not in s}
    flags_seen = [f for f in FLAGS if summary["by_flag"].get(f)]
    bars = charts.grouped_hbars(
        "chart-flags", "Flagged subscriptions by flag and telco", flags_seen,
        {t: [s["by_flag"].get(f, 0) for f in flags_seen] for t, s in processed.items()},
        desc="Number of subscriptions carrying each flag, one bar per telco; flags no "
             "subscription carries are left out.")
    trend = _trend_charts(report.trend)
    in_sheet = report.sheet_flagged.num_rows
    all_in = ("report.xlsx (sheet flagged) and the results dataset results/"
              if in_sheet >= report.flagged_total else
              f"the results dataset results/ (report.xlsx, sheet flagged: {in_sheet:,} of them)")
    return _environment().get_template("report.html.j2").render(
        verdicts=verdicts.all_flags(FLAGS),
        status_verdicts={s: verdicts.status(s) for s in STATUSES},
        decision_verdicts=verdicts.decision,
        totals_json=_script_json(filter_totals(summary)),
        sample_method=SAMPLE_METHOD,
        all_in=all_in,
        page_size=PAGE_SIZE,
        summary=summary,
        processed=processed,
        statuses=STATUSES,
        flags=FLAGS,
        flags_seen=flags_seen,
        reasons=reason_descriptions(),
        reasons_json=_script_json(reason_descriptions()),
        rate=_rate,
        report=report,
        flag_chart=bars,
        trend_chart=trend,
        max_flag=max([1, *summary["by_flag"].values()]),
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        escape=html.escape,
    )


# --- Data-quality gates (issue 5): read gates/*.json for summary.json and the report ---


def gate_results(folder) -> list[dict]:  # type: ignore[no-untyped-def]
    """Every gate result in ``folder`` (``gates/*.json`` of the run), sorted by gate name.

    The files are written by ``pipelines.quality.gates`` with ID numbers already masked;
    the report shows, per gate, whether it passed and each failed expectation
    with its row count and examples.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
