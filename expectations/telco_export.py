"""Suites for one telco's export: its counts and columns, its normalised rows' facts, and
its row accounting.

The normalised suite validates the facts of every row (``pipelines/quality/facts.py``:
one small integer per data column, null where the value is missing, 0 where it is
fine), shard by shard, merged into one verdict. A row-level defect never fails the
export alone: every row check has a share (``mostly``) from the gate settings, and
the export fails only when a share or a drift since the previous run is exceeded.
"""

from __future__ import annotations

import great_expectations as gx
from great_expectations.expectations.row_conditions import Column

from expectations import E, new_suite
from pipelines.config import GateSettings
from pipelines.quality.facts import DOCUMENT_PATTERNS, DOCUMENT_TYPES, VOCABULARIES
from pipelines.schema import SUBSCRIPTION_FIELDS, TRACE_FIELDS

ROWS_READ = "rows_read"
NFD_SHARE = "raw_name_not_nfc_share"

def ingested_suite(settings: GateSettings, *, previous_rows: int | None,
                   previous_nfd_share: float | None) -> gx.ExpectationSuite:
    """The export after column mapping, on one row of its counts (``rows_read``,
    ``raw_name_not_nfc_share``) with the mapped columns: columns, volume, raw-name form.

    ``previous_rows`` / ``previous_nfd_share`` come from the latest earlier
    published run of the same telco; without one, those checks are not built.
    """
    expectations = [
        E.ExpectTableColumnsToMatchSet(
            column_set=[*TRACE_FIELDS, *SUBSCRIPTION_FIELDS], exact_match=False,
            description="every canonical field is present after column mapping"),
        E.ExpectColumnMaxToBeBetween(
            column=ROWS_READ, min_value=1, description="the export holds at least one row"),
    ]
    if previous_rows:
        floor = int(previous_rows * (1 - settings.max_row_count_drop))
        expectations.append(E.ExpectColumnMaxToBeBetween(
            column=ROWS_READ, min_value=max(floor, 1),
            description=f"row count dropped by at most {settings.max_row_count_drop:.0%} "
                        f"since the previous run ({previous_rows} rows)"))
    if previous_nfd_share is not None:
        delta = settings.max_nfd_share_change
        expectations.append(E.ExpectColumnMaxToBeBetween(
            column=NFD_SHARE, min_value=max(previous_nfd_share - delta, 0.0),
            max_value=min(previous_nfd_share + delta, 1.0),
            description=f"share of names not in NFC moved by at most {delta:.0%} since the "
                        f"previous run ({previous_nfd_share:.1%}): the export's encoding or "
                        "source system changed"))
    return new_suite("telco_export_ingested", expectations)

def normalised_suite(settings: GateSettings) -> gx.ExpectationSuite:
    """The export after normalisation, on the facts of its rows: shapes, date ranges,
    vocabularies, shares (``pipelines.quality.facts.export_facts``)."""
    bad = 1 - settings.max_bad_row_share
    share = f"at most {settings.max_bad_row_share:.1%} of rows"
    expectations: list = [
        E.ExpectColumnValuesToNotBeNull(
            column="source_row", description="every row keeps its source row"),
        E.ExpectColumnValuesToBeUnique(
            column="source_row", description="no source row appears twice"),
        E.ExpectColumnValuesToNotBeNull(
            column="activation_date", mostly=bad,
            description=f"every row has an activation date ({share} without)"),
        E.ExpectColumnValuesToBeInSet(
            column="activation_date", value_set=[0], mostly=bad,
            description=f"activation between {settings.earliest_activation} and the run date "
                        f"({share} outside)"),
        E.ExpectColumnValuesToBeInSet(
            column="date_of_birth", value_set=[0], mostly=bad,
            description=f"no date of birth after the run date ({share})"),
        E.ExpectColumnValuesToBeInSet(
            column="msisdn", value_set=[0], mostly=bad,
            description=f"a canonical number is 10 digits starting with 0 ({share} not)"),
        E.ExpectColumnValuesToNotBeNull(
            column="msisdn", mostly=1 - settings.max_missing_msisdn_share,
            description=f"at most {settings.max_missing_msisdn_share:.0%} of rows lack a "
                        "usable number"),
        E.ExpectColumnValuesToNotBeNull(
            column="id_number", mostly=1 - settings.max_no_id_share,
            description=f"at most {settings.max_no_id_share:.0%} of rows lack an ID number"),
    ]
    for field, vocabulary in VOCABULARIES.items():
        expectations.append(E.ExpectColumnValuesToBeInSet(
            column=field, value_set=[0], mostly=bad,
            description=f"{field} is one of {', '.join(vocabulary)} ({share} not)"))
    for id_type in DOCUMENT_PATTERNS:
        expectations.append(E.ExpectColumnValuesToBeInSet(
            column="id_number", value_set=[0], mostly=1 - settings.max_malformed_id_share,
            row_condition=Column("document_type") == DOCUMENT_TYPES[id_type],
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
