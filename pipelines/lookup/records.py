"""What the index holds for one subscription, and how it is packed.

A record is one subscription of the latest runs: its telco, number, status and flags,
the holder as the telco registered them (document, name, date of birth, gender), the
verified citizen (``holder_citizen_id`` when the status is ``VERIFIED``), the province
the subscription belongs to, and the first and last run that had it.

**Province of a subscription** (what a province scope means): the province where the
holder's birth was registered, read from the first three digits of the verified
citizen's CCCD, else of the CCCD as the telco sent it; empty (unknown) for a CMND or a
passport that no run verified. It is the old (63) code, which ID numbers keep; scopes
may also name a 2025 unit, which stands for its old provinces
(``pipelines/reporting/provinces.py``).

Records are packed as text, fields joined by ``\\x1f`` (unit separator) and records by
``\\x1e`` (record separator), both removed from free-text values first, so that a bucket
of the index is one string built with Arrow compute and a look-up splits one short
string. The first fields have a fixed width (two ``YYYY-MM-DD`` dates, then the
10-digit number), so a build reads them from the previous index by slicing.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.reporting.provinces import birth_province_code

FIELD_SEP, RECORD_SEP = "\x1f", "\x1e"

# first_run and last_run: what the index keeps across runs; the rest (the body, from the
# number on): what this run says.
FIELDS = (
    "first_run", "last_run", "msisdn", "telco", "status", "flags", "province", "id_type",
    "id_number", "full_name", "date_of_birth", "dob_precision", "gender", "citizen_id",
    "line_status", "activation_date",
)
BODY_FIELDS = FIELDS[2:]
BODY_START = 22  # len("YYYY-MM-DD") * 2 + 2 separators
POSITION = {name: i for i, name in enumerate(FIELDS)}

# A document entry of the index: the document and the number of a subscription it leads
# to (a subscription without a valid number is stored whole instead).
REFERENCE_FIELDS = ("document", "msisdn")

# What the index reads from a run's results (pipelines/results/dataset.py).
RESULT_COLUMNS = (
    "telco", "msisdn", "status", "flags", "id_type", "id_number", "full_name",
    "date_of_birth", "dob_precision", "gender", "holder_citizen_id", "line_status",
    "activation_date",
)
# Telco-sent text: the rest are canonical codes, dates or digits, which never hold a
# separator.
_FREE_TEXT = ("id_number", "full_name")


def _text(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_string(column.type):
        column = pc.cast(column, pa.string())
    return column


def body_columns(batch: pa.RecordBatch | pa.Table) -> dict[str, pa.Array]:
    """The record's fields from the number on (``BODY_FIELDS``) of each result row, as
    string arrays (null where unknown)."""
    get = {name: _text(batch.column(name)) for name in RESULT_COLUMNS if name != "flags"}
    flags = batch.column("flags")
    flags = flags.combine_chunks() if isinstance(flags, pa.ChunkedArray) else flags
    verified = pc.fill_null(pc.equal(get["status"], "VERIFIED"), False)
    citizen = pc.if_else(verified, get["holder_citizen_id"], pa.scalar(None, pa.string()))
    province = pc.coalesce(birth_province_code(citizen),
                           birth_province_code(get["id_number"], get["id_type"]))
    columns = {
        **get, "flags": pc.binary_join(flags, "|"), "province": province,
        "citizen_id": citizen,
    }
    for name in _FREE_TEXT:
        for sep in (FIELD_SEP, RECORD_SEP):
            columns[name] = pc.replace_substring(columns[name], sep, " ")
    return {name: columns[name] for name in BODY_FIELDS}


def pack(*columns: pa.Array | pa.ChunkedArray | str) -> pa.Array:
    """Join each row's fields into one string (null fields as empty)."""
    packed = pc.binary_join_element_wise(*columns, FIELD_SEP, null_handling="replace",
                                         null_replacement="")
    return packed.combine_chunks() if isinstance(packed, pa.ChunkedArray) else packed


def unpack_bucket(text: str) -> tuple[list[dict[str, str]], list[tuple[str, str]]]:
    """The entries of one bucket: whole records (``{field: value}``, empty = unknown), and
    document references ``(document, msisdn)``."""
    whole, references = [], []
    for entry in text.split(RECORD_SEP):
        if not entry:
            continue
        fields = entry.split(FIELD_SEP)
        if len(fields) == len(REFERENCE_FIELDS):
            references.append((fields[0], fields[1]))
        else:
            whole.append(dict(zip(FIELDS, fields, strict=True)))
    return whole, references


def split_records(buckets: pa.Array) -> pa.Array:
    """Many buckets' text (string array) into one entry per row (vectorised)."""
    if len(buckets) == 0:
        return pa.array([], pa.string())
    return pc.list_flatten(pc.split_pattern(buckets, RECORD_SEP))


def record_fields(entries: pa.Array, names: tuple[str, ...]) -> dict[str, pa.Array]:
    """Some fields of whole records (vectorised); empty values as null."""
    parts = pc.split_pattern(entries, FIELD_SEP)
    out = {}
    for name in names:
        value = pc.list_element(parts, POSITION[name])
        out[name] = pc.if_else(pc.equal(value, ""), pa.scalar(None, pa.string()), value)
    return out


def fixed_fields(entries: pa.Array) -> dict[str, pa.Array]:
    """``first_run``, ``last_run`` and ``msisdn`` of whole records by slicing, and the
    telco (the field after the number), without splitting the rest."""
    telco = pc.extract_regex(entries, f"^.{{{BODY_START + 11}}}(?P<telco>[^{FIELD_SEP}]*)")
    return {"first_run": pc.utf8_slice_codeunits(entries, 0, 10),
            "last_run": pc.utf8_slice_codeunits(entries, 11, 21),
            "msisdn": pc.utf8_slice_codeunits(entries, BODY_START, BODY_START + 10),
            "telco": pc.struct_field(telco, "telco")}


def body(entries: pa.Array) -> pa.Array:
    return pc.utf8_slice_codeunits(entries, BODY_START)
