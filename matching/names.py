"""Comparing personal names as readable levels, for whole columns at once.

Vietnamese names are family, middle name(s), given name. Exports differ in
case, diacritics (some files have none), Unicode form (NFD), tone placement,
family/given order, the optional middle names Văn (male) and Thị (female),
and regional surname spellings (Huỳnh = Hoàng, Võ = Vũ). A comparison must
accept all of those and still reject a different person's name, so each pair
gets the *strongest* level that holds, and the level, not a bare number, is
what decisions and explanations use (shared/domain/vietnam.md §4).

Everything works on the words of a name as one flat Arrow array plus the row
each word belongs to, so dropping, mapping and sorting words are column
operations, never a Python loop over rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein

from matching.columns import as_bool_mask
from matching.normalize import StringColumn, as_string_array, clean_whitespace, name_key, nfc

# Optional middle names, in name-key form (folded: "van" is Văn, "thi" is Thị).
OPTIONAL_MIDDLE_NAMES: tuple[str, ...] = ("van", "thi")
# Regional spellings of one surname, in name-key form: variant -> canonical.
SURNAME_EQUIVALENTS: dict[str, str] = {"huynh": "hoang", "vo": "vu"}


class NameLevel(IntEnum):
    """How well two names agree; higher is stronger. A pair gets the first that holds."""

    EXACT = 8  # same text up to Unicode form, case and spacing
    FOLDED = 7  # same name key: diacritics, tone placement, i/y, punctuation ignored
    REORDERED = 6  # same words in another order (family/given swapped)
    DROPPED_MIDDLE = 5  # equal once Văn/Thị are dropped from both (any order)
    SURNAME_VARIANT = 4  # equal once Huỳnh -> Hoàng, Võ -> Vũ
    ONE_TYPO = 3  # canonical keys within `max_typo_edits` edits
    PARTIAL = 2  # token-set similarity >= `partial_threshold`: for a person to decide
    DIFFERENT = 1
    MISSING = 0  # either side null, blank or without a single letter/digit


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
    """Thresholds of the name comparison (docs/matching.md, `matching.name_*` settings).

    max_typo_edits: Levenshtein edits tolerated between canonical keys for
        ONE_TYPO. 1 catches a mistyped letter; more starts to merge different
        short given names (An/Anh is already one edit).
    partial_threshold: rapidfuzz ``token_set_ratio`` (0-100) of canonical keys
        from which a name that matches at no stronger level is PARTIAL (sent to
        review) rather than DIFFERENT. One name's words being a subset of the
        other's scores 100. At 80, two people sharing only the surname Nguyễn
        with short given names ("An" / "Hoa": 84) already reach it, so the
        default is 90.
    """

    max_typo_edits: int = 1
    partial_threshold: float = 90.0

    def __post_init__(self) -> None:
        if self.max_typo_edits < 0:
            raise ValueError(f"max_typo_edits must be >= 0, got {self.max_typo_edits}")
        if not 0 <= self.partial_threshold <= 100:
            raise ValueError(f"partial_threshold must be in 0..100, got {self.partial_threshold}")


@dataclass(frozen=True)
class NameComparison:
    """Per row of a pairwise comparison."""

    level: np.ndarray  # int8, NameLevel values
    score: np.ndarray  # float64 0-100 fuzz.ratio of canonical keys, NaN when MISSING


# --- Words as flat columns -------------------------------------------------------------
@dataclass(frozen=True)
class _Words:
    """The words of ``size`` names: ``text[i]`` belongs to row ``row[i]``, rows ascending."""

    text: pa.Array
    row: np.ndarray  # int64, non-decreasing
    size: int
    null: np.ndarray  # bool per name: no key at all

    @classmethod
    def split(cls, keys: pa.Array) -> _Words:
        lists = pc.split_pattern(keys, " ")
        rows = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
        return cls(text=pc.list_flatten(lists), row=np.asarray(rows, dtype=np.int64),
                   size=len(keys), null=as_bool_mask(pc.is_null(keys)))

    def _with(self, text: pa.Array, row: np.ndarray) -> _Words:
        return _Words(text=text, row=row, size=self.size, null=self.null)

    def join(self) -> pa.Array:
        """Back to one string per name (null where the name had no key)."""
        counts = np.bincount(self.row, minlength=self.size)
        offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]), pa.int32())
        lists = pa.ListArray.from_arrays(offsets, self.text, mask=pa.array(self.null))
        return pc.binary_join(lists, " ")

    def sort(self) -> _Words:
        """Words of each name in alphabetical order: an order-free key."""
        if len(self.text) == 0:
            return self
        order = pc.sort_indices(pa.table({"row": self.row, "text": self.text}),
                                sort_keys=[("row", "ascending"), ("text", "ascending")])
        return self._with(pc.take(self.text, order), self.row)  # rows stay non-decreasing

    def drop_optional_middles(self) -> _Words:
        """Drop Văn/Thị unless it is the name's last word.

        As the last word "van"/"thi" is the given name (Vân, Thi fold to the
        same letters as Văn, Thị): dropping it would make "Nguyễn Thị Vân" and
        "Nguyễn Văn Thi" both plain "nguyen". The cost: in an order where the
        middle name comes last ("An Nguyễn Văn"), Văn is kept, so that form only
        matches the full name (REORDERED), not "Nguyễn An".
        """
        keep = ~self._droppable()
        return self._with(pc.filter(self.text, pa.array(keep)), self.row[keep])

    def dropped_middles(self) -> np.ndarray:
        """Per name, a bit set of the optional middles that would be dropped (bit i:
        ``OPTIONAL_MIDDLE_NAMES[i]``); tells a Văn (male) from a Thị (female) name."""
        bits = np.zeros(self.size, dtype=np.int64)
        droppable = self._droppable()
        index = pc.index_in(self.text, value_set=pa.array(OPTIONAL_MIDDLE_NAMES))
        index = np.asarray(pc.fill_null(index, 0).to_numpy(zero_copy_only=False))
        np.bitwise_or.at(bits, self.row[droppable], 1 << index[droppable])
        return bits

    def _droppable(self) -> np.ndarray:
        last = np.ones(len(self.row), dtype=bool)
        last[:-1] = self.row[1:] != self.row[:-1]
        optional = as_bool_mask(pc.is_in(self.text, value_set=pa.array(OPTIONAL_MIDDLE_NAMES)))
        return optional & ~last

    def map_surname_variants(self) -> _Words:
        """Huỳnh -> Hoàng, Võ -> Vũ in every position, since the order may be swapped."""
        text = self.text
        for variant, canonical in SURNAME_EQUIVALENTS.items():
            text = pc.if_else(pc.equal(text, variant), canonical, text)
        return self._with(text, self.row)


# --- Public keys -----------------------------------------------------------------------
def canonical_name_key(values: StringColumn) -> pa.Array:
    """The most tolerant exact key: name key, Văn/Thị dropped, surname variants mapped,
    words sorted. Two names at level SURNAME_VARIANT or stronger share it, so it is
    a safe blocking key for candidate search."""
    return _Words.split(name_key(values)).drop_optional_middles().map_surname_variants() \
        .sort().join()


def surname_key(values: StringColumn) -> pa.Array:
    """First word of the name key with regional spellings unified (Huỳnh -> "hoang").

    The family name in Vietnamese order; best effort for exports that put it last.
    """
    first = pc.replace_substring_regex(name_key(values), r" .*$", "")
    for variant, canonical in SURNAME_EQUIVALENTS.items():
        first = pc.if_else(pc.equal(first, variant), canonical, first)
    return first


def given_name_key(values: StringColumn) -> pa.Array:
    """Last word of the name key: the given name in Vietnamese order.

    Best effort: where an export swapped family and given name ("Văn An Nguyễn")
    this is the family name; nothing in a single name tells the orders apart.
    """
    return pc.replace_substring_regex(name_key(values), r"^.* ", "")


# --- Comparison ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Keys:
    """One side's keys, from strictest to most tolerant."""

    exact: pa.Array  # NFC, single spaces, lower case
    folded: pa.Array  # name key
    reordered: pa.Array  # name key, words sorted
    dropped: pa.Array  # Văn/Thị dropped, words sorted
    sequence: pa.Array  # canonical words in written order
    canonical: pa.Array  # canonical words sorted
    middles: np.ndarray  # bit set of the Văn/Thị dropped, per name
    kept_sequence: pa.Array  # surname variants mapped, Văn/Thị kept, written order
    kept_canonical: pa.Array  # the same, words sorted

    @classmethod
    def of(cls, values: pa.Array) -> _Keys:
        folded = name_key(values)
        words = _Words.split(folded)
        dropped = words.drop_optional_middles()
        canonical = dropped.map_surname_variants()
        kept = words.map_surname_variants()
        reordered = words.sort().join()
        return cls(
            exact=pc.utf8_lower(clean_whitespace(nfc(values))),
            folded=folded,
            reordered=reordered,
            dropped=dropped.sort().join(),
            sequence=canonical.join(),
            canonical=canonical.sort().join(),
            middles=words.dropped_middles(),
            kept_sequence=kept.join(),
            kept_canonical=kept.sort().join(),
        )

    def keeping_middles(self, rows: np.ndarray) -> _Keys:
        """These keys with Văn/Thị kept (not dropped) in ``rows``."""
        mask = pa.array(rows)
        return replace(
            self,
            dropped=pc.if_else(mask, self.reordered, self.dropped),
            sequence=pc.if_else(mask, self.kept_sequence, self.sequence),
            canonical=pc.if_else(mask, self.kept_canonical, self.canonical),
        )


def _equal(left: pa.Array, right: pa.Array) -> np.ndarray:
    return as_bool_mask(pc.equal(left, right))


def _texts(values: pa.Array) -> np.ndarray:
    """Strings for rapidfuzz, which rejects None (missing rows are masked afterwards)."""
    return pc.fill_null(values, "").to_numpy(zero_copy_only=False)


def _pairwise(left: pa.Array, right: pa.Array, scorer: object, **kwargs: object) -> np.ndarray:
    return process.cpdist(_texts(left), _texts(right), scorer=scorer, workers=-1, **kwargs)


def compare_names(left: StringColumn, right: StringColumn,
                  settings: NameComparisonSettings | None = None) -> NameComparison:
    """Level and score of each pair ``(left[i], right[i])`` of two equal-length columns.

    Levels are tried strongest first on ever more tolerant keys (see
    :class:`NameLevel`); ONE_TYPO takes the smallest edit distance of the
    canonical keys (sorted and in written order) and of the plain name keys.
    One exception to "Văn/Thị are optional": where one name has a dropped Văn
    and the other a dropped Thị, both are kept in every key, since the two
    mark different sexes. ``score`` is rapidfuzz ``fuzz.ratio`` (normalised
    Indel similarity x 100) of the canonical keys, the better of sorted and
    written order: 100 exactly when the canonical keys are equal.
    """
    settings = settings or NameComparisonSettings()
    left, right = as_string_array(left), as_string_array(right)
    if len(left) != len(right):
        raise ValueError(f"name columns differ in length: {len(left)} != {len(right)}")
    n = len(left)
    level = np.full(n, NameLevel.DIFFERENT, dtype=np.int8)
    score = np.full(n, np.nan)
    if n == 0:
        return NameComparison(level=level, score=score)

    lk, rk = _Keys.of(left), _Keys.of(right)
    missing = as_bool_mask(pc.or_kleene(pc.is_null(lk.folded), pc.is_null(rk.folded)))
    # Văn marks a man and Thị a woman: a Văn facing a Thị was not "dropped", it is
    # another person ("Nguyễn Văn Anh" / "Nguyễn Thị Anh"), so there they stay.
    conflict = (lk.middles != 0) & (rk.middles != 0) & (lk.middles != rk.middles)
    if conflict.any():
        lk, rk = lk.keeping_middles(conflict), rk.keeping_middles(conflict)

    # A typo can move a word in the sorted key ("Trqn Trọng Hải" sorts "trqn" after
    # "trong"), or hit Văn/Thị itself ("Vsn" is no longer dropped), so the written-order
    # canonical and plain name keys are measured too; the closest pair counts.
    distance = np.minimum.reduce([
        _pairwise(lk_key, rk_key, Levenshtein.distance, score_cutoff=settings.max_typo_edits)
        for lk_key, rk_key in ((lk.canonical, rk.canonical), (lk.sequence, rk.sequence),
                               (lk.folded, rk.folded))
    ])
    score[:] = np.maximum(
        _pairwise(lk.canonical, rk.canonical, fuzz.ratio, dtype=np.float64),
        _pairwise(lk.sequence, rk.sequence, fuzz.ratio, dtype=np.float64))
    token_set = _pairwise(lk.canonical, rk.canonical, fuzz.token_set_ratio, dtype=np.float64)

    # Weakest first, so each row ends with the strongest level that holds.
    checks = (
        (NameLevel.PARTIAL, token_set >= settings.partial_threshold),
        (NameLevel.ONE_TYPO, distance <= settings.max_typo_edits),
        (NameLevel.SURNAME_VARIANT, _equal(lk.canonical, rk.canonical)),
        (NameLevel.DROPPED_MIDDLE, _equal(lk.dropped, rk.dropped)),
        (NameLevel.REORDERED, _equal(lk.reordered, rk.reordered)),
        (NameLevel.FOLDED, _equal(lk.folded, rk.folded)),
        (NameLevel.EXACT, _equal(lk.exact, rk.exact)),
    )
    for value, holds in checks:
        level[holds] = value
    level[missing] = NameLevel.MISSING
    score[missing] = np.nan
    return NameComparison(level=level, score=score)
