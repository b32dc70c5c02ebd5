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

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import fuzz, process
from rapidfuzz.distance import Levenshtein

from matching.columns import as_bool_mask, distinct_codes, per_distinct, take_codes
from matching.normalize import (
    StringColumn,
    _clean_whitespace,
    _name_key,
    _nfc,
    as_string_array,
)

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
        return self.sort_keeping(None)[0]

    def sort_keeping(self, keep: np.ndarray | None) -> tuple[_Words, _Words]:
        """:meth:`sort`, and the same sorted words where ``keep`` (a mask over the words)
        holds: equal to ``self.filter(keep).sort()`` (a filter keeps each name's order,
        equal words are interchangeable), one sort for both."""
        if len(self.text) == 0:
            return self, self
        order = pc.sort_indices(pa.table({"row": self.row, "text": self.text}),
                                sort_keys=[("row", "ascending"), ("text", "ascending")])
        ordered = self._with(pc.take(self.text, order), self.row)  # rows stay non-decreasing
        if keep is None:
            return ordered, ordered
        kept = np.asarray(keep, dtype=bool)[np.asarray(order.to_numpy(), dtype=np.int64)]
        return ordered, ordered._with(pc.filter(ordered.text, pa.array(kept)),
                                      ordered.row[kept])

    def drop_optional_middles(self) -> _Words:
        """Drop Văn/Thị unless it is the name's last word.

        As the last word "van"/"thi" is the given name (Vân, Thi fold to the
        same letters as Văn, Thị): dropping it would make "Nguyễn Thị Vân" and
        "Nguyễn Văn Thi" both plain "nguyen". The cost: in an order where the
        middle name comes last ("An Nguyễn Văn"), Văn is kept, so that form only
        matches the full name (REORDERED), not "Nguyễn An"; and a reordered name
        whose Vân/Thi moves away from the end ("Thị Vân Nguyễn") is REORDERED but
        has another canonical key, so the candidate search finds it only through
        its other blocking keys. No order-free rule keeps both "Trần Văn Thi" ~
        "Trần Thi" and "Trần Thị Vân" ~ "Trần Vân" at DROPPED_MIDDLE.
        """
        return self._kept(~self._droppable())

    def _kept(self, keep: np.ndarray) -> _Words:
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
# Each is computed once per distinct name (``per_distinct``): a million rows carry a
# hundred-odd thousand distinct names.
def _sequence_from_key(folded: pa.Array) -> pa.Array:
    return _Words.split(folded).drop_optional_middles().map_surname_variants().join()


def _canonical_from_key(folded: pa.Array) -> pa.Array:
    return _Words.split(folded).drop_optional_middles().map_surname_variants().sort().join()


def _surname_from_key(folded: pa.Array) -> pa.Array:
    first = pc.replace_substring_regex(folded, r" .*$", "")
    for variant, canonical in SURNAME_EQUIVALENTS.items():
        first = pc.if_else(pc.equal(first, variant), canonical, first)
    return first


def _given_from_key(folded: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(folded, r"^.* ", "")


def canonical_name_key(values: StringColumn) -> pa.Array:
    """The most tolerant exact key: name key, Văn/Thị dropped, surname variants mapped,
    words sorted. Two names at level SURNAME_VARIANT or stronger share it, so it is
    a safe blocking key for candidate search."""
    return per_distinct(lambda v: _canonical_from_key(_name_key(v)), as_string_array(values))


def sequence_name_key(values: StringColumn) -> pa.Array:
    """The canonical words in written order (the key a typo is measured on, besides the
    sorted one: a typo can move a word in the sorted key)."""
    return per_distinct(lambda v: _sequence_from_key(_name_key(v)), as_string_array(values))


def sequence_and_canonical_keys(values: StringColumn) -> tuple[pa.Array, pa.Array]:
    """:func:`sequence_name_key` and :func:`canonical_name_key` at once, from one name key
    per distinct name (a registry needs both for every citizen)."""
    distinct, codes = distinct_codes(as_string_array(values))
    folded = _name_key(distinct)
    return take_codes(_sequence_from_key(folded), codes), \
        take_codes(_canonical_from_key(folded), codes)


def surname_key(values: StringColumn) -> pa.Array:
    """First word of the name key with regional spellings unified (Huỳnh -> "hoang").

    The family name in Vietnamese order; best effort for exports that put it last.
    """
    return per_distinct(lambda v: _surname_from_key(_name_key(v)), as_string_array(values))


def given_name_key(values: StringColumn) -> pa.Array:
    """Last word of the name key: the given name in Vietnamese order.

    Best effort: where an export swapped family and given name ("Văn An Nguyễn")
    this is the family name; nothing in a single name tells the orders apart.
    """
    return per_distinct(lambda v: _given_from_key(_name_key(v)), as_string_array(values))


@dataclass(frozen=True)
class BlockingNameKeys:
    """Per row: given name, surname and canonical key (see the functions above)."""

    given: pa.Array
    surname: pa.Array
    canonical: pa.Array


def blocking_name_keys(values: StringColumn) -> BlockingNameKeys:
    """:func:`given_name_key`, :func:`surname_key` and :func:`canonical_name_key` at once,
    from one name key per distinct name."""
    distinct, codes = distinct_codes(as_string_array(values))
    folded = _name_key(distinct)
    return BlockingNameKeys(
        given=take_codes(_given_from_key(folded), codes),
        surname=take_codes(_surname_from_key(folded), codes),
        canonical=take_codes(_canonical_from_key(folded), codes),
    )


# --- Comparison ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Keys:
    """One side's keys, from strictest to most tolerant (one entry per distinct name)."""

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
        """The keys of distinct, non-null names (remembered: see ``_KeyMemo``)."""
        return _MEMO.keys(values)

    @classmethod
    def compute(cls, values: pa.Array) -> _Keys:
        folded = _name_key(values)
        words = _Words.split(folded)
        keep = ~words._droppable()  # Văn/Thị dropped (mapping surnames leaves them be)
        kept = words.map_surname_variants()
        # Two sorts for the four sorted keys: dropping words after sorting is the same.
        reordered, dropped = words.sort_keeping(keep)
        kept_sorted, canonical_sorted = kept.sort_keeping(keep)
        return cls(
            exact=pc.utf8_lower(_clean_whitespace(_nfc(values))),
            folded=folded,
            reordered=reordered.join(),
            dropped=dropped.join(),
            sequence=kept._kept(keep).join(),
            canonical=canonical_sorted.join(),
            middles=words.dropped_middles(),
            kept_sequence=kept.join(),
            kept_canonical=kept_sorted.join(),
        )


_KEY_FIELDS = ("exact", "folded", "reordered", "dropped", "sequence", "canonical",
               "kept_sequence", "kept_canonical")


class _KeyMemo:
    """The keys of every name met so far in this process, so that each distinct name is
    keyed once per run however many shards and steps compare it (the keys are a pure
    function of the name). Bounded: past ``limit`` names it starts afresh."""

    def __init__(self, limit: int = 2_000_000) -> None:
        self.limit = limit
        self.names: pa.Array | None = None
        self.table: pa.Table | None = None

    def keys(self, names: pa.Array) -> _Keys:
        if self.names is None or len(self.names) + len(names) > self.limit:
            self.names, self.table = names.slice(0, 0), None
        at = np.asarray(pc.fill_null(pc.index_in(names, value_set=self.names), -1)
                        .to_numpy(), dtype=np.int64)
        new = at < 0
        if new.any():
            fresh = names.filter(pa.array(new))
            keys = _Keys.compute(fresh)
            table = pa.table({**{f: getattr(keys, f) for f in _KEY_FIELDS},
                              "middles": pa.array(keys.middles, pa.int64())})
            at[new] = len(self.names) + np.arange(len(fresh))
            self.names = pa.concat_arrays([self.names, fresh])
            self.table = table if self.table is None else pa.concat_tables([self.table, table])
        assert self.table is not None
        found = self.table.take(pa.array(at))
        return _Keys(**{f: found[f].combine_chunks() for f in _KEY_FIELDS},
                     middles=np.asarray(found["middles"].to_numpy(), dtype=np.int64))


_MEMO = _KeyMemo()


def _texts(values: pa.Array) -> np.ndarray:
    """``values`` as an object array of Python strings for rapidfuzz (which rejects
    None: null is ""), to be indexed per pair."""
    return np.array(pc.fill_null(values, "").to_pylist(), dtype=object)


def _lengths(values: pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(pc.utf8_length(values), 0).to_numpy(), dtype=np.int64)


def _pairwise(left: np.ndarray, right: np.ndarray, scorer: object, **kwargs: object
              ) -> np.ndarray:
    # (rapidfuzz reads a list of str faster than an object array)
    return process.cpdist(left.tolist(), right.tolist(), scorer=scorer, workers=-1, **kwargs)


# Words per name the token-set bound compares (a name with more is always scored).
_BOUND_WORDS = 8
# Character classes the token-set bound counts: a-z, the space, anything else.
_BOUND_CLASSES = 28


@dataclass(frozen=True)
class _TokenSetBound:
    """What bounds rapidfuzz ``token_set_ratio`` of two name keys from above, per key:
    its words as integer codes (padded, ``-1``), their lengths, its length and how many
    of each character class it holds.

    With A, B the keys' word sets, I their common words, s the length of I joined by
    spaces and X, Y the keys' lengths (A and B joined), the ratio is the largest of
    2·LCS/(X+Y) (rapidfuzz compares "I A-I" with "I B-I", which hold A's and B's
    characters) and, when I is not empty, 2s/(s+X) and 2s/(s+Y) (100 when one set holds
    the other). The LCS is at most the characters the keys have in common, counted per
    class, so the bound is exact: a pair under it is under the threshold. A key with a
    repeated word (its word set is shorter than the key), more than ``_BOUND_WORDS``
    words or more than 255 characters of a class is never bounded (always scored)."""

    words: np.ndarray  # (keys, widest key's words) int32 codes, -1 past the last word
    word_lengths: np.ndarray  # (keys, widest key's words) int32, 0 past the last word
    length: np.ndarray  # int64 characters of the key
    classes: np.ndarray  # (keys, _BOUND_CLASSES) uint8 characters per class
    unbounded: np.ndarray  # bool: always scored

    @classmethod
    def of(cls, keys: pa.Array, lengths: np.ndarray) -> _TokenSetBound:
        """The bound's parts of non-null name keys (``lengths``: their lengths)."""
        n = len(keys)
        lists = pc.split_pattern(keys, " ")
        owner = np.asarray(pc.list_parent_indices(lists), np.int64)
        encoded = pc.dictionary_encode(pc.list_flatten(lists))
        code = np.asarray(encoded.indices, np.int64)
        code_length = np.asarray(pc.utf8_length(encoded.dictionary), np.int64)
        count = np.bincount(owner, minlength=n)
        first = np.concatenate([[0], np.cumsum(count)[:-1]])
        slot = np.arange(len(owner)) - first[owner]
        fits = slot < _BOUND_WORDS
        words = np.full((n, _BOUND_WORDS), -1, np.int32)
        words[owner[fits], slot[fits]] = code[fits]
        word_lengths = np.zeros((n, _BOUND_WORDS), np.int32)
        word_lengths[owner[fits], slot[fits]] = code_length[code[fits]]
        unbounded = (count > _BOUND_WORDS) | (count == 0)
        width = int(min(count.max(initial=1), _BOUND_WORDS))
        words, word_lengths = words[:, :width], word_lengths[:, :width]
        # A repeated word: two equal codes in one key (compared slot by slot).
        for i in range(1, width):
            for j in range(i):
                unbounded |= (words[:, i] >= 0) & (words[:, i] == words[:, j])
        classes, unbounded = cls._classes(keys, lengths, unbounded)
        return cls(words=words, word_lengths=word_lengths,
                   length=np.asarray(lengths, np.int64), classes=classes,
                   unbounded=unbounded)

    @staticmethod
    def _classes(keys: pa.Array, lengths: np.ndarray, unbounded: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Characters per class of each key (from its UTF-8 bytes: a-z and the space are
        one byte, never part of another character; every other byte is counted in the
        last class, then that class set to the key's other characters), and
        ``unbounded`` with the keys longer than 255 characters (a class could overflow)."""
        n = len(keys)
        keys = keys.cast(pa.string())
        _, offsets_buffer, data_buffer = keys.buffers()
        offsets = np.frombuffer(offsets_buffer, np.int32)[keys.offset:keys.offset + n + 1]
        data = np.frombuffer(data_buffer, np.uint8)[offsets[0]:offsets[-1]] \
            if data_buffer is not None else np.empty(0, np.uint8)
        other = _BOUND_CLASSES - 1
        byte_class = np.full(256, other, np.int64)
        byte_class[ord("a"):ord("z") + 1] = np.arange(26)
        byte_class[ord(" ")] = 26
        byte_lengths = np.diff(offsets).astype(np.int64)
        owner = np.repeat(np.arange(0, n * _BOUND_CLASSES, _BOUND_CLASSES, dtype=np.int64),
                          byte_lengths)
        counts = np.bincount(owner + byte_class[data],
                             minlength=n * _BOUND_CLASSES).reshape(n, _BOUND_CLASSES)
        lengths = np.asarray(lengths, np.int64)
        # other characters = characters - (bytes - other bytes)
        counts[:, other] = lengths - (byte_lengths - counts[:, other])
        return counts.astype(np.uint8), unbounded | (lengths > 255)

    def may_reach(self, left: np.ndarray, right: np.ndarray, threshold: float,
                  step: int = 1 << 18) -> np.ndarray:
        """Per pair of keys (``left[i]``, ``right[i]``): whether its token-set ratio may be
        ``threshold`` or more (False: it is less). ``step`` pairs at a time (memory)."""
        out = np.ones(len(left), dtype=bool)
        for start in range(0, len(left), step):
            lo, hi = start, min(start + step, len(left))
            out[lo:hi] = self._may_reach(left[lo:hi], right[lo:hi], threshold)
        return out

    def _may_reach(self, left: np.ndarray, right: np.ndarray, threshold: float
                   ) -> np.ndarray:
        # (Slack for rounding: the bound only decides which pairs rapidfuzz scores.)
        floor = threshold - 1e-6
        x, y = self.length[left], self.length[right]
        shortest = np.minimum(x, y)
        # 2s/(s+min(X, Y)), from the words in common.
        width = self.words.shape[1]
        lw, rw = self.words[left], self.words[right]
        common = np.zeros(len(left), np.int64)  # words in common
        common_length = np.zeros(len(left), np.int64)  # their characters
        for j in range(width):
            word = lw[:, j]
            shared = word == rw[:, 0]
            for k in range(1, width):
                shared |= word == rw[:, k]
            shared &= word >= 0
            common += shared
            common_length += np.where(shared, self.word_lengths[left, j], 0)
        sect = common_length + np.maximum(common - 1, 0)  # I joined by spaces
        with np.errstate(divide="ignore", invalid="ignore"):
            reach = ~(np.where(common > 0, 200.0 * sect / (sect + shortest), 0.0) < floor)
            # 2·LCS/(X+Y): the LCS is at most the shorter key, then at most the
            # characters in common (counted only where the lengths leave it open).
            open_ = ~reach & ~(200.0 * shortest / (x + y) < floor)
        at = np.flatnonzero(open_)
        if at.size:
            in_common = np.minimum(self.classes[left[at]], self.classes[right[at]]) \
                .sum(axis=1, dtype=np.int64)
            with np.errstate(divide="ignore", invalid="ignore"):
                reach[at] = ~(200.0 * in_common / (x[at] + y[at]) < floor)
        return reach | self.unbounded[left] | self.unbounded[right]


def compare_names(left: StringColumn, right: StringColumn,
                  settings: NameComparisonSettings | None = None, *,
                  with_score: bool = True) -> NameComparison:
    """Level and score of each pair ``(left[i], right[i])`` of two equal-length columns.

    Levels are tried strongest first on ever more tolerant keys (see
    :class:`NameLevel`); ONE_TYPO takes the smallest edit distance of the
    canonical keys (sorted and in written order) and of the plain name keys.
    One exception to "Văn/Thị are optional": where one name has a dropped Văn
    and the other a dropped Thị, both are kept in every key, since the two
    mark different sexes. ``score`` is rapidfuzz ``fuzz.ratio`` (normalised
    Indel similarity x 100) of the canonical keys, the better of sorted and
    written order: 100 exactly when the canonical keys are equal.

    How, at scale: the keys are built once per distinct name (of both sides, and
    remembered for the next call), and equal keys get equal integer codes, so every
    "same key" test is an integer comparison per pair. Pairs whose canonical keys
    are equal need no string distance (distance 0, scores 100); the others are
    scored by rapidfuzz once per distinct pair of keys, on every core, the edit
    distance only where the lengths allow it to be within the cutoff.
    ``with_score=False`` leaves ``score`` NaN (not computed) when only the levels
    are needed.
    """
    left, right = as_string_array(left), as_string_array(right)
    if len(left) != len(right):
        raise ValueError(f"name columns differ in length: {len(left)} != {len(right)}")
    n = len(left)
    # One set of keys for the distinct names of both sides (a linked pair mostly carries
    # the same name twice), and per key an integer code: equal keys, equal codes.
    names, codes = distinct_codes(pa.concat_arrays([left, right]))
    return _compare_codes(names, codes[:n], codes[n:], settings, with_score)


def compare_names_at(left: StringColumn, left_at: np.ndarray, right: StringColumn,
                     right_at: np.ndarray, settings: NameComparisonSettings | None = None, *,
                     with_score: bool = True) -> NameComparison:
    """:func:`compare_names` of the pairs ``(left[left_at[i]], right[right_at[i]])``.

    The same levels and scores, but each side's names are coded once per entry of
    ``left`` / ``right`` and the pairs gather integer codes: a candidate search compares
    millions of pairs drawn from a batch of rows and a registry shard, and taking two
    strings per pair and hashing them again cost more than the comparison itself."""
    left, right = as_string_array(left), as_string_array(right)
    left_at, right_at = np.asarray(left_at, np.int64), np.asarray(right_at, np.int64)
    if len(left_at) != len(right_at):
        raise ValueError(f"pair indexes differ in length: {len(left_at)} != {len(right_at)}")
    names, codes = distinct_codes(pa.concat_arrays([left, right]))
    return _compare_codes(names, codes[:len(left)][left_at], codes[len(left):][right_at],
                          settings, with_score)


def _compare_codes(names: pa.Array, li: np.ndarray, ri: np.ndarray,
                   settings: NameComparisonSettings | None, with_score: bool
                   ) -> NameComparison:
    """:func:`compare_names` of the pairs ``(names[li[i]], names[ri[i]])`` (-1: null),
    ``names`` distinct. Only the names some pair refers to are keyed."""
    settings = settings or NameComparisonSettings()
    n = len(li)
    level = np.full(n, NameLevel.DIFFERENT, dtype=np.int8)
    score = np.full(n, np.nan)
    if n == 0:
        return NameComparison(level=level, score=score)
    used = np.zeros(len(names) + 1, dtype=bool)
    used[li] = True  # -1 marks the extra last slot
    used[ri] = True
    used = used[:-1]
    if not used.all():  # the names no pair refers to are not keyed
        renumber = np.cumsum(used) - 1
        names = names.filter(pa.array(used))
        li = np.where(li < 0, -1, renumber[np.maximum(li, 0)])
        ri = np.where(ri < 0, -1, renumber[np.maximum(ri, 0)])
    missing = (li < 0) | (ri < 0)
    li, ri = np.maximum(li, 0), np.maximum(ri, 0)
    if len(names) == 0:  # every pair has a null side
        level[:] = NameLevel.MISSING
        return NameComparison(level=level, score=score)
    keys = _Keys.of(names)
    n_names = len(names)
    no_key = as_bool_mask(pc.is_null(keys.folded))
    missing |= no_key[li] | no_key[ri]

    def equal(key: str) -> np.ndarray:
        # A null key (no letter or digit) is only ever met in a MISSING pair.
        code = np.asarray(pc.fill_null(pc.dictionary_encode(getattr(keys, key)).indices, -1)
                          .to_numpy(), dtype=np.int64)
        return code[li] == code[ri]

    # Văn marks a man and Thị a woman: a Văn facing a Thị was not "dropped", it is
    # another person ("Nguyễn Văn Anh" / "Nguyễn Thị Anh"), so there they stay.
    lm, rm = keys.middles[li], keys.middles[ri]
    conflict = (lm != 0) & (rm != 0) & (lm != rm)
    exact, folded, reordered = equal("exact"), equal("folded"), equal("reordered")
    dropped, canonical = equal("dropped"), equal("canonical")
    if conflict.any():
        dropped = np.where(conflict, reordered, dropped)
        canonical = np.where(conflict, equal("kept_canonical"), canonical)

    # Equal canonical keys: distance 0 and every score 100. The other pairs are measured
    # on the strings, once per distinct (left key, right key) pair. A typo can move a word
    # in the sorted key ("Trqn Trọng Hải" sorts "trqn" after "trong"), or hit Văn/Thị
    # itself ("Vsn" is no longer dropped), so the written-order canonical and plain name
    # keys are measured too; the closest pair counts.
    distance = np.zeros(n, dtype=np.int64)
    token_set = np.full(n, 100.0)
    score[:] = 100.0
    measure = np.flatnonzero(~canonical & ~missing)
    if measure.size:
        # Rows of [keys; keys with Văn/Thị kept]: the kept form where the pair conflicts.
        lv = li[measure] + n_names * conflict[measure]
        rv = ri[measure] + n_names * conflict[measure]
        # Distinct pairs by hashing, not sorting (their order does not matter).
        encoded = pc.dictionary_encode(pa.array(lv * (2 * n_names) + rv, pa.int64()))
        pairs = np.asarray(encoded.dictionary.to_numpy(), np.int64)
        back = np.asarray(encoded.indices.to_numpy(), np.int64)
        lv, rv = pairs // (2 * n_names), pairs % (2 * n_names)
        # Each key's text once per name some measured pair refers to (in a linked shard
        # most names face their own and are never measured), gathered per distinct pair:
        # no string taken and converted per pair.
        used = np.zeros(2 * n_names, dtype=bool)
        used[lv] = True
        used[rv] = True
        renumber = np.cumsum(used) - 1
        lv, rv = renumber[lv], renumber[rv]
        used_rows = np.flatnonzero(used)
        used_at = pa.array(used_rows)
        canonical_array = pc.take(pa.concat_arrays([keys.canonical, keys.kept_canonical]),
                                  used_at)
        canonical_keys = _texts(canonical_array)
        sequence_keys = _texts(pc.take(pa.concat_arrays([keys.sequence, keys.kept_sequence]),
                                       used_at))
        folded_array = pc.take(keys.folded, pa.array(used_rows % n_names))
        folded_keys = _texts(folded_array)
        l_canon, r_canon = canonical_keys[lv], canonical_keys[rv]
        cutoff = settings.max_typo_edits
        # Levenshtein only where it can be within the cutoff: never below the difference
        # in length (the sorted and written-order keys have the same words, so the same
        # length); elsewhere it is what rapidfuzz returns above a cutoff, cutoff + 1.
        pair_distance = np.full(len(pairs), cutoff + 1, dtype=np.int64)
        lengths = _lengths(canonical_array)
        fold_lengths = _lengths(folded_array)
        for strings, key_lengths in ((canonical_keys, lengths), (sequence_keys, lengths),
                                     (folded_keys, fold_lengths)):
            near = np.flatnonzero(np.abs(key_lengths[lv] - key_lengths[rv]) <= cutoff)
            if near.size:
                pair_distance[near] = np.minimum(pair_distance[near], _pairwise(
                    strings[lv[near]], strings[rv[near]],
                    Levenshtein.distance, score_cutoff=cutoff))
        if with_score:
            l_seq, r_seq = sequence_keys[lv], sequence_keys[rv]
            pair_score = np.maximum(_pairwise(l_canon, r_canon, fuzz.ratio, dtype=np.float64),
                                    _pairwise(l_seq, r_seq, fuzz.ratio, dtype=np.float64))
        else:
            pair_score = np.full(len(pairs), np.nan)
        # PARTIAL only decides where no stronger level holds: a pair within the typo
        # cutoff is ONE_TYPO whatever its token-set score, so it is not scored.
        # Most of the others are far below the threshold, which the words and letters
        # they share already show (exact: _TokenSetBound); only the rest are scored.
        pair_token_set = np.full(len(pairs), 100.0)
        apart = np.flatnonzero(pair_distance > cutoff)
        if apart.size:
            bound = _TokenSetBound.of(canonical_array, lengths)
            reach = bound.may_reach(lv[apart], rv[apart], settings.partial_threshold)
            pair_token_set[apart[~reach]] = 0.0
            apart = apart[reach]
        if apart.size:
            pair_token_set[apart] = _pairwise(l_canon[apart], r_canon[apart],
                                              fuzz.token_set_ratio, dtype=np.float64)
        back = back.reshape(-1)
        distance[measure] = pair_distance[back]
        score[measure] = pair_score[back]
        token_set[measure] = pair_token_set[back]

    # Weakest first, so each row ends with the strongest level that holds.
    checks = (
        (NameLevel.PARTIAL, token_set >= settings.partial_threshold),
        (NameLevel.ONE_TYPO, distance <= settings.max_typo_edits),
        (NameLevel.SURNAME_VARIANT, canonical),
        (NameLevel.DROPPED_MIDDLE, dropped),
        (NameLevel.REORDERED, reordered),
        (NameLevel.FOLDED, folded),
        (NameLevel.EXACT, exact),
    )
    for value, holds in checks:
        level[holds] = value
    level[missing] = NameLevel.MISSING
    score[missing] = np.nan
    if not with_score:
        score[:] = np.nan
    return NameComparison(level=level, score=score)
