"""Run a Great Expectations suite on a table and keep a JSON-able, PII-masked result.

The suites live in ``expectations/``; this module only runs them. A suite is
validated over one pandas frame at a time (GX 1.x ephemeral context, a pandas
data source with a whole-dataframe batch definition), with the ``SUMMARY``
result format, so the number of example rows GX extracts is bounded
(``gates.example_rows``) whatever the table size. A large table is validated
part by part (a shard, a slice of a file: ``validate``) and the parts' outcomes
are merged into the one result the whole would give (``merge``): counts add up
and share thresholds (``mostly``) are judged on the total. Expensive checks on
raw strings are computed beforehand as compact facts (``pipelines/quality/facts.py``).

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
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
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
_VALIDATING = threading.Lock()


@cache
def _batch_definition():  # type: ignore[no-untyped-def]
    """One ephemeral GX context per process, with one pandas whole-frame batch definition."""
    from expectations import lazy_dependencies

    lazy_dependencies.install()  # before GX's first import: see that module
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    # GX fingerprints every pandas batch below 1 GB (an MD5 of pandas' row hashes, kept
    # in the batch markers, which nothing here reads): for the registry's 1M citizens
    # that was 1.5 of the gate's 2.1 CPU s, the ID column's strings hashed row by row.
    pandas_execution_engine.HASH_THRESHOLD = 0

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


def _examples(frame: pd.DataFrame | pa.Table, positions: list[int], columns: list[str],
              key_columns: tuple[str, ...]) -> list[dict]:
    """The failing rows at ``positions`` (bounded), with IDs masked and names hidden."""
    if not positions:
        return []
    names = list(frame.column_names if isinstance(frame, pa.Table) else frame.columns)
    shown = [c for c in (*key_columns, *columns) if c in names]
    shown = list(dict.fromkeys(shown))
    out: dict[str, list] = {}
    for column in shown:
        if isinstance(frame, pa.Table):
            values = frame[column].take(pa.array(positions, pa.int64())).to_pylist()
        else:
            values = frame.loc[positions, column].tolist()
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


@dataclass
class Outcome:
    """One expectation's outcome on one frame (or merged over several)."""

    expectation: str
    column: str | None
    description: str
    success: bool
    mostly: float | None  # for expectations judged row by row (with counts)
    element_count: int | None
    missing_count: int | None
    unexpected_count: int | None
    observed_value: Any
    examples: list[dict]
    error: str | None = None

    @property
    def counted(self) -> bool:
        return self.unexpected_count is not None and self.element_count is not None

    def summary(self) -> dict:
        nonmissing = (self.element_count or 0) - (self.missing_count or 0)
        percent = (round(100.0 * self.unexpected_count / nonmissing, 3)
                   if self.counted and nonmissing else (0.0 if self.counted else None))
        return {"expectation": self.expectation, "column": self.column,
                "description": self.description,
                "unexpected_count": self.unexpected_count, "unexpected_percent": percent,
                "observed_value": self.observed_value if not isinstance(
                    self.observed_value, list | dict) else None,
                "examples": self.examples, **({"error": self.error} if self.error else {})}


@dataclass
class SuiteOutcome:
    suite: str
    rows: int
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    def summary(self) -> dict:
        """The suite's JSON result: every expectation that failed, with its counts."""
        return {"suite": self.suite, "success": self.success, "rows": self.rows,
                "evaluated": len(self.outcomes),
                "failed": [o.summary() for o in self.outcomes if not o.success]}


def validate(suite: Any, frame: pd.DataFrame, *, max_examples: int = 5,
             key_columns: tuple[str, ...] = ("telco", "source_row"),
             shown: pa.Table | None = None) -> SuiteOutcome:
    """Validate ``frame`` against ``suite`` once.

    ``shown``: the data the frame's facts were computed from (same rows, same order):
    examples of failing rows are taken from it, so they show the values a person
    knows rather than fact codes (``pipelines/quality/facts.py``).
    """
    # One validation at a time in a process: GX's context (one per process) is not
    # thread-safe, and ``simrecon run --workers 1`` gates the registry in one thread while
    # the telcos' exports are gated in another (each expectation then failed, no error).
    with _VALIDATING, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
        validation = batch.validate(suite, result_format={
            "result_format": "SUMMARY", "partial_unexpected_count": max(max_examples, 1)})
    outcomes = []
    source = shown if shown is not None else frame
    for item in validation.results:
        config = item.expectation_config
        result = item.result or {}
        columns = _columns_of(config)
        positions = list(result.get("partial_unexpected_index_list") or [])[:max_examples]
        exception = (item.exception_info or {}).get("exception_message")
        outcomes.append(Outcome(
            expectation=config.type,
            column=", ".join(columns) or None,
            description=config.description or config.type,
            success=bool(item.success),
            mostly=config.kwargs.get("mostly", 1.0) if "unexpected_count" in result else None,
            element_count=_plain(result.get("element_count")),
            missing_count=_plain(result.get("missing_count")) or 0,
            unexpected_count=_plain(result.get("unexpected_count")),
            observed_value=_plain(result.get("observed_value")),
            # Kept whenever rows were unexpected: a part that passes alone may fail with
            # the others (``merge``).
            examples=_examples(source, positions, columns, key_columns)
            if max_examples and positions else [],
            error=exception,
        ))
    return SuiteOutcome(suite=suite.name, rows=len(frame), outcomes=outcomes)


def merge(parts: list[SuiteOutcome], *, max_examples: int = 5,
          key_columns: tuple[str, ...] = ("telco", "source_row")) -> SuiteOutcome:
    """One suite's outcomes on several parts of the same data (shards, slices) as if on
    the whole: row-by-row expectations add their counts up and are judged on the total
    against their ``mostly`` (one bad row in a shard does not fail a share check that
    the whole passes); the others hold when they hold on every part. The examples are
    the first rows in (telco, source_row) order, whatever the parts."""
    if not parts:
        raise ValueError("nothing to merge")
    merged = []
    for index, first in enumerate(parts[0].outcomes):
        same = [p.outcomes[index] for p in parts]
        examples = sorted((e for o in same for e in o.examples),
                          key=lambda e: tuple(str(e.get(k)) if not isinstance(e.get(k), int)
                                              else f"{e.get(k):020d}" for k in key_columns))
        if all(o.counted for o in same):
            element = sum(o.element_count or 0 for o in same)
            missing = sum(o.missing_count or 0 for o in same)
            unexpected = sum(o.unexpected_count or 0 for o in same)
            nonmissing = element - missing
            mostly = first.mostly if first.mostly is not None else 1.0
            success = nonmissing == 0 or (nonmissing - unexpected) / nonmissing >= mostly
            success = success and not any(o.error for o in same)
            merged.append(Outcome(first.expectation, first.column, first.description,
                                  success, first.mostly, element, missing, unexpected,
                                  first.observed_value, examples[:max_examples],
                                  next((o.error for o in same if o.error), None)))
        else:
            failing = next((o for o in same if not o.success), first)
            merged.append(Outcome(first.expectation, first.column, first.description,
                                  all(o.success for o in same), None, None, None,
                                  failing.unexpected_count, failing.observed_value,
                                  examples[:max_examples], failing.error))
    return SuiteOutcome(parts[0].suite, sum(p.rows for p in parts), merged)


# Rows validated at once when a table is validated in parts: each validation costs GX a
# fixed overhead (~0.3 s for a suite of twenty expectations), so small parts are
# gathered; large tables stay bounded.
ROWS_PER_VALIDATION = 1_000_000


def validate_parts(suite: Any, parts: Iterable[tuple[pa.Table, pa.Table | None]], *,
                   max_examples: int = 5,
                   key_columns: tuple[str, ...] = ("telco", "source_row"),
                   rows_per_validation: int = ROWS_PER_VALIDATION) -> SuiteOutcome | None:
    """``suite`` over a table given in parts: (facts, shown) pairs of the same rows
    (``shown`` may be None). Parts are gathered up to ``rows_per_validation`` rows,
    validated, and the outcomes merged (``merge``); None when there was no part."""
    outcomes: list[SuiteOutcome] = []
    facts: list[pa.Table] = []
    shown: list[pa.Table] = []
    held = 0

    def flush() -> None:
        nonlocal facts, shown, held
        if not facts:
            return
        table = pa.concat_tables(facts, promote_options="permissive")
        data = pa.concat_tables(shown, promote_options="permissive") if shown else None
        outcomes.append(validate(suite, to_frame(table), max_examples=max_examples,
                                 key_columns=key_columns, shown=data))
        facts, shown, held = [], [], 0

    for fact_table, shown_table in parts:
        if fact_table.num_rows == 0 and (facts or outcomes):
            continue
        facts.append(fact_table)
        if shown_table is not None:
            shown.append(shown_table)
        held += fact_table.num_rows
        if held >= rows_per_validation:
            flush()
    flush()
    return merge(outcomes, max_examples=max_examples, key_columns=key_columns) \
        if outcomes else None


def run_suite(suite: Any, frame: pd.DataFrame, *, max_examples: int = 5,
              key_columns: tuple[str, ...] = ("telco", "source_row"),
              shown: pa.Table | None = None) -> dict:
    """Validate ``frame`` against ``suite`` once; return the JSON-able summary."""
    return validate(suite, frame, max_examples=max_examples, key_columns=key_columns,
                    shown=shown).summary()


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
