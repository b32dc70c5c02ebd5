"""Personal document numbers: CCCD (12 digits), old CMND (9 or 12 digits), passports.

Structure of the 12-digit personal identification number (CCCD), from Decree
137/2015 Art. 13 and Circular 07/2016/TT-BCA Art. 7 (later Circular 59/2021
Art. 4)::

    PPP G YY RRRRRR
    PPP     province where the birth was registered (Circular 07/2016 Appendix 1)
    G       century and sex: 1900s 0 M / 1 F, 2000s 2/3, 2100s 4/5, 2200s 6/7, 2300s 8/9
    YY      last two digits of the birth year
    RRRRRR  random

There is **no checksum**: the only structural checks possible are digits,
length, and that G+YY do not imply a birth after the reference year. A code not
in the province list is still valid (codes abroad use a country code): it is
reported as an unknown province, never as an invalid number.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching import reference
from matching.columns import (
    ArrayLike,
    as_bool_mask,
    as_string_array,
    interleave,
    matches,
    take_labels,
)

DOCUMENT_TYPES = ("CCCD", "CMND", "PASSPORT")
ISSUES = (
    "MISSING",
    "NON_DIGIT",
    "WRONG_LENGTH",
    "FUTURE_BIRTH_YEAR",
    "LEADING_ZERO_RESTORED",
    "TYPE_CORRECTED",
)
EDITS = ("SUBSTITUTION", "SWAP")

# Spaces (incl. no-break and zero-width), dots, dashes of every kind, underscores.
_SEPARATORS = r"[\s\p{Z}\p{Pd}._\x{200B}\x{FEFF}]"
_NULL_STR = pa.scalar(None, pa.string())
_VARIANT_CHUNK = 16_384  # rows per block: bounds the (rows, variants, L) temporaries




def clean_document_number(values: ArrayLike) -> pa.Array:
    """Strip spaces, dots, dashes and underscores, upper-case; empty -> null.

    A trailing Excel float part (``79084000999.0``) is dropped first, otherwise
    removing the dot would append a spurious digit.
    """
    s = as_string_array(values)
    s = pc.replace_substring_regex(s, r"^\s*([0-9]+)\.0+\s*$", r"\1")
    s = pc.utf8_upper(pc.replace_substring_regex(s, _SEPARATORS, ""))
    return pc.if_else(pc.equal(s, ""), _NULL_STR, s)


def _parse_cccd(number: pa.Array) -> tuple[np.ndarray, pa.Array, np.ndarray, np.ndarray]:
    """Split 12-digit numbers into (is_12_digits, province code, birth year, is_female)."""
    ok = as_bool_mask(matches(number, r"^[0-9]{12}$"))
    s12 = pc.if_else(pa.array(ok), number, _NULL_STR)
    province = pc.utf8_slice_codeunits(s12, 0, 3)
    g = pc.fill_null(pc.cast(pc.utf8_slice_codeunits(s12, 3, 4), pa.int32()), 0).to_numpy()
    yy = pc.fill_null(pc.cast(pc.utf8_slice_codeunits(s12, 4, 6), pa.int32()), 0).to_numpy()
    year = 1900 + 100 * (g // 2) + yy
    return ok, province, year, (g % 2) == 1


def classify_documents(
    id_type: ArrayLike, id_number: ArrayLike, *, reference_year: int
) -> pa.Table:
    """Clean and check each document number against its declared type.

    Returns a table with ``id_type`` (CCCD/CMND/PASSPORT or null), ``id_number``
    (cleaned; left-padded when a lost leading zero was restored), ``id_valid``
    (null when there is no number) and ``id_issue`` (null or one of ``ISSUES``).

    * CCCD: 12 digits; birth year implied by G+YY after ``reference_year`` is
      invalid (FUTURE_BIRTH_YEAR). 11 digits are a number whose leading 0 was
      lost in Excel (every province code starts with 0): padded, valid,
      LEADING_ZERO_RESTORED. 9 digits declared CCCD are a CMND (TYPE_CORRECTED).
    * CMND: 9 digits. 8 digits are padded like the CCCD (Hà Nội/TP.HCM CMNDs
      start with 01/02 and lose the 0 the same way). A 12-digit CMND existed:
      it stays CMND unless it parses as a valid CCCD (then TYPE_CORRECTED).
    * PASSPORT: 6-12 ASCII letters/digits (Decree 49/2017 lets foreigners
      register with one; it cannot be checked against the citizen registry).
    * Undeclared type: a 12/11-digit number is taken as CCCD and a 9/8-digit
      one as CMND; anything else keeps a null type and is invalid. A passport is
      never inferred, since that would move garbage out of the checkable set.

    NON_DIGIT also covers passports with characters other than A-Z/0-9.
    """
    declared, raw = as_string_array(id_type), as_string_array(id_number)
    if len(declared) != len(raw):
        raise ValueError("id_type and id_number must have the same length")
    # Fast path for what nearly every row is: a CCCD of 12 digits or a CMND of 9, declared
    # as such and written without any separator. Same result as the general path.
    cccd = as_bool_mask(pc.equal(declared, "CCCD")) & \
        as_bool_mask(matches(raw, r"^[0-9]{12}$"))
    cmnd = as_bool_mask(pc.equal(declared, "CMND")) & \
        as_bool_mask(matches(raw, r"^[0-9]{9}$"))
    plain = cccd | cmnd
    if not plain.any():
        return _classify_documents(declared, raw, reference_year=reference_year)
    number = raw.filter(pa.array(plain))
    is_cccd = cccd[plain]
    _, _, year, _ = _parse_cccd(number)
    future = is_cccd & (year > reference_year)
    fast = pa.table({
        "id_type": take_labels(np.where(is_cccd, 0, 1).astype(np.int8), DOCUMENT_TYPES),
        "id_number": number,
        "id_valid": pa.array(~future),
        "id_issue": take_labels(np.where(future, ISSUES.index("FUTURE_BIRTH_YEAR"), -1)
                            .astype(np.int8), ISSUES),
    })
    if plain.all():
        return fast
    rest = pa.array(~plain)
    return interleave(plain, fast, _classify_documents(
        declared.filter(rest), raw.filter(rest), reference_year=reference_year))


def _classify_documents(id_type: pa.Array, id_number: pa.Array, *,
                        reference_year: int) -> pa.Table:
    declared = pc.utf8_upper(pc.utf8_trim_whitespace(id_type))
    number = clean_document_number(id_number)
    n = len(number)

    dt = pc.fill_null(pc.index_in(declared, value_set=pa.array(DOCUMENT_TYPES)), -1).to_numpy()
    has = ~np.asarray(number.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    length = pc.fill_null(pc.utf8_length(number), 0).to_numpy()
    digits = as_bool_mask(pc.match_substring_regex(number, r"^[0-9]+$"))
    alnum = as_bool_mask(pc.match_substring_regex(number, r"^[A-Z0-9]+$"))

    padded = pc.binary_join_element_wise("0", number, "")
    pad11 = digits & (length == 11)
    pad8 = digits & (length == 8)
    as12 = pc.if_else(pa.array(pad11), padded, number)
    is12, _, year, _ = _parse_cccd(as12)
    cccd_ok = is12 & (year <= reference_year)
    future = is12 & ~cccd_ok
    is12_native = digits & (length == 12)
    is9 = digits & (length == 9)

    CCCD, CMND, PASSPORT = 0, 1, 2
    MISSING, NON_DIGIT, WRONG_LENGTH, FUTURE, RESTORED, CORRECTED = range(6)
    out_type = np.where(has | (dt >= 0), dt, -1).astype(np.int8)
    issue = np.full(n, -1, dtype=np.int8)
    valid = np.zeros(n, dtype=bool)
    use_pad = np.zeros(n, dtype=bool)

    def apply(mask: np.ndarray, *, ok: bool, code: int = -1, type_: int | None = None,
              pad: bool = False) -> None:
        valid[mask] = ok
        issue[mask] = code
        if type_ is not None:
            out_type[mask] = type_
        use_pad[mask] = pad

    # Undeclared type: infer CCCD/CMND from digits only.
    undeclared = (dt < 0) & has
    apply(undeclared & ~digits, ok=False, code=NON_DIGIT)
    apply(undeclared & digits, ok=False, code=WRONG_LENGTH)
    for declared_as in (-1, CCCD):
        base = (dt == declared_as) & has & digits
        apply(base & is12_native & cccd_ok, ok=True, type_=CCCD)
        apply(base & pad11 & cccd_ok, ok=True, code=RESTORED, type_=CCCD, pad=True)
        apply(base & future, ok=False, code=FUTURE, type_=CCCD)
    apply(undeclared & is9, ok=True, type_=CMND)
    apply(undeclared & pad8, ok=True, code=RESTORED, type_=CMND, pad=True)

    cccd = (dt == CCCD) & has
    apply(cccd & ~digits, ok=False, code=NON_DIGIT)
    apply(cccd & digits & ~is12 & ~is9, ok=False, code=WRONG_LENGTH)
    apply(cccd & is9, ok=True, code=CORRECTED, type_=CMND)

    cmnd = (dt == CMND) & has
    apply(cmnd & ~digits, ok=False, code=NON_DIGIT)
    apply(cmnd & digits, ok=False, code=WRONG_LENGTH)
    apply(cmnd & is9, ok=True)
    apply(cmnd & pad8, ok=True, code=RESTORED, pad=True)
    apply(cmnd & is12_native & ~cccd_ok, ok=True)  # a genuine 12-digit CMND
    apply(cmnd & is12_native & cccd_ok, ok=True, code=CORRECTED, type_=CCCD)
    apply(cmnd & pad11 & cccd_ok, ok=True, code=CORRECTED, type_=CCCD, pad=True)

    passport = (dt == PASSPORT) & has
    apply(passport & ~alnum, ok=False, code=NON_DIGIT)
    apply(passport & alnum & ((length < 6) | (length > 12)), ok=False, code=WRONG_LENGTH)
    apply(passport & alnum & (length >= 6) & (length <= 12), ok=True)

    issue[~has] = MISSING
    return pa.table(
        {
            "id_type": take_labels(out_type, DOCUMENT_TYPES),
            "id_number": pc.if_else(pa.array(use_pad), padded, number),
            "id_valid": pa.array(valid, mask=~has),
            "id_issue": take_labels(issue, ISSUES),
        }
    )


def cccd_parts(id_number: ArrayLike, *, provinces: pa.Table | None = None) -> pa.Table:
    """Decode a 12-digit personal ID number (Decree 137/2015 Art. 13).

    Columns: ``province_code`` (str), ``province_known`` (bool: in the province
    list; False for codes abroad, which are still valid), ``birth_year``
    (int16), ``sex`` ('M'/'F'). All null where the cleaned value is not exactly
    12 digits. ``provinces`` overrides the bundled province table.
    """
    number = clean_document_number(id_number)
    ok, province, year, female = _parse_cccd(number)
    codes = (provinces if provinces is not None else reference.provinces())["code"]
    known = pc.is_in(province, value_set=codes.combine_chunks())
    return pa.table(
        {
            "province_code": province,
            "province_known": pc.if_else(pa.array(ok), known, pa.scalar(None, pa.bool_())),
            "birth_year": pa.array(year.astype(np.int16), mask=~ok),
            "sex": take_labels(np.where(ok, female.astype(np.int8), -1), ("M", "F")),
        }
    )


def _declared_years(values: ArrayLike) -> pa.Array:
    """Declared birth years as int32: ints, floats, 'YYYY' text, or the year of a date."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        try:
            values = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            values = as_string_array(values)
    if pa.types.is_temporal(values.type):
        return pc.cast(pc.year(values), pa.int32())
    if pa.types.is_floating(values.type):
        values = pc.if_else(pc.is_finite(values), values, pa.scalar(None, values.type))
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
        return pc.cast(values, pa.int32(), safe=False)
    s = pc.utf8_trim_whitespace(as_string_array(values))
    s = pc.if_else(pc.match_substring_regex(s, r"^[0-9]{1,4}$"), s, _NULL_STR)
    return pc.cast(s, pa.int32())


def cccd_agrees_with(id_number: ArrayLike, birth_year: ArrayLike, gender: ArrayLike) -> pa.Array:
    """Check a CCCD against the declared birth year and gender, without a registry.

    The century/sex digit and the two year digits (Decree 137/2015 Art. 13)
    must agree with the declared year (int, or a date/timestamp column) and
    gender ('M'/'F'). Kleene logic: False as soon as one known part disagrees,
    True when both agree, null when nothing disagrees but something is unknown
    (number not a 12-digit CCCD, year or gender missing).
    """
    parts = cccd_parts(id_number)
    years = _declared_years(birth_year)
    sex = pc.utf8_upper(pc.utf8_trim_whitespace(as_string_array(gender)))
    sex = pc.if_else(pc.is_in(sex, value_set=pa.array(["M", "F"])), sex, _NULL_STR)
    if not len(years) == len(sex) == parts.num_rows:
        raise ValueError("id_number, birth_year and gender must have the same length")
    year_ok = pc.equal(pc.cast(parts["birth_year"], pa.int32()), years)
    sex_ok = pc.equal(parts["sex"], sex)
    return pc.and_kleene(year_ok, sex_ok).combine_chunks()


def digit_strings(matrix: np.ndarray) -> pa.Array:
    """(m, L) uint8 digit matrix -> StringArray of m strings of length L."""
    m, width = matrix.shape
    data = np.ascontiguousarray(matrix + ord("0"), dtype=np.uint8)
    offsets = np.arange(m + 1, dtype=np.int32) * width
    return pa.StringArray.from_buffers(m, pa.py_buffer(offsets), pa.py_buffer(data))


def digit_matrix(strings: pa.Array, width: int) -> np.ndarray:
    """Equal-length non-null ASCII strings -> (n, width) uint8 matrix of digit values."""
    _, offsets_buf, data_buf = strings.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32)[strings.offset:]
    start = offsets[0]
    raw = np.frombuffer(data_buf, dtype=np.uint8)[start:start + len(strings) * width]
    return raw.reshape(len(strings), width) - ord("0")


def _variants_for_width(
    digits: np.ndarray, rows: np.ndarray, substitutions: bool, adjacent_swaps: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All variants of an (n, width) digit matrix, in row order: (rows, variants as an
    (m, width) digit matrix, is_swap)."""
    n, width = digits.shape
    # Edit k < n_sub sets position sub_pos[k] to (digit + sub_step[k]) % 10; edit
    # n_sub + j swaps positions j and j + 1.
    sub_pos = np.repeat(np.arange(width), 9) if substitutions else np.empty(0, np.intp)
    sub_step = np.tile(np.arange(1, 10, dtype=np.uint8), width) if substitutions else None
    swap_pos = np.arange(width - 1) if adjacent_swaps else np.empty(0, np.intp)
    n_sub, n_swap = len(sub_pos), len(swap_pos)
    cand = np.broadcast_to(digits[:, None, :], (n, n_sub + n_swap, width)).copy()
    if n_sub:
        # (d + 1..9) % 10 gives the nine other digits once each: no mask needed.
        cand[:, np.arange(n_sub), sub_pos] = (digits[:, sub_pos] + sub_step) % 10
    keep = np.ones((n, n_sub + n_swap), dtype=bool)
    if n_swap:
        k = n_sub + np.arange(n_swap)
        cand[:, k, swap_pos] = digits[:, swap_pos + 1]
        cand[:, k, swap_pos + 1] = digits[:, swap_pos]
        keep[:, n_sub:] = digits[:, :-1] != digits[:, 1:]  # equal digits: no change
    is_swap = np.broadcast_to(np.arange(n_sub + n_swap) >= n_sub, keep.shape)[keep]
    out_rows = np.repeat(rows, keep.sum(axis=1))
    return out_rows, cand[keep], is_swap


def near_miss_variants(
    id_numbers: ArrayLike,
    *,
    substitutions: bool = True,
    adjacent_swaps: bool = True,
    max_length: int = 20,
) -> pa.Table:
    """Every number one typo away: one digit substituted, or two adjacent digits swapped.

    These are the two commonest keying errors; a registry hit on a variant is
    a candidate for the intended citizen. Only all-digit values get variants
    (nulls, passports and garbage get none); the original never appears and a
    row has no duplicate variants (a swap changes two positions, a substitution
    one). A 12-digit ID yields 108 substitutions plus one swap per unequal
    adjacent pair. Columns: ``row`` (int64 index into the input), ``variant``,
    ``edit`` ('SUBSTITUTION' | 'SWAP'); sorted by ``row``. Output is about 40
    bytes per variant (~4.7 GB for 1M CCCDs): pass only the IDs that need it.
    Digit strings longer than ``max_length`` (no document number is) get none:
    their variant count grows with the square of the length.
    """
    s = as_string_array(id_numbers)
    schema = pa.schema([("row", pa.int64()), ("variant", pa.string()), ("edit", pa.string())])
    lengths = pc.fill_null(pc.utf8_length(s), 0).to_numpy()
    eligible = as_bool_mask(pc.match_substring_regex(s, r"^[0-9]+$")) & (lengths <= max_length)
    batches = []
    for start in range(0, len(s), _VARIANT_CHUNK):
        stop = min(start + _VARIANT_CHUNK, len(s))
        parts = []
        block_lengths = lengths[start:stop]
        block_eligible = eligible[start:stop]
        for width in np.unique(block_lengths[block_eligible]):
            rows = start + np.flatnonzero(block_eligible & (block_lengths == width))
            digits = digit_matrix(s.take(pa.array(rows)), int(width))
            parts.append(_variants_for_width(digits, rows, substitutions, adjacent_swaps))
        if not parts:
            continue
        rows_np = np.concatenate([p[0] for p in parts])
        variants = pa.concat_arrays([digit_strings(p[1]) for p in parts])
        is_swap = np.concatenate([p[2] for p in parts])
        if len(parts) > 1:  # several ID lengths in this block: restore row order
            order = np.argsort(rows_np, kind="stable")
            rows_np, is_swap = rows_np[order], is_swap[order]
            variants = variants.take(pa.array(order))
        edits = take_labels(is_swap.astype(np.int8), EDITS)
        batches.append(
            pa.record_batch([pa.array(rows_np, pa.int64()), variants, edits], schema=schema)
        )
    return pa.Table.from_batches(batches, schema=schema)


def digit_values(matrix: np.ndarray) -> np.ndarray:
    """(m, L) digit matrix -> the int64 value of each row (L <= 18)."""
    powers = 10 ** np.arange(matrix.shape[1] - 1, -1, -1, dtype=np.int64)
    return matrix.astype(np.int64) @ powers


def near_miss_values(id_numbers: ArrayLike, widths: tuple[int, ...] = (12, 9)
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`near_miss_variants` of the all-digit numbers of ``widths`` digits, as
    integers: (row, value, width) per variant, without building a string per variant
    (what a registry look-up of variants needs: many per number)."""
    s = as_string_array(id_numbers)
    lengths = np.asarray(pc.fill_null(pc.utf8_length(s), 0), dtype=np.int64)
    eligible = as_bool_mask(pc.match_substring_regex(s, r"^[0-9]+$"))
    rows_out, values_out, widths_out = [], [], []
    for width in widths:
        rows = np.flatnonzero(eligible & (lengths == width))
        for start in range(0, len(rows), _VARIANT_CHUNK):
            block = rows[start:start + _VARIANT_CHUNK]
            digits = digit_matrix(s.take(pa.array(block)), width)
            out_rows, matrix, _ = _variants_for_width(digits, block, True, True)
            rows_out.append(out_rows)
            values_out.append(digit_values(matrix))
            widths_out.append(np.full(len(out_rows), width, dtype=np.int64))
    if not rows_out:
        none = np.empty(0, np.int64)
        return none, none, none
    return np.concatenate(rows_out), np.concatenate(values_out), np.concatenate(widths_out)


def mask_id(
    values: ArrayLike, keep_start: int = 0, keep_end: int = 3, *, min_hidden: int = 5
) -> pa.Array:
    """Mask an ID for logs and reports: ``079084001234`` -> ``*********234``.

    Privacy rule: logs and reports never carry full ID numbers, nor enough of one to
    rebuild it. Only the last three digits are shown (docs/data-contracts.md, "Masked ID
    numbers"): a CCCD's first six digits are the birth province, the century and sex and
    the birth year, which a reader who sees the holder's birth date or province can
    guess, so showing them (the former ``079*****1234``) left as few as two unknown
    digits; the last three are enough to tell two documents apart on a screen or against
    the paper in hand. At least ``min_hidden`` characters (or all of a shorter value) are
    always masked: the kept tail shrinks first, then the head, so a 9-digit CMND gives
    ``******789`` and a 6-character value ``*****6``. The length is kept so that a
    reader can still tell a CMND from a CCCD.
    """
    if keep_start < 0 or keep_end < 0 or min_hidden < 0:
        raise ValueError("keep_start, keep_end and min_hidden must be >= 0")
    s = as_string_array(values)
    length = pc.fill_null(pc.utf8_length(s), 0)
    revealable = pc.max_element_wise(pc.subtract(length, min_hidden), 0)
    head_n = pc.min_element_wise(revealable, keep_start)
    tail_n = pc.min_element_wise(pc.subtract(revealable, head_n), keep_end)
    empty = pc.utf8_slice_codeunits(s, 0, 0)
    head, tail = empty, empty
    # Per-row slice widths, over the small fixed range of possible widths.
    for width in range(1, keep_start + 1):
        head = pc.if_else(pc.equal(head_n, width), pc.utf8_slice_codeunits(s, 0, width), head)
    for width in range(1, keep_end + 1):
        tail = pc.if_else(pc.equal(tail_n, width), pc.utf8_slice_codeunits(s, -width), tail)
    stars = pc.binary_repeat("*", pc.subtract(pc.subtract(length, head_n), tail_n))
    return pc.binary_join_element_wise(head, stars, tail, "")
