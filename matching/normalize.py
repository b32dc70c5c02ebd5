"""Vietnamese text normalisation over whole columns (pyarrow compute, no per-row Python).

Facts this encodes (shared/domain/vietnam.md §4): NFC and NFD forms of one name
are different strings, so NFC comes first; Windows-1258 decodes to a mixed form
that NFC repairs; Đ/đ has no Unicode decomposition, so folding to ASCII maps it
explicitly; tone placement (Hòa/Hoà, Thủy/Thuỷ) and i/y spellings (Lý/Lí) vary
and must compare equal.

Every function takes any column :func:`as_string_array` accepts and returns a
``pa.string()`` array of the same length; nulls stay null.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching.columns import (
    ArrayLike,
    as_bool_mask,
    as_string_array,
    distinct_codes,
    per_distinct,
    take_codes,
)

__all__ = [
    "StringColumn",
    "as_string_array",
    "clean_text",
    "clean_text_counting_nfc",
    "clean_whitespace",
    "display_name",
    "fold_diacritics",
    "name_key",
    "nfc",
]

StringColumn = ArrayLike

_NULL = pa.scalar(None, pa.string())
# Any run of whitespace: ASCII, NBSP and the other Unicode spaces, line breaks,
# and control characters (a stray \x00 or \x1f from a legacy export is a separator).
_SPACES = r"[\s\p{Z}\p{Cc}]+"
# Invisible characters that copy-paste leaves inside words: soft hyphen,
# zero-width space / (non-)joiner, word joiner, byte-order mark. They separate nothing.
_INVISIBLE = r"[\x{00AD}\x{200B}-\x{200D}\x{2060}\x{FEFF}]"
# A value that _SPACES/_INVISIBLE would change (any whitespace but a single inner space,
# a control or invisible character), or that is empty.
_NEEDS_CLEANING = (r"[\p{Cc}\x{00AD}\x{200B}-\x{200D}\x{2060}\x{FEFF}]|[^\P{Z} ]|^ | $|  |^$")
# Letters with a stroke have no decomposition. U+00D0 (Icelandic Eth) looks exactly
# like Đ and turns up where Đ was typed from the wrong keyboard table.
_STROKED_D = (("Đ", "D"), ("đ", "d"), ("\u00d0", "D"))
# Everything that is not a letter, digit or mark separates words in a name key:
# dots, commas, hyphens, apostrophes, slashes, brackets...
_PUNCTUATION = r"[^\p{L}\p{N}\p{M}]+"
# Old-orthography i/y (Lý/Lí, Mỹ/Mĩ, Kỳ/Kì, Quý/Quí, Thy/Thi): a word that is one
# Vietnamese initial consonant (or "qu") followed by y. In rhymes (Huy, Duy, Thủy,
# Mai/May/Mây) y is not interchangeable with i and is kept; so is a mistyped word
# ("Thhy" for Thúy), which must stay one edit away from "thuy".
_INITIALS = "b|c|ch|d|g|gh|h|k|kh|l|m|n|ng|ngh|nh|p|ph|qu|r|s|t|th|tr|v|x"
_CONSONANT_Y = rf"\b({_INITIALS})y\b"


def nfc(values: StringColumn) -> pa.Array:
    """Unicode NFC: NFD exports and Windows-1258's mixed forms become one spelling."""
    return per_distinct(_nfc, as_string_array(values))


def clean_whitespace(values: StringColumn) -> pa.Array:
    """Trim and collapse whitespace (NBSP, tabs, controls) to one space; empty -> null.

    An all-blank cell means "no value", so it becomes null rather than ``""``:
    downstream code then has a single notion of missing.
    """
    return per_distinct(_clean_whitespace, as_string_array(values))


def clean_text(values: StringColumn) -> pa.Array:
    """``clean_whitespace(nfc(values))`` in one pass over the distinct values: how a
    name is stored once normalised."""
    return per_distinct(lambda v: _clean_whitespace(_nfc(v)), as_string_array(values))


def clean_text_counting_nfc(values: StringColumn) -> tuple[pa.Array, int]:
    """``clean_text(values)`` and how many non-null values were not NFC as given, from
    the same NFC pass over the distinct values (the export gate's raw-name form check
    would otherwise put every name in NFC a second time)."""
    distinct, codes = distinct_codes(as_string_array(values))
    composed = _nfc(distinct)
    changed = as_bool_mask(pc.not_equal(distinct, composed))
    not_nfc = int(changed[codes[codes >= 0]].sum()) if changed.any() else 0
    return take_codes(_clean_whitespace(composed), codes), not_nfc


def fold_diacritics(values: StringColumn) -> pa.Array:
    """Drop every diacritic, mapping Đ/đ to D/d explicitly (NFD leaves them intact).

    Result is NFC; for Vietnamese text it is plain ASCII.
    """
    return per_distinct(_fold_diacritics, as_string_array(values))


def name_key(values: StringColumn) -> pa.Array:
    """Comparison key of a personal name: folded, lower case, words split by single spaces.

    Exports disagree on case, diacritics, Unicode form, tone placement and
    punctuation, none of which tells two people apart, so the key drops them
    all ("Nguyễn-Văn  AN" -> "nguyen van an"). Tone placement (Hòa/Hoà) vanishes
    with the diacritics. i/y: a word made of one initial consonant (or ``qu``)
    and ``y`` ends in ``i`` (Lý/Lí -> "li", Mỹ/Mĩ -> "mi", Quý/Quí -> "qui",
    Thy -> "thi"); a ``y`` in a rhyme is kept, because there i and y spell
    different names (Mai ≠ Mây/May, Huy, Duy, Thủy), and so is a misspelt word
    ("Thhy" stays one edit from "thuy"). Letters of other scripts are kept.
    A name with no letter or digit at all has a null key.
    """
    return per_distinct(_name_key, as_string_array(values))


def display_name(values: StringColumn) -> pa.Array:
    """NFC, single-spaced, each word capitalised: one spelling of a name for reports."""
    return per_distinct(lambda v: pc.utf8_title(_clean_whitespace(_nfc(v))),
                        as_string_array(values))


# --- The kernels, over whichever values the public functions hand them (each value
# independently, null to null): names repeat, so they usually see each distinct value once.
def _nfc(values: pa.Array) -> pa.Array:
    return pc.utf8_normalize(values, form="NFC")


def _clean_whitespace(values: pa.Array) -> pa.Array:
    # Most values are clean already: find the others with one cheap match and clean only them.
    dirty = pc.fill_null(pc.match_substring_regex(values, _NEEDS_CLEANING), False)
    if not pc.any(dirty).as_py():
        return values
    text = pc.replace_substring_regex(values.filter(dirty), _INVISIBLE, "")
    text = pc.utf8_trim_whitespace(pc.replace_substring_regex(text, _SPACES, " "))
    return pc.replace_with_mask(values, dirty, pc.if_else(pc.equal(text, ""), _NULL, text))


def _fold_diacritics(values: pa.Array) -> pa.Array:
    stripped = pc.replace_substring_regex(pc.utf8_normalize(values, form="NFD"), r"\p{Mn}+", "")
    for letter, plain in _STROKED_D:
        stripped = pc.replace_substring(stripped, letter, plain)
    # Vietnamese text is ASCII by now, and ASCII is its own NFC: compose only the rest.
    other = pc.invert(pc.fill_null(pc.string_is_ascii(stripped), True))
    if not pc.any(other).as_py():
        return stripped
    return pc.replace_with_mask(stripped, other,
                                pc.utf8_normalize(stripped.filter(other), form="NFC"))


# Below this many values a name key is computed on the whole values (no word split).
_WORDS_FROM = 256


def _name_key(values: pa.Array) -> pa.Array:
    """:func:`name_key` of each value, computed once per distinct word.

    Every step of the key works inside a word: folding, lower case, punctuation to
    spaces, i/y (``\\b``-bounded), and whitespace is punctuation. So the key of a
    name is its whitespace-separated words' keys, the empty ones left out, joined by
    single spaces; names share a few thousand words, so the Unicode work (NFD, the
    ``\\p{..}`` classes) runs over those, not over every name
    (``tests/test_normalize.py`` holds this to the whole-value computation)."""
    if len(values) < _WORDS_FROM:
        return _name_key_of_values(values)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    words = pc.utf8_split_whitespace(values)
    encoded = pc.dictionary_encode(pc.list_flatten(words))
    word_keys = pc.take(pc.fill_null(_name_key_of_values(encoded.dictionary), ""),
                        encoded.indices)
    kept = pc.not_equal(word_keys, "")
    rows = pc.list_parent_indices(words).to_numpy().astype(np.int64)[as_bool_mask(kept)]
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(np.bincount(rows, minlength=len(values)), out=offsets[1:])
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets),
                                                     word_keys.filter(kept)), " ")
    return pc.if_else(pc.or_kleene(pc.is_null(values), pc.equal(joined, "")), _NULL, joined)


def _name_key_of_values(values: pa.Array) -> pa.Array:
    folded = pc.utf8_lower(_fold_diacritics(values))
    words = pc.replace_substring_regex(folded, _PUNCTUATION, " ")
    words = pc.replace_substring_regex(words, _CONSONANT_Y, r"\1i")
    # Every run of non-letters is one space by now: trimming is all that is left to clean.
    words = pc.utf8_trim(words, characters=" ")
    return pc.if_else(pc.equal(words, ""), _NULL, words)
