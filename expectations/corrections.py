"""Suites for one telco's correction list (``corrections/<telco>.csv``, read back as text).

``correction_list`` validates the facts of the list's rows
(``pipelines.quality.facts.correction_facts``) slice by slice, merged;
``correction_list_shape`` checks its header and row count on one row.
"""

from __future__ import annotations

import great_expectations as gx

from expectations import E, new_suite
from pipelines.schema import STATUSES


def correction_list_suite(*, telco: str) -> gx.ExpectationSuite:
    """Only the telco's own rows, each once, in order, with reasons and a known status."""
    return new_suite("correction_list", [
        E.ExpectColumnValuesToBeInSet(column="telco", value_set=[0],
                                      description=f"only {telco}'s own rows"),
        E.ExpectColumnValuesToNotBeNull(column="source_row",
                                        description="every row names its source row"),
        E.ExpectColumnValuesToBeInSet(column="source_row", value_set=[0],
                                      description="no source row listed twice (rows in order)"),
        E.ExpectColumnValuesToNotBeNull(column="reason_codes",
                                        description="every row carries a reason code"),
        E.ExpectColumnValuesToBeInSet(column="status", value_set=[0],
                                      description=f"status is one of {', '.join(STATUSES)}"),
        E.ExpectColumnValuesToBeInSet(column="msisdn", value_set=[0],
                                      description="msisdn, when present, is canonical"),
    ])


def correction_list_shape_suite(*, columns: list[str],
                                expected_rows: int) -> gx.ExpectationSuite:
    """On one row (the list's row count) with the list's header as columns: exactly the
    contract's columns in order (hence no registry field), one row per flagged row."""
    return new_suite("correction_list_shape", [
        E.ExpectTableColumnsToMatchOrderedList(
            column_list=[*columns, "rows"],
            description="exactly the contract's columns, in order (no registry data)"),
        E.ExpectColumnMaxToBeBetween(
            column="rows", min_value=expected_rows, max_value=expected_rows,
            description="one row per flagged subscription of the telco"),
    ])
