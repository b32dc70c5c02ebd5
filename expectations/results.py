"""Suite for ``results.parquet``: one row per usable subscription, a known status each."""

from __future__ import annotations

import great_expectations as gx

from expectations import E, new_suite
from pipelines.schema import STATUSES


def results_suite(*, expected_rows: int, telcos: list[str]) -> gx.ExpectationSuite:
    """``expected_rows``: normalised rows of the telcos that passed their gates."""
    return new_suite("results", [
        E.ExpectTableRowCountToEqual(
            value=expected_rows,
            description="one row per normalised subscription (none lost, none counted twice)"),
        E.ExpectCompoundColumnsToBeUnique(
            column_list=["telco", "source_row"],
            description="(telco, source_row) is unique"),
        E.ExpectColumnValuesToNotBeNull(column="status", description="every row has a status"),
        E.ExpectColumnValuesToBeInSet(column="status", value_set=list(STATUSES),
                                      description=f"status is one of {', '.join(STATUSES)}"),
        E.ExpectColumnValuesToBeInSet(column="telco", value_set=list(telcos),
                                      description="only telcos that passed their gates"),
        E.ExpectColumnValuesToMatchRegex(column="matched_citizen_id", regex=r"^[0-9]{12}$",
                                         description="a linked citizen id is a 12-digit CCCD"),
    ])
