"""Canonical field names and vocabularies shared by every stage.

A telco mapping (config/telcos/*.yaml) maps its own column names onto
``SUBSCRIPTION_FIELDS``; everything after ingest speaks only these names.
"""

from __future__ import annotations

# Canonical subscription fields a telco mapping may provide (all read as text).
SUBSCRIPTION_FIELDS: tuple[str, ...] = (
    "msisdn",
    "full_name",
    "date_of_birth",
    "gender",
    "id_type",
    "id_number",
    "activation_date",
    "subscription_type",
    "line_status",
    "point_of_sale",
)
# Fields without which a row cannot be reconciled at all.
REQUIRED_FIELDS: tuple[str, ...] = (
    "msisdn",
    "full_name",
    "date_of_birth",
    "id_type",
    "id_number",
    "activation_date",
)
# Traceability columns added at ingest.
TRACE_FIELDS: tuple[str, ...] = ("telco", "source_file", "source_row")

GENDERS = ("M", "F")
ID_TYPES = ("CCCD", "CMND", "PASSPORT")
SUBSCRIPTION_TYPES = ("PREPAID", "POSTPAID")
LINE_STATUSES = ("ACTIVE", "BLOCKED_ONE_WAY", "BLOCKED_TWO_WAY", "CANCELLED")

# Reconciliation outcome of a subscription (exactly one per row).
STATUSES = ("VERIFIED", "MISMATCH", "UNREGISTERED", "REVIEW", "FOREIGN_DOCUMENT")

# Registry columns (citizen registry snapshot, Parquet).
REGISTRY_FIELDS: tuple[str, ...] = (
    "citizen_id",
    "legacy_id",
    "full_name",
    "date_of_birth",
    "gender",
    "date_of_death",
)
