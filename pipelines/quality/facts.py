"""The facts a gate checks, computed once per row with Arrow, as small integer codes.

Great Expectations validates pandas frames row by row; given raw strings it runs a
regular expression per row in Python. Here each boundary's expensive checks (the
shape of a number, the shape of a document for its type, date ranges, vocabulary
membership) are computed vectorised into one ``int8`` column per data column,
named after it, so the suite validates the facts of every row cheaply and its
results still name the column a person knows (``msisdn``, ``id_number``):

* null: the value is missing (``expect_column_values_to_not_be_null`` checks shares);
* 0: the value is fine;
* 1, 2, …: what is wrong with it (``CODES`` below; ``expect_column_values_to_be_in_set
  [0]`` with ``mostly`` checks shares).

The rows behind a failure are shown from the data itself (``shown``), masked.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching.columns import as_bool_mask, matches
from pipelines.schema import GENDERS, ID_TYPES, LINE_STATUSES, SUBSCRIPTION_TYPES

MSISDN_PATTERN = r"^0[0-9]{9}$"
# Document-number shape per id_type after normalisation (matching.ids cleans
# separators and upper-cases passports).
DOCUMENT_PATTERNS = {
    "CCCD": r"^[0-9]{12}$",
    "CMND": r"^[0-9]{9}$",
    "PASSPORT": r"^[A-Z0-9]{6,12}$",
}
CODES = {
    "msisdn": {1: "not a 10-digit number starting with 0"},
    "id_number": {1: "not the shape of its document type"},
    "activation_date": {1: "before the earliest activation date", 2: "after the run date"},
    "date_of_birth": {1: "after the run date"},
    "vocabulary": {1: "not in the canonical vocabulary"},
    "citizen_id": {1: "not a 12-digit CCCD"},
    "telco": {1: "another telco's row"},
    "source_row": {1: "not after the previous row (listed twice or out of order)"},
}
# The document type as an int8 code for the per-type shape checks (a string column
# would be copied by every filter GX makes of the frame): DOCUMENT_TYPES[id_type].
DOCUMENT_TYPES = {kind: code for code, kind in enumerate(DOCUMENT_PATTERNS)}
# What ``export_facts`` reads of a shard: the facts' sources and what examples show.
EXPORT_COLUMNS = ("telco", "source_row", "msisdn", "id_type", "id_number", "activation_date",
                  "date_of_birth", "dob_precision", "gender", "subscription_type",
                  "line_status")
VOCABULARIES = {"gender": GENDERS, "id_type": ID_TYPES,
                "subscription_type": SUBSCRIPTION_TYPES, "line_status": LINE_STATUSES,
                "dob_precision": ("day", "year")}


def _code(defects: list[tuple[pa.Array | pa.ChunkedArray, int]], present: pa.Array,
          n: int) -> pa.Array:
    """int8 per row: null where not ``present``, else the first defect's code, else 0."""
    code = np.zeros(n, dtype=np.int8)
    for mask, value in reversed(defects):
        code[np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False),
                        dtype=bool)] = value
    missing = ~np.asarray(pc.fill_null(present, False).to_numpy(zero_copy_only=False),
                          dtype=bool)
    return pa.array(code, pa.int8(), mask=missing)


def _shape(values: pa.ChunkedArray | pa.Array, pattern: str) -> pa.Array:
    """int8: null where missing, 0 where ``values`` matches ``pattern``, 1 where not."""
    n = len(values)
    return _code([(pc.invert(matches(values, pattern)), 1)], pc.is_valid(values), n)


def _in_vocabulary(values: pa.ChunkedArray | pa.Array, vocabulary: tuple[str, ...]) -> pa.Array:
    n = len(values)
    known = pc.is_in(values, value_set=pa.array(list(vocabulary), pa.string()))
    return _code([(pc.invert(known), 1)], pc.is_valid(values), n)


def export_facts(rows: pa.Table, *, run_date: date, earliest_activation: date) -> pa.Table:
    """Facts of a telco's normalised rows (the ``telco_export_normalised`` suite's): numbers
    only, as GX copies every column of the frame for each filter it makes; examples are
    shown from ``rows`` themselves (``gates.validate``'s ``shown``)."""
    n = rows.num_rows
    run_day = pa.scalar(run_date, pa.date32())
    id_type = rows["id_type"]
    number = rows["id_number"]
    kinds = pa.array(list(DOCUMENT_TYPES), pa.string())
    document_type = pc.cast(pc.index_in(id_type, value_set=kinds), pa.int8())
    kind_of = np.asarray(pc.fill_null(document_type, -1).to_numpy(zero_copy_only=False))
    # Each type's shape checked on that type's numbers only (a null number: not malformed).
    malformed = np.zeros(n, dtype=bool)
    for kind, pattern in DOCUMENT_PATTERNS.items():
        of_kind = kind_of == DOCUMENT_TYPES[kind]
        if of_kind.any():
            shaped = matches(number.filter(pa.array(of_kind)), pattern)
            malformed[of_kind] = ~as_bool_mask(pc.fill_null(shaped, True))
    activation = rows["activation_date"]
    birth = rows["date_of_birth"]
    return pa.table({
        "source_row": rows["source_row"],
        # the type as sent (DOCUMENT_TYPES code; null: none of them), for the per-type checks
        "document_type": document_type,
        "msisdn": _shape(rows["msisdn"], MSISDN_PATTERN),
        "id_number": _code([(pa.array(malformed), 1)], pc.is_valid(number), n),
        "activation_date": _code(
            [(pc.less(activation, pa.scalar(earliest_activation, pa.date32())), 1),
             (pc.greater(activation, run_day), 2)], pc.is_valid(activation), n),
        "date_of_birth": _code([(pc.greater(birth, run_day), 1)], pc.is_valid(birth), n),
        **{field: _in_vocabulary(rows[field], vocabulary)
           for field, vocabulary in VOCABULARIES.items()},
    })


def results_facts(results: pa.Table, telcos: list[str]) -> pa.Table:
    """Facts of a shard's results (the ``results`` suite's)."""
    n = results.num_rows
    from pipelines.schema import STATUSES

    known = pa.array(sorted(set(telcos) | set(results["telco"].unique().drop_null()
                                                    .to_pylist())), pa.string())
    telco_index = np.asarray(pc.fill_null(pc.index_in(results["telco"], value_set=known), -1)
                             .to_numpy(zero_copy_only=False), dtype=np.int64)
    row = np.asarray(pc.fill_null(results["source_row"], -1).to_numpy(zero_copy_only=False),
                     dtype=np.int64)
    return pa.table({
        "telco": _code([(pc.invert(pc.is_in(results["telco"], value_set=pa.array(
            telcos, pa.string()))), 1)], pc.is_valid(results["telco"]), n),
        "source_row": results["source_row"],
        # (telco, source_row) as one number, for the uniqueness check.
        "row_key": pa.array((telco_index << 40) + row, pa.int64()),
        "status": _in_vocabulary(results["status"], STATUSES),
        "matched_citizen_id": _shape(results["matched_citizen_id"], r"^[0-9]{12}$"),
    })


def correction_facts(rows: pa.Table, telco: str, previous_row: int | None) -> pa.Table:
    """Facts of a slice of a correction list read back as text (the ``correction_list``
    suite's); ``previous_row``: the last ``source_row`` of the slice before, so "unique
    and in order" holds across slices."""
    from pipelines.schema import STATUSES

    n = rows.num_rows
    source_row = pc.cast(rows["source_row"], pa.int64())
    values = np.asarray(pc.fill_null(source_row, -1).to_numpy(zero_copy_only=False),
                        dtype=np.int64)
    before = np.concatenate([[previous_row if previous_row is not None else -1], values[:-1]])
    not_after = pa.array(values <= before)
    return pa.table({
        "telco": _code([(pc.not_equal(rows["telco"], telco), 1)], pc.is_valid(rows["telco"]),
                       n),
        "source_row": _code([(not_after, 1)], pc.is_valid(source_row), n),
        "reason_codes": _code([], pc.and_(pc.is_valid(rows["reason_codes"]),
                                          pc.not_equal(rows["reason_codes"], "")), n),
        "status": _in_vocabulary(rows["status"], STATUSES),
        "msisdn": _shape(pc.if_else(pc.equal(rows["msisdn"], ""), pa.scalar(None, pa.string()),
                                    rows["msisdn"]), MSISDN_PATTERN),
    })


def registry_facts(citizens: pa.Table, *, as_of: date) -> pa.Table:
    """Facts of prepared registry rows (the ``registry_prepared`` suite's)."""
    from pipelines.schema import GENDERS

    n = citizens.num_rows
    birth = citizens["date_of_birth"]
    shape = _shape(citizens["citizen_id"], r"^[0-9]{12}$")
    return pa.table({
        # Uniqueness (within a shard: whole) of the 12 digits as one integer each, which
        # GX checks ~10x as fast as the strings (1M registry gate: 0.69 -> 0.45 s); a
        # malformed id has none and fails the shape check instead.
        "citizen_id_value": pc.cast(pc.if_else(pc.equal(shape, 0), citizens["citizen_id"],
                                               pa.scalar(None, pa.string())), pa.int64()),
        "citizen_id": shape,
        "legacy_id": _shape(citizens["legacy_id"], r"^[0-9]{9}$"),
        "gender": _in_vocabulary(citizens["gender"], GENDERS),
        "date_of_birth": _code([(pc.greater(birth, pa.scalar(as_of, pa.date32())), 1)],
                               pc.is_valid(birth), n),
    })
