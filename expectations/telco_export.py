"""Suites for one telco's export: after column mapping, after normalisation, row accounting."""

from __future__ import annotations

from datetime import date

import great_expectations as gx
import pandas as pd
from great_expectations.expectations.row_conditions import Column

from expectations import E, new_suite
from pipelines.config import GateSettings
from pipelines.schema import (
    GENDERS,
    ID_TYPES,
    LINE_STATUSES,
    SUBSCRIPTION_FIELDS,
    SUBSCRIPTION_TYPES,
    TRACE_FIELDS,
)

MSISDN_PATTERN = r"^0[0-9]{9}$"
# Document-number shape per id_type after normalisation (matching.ids cleans
# separators and upper-cases passports).
DOCUMENT_PATTERNS = {
    "CCCD": r"^[0-9]{12}$",
    "CMND": r"^[0-9]{9}$",
    "PASSPORT": r"^[A-Z0-9]{6,12}$",
}
# Derived column the gate adds to the ingested frame: the raw name is not NFC.
NFD_COLUMN = "_name_not_nfc"


def ingested_suite(settings: GateSettings, *, previous_rows: int | None,
                   previous_nfd_share: float | None) -> gx.ExpectationSuite:
    """The export after column mapping (raw text): columns, volume, raw-name form.

    ``previous_rows`` / ``previous_nfd_share`` come from the latest earlier
    published run of the same telco; without one, those checks are not built.
    """
    expectations = [
        E.ExpectTableColumnsToMatchSet(
            column_set=[*TRACE_FIELDS, *SUBSCRIPTION_FIELDS], exact_match=False,
            description="every canonical field is present after column mapping"),
        E.ExpectTableRowCountToBeBetween(
            min_value=1, description="the export holds at least one row"),
    ]
    if previous_rows:
        floor = int(previous_rows * (1 - settings.max_row_count_drop))
        expectations.append(E.ExpectTableRowCountToBeBetween(
            min_value=max(floor, 1),
            description=f"row count dropped by at most {settings.max_row_count_drop:.0%} "
                        f"since the previous run ({previous_rows} rows)"))
    if previous_nfd_share is not None:
        delta = settings.max_nfd_share_change
        expectations.append(E.ExpectColumnMeanToBeBetween(
            column=NFD_COLUMN, min_value=max(previous_nfd_share - delta, 0.0),
            max_value=min(previous_nfd_share + delta, 1.0),
            description=f"share of names not in NFC moved by at most {delta:.0%} since the "
                        f"previous run ({previous_nfd_share:.1%}): the export's encoding or "
                        "source system changed"))
    return new_suite("telco_export_ingested", expectations)


def normalised_suite(settings: GateSettings, *, run_date: date) -> gx.ExpectationSuite:
    """The export after normalisation: types, shapes, date ranges, vocabularies, shares."""
    run_day = pd.Timestamp(run_date)
    expectations: list = [
        E.ExpectTableColumnsToMatchSet(
            column_set=[*TRACE_FIELDS, *SUBSCRIPTION_FIELDS], exact_match=False,
            description="every canonical field is present"),
        E.ExpectColumnValuesToNotBeNull(
            column="source_row", description="every row keeps its source row"),
        E.ExpectColumnValuesToBeUnique(
            column="source_row", description="no source row appears twice"),
        E.ExpectColumnValuesToNotBeNull(
            column="activation_date", description="every row has an activation date"),
        E.ExpectColumnValuesToMatchRegex(
            column="msisdn", regex=MSISDN_PATTERN,
            description="a canonical number is 10 digits starting with 0"),
        E.ExpectColumnValuesToNotBeNull(
            column="msisdn", mostly=1 - settings.max_missing_msisdn_share,
            description=f"at most {settings.max_missing_msisdn_share:.0%} of rows lack a "
                        "usable number"),
        E.ExpectColumnValuesToNotBeNull(
            column="id_number", mostly=1 - settings.max_no_id_share,
            description=f"at most {settings.max_no_id_share:.0%} of rows lack an ID number"),
        E.ExpectColumnValuesToBeBetween(
            column="date_of_birth", max_value=run_day,
            description="no date of birth after the run date"),
        E.ExpectColumnValuesToBeBetween(
            column="activation_date", min_value=pd.Timestamp(settings.earliest_activation),
            max_value=run_day,
            description=f"activation between {settings.earliest_activation} and the run date"),
        E.ExpectColumnValuesToBeInSet(
            column="dob_precision", value_set=["day", "year"],
            description="date-of-birth precision is day or year"),
    ]
    for field, vocabulary in (("gender", GENDERS), ("id_type", ID_TYPES),
                              ("subscription_type", SUBSCRIPTION_TYPES),
                              ("line_status", LINE_STATUSES)):
        expectations.append(E.ExpectColumnValuesToBeInSet(
            column=field, value_set=list(vocabulary),
            description=f"{field} is one of {', '.join(vocabulary)}"))
    for id_type, pattern in DOCUMENT_PATTERNS.items():
        expectations.append(E.ExpectColumnValuesToMatchRegex(
            column="id_number", regex=pattern, mostly=1 - settings.max_malformed_id_share,
            row_condition=Column("id_type") == id_type,
            description=f"{id_type} numbers have the {id_type} shape "
                        f"(at most {settings.max_malformed_id_share:.0%} malformed)"))
    return new_suite("telco_export_normalised", expectations)


def conservation_suite() -> gx.ExpectationSuite:
    """Row accounting of one telco: rows in file = normalised + quarantined (one-row frame)."""
    return new_suite("row_conservation", [
        E.ExpectColumnPairValuesToBeEqual(
            column_A="rows_in_file", column_B="rows_accounted",
            description="rows in file = rows normalised + rows quarantined"),
    ])
