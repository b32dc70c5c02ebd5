"""Comparing personal names as readable levels, for whole columns at once.

Vietnamese names are family, middle name(s), given name. Exports differ in
case, diacritics (MobiFone-like files have none), Unicode form (NFD),
family/given order, the optional middle names Văn (male) and Thị (female),
and regional surname spellings (Huỳnh = Hoàng, Võ = Vũ). A comparison must
accept all of those and still reject a different person's name, so each pair
gets the *strongest* level that holds, and the level, not a bare number, is
what decisions and explanations use.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein

from matching.normalize import StringColumn, as_string_array, clean_whitespace, name_key, nfc

OPTIONAL_MIDDLE_NAMES: tuple[str, ...] = ("van", "thi")
# Regional spellings of one surname, in name-key form (folded, lower case).
SURNAME_EQUIVALENTS: dict[str, str] = {"huynh": "hoang", "vo": "vu"}


class NameLevel(IntEnum):
    EXACT = 8
    FOLDED = 7
    REORDERED = 6
    DROPPED_MIDDLE = 5
    SURNAME_VARIANT = 4
    ONE_TYPO = 3
    PARTIAL = 2
    DIFFERENT = 1
    MISSING = 0


NAME_LEVEL_LABELS: dict[NameLevel, str] = {
    NameLevel.EXACT: "identical",
    NameLevel.FOLDED: "equal without diacritics / tone placement",
    NameLevel.REORDERED: "same words, family and given name in another order",
    NameLevel.DROPPED_MIDDLE: "equal once Văn/Thị is dropped",
    NameLevel.SURNAME_VARIANT: "equal up to a regional surname spelling (Huỳnh/Hoàng, Võ/Vũ)",
    NameLevel.ONE_TYPO: "one typing error apart",
    NameLevel.PARTIAL: "partly similar (needs a person to decide)",
    NameLevel.DIFFERENT: "different name",
    NameLevel.MISSING: "missing",
}


@dataclass(frozen=True)
class NameComparisonSettings:
    """Thresholds of the name comparison (documented in docs/matching.md)."""

    # Edits allowed between canonical keys for ONE_TYPO.
    max_typo_edits: int = 1
    # rapidfuzz ratio (0-100) of canonical keys from which a name is PARTIAL.
    partial_threshold: float = 90.0


@dataclass(frozen=True)
class NameComparison:
    level: np.ndarray  # int8 NameLevel values
    score: np.ndarray  # float64 0-100 similarity of canonical keys, NaN when missing


def _sort_tokens(keys: pa.Array) -> pa.Array:
    """Sort the words of each key alphabetically (vectorised through a table sort)."""
    tokens = pc.split_pattern(keys, " ")
    flat = pc.list_flatten(tokens)
    if len(flat) == 0:
        return keys
    order = pa.table({"row": pc.list_parent_indices(tokens), "token": flat}).sort_by(
        [("row", "ascending"), ("token", "ascending")])
    offsets = tokens.offsets if isinstance(tokens, pa.ListArray) else pa.array(
        [0], pa.int32())
    rebuilt = pa.ListArray.from_arrays(offsets, order["token"].combine_chunks(),
                                       mask=pc.is_null(keys))
    return pc.binary_join(rebuilt, " ")


def _drop_optional_middles(keys: pa.Array) -> pa.Array:
    """Drop Văn/Thị where they are not the last word: as the last word they are a given
    name (Vân and Thi fold to the same letters), not an optional middle name."""
    pattern = r"\b(" + "|".join(OPTIONAL_MIDDLE_NAMES) + r") "
    return clean_whitespace(pc.replace_substring_regex(keys, pattern, " "))


def _map_surname_variants(keys: pa.Array) -> pa.Array:
    for variant, canonical in SURNAME_EQUIVALENTS.items():
        keys = pc.replace_substring_regex(keys, rf"\b{variant}\b", canonical)
    return keys


def _unsorted_canonical_key(values: StringColumn) -> pa.Array:
    keys = name_key(values)
    # A name made only of optional middles keeps its words.
    dropped = pc.coalesce(_drop_optional_middles(keys), keys)
    return _map_surname_variants(dropped)


def canonical_name_key(values: StringColumn) -> pa.Array:
    """The most tolerant key: folded, Văn/Thị dropped, surname variants mapped, words sorted."""
    return _sort_tokens(_unsorted_canonical_key(values))


def surname_key(values: StringColumn) -> pa.Array:
    """First word of the name key, with regional spellings unified (blocking key)."""
    first = pc.list_element(pc.split_pattern(name_key(values), " ", max_splits=1), 0)
    return _map_surname_variants(first)


def given_name_key(values: StringColumn) -> pa.Array:
    """Last word of the name key: the given name in Vietnamese order (best effort when
    an export swapped family and given name)."""
    return pc.utf8_slice_codeunits(
        pc.replace_substring_regex(name_key(values), r"^.* ", ""), 0, 64)


def _equal(left: pa.Array, right: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.equal(left, right), False)
                      .to_numpy(zero_copy_only=False), dtype=bool)


def _as_list(values: pa.Array) -> list[str]:
    return pc.fill_null(values, "").to_pylist()


def compare_names(left: StringColumn, right: StringColumn,
                  settings: NameComparisonSettings | None = None) -> NameComparison:
    """Pairwise level and score of two equal-length name columns."""
    settings = settings or NameComparisonSettings()
    left, right = as_string_array(left), as_string_array(right)
    if len(left) != len(right):
        raise ValueError(f"name columns differ in length: {len(left)} != {len(right)}")
    n = len(left)
    level = np.full(n, NameLevel.DIFFERENT, dtype=np.int8)
    score = np.full(n, np.nan)
    if n == 0:
        return NameComparison(level, score)

    def exact_key(v: pa.Array) -> pa.Array:
        return pc.utf8_lower(clean_whitespace(nfc(v)))

    lk, rk = name_key(left), name_key(right)
    missing = np.asarray(pc.or_(pc.is_null(lk), pc.is_null(rk))
                         .to_numpy(zero_copy_only=False), dtype=bool)
    l_sorted, r_sorted = _sort_tokens(lk), _sort_tokens(rk)
    l_dropped, r_dropped = (_sort_tokens(pc.coalesce(_drop_optional_middles(k), k))
                            for k in (lk, rk))
    l_canon, r_canon = canonical_name_key(left), canonical_name_key(right)

    # A typo can move a word in the sorted key ("Trqn Trọng Hải"), so distances are
    # taken on the sorted and the original-order canonical keys, the smaller wins.
    l_list, r_list = _as_list(l_canon), _as_list(r_canon)
    l_seq, r_seq = _as_list(_unsorted_canonical_key(left)), _as_list(_unsorted_canonical_key(right))
    distance = np.minimum(
        process.cpdist(l_list, r_list, scorer=Levenshtein.distance, workers=-1),
        process.cpdist(l_seq, r_seq, scorer=Levenshtein.distance, workers=-1))
    similarity = np.maximum(
        process.cpdist(l_list, r_list, scorer=fuzz.ratio, workers=-1),
        process.cpdist(l_seq, r_seq, scorer=fuzz.ratio, workers=-1))
    subset = process.cpdist(l_list, r_list, scorer=fuzz.token_set_ratio, workers=-1)
    score[:] = similarity
    partial = (similarity >= settings.partial_threshold) | (subset >= 100)

    # From weakest to strongest, so the strongest level that holds is kept.
    checks = [
        (NameLevel.PARTIAL, partial),
        (NameLevel.ONE_TYPO, distance <= settings.max_typo_edits),
        (NameLevel.SURNAME_VARIANT, _equal(l_canon, r_canon)),
        (NameLevel.DROPPED_MIDDLE, _equal(l_dropped, r_dropped)),
        (NameLevel.REORDERED, _equal(l_sorted, r_sorted)),
        (NameLevel.FOLDED, _equal(lk, rk)),
        (NameLevel.EXACT, _equal(exact_key(left), exact_key(right))),
    ]
    for value, mask in checks:
        level[mask] = value
    level[missing] = NameLevel.MISSING
    score[missing] = np.nan
    return NameComparison(level=level, score=score)
