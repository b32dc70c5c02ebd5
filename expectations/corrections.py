"""Suite for one telco's correction list (``corrections/<telco>.csv``, read back as text)."""

from __future__ import annotations

import great_expectations as gx

from expectations import E, new_suite
from pipelines.schema import STATUSES


def correction_list_suite(*, telco: str, columns: list[str],
                          expected_rows: int) -> gx.ExpectationSuite:
    """Only the telco's own rows, exactly the contract's columns (hence no registry field)."""
    return new_suite("correction_list", [
        E.ExpectTableColumnsToMatchOrderedList(
            column_list=list(columns),
            description="exactly the contract's columns, in order (no registry data)"),
        E.ExpectTableRowCountToEqual(
            value=expected_rows, description="one row per flagged subscription of the telco"),
        E.ExpectColumnValuesToBeInSet(column="telco", value_set=[telco],
                                      description=f"only {telco}'s own rows"),
        E.ExpectColumnValuesToNotBeNull(column="source_row",
                                        description="every row names its source row"),
        E.ExpectColumnValuesToBeUnique(column="source_row",
                                       description="no source row listed twice"),
        E.ExpectColumnValuesToNotBeNull(column="reason_codes",
                                        description="every row carries a reason code"),
        E.ExpectColumnValuesToBeInSet(column="status", value_set=list(STATUSES),
                                      description="status is a reconciliation status"),
        E.ExpectColumnValuesToMatchRegex(column="msisdn", regex=r"^0[0-9]{9}$",
                                         description="msisdn, when present, is canonical"),
    ])
