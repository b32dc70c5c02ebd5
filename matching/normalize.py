"""Vietnamese text normalisation over whole columns (pyarrow compute, no per-row Python).

Facts this encodes (shared/domain/vietnam.md §4): NFC and NFD forms of one name
are different strings, so NFC comes first; Đ/đ has no Unicode decomposition,
so folding to ASCII maps it explicitly; tone placement (Hòa/Hoà) and i/y
spellings (Lý/Lí) vary and must compare equal.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from matching.columns import ArrayLike, as_string_array

StringColumn = ArrayLike

# Any run of whitespace, including NBSP and other Unicode spaces.
_SPACES = r"[\s\p{Z}]+"


def nfc(values: StringColumn) -> pa.Array:
    """Unicode NFC: NFD exports and Windows-1258's mixed forms become one spelling."""
    return pc.utf8_normalize(as_string_array(values), form="NFC")


def clean_whitespace(values: StringColumn) -> pa.Array:
    """Trim and collapse whitespace runs (NBSP, tabs) to one space; empty becomes null."""
    collapsed = pc.utf8_trim_whitespace(
        pc.replace_substring_regex(as_string_array(values), _SPACES, " "))
    return pc.if_else(pc.equal(collapsed, ""), pa.scalar(None, pa.string()), collapsed)


def fold_diacritics(values: StringColumn) -> pa.Array:
    """Drop every diacritic; Đ/đ map to D/d explicitly since NFD leaves them intact."""
    decomposed = pc.utf8_normalize(as_string_array(values), form="NFD")
    stripped = pc.replace_substring_regex(decomposed, r"\p{Mn}+", "")
    stripped = pc.replace_substring(pc.replace_substring(stripped, "Đ", "D"), "đ", "d")
    return pc.utf8_normalize(stripped, form="NFC")


def name_key(values: StringColumn) -> pa.Array:
    """Comparison key of a personal name: folded, lower case, letters and single spaces.

    Tone placement disappears with the diacritics. A word-final ``y`` becomes
    ``i`` so that Lý/Lí, Thúy/Thúi-style spellings agree; a ``y`` inside a word
    (Huỳnh, Uyên) is kept, since it is not an i/y variant there.
    """
    folded = pc.utf8_lower(fold_diacritics(values))
    letters = pc.replace_substring_regex(folded, r"[^a-z0-9]+", " ")
    letters = pc.replace_substring_regex(letters, r"y\b", "i")
    return clean_whitespace(letters)


def display_name(values: StringColumn) -> pa.Array:
    """NFC, single-spaced, each word capitalised: how a name is shown in reports."""
    return pc.utf8_title(clean_whitespace(nfc(values)))
