"""Run a Great Expectations suite on a table and keep a JSON-able, PII-masked result.

The suites live in ``expectations/``; this module only runs them. Each suite
is validated once over one pandas frame (GX 1.x ephemeral context, a pandas
data source with a whole-dataframe batch definition), with the ``SUMMARY``
result format, so the number of example rows GX extracts is bounded
(``gates.example_rows``) whatever the table size.

A gate result (``gates/<gate>.json`` in the run folder) looks like::

    {"gate": "export.viettel", "subject": "viettel", "success": false,
     "suites": [{"suite": "telco_export_normalised", "success": false, "rows": 1868,
                 "evaluated": 17, "failed": [
                     {"expectation": "expect_column_values_to_not_be_null",
                      "column": "id_number", "description": "at most 10% of rows lack an ID",
                      "unexpected_count": 934, "unexpected_percent": 50.0,
                      "observed_value": null,
                      "examples": [{"source_row": 2, "id_number": null}]}]}]}

ID numbers in examples are masked with ``matching.ids.mask_id`` and names
are hidden: the results are kept with the run and shown in the report.
"""

from __future__ import annotations

import logging
import math
import warnings
from datetime import date, datetime
from functools import cache
from typing import Any

import pandas as pd
import pyarrow as pa

from matching.ids import mask_id

log = logging.getLogger("simrecon.gates")

# Columns whose values are ID numbers (masked) or names (hidden) in examples.
ID_COLUMNS = frozenset({"id_number", "citizen_id", "legacy_id", "matched_citizen_id",
                        "suggested_citizen_id", "id_number_as_sent"})
NAME_COLUMNS = frozenset({"full_name"})
HIDDEN = "(hidden)"


@cache
def _batch_definition():  # type: ignore[no-untyped-def]
    """One ephemeral GX context per process, with one pandas whole-frame batch definition."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    for name in ("great_expectations", "great_expectations.core"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("simrecon")
    asset = source.add_dataframe_asset("table")
    return asset.add_batch_definition_whole_dataframe("whole_table")


def to_frame(table: pa.Table, columns: list[str] | None = None) -> pd.DataFrame:
    """A pandas frame for validation: dates as datetime64 (GX compares them to Timestamps)."""
    if columns is not None:
        table = table.select([c for c in columns if c in table.column_names])
    frame = table.to_pandas(date_as_object=False).reset_index(drop=True)
    for name in frame.columns:
        # GX compares datetime64[ns] columns vectorised, other resolutions row by row.
        if pd.api.types.is_datetime64_any_dtype(frame[name].dtype):
            frame[name] = frame[name].astype("datetime64[ns]")
    return frame


def _plain(value: Any) -> Any:
    """A JSON-able version of a GX observed value or example value."""
    if value is None:
        return None
    if isinstance(value, float | int) and not isinstance(value, bool):
        return None if isinstance(value, float) and math.isnan(value) else value
    if hasattr(value, "item") and not isinstance(value, list | dict | str):
        try:
            return _plain(value.item())
        except (ValueError, TypeError):
            pass
    if isinstance(value, pd.Timestamp | datetime | date):
        return None if pd.isna(value) else value.isoformat()[:10]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, bool | str):
        return value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _examples(frame: pd.DataFrame, positions: list[int], columns: list[str],
              key_columns: tuple[str, ...]) -> list[dict]:
    """The failing rows at ``positions`` (bounded), with IDs masked and names hidden."""
    if not positions:
        return []
    shown = [c for c in (*key_columns, *columns) if c in frame.columns]
    shown = list(dict.fromkeys(shown))
    rows = frame.loc[positions, shown]
    out: dict[str, list] = {}
    for column in shown:
        values = rows[column].tolist()
        if column in ID_COLUMNS:
            text = [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                    for v in values]
            values = mask_id(pa.array(text, pa.string())).to_pylist()
        elif column in NAME_COLUMNS:
            values = [None if v is None else HIDDEN for v in values]
        out[column] = [_plain(v) for v in values]
    return [{c: out[c][i] for c in shown} for i in range(len(positions))]


def _columns_of(config: Any) -> list[str]:
    kwargs = config.kwargs
    if "column" in kwargs:
        return [kwargs["column"]]
    for key in ("column_list",):
        if key in kwargs:
            return list(kwargs[key])
    return [kwargs[k] for k in ("column_A", "column_B") if k in kwargs]


def run_suite(suite: Any, frame: pd.DataFrame, *, max_examples: int = 5,
              key_columns: tuple[str, ...] = ("telco", "source_row")) -> dict:
    """Validate ``frame`` against ``suite`` once; return the JSON-able summary."""
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        validation = batch.validate(suite, result_format={
            "result_format": "SUMMARY", "partial_unexpected_count": max(max_examples, 1)})
    failed = []
    for item in validation.results:
        if item.success:
            continue
        config = item.expectation_config
        result = item.result or {}
        columns = _columns_of(config)
        positions = list(result.get("partial_unexpected_index_list") or [])[:max_examples]
        exception = (item.exception_info or {}).get("exception_message")
        failed.append({
            "expectation": config.type,
            "column": ", ".join(columns) or None,
            "description": config.description or config.type,
            "unexpected_count": _plain(result.get("unexpected_count")),
            "unexpected_percent": _plain(round(result["unexpected_percent"], 3))
            if result.get("unexpected_percent") is not None else None,
            "observed_value": _plain(result.get("observed_value"))
            if not isinstance(result.get("observed_value"), list | dict) else None,
            "examples": _examples(frame, positions, columns, key_columns)
            if max_examples else [],
            **({"error": exception} if exception else {}),
        })
    return {
        "suite": suite.name,
        "success": bool(validation.success),
        "rows": len(frame),
        "evaluated": len(validation.results),
        "failed": failed,
    }


def gate_result(gate: str, subject: str, suites: list[dict]) -> dict:
    """One gate's record: every suite it ran, and whether all of them passed."""
    return {"gate": gate, "subject": subject,
            "success": all(s["success"] for s in suites), "suites": suites}


def failure_reason(result: dict) -> str:
    """One line for error messages and the report: which expectations failed, on how much."""
    parts = []
    for suite in result["suites"]:
        for f in suite["failed"]:
            amount = (f"{f['unexpected_count']} row(s), {f['unexpected_percent']}%"
                      if f.get("unexpected_count") is not None
                      else f"observed {f.get('observed_value')}")
            parts.append(f"{f['description']} ({amount})")
    return f"gate {result['gate']} failed: " + "; ".join(parts)
