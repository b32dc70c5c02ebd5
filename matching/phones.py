"""Mobile numbers (MSISDNs): one canonical form, ``0`` + 9 digits.

Exports carry ``+84xxxxxxxxx``, ``84xxxxxxxxx``, ``0084...``, ``0xxxxxxxxx``,
9 bare digits (Excel dropped the 0), spaces/dots/dashes/parentheses, Excel
floats, and 11-digit numbers from before the 2018 conversion, whose old
``01xx`` prefix became a 3-digit one while the last 7 digits were kept (MIC
2018 conversion table, see ``matching/data/legacy_prefixes.csv``).

The prefix names the carrier a block was *allocated* to, not the current one:
mobile number portability exists since 16 Nov 2018. Never flag a subscription
because its prefix belongs to another telco; ``prefix_carrier`` is informational.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching import reference
from matching.columns import ArrayLike, as_bool_mask, as_string_array, interleave

ISSUES = ("EMPTY", "NOT_A_NUMBER", "WRONG_LENGTH", "NOT_MOBILE_PREFIX")
_NULL_STR = pa.scalar(None, pa.string())
# Formatting characters: spaces (incl. no-break, zero-width), dots, dashes, parentheses.
_FORMATTING = r"[\s\p{Z}\p{Pd}.()\x{200B}\x{FEFF}]"
# Excel float in scientific notation: only exact when the fraction has exactly
# `exp` digits. Fewer digits mean implied trailing zeros, which Excel also
# produces when it rounds the display ("9.12346E+08"): such values are refused
# rather than turned into a wrong but valid-looking number.
# Already clean: 0, 84 or +84, then the nine digits of the national number.
_PLAIN = r"^(?:\+84|84|0)[0-9]{9}$"
_SCIENTIFIC = r"^(?P<int>[0-9]+)(?:[.,](?P<frac>[0-9]*))?[eE]\+?(?P<exp>[0-9]{1,2})$"




def _undo_excel_float(s: pa.Array) -> pa.Array:
    """``912345678.0`` -> ``912345678``; ``9.12345678E8`` -> ``912345678`` (exact only)."""
    s = pc.replace_substring_regex(s, r"^([0-9]+)[.,]0+$", r"\1")
    parts = pc.extract_regex(s, _SCIENTIFIC)
    is_sci = as_bool_mask(pc.match_substring_regex(s, _SCIENTIFIC))
    frac = pc.struct_field(parts, "frac")
    exp = pc.cast(pc.if_else(pa.array(is_sci), pc.struct_field(parts, "exp"), "0"), pa.int32())
    exact = pc.fill_null(pc.and_(pa.array(is_sci), pc.equal(pc.utf8_length(frac), exp)), False)
    joined = pc.binary_join_element_wise(pc.struct_field(parts, "int"), frac, "")
    # Inexact scientific forms keep their 'E' and end up NOT_A_NUMBER.
    return pc.if_else(exact, joined, s)


def canonical_msisdn(
    values: ArrayLike,
    *,
    mobile_prefixes: pa.Table | None = None,
    legacy_prefixes: pa.Table | None = None,
) -> pa.Table:
    """Canonicalise phone numbers to ``0`` + 9 digits.

    Columns: ``msisdn`` (canonical or null), ``msisdn_issue`` (null or one of
    ``ISSUES``), ``legacy_converted`` (an 11-digit pre-2018 number was
    converted). Null and blank input give EMPTY; anything but digits after an
    optional ``+`` and formatting gives NOT_A_NUMBER; a foreign country code or
    a prefix that is not a current mobile prefix (e.g. a 02x landline) gives
    NOT_MOBILE_PREFIX. ``+84 (0)90...`` (trunk 0 after the country code) is
    accepted. The tables default to the bundled reference data.
    """
    mobile = (mobile_prefixes if mobile_prefixes is not None else reference.mobile_prefixes())
    legacy = (legacy_prefixes if legacy_prefixes is not None else reference.legacy_prefixes())
    s = as_string_array(values)
    # Fast path for the forms nearly every row has (0 / 84 / +84 and nine digits, nothing
    # else): the same result as the general path below, in three kernels.
    plain = _plain(s) & ~as_bool_mask(pc.starts_with(s, "0084"))
    if not plain.any():
        return _canonical_msisdn(s, mobile, legacy)
    candidate = pc.binary_join_element_wise("0", pc.utf8_slice_codeunits(s.filter(plain), -9), "")
    on_mobile = pc.is_in(pc.utf8_slice_codeunits(candidate, 0, 3),
                         value_set=mobile["prefix"].combine_chunks())
    fast = pa.table({
        "msisdn": pc.if_else(on_mobile, candidate, _NULL_STR),
        "msisdn_issue": pc.if_else(on_mobile, _NULL_STR, "NOT_MOBILE_PREFIX"),
        "legacy_converted": pa.array(np.zeros(int(plain.sum()), dtype=bool)),
    })
    if plain.all():
        return fast
    return interleave(plain, fast, _canonical_msisdn(s.filter(pa.array(~plain)), mobile, legacy))


def _plain(s: pa.Array) -> np.ndarray:
    """Rows matching ``_PLAIN``, by byte length and ASCII digits rather than RE2:
    ``0`` and 9 digits (10 digits), ``84`` and 9 (11 digits), or ``+84`` and 9 digits."""
    length = pc.fill_null(pc.binary_length(s), 0).to_numpy(zero_copy_only=False)
    digits = as_bool_mask(pc.ascii_is_decimal(s))
    plain = digits & (((length == 10) & as_bool_mask(pc.starts_with(s, "0")))
                      | ((length == 11) & as_bool_mask(pc.starts_with(s, "84"))))
    plus = np.flatnonzero((length == 12) & as_bool_mask(pc.starts_with(s, "+84")))
    if len(plus):
        plain[plus] = as_bool_mask(pc.ascii_is_decimal(
            pc.utf8_slice_codeunits(s.take(pa.array(plus)), 1)))
    return plain


def _canonical_msisdn(s: pa.Array, mobile: pa.Table, legacy: pa.Table) -> pa.Table:
    s = _undo_excel_float(pc.utf8_trim_whitespace(s))
    s = pc.replace_substring_regex(s, _FORMATTING, "")
    n = len(s)

    empty = as_bool_mask(pc.or_kleene(pc.is_null(s), pc.equal(s, "")))
    numeric = as_bool_mask(pc.match_substring_regex(s, r"^\+?[0-9]+$"))
    plus = as_bool_mask(pc.starts_with(s, "+"))
    digits = pc.replace_substring(s, "+", "")

    # Where the national significant number starts: ordered cases, first match wins.
    intl_84 = (plus | as_bool_mask(pc.starts_with(digits, "0084"))) & numeric
    intl_84 &= as_bool_mask(pc.match_substring_regex(digits, r"^(0084|84)"))
    bare_84 = ~plus & numeric & as_bool_mask(pc.match_substring_regex(digits, r"^84[0-9]{9,10}$"))
    foreign = numeric & plus & ~intl_84
    cut = np.select(
        [intl_84 & as_bool_mask(pc.starts_with(digits, "0084")), intl_84 | bare_84,
         as_bool_mask(pc.starts_with(digits, "0"))],
        [4, 2, 1],
        default=0,
    )
    nsn = digits
    for width in (1, 2, 4):  # per-row cut over the small fixed set of prefix widths
        nsn = pc.if_else(pa.array(cut == width), pc.utf8_slice_codeunits(digits, width), nsn)
    # "+84 (0)90 123 4567": a trunk 0 kept after the country code.
    trunk = (intl_84 | bare_84) & as_bool_mask(pc.match_substring_regex(nsn, r"^0[0-9]{9,10}$"))
    nsn = pc.if_else(pa.array(trunk), pc.utf8_slice_codeunits(nsn, 1), nsn)
    nsn_len = pc.fill_null(pc.utf8_length(nsn), 0).to_numpy()

    # 10-digit NSN = pre-2018 11-digit number: old prefix 01xx -> new 0xx, last 7 kept.
    old_keys = pc.utf8_slice_codeunits(legacy["old_prefix"].combine_chunks(), 1)
    legacy_idx = pc.index_in(pc.utf8_slice_codeunits(nsn, 0, 3), value_set=old_keys)
    legacy_new = pc.take(legacy["new_prefix"].combine_chunks(), legacy_idx)
    is_legacy = numeric & ~foreign & (nsn_len == 10) & as_bool_mask(pc.is_valid(legacy_idx))
    converted = pc.binary_join_element_wise(legacy_new, pc.utf8_slice_codeunits(nsn, 3), "")
    national = pc.binary_join_element_wise("0", nsn, "")
    candidate = pc.if_else(pa.array(is_legacy), converted, national)

    ten = numeric & ~foreign & ((nsn_len == 9) | is_legacy)
    on_mobile = as_bool_mask(pc.is_in(pc.utf8_slice_codeunits(candidate, 0, 3),
                                  value_set=mobile["prefix"].combine_chunks()))
    # An 11-digit 01xx not in the table, or 02x + 8 digits (landline since 2017).
    other_11 = numeric & ~foreign & (nsn_len == 10) & ~is_legacy & \
        as_bool_mask(pc.match_substring_regex(nsn, r"^[12]"))

    EMPTY, NOT_A_NUMBER, WRONG_LENGTH, NOT_MOBILE = range(4)
    issue = np.full(n, WRONG_LENGTH, dtype=np.int8)
    issue[ten & on_mobile] = -1
    issue[(ten & ~on_mobile) | foreign | other_11] = NOT_MOBILE
    issue[~numeric] = NOT_A_NUMBER
    issue[empty] = EMPTY
    ok = issue < 0
    return pa.table(
        {
            "msisdn": pc.if_else(pa.array(ok), candidate, _NULL_STR),
            "msisdn_issue": pc.take(pa.array(ISSUES), pa.array(issue, mask=issue < 0)),
            "legacy_converted": pa.array(ok & is_legacy),
        }
    )


def prefix_carrier(msisdn: ArrayLike, *, mobile_prefixes: pa.Table | None = None) -> pa.Array:
    """Carrier the number's prefix was allocated to (informational only).

    Since number portability (16 Nov 2018) this is not the current carrier:
    never use it to decide which telco a subscription belongs to. Input is
    canonicalised first; null where the number is not a valid mobile number.
    """
    table = mobile_prefixes if mobile_prefixes is not None else reference.mobile_prefixes()
    canonical = canonical_msisdn(msisdn, mobile_prefixes=table)["msisdn"].combine_chunks()
    idx = pc.index_in(pc.utf8_slice_codeunits(canonical, 0, 3),
                      value_set=table["prefix"].combine_chunks())
    return pc.take(table["carrier"].combine_chunks(), idx)
