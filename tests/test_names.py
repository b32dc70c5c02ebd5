"""Name comparison levels (matching/names.py), with Vietnamese edge cases."""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching.names import (
    NAME_LEVEL_LABELS,
    OPTIONAL_MIDDLE_NAMES,
    SURNAME_EQUIVALENTS,
    NameComparisonSettings,
    NameLevel,
    canonical_name_key,
    compare_names,
    given_name_key,
    surname_key,
)
from matching.normalize import name_key


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def level_of(left: str | None, right: str | None,
             config: NameComparisonSettings | None = None) -> NameLevel:
    return NameLevel(compare_names([left], [right], config).level[0])


@pytest.mark.parametrize(
    ("left", "right", "level"),
    [
        # formatting: case, spaces, Unicode form
        ("Nguyễn Văn An", "nguyễn  văn an", NameLevel.EXACT),
        ("Nguyễn\u00a0Văn An ", "Nguyễn Văn An", NameLevel.EXACT),
        (nfd("Trần Thị Bích"), "Trần Thị Bích", NameLevel.EXACT),
        (nfd("ĐẶNG VĂN ĐỨC"), "Đặng Văn Đức", NameLevel.EXACT),
        # diacritics, tone placement, i/y
        ("NGUYEN VAN AN", "Nguyễn Văn An", NameLevel.FOLDED),
        ("Dang Van Duc", "Đặng Văn Đức", NameLevel.FOLDED),
        ("Lê Thị Hoà", "Lê Thị Hòa", NameLevel.FOLDED),
        ("Phạm Thị Thuỷ", "Phạm Thị Thủy", NameLevel.FOLDED),
        ("Lí Văn Long", "Lý Văn Long", NameLevel.FOLDED),
        ("Nguyễn-Văn An", "Nguyễn Văn An", NameLevel.FOLDED),
        # family/given order
        ("Văn An Nguyễn", "Nguyễn Văn An", NameLevel.REORDERED),
        ("An Nguyễn Văn", "Nguyễn Văn An", NameLevel.REORDERED),
        ("Nguyen Van An", "Văn An Nguyễn", NameLevel.REORDERED),
        # optional middle names
        ("Nguyễn An", "Nguyễn Văn An", NameLevel.DROPPED_MIDDLE),
        ("Phạm Mai", "Phạm Thị Mai", NameLevel.DROPPED_MIDDLE),
        ("An Nguyễn", "Nguyễn Văn An", NameLevel.DROPPED_MIDDLE),
        ("Trần Ngọc Bích", "Trần Thị Ngọc Bích", NameLevel.DROPPED_MIDDLE),
        # regional surname spellings (also with a dropped middle name)
        ("Huỳnh Thị Mai", "Hoàng Thị Mai", NameLevel.SURNAME_VARIANT),
        ("Võ Minh Tuấn", "Vũ Minh Tuấn", NameLevel.SURNAME_VARIANT),
        ("HUYNH MAI", "Hoàng Thị Mai", NameLevel.SURNAME_VARIANT),
        # one typo
        ("Nguyễn Văn Anh", "Nguyễn Văn An", NameLevel.ONE_TYPO),
        ("TRQN TRỌNG HẢI", "Trần Trọng Hải", NameLevel.ONE_TYPO),  # typo moves the word
        ("Võ Thị Vâb", "Võ Thị Vân", NameLevel.ONE_TYPO),
        ("Huỳnh Vsn Hoàng", "Huỳnh Văn Hoàng", NameLevel.ONE_TYPO),  # typo in Văn itself
        ("Lê Kim Thhy", "Lê Kim Thúy", NameLevel.ONE_TYPO),  # no i/y rewrite of a typo
        # partial: for review
        ("Nguyễn Minh An", "Nguyễn An", NameLevel.PARTIAL),
        ("Lý Nguyễn Thị Hoa", "Nguyễn Thị Hoa", NameLevel.PARTIAL),  # extra surname
        # different people
        ("Nguyễn Văn An", "Trần Thị Bích", NameLevel.DIFFERENT),
        ("Nguyễn Văn An", "Nguyễn Thị Hoa", NameLevel.DIFFERENT),
        ("Nguyễn Văn Minh", "Nguyễn Văn Tuấn", NameLevel.DIFFERENT),
        ("Nguyễn Văn Anh", "Nguyễn Thị Anh", NameLevel.DIFFERENT),  # Văn (man) vs Thị (woman)
        ("Nguyễn Thị Vân", "Nguyễn Thị Thi", NameLevel.DIFFERENT),  # Vân/Thi are given names
        ("Trần Văn Thi", "Trần Thi", NameLevel.DROPPED_MIDDLE),
        # missing
        (None, "Nguyễn Văn An", NameLevel.MISSING),
        ("Nguyễn Văn An", None, NameLevel.MISSING),
        ("   ", "Nguyễn Văn An", NameLevel.MISSING),
        ("", "", NameLevel.MISSING),
        ("...", "...", NameLevel.MISSING),
        (None, None, NameLevel.MISSING),
    ],
)
def test_levels(left: str | None, right: str | None, level: NameLevel) -> None:
    assert level_of(left, right) == level
    assert level_of(right, left) == level  # symmetric


def test_different_people_are_never_accepted() -> None:
    pairs = [
        ("Nguyễn Văn An", "Trần Thị Bích"),
        ("Nguyễn Văn An", "Nguyễn Thị Hoa"),
        ("Nguyễn Văn Minh", "Nguyễn Văn Tuấn"),
        ("Lê Văn Hùng", "Lê Thị Hương"),
        ("Phạm Thị Lan", "Phạm Văn Long"),
        ("Hoàng Văn Nam", "Huỳnh Thị Ngọc"),
        ("Võ Thị Thu Trang", "Vũ Văn Quang"),
        ("Trần Quốc Bảo", "Trần Thị Bảo Ngọc"),
        ("Đặng Văn Cường", "Đỗ Thị Phương"),
        ("Nguyễn Thị Vân", "Nguyễn Thị Thi"),
    ]
    result = compare_names([a for a, _ in pairs], [b for _, b in pairs])
    assert (result.level <= NameLevel.PARTIAL).all(), result.level
    assert (result.level == NameLevel.DIFFERENT).sum() >= len(pairs) - 2, result.level


def test_a_van_facing_a_thi_is_not_a_dropped_middle_name() -> None:
    # Dropped from one side: accepted. Replaced by the other sex's: not.
    assert level_of("Nguyễn Anh", "Nguyễn Thị Anh") == NameLevel.DROPPED_MIDDLE
    assert level_of("Nguyễn Văn Anh", "Nguyễn Anh") == NameLevel.DROPPED_MIDDLE
    assert level_of("Nguyễn Văn Hùng", "Nguyễn Thị Hương") == NameLevel.DIFFERENT
    assert level_of("Huỳnh Văn Mai", "Hoàng Thị Mai") <= NameLevel.PARTIAL


# --- settings -----------------------------------------------------------------------------
def test_typo_tolerance_is_a_setting() -> None:
    pair = ("Nguyễn Văn Anh", "Nguyễn Văn An")
    assert level_of(*pair) == NameLevel.ONE_TYPO
    assert level_of(*pair, NameComparisonSettings(max_typo_edits=0)) < NameLevel.ONE_TYPO
    two = ("Nguyễn Văn Anhh", "Nguyễn Văn An")
    assert level_of(*two) < NameLevel.ONE_TYPO
    assert level_of(*two, NameComparisonSettings(max_typo_edits=2)) == NameLevel.ONE_TYPO


def test_partial_threshold_is_a_setting() -> None:
    # Same surname, short different given names: token-set similarity 84.
    pair = ("Nguyễn An", "Nguyễn Văn Hoa")
    assert level_of(*pair) == NameLevel.DIFFERENT
    assert level_of(*pair, NameComparisonSettings(partial_threshold=80)) == NameLevel.PARTIAL
    assert level_of("Nguyễn Minh An", "Nguyễn An",
                    NameComparisonSettings(partial_threshold=100)) == NameLevel.PARTIAL


@pytest.mark.parametrize("kwargs", [{"max_typo_edits": -1}, {"partial_threshold": 101},
                                    {"partial_threshold": -5}])
def test_invalid_settings_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        NameComparisonSettings(**kwargs)


# --- result shape and score ---------------------------------------------------------------
def test_result_types_and_scores() -> None:
    result = compare_names(["Nguyễn Văn An", "Nguyễn Văn An", None, "Nguyễn Văn Anh"],
                           ["NGUYEN AN", "Trần Thị Bích", "An", "Nguyễn Văn An"])
    assert result.level.dtype == np.int8
    assert result.score.dtype == np.float64
    assert result.level.tolist() == [NameLevel.DROPPED_MIDDLE, NameLevel.DIFFERENT,
                                     NameLevel.MISSING, NameLevel.ONE_TYPO]
    assert result.score[0] == 100.0  # equal canonical keys
    assert 0 <= result.score[1] < 50
    assert np.isnan(result.score[2])
    assert 85 < result.score[3] < 100


@pytest.mark.parametrize(
    "wrap",
    [list, pd.Series, pa.array, lambda v: pa.chunked_array([v[:1], v[1:]])],
    ids=["list", "series", "array", "chunked"],
)
def test_accepts_every_column_kind(wrap: object) -> None:
    left, right = ["Nguyễn Văn An", None], ["NGUYEN VAN AN", "Trần Bích"]
    result = compare_names(wrap(left), wrap(right))
    assert result.level.tolist() == [NameLevel.FOLDED, NameLevel.MISSING]


def test_empty_columns_and_length_mismatch() -> None:
    empty = compare_names([], [])
    assert empty.level.shape == (0,) and empty.score.shape == (0,)
    with pytest.raises(ValueError, match="differ in length"):
        compare_names(["a"], ["a", "b"])


def test_every_level_has_a_label() -> None:
    assert set(NAME_LEVEL_LABELS) == set(NameLevel)
    assert all(label for label in NAME_LEVEL_LABELS.values())
    assert [int(x) for x in sorted(NameLevel)] == list(range(9))


# --- public keys --------------------------------------------------------------------------
def test_domain_data_is_in_key_form() -> None:
    for word in (*OPTIONAL_MIDDLE_NAMES, *SURNAME_EQUIVALENTS, *SURNAME_EQUIVALENTS.values()):
        assert name_key([word]).to_pylist() == [word]
    assert name_key(["Văn", "Thị", "Huỳnh", "Võ"]).to_pylist() == [
        "van", "thi", "huynh", "vo"]


def test_blocking_keys() -> None:
    names = ["Huỳnh Thị Mai", "Võ Văn Kiệt", "Nguyễn Trãi", None, "  "]
    assert surname_key(names).to_pylist() == ["hoang", "vu", "nguyen", None, None]
    assert given_name_key(names).to_pylist() == ["mai", "kiet", "trai", None, None]
    assert canonical_name_key(names).to_pylist() == [
        "hoang mai", "kiet vu", "nguyen trai", None, None]


def test_canonical_key_is_order_middle_and_variant_free() -> None:
    keys = canonical_name_key(["Văn An Nguyễn", "Nguyễn An", "NGUYEN VAN AN",
                               "Huỳnh Mai", "Hoàng Thị Mai"]).to_pylist()
    assert keys[0] == keys[1] == keys[2] == "an nguyen"
    assert keys[3] == keys[4] == "hoang mai"


def test_last_word_van_or_thi_is_a_given_name() -> None:
    keys = canonical_name_key(["Nguyễn Thị Vân", "Nguyễn Văn Thi", "Trần Văn"]).to_pylist()
    assert keys == ["nguyen van", "nguyen thi", "tran van"]


# --- scale --------------------------------------------------------------------------------
def test_columns_are_compared_pairwise_at_scale() -> None:
    left = ["Nguyễn Văn An", "Trần Thị Bích", None, "Huỳnh Thị Mai", "Văn An Nguyễn"] * 40_000
    right = ["NGUYEN VAN AN", "Lê Văn Cường", "An", "Hoàng Mai", "Nguyễn Văn Anh"] * 40_000
    result = compare_names(pa.array(left), pd.Series(right))
    assert result.level.shape == result.score.shape == (200_000,)
    expected = [NameLevel.FOLDED, NameLevel.DIFFERENT, NameLevel.MISSING,
                NameLevel.SURNAME_VARIANT, NameLevel.ONE_TYPO]
    for offset, level in enumerate(expected):
        assert (result.level[offset::5] == level).all(), level
    assert np.isnan(result.score[2::5]).all()
    assert not np.isnan(result.score[0::5]).any()


# --- properties ---------------------------------------------------------------------------
WORDS = ["Nguyễn", "Trần", "Lê", "Huỳnh", "Hoàng", "Võ", "Vũ", "Văn", "Thị", "Vân", "Thi",
         "An", "Anh", "Hòa", "Hoà", "Lý", "Lí", "Mai", "Mây", "Đức", "NGUYEN", "van", "thi"]
names = st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join)


# Each example is a whole column: more cases per call, and a property test stays quick.
PROPERTY = settings(deadline=None, max_examples=50)


@given(st.lists(st.text(), min_size=1, max_size=20))
@PROPERTY
def test_any_name_equals_itself(texts: list[str]) -> None:
    """EXACT for any text with a letter or digit (in NFC or NFD); MISSING otherwise."""
    has_key = name_key(texts).is_valid().to_numpy(zero_copy_only=False)
    result = compare_names(texts + [nfd(t) for t in texts], texts + texts)
    expected = np.where(np.tile(has_key, 2), NameLevel.EXACT, NameLevel.MISSING)
    assert result.level.tolist() == expected.tolist()
    assert (result.score[np.tile(has_key, 2)] == 100).all()


@given(st.lists(st.tuples(names, names), min_size=1, max_size=30))
@PROPERTY
def test_strong_levels_share_the_blocking_key_and_are_symmetric(
        pairs: list[tuple[str, str]]) -> None:
    left, right = [a for a, _ in pairs], [b for _, b in pairs]
    forward, backward = compare_names(left, right), compare_names(right, left)
    assert forward.level.tolist() == backward.level.tolist()
    strong = forward.level >= NameLevel.SURNAME_VARIANT
    lk, rk = canonical_name_key(left).to_pylist(), canonical_name_key(right).to_pylist()
    words = [sorted(k.split()) if k else None for k in name_key(left + right).to_pylist()]
    for i in np.flatnonzero(strong):
        if forward.level[i] == NameLevel.REORDERED:
            # Same words; the canonical key may differ when a Vân/Thi moves off
            # the end (see _Words.drop_optional_middles).
            assert words[i] == words[len(left) + i]
        else:
            assert lk[i] == rk[i]


def test_a_reordered_given_name_van_keeps_its_level_but_not_its_canonical_key() -> None:
    """Found by Hypothesis: the limit of a positional Văn/Thị rule, pinned."""
    left, right = ["Nguyễn Văn", "Nguyễn Thị Vân"], ["van Nguyễn", "Thị Vân Nguyễn"]
    assert compare_names(left, right).level.tolist() == [NameLevel.REORDERED] * 2
    assert canonical_name_key(left).to_pylist() == ["nguyen van", "nguyen van"]
    assert canonical_name_key(right).to_pylist() == ["nguyen", "nguyen"]


@given(st.lists(st.tuples(st.one_of(st.none(), st.text()), st.one_of(st.none(), st.text())),
                max_size=20))
@PROPERTY
def test_no_input_crashes(pairs: list[tuple[str | None, str | None]]) -> None:
    left, right = [a for a, _ in pairs], [b for _, b in pairs]
    result = compare_names(left, right)
    assert result.level.shape == result.score.shape == (len(pairs),)
    assert set(result.level.tolist()) <= {int(x) for x in NameLevel}
    missing = result.level == NameLevel.MISSING
    assert np.isnan(result.score[missing]).all()
    assert ((result.score[~missing] >= 0) & (result.score[~missing] <= 100)).all()
    for function in (canonical_name_key, surname_key, given_name_key):
        assert len(function(left)) == len(left)


def test_levels_without_scores_are_the_same_levels() -> None:
    left = ["Nguyễn Văn An", "Trần Thị Bích", None, "Huỳnh Thị Mai", "Văn An Nguyễn", "Lê Tám"]
    right = ["NGUYEN VAN AN", "Lê Văn Cường", "An", "Hoàng Mai", "Nguyễn Văn Anh", "Le Tam"]
    scored, unscored = compare_names(left, right), compare_names(left, right, with_score=False)
    assert scored.level.tolist() == unscored.level.tolist()
    assert np.isnan(unscored.score).all() and not np.isnan(scored.score[[0, 1, 3, 4, 5]]).any()


def test_pairs_by_index_compare_as_the_pairs_written_out() -> None:
    """compare_names_at (each side once, pairs as indexes, in any order and repeated, some
    names never paired) gives the levels and scores of the same pairs written out."""
    from matching.names import compare_names_at

    left = ["Nguyễn Văn An", "Nguyen Van An", "Văn An Nguyễn", None, "Huỳnh Thị Mai",
            "Nguyễn Văn Anh", "Nguyễn Thị An", "Trần Bình", "  ", "Hoàng Mai"]
    right = ["Nguyễn An", "Hoàng Thị Mai", "Nguyễn Văn An", "Tran Binh", None, "Trần Bính",
             "Lê Văn Tám", "Nguyễn Văn Ánh", "Hoàng Mai Thị"]
    rng = np.random.default_rng(7)
    li, ri = rng.integers(0, 6, 2_000), rng.integers(0, len(right), 2_000)  # left 6-9 unused
    by_index = compare_names_at(left, li, right, ri)
    written_out = compare_names([left[i] for i in li], [right[i] for i in ri])
    assert (by_index.level == written_out.level).all()
    np.testing.assert_array_equal(by_index.score, written_out.score)
    assert len(set(written_out.level.tolist())) >= 6


def test_sorting_once_gives_the_sorted_words_with_and_without_the_optional_middles() -> None:
    """``_Words.sort_keeping``: the sorted words, and the sorted words of the kept ones,
    equal to dropping first and sorting after (one sort instead of two)."""
    from matching.names import _Words

    keys = pa.array(["nguyen van an", "tran thi van", None, "an van nguyen", "le thi thi hoa",
                     "vo huynh an", "b a b a", "thi"])
    words = _Words.split(keys)
    keep = ~words._droppable()
    assert not keep.all()
    everything, kept = words.sort_keeping(keep)
    assert everything.join().equals(words.sort().join())
    assert kept.join().equals(words.drop_optional_middles().sort().join())
    assert kept.join().to_pylist()[:3] == ["an nguyen", "tran van", None]


def test_names_keyed_in_one_call_or_many_get_the_same_levels() -> None:
    """Only the names a measured pair refers to are turned into Python strings: a large
    comparison and its pairs one by one agree (levels and scores)."""
    left = ["Nguyễn Văn An", "Trần Thị Vân", "Lê Hoa", "Phạm Minh Tuấn", "Võ An", None,
            "Nguyễn Van Ann", "Hoàng Thị Lan"]
    right = ["Nguyễn Văn An", "Tran Thi Van", "Lê Hòa", "Phạm Minh Tuân", "Huỳnh An", "X",
             "Nguyễn Văn An", "Hoàng Lan Thị"]
    together = compare_names(pa.array(left), pa.array(right))
    for i, (a, b) in enumerate(zip(left, right, strict=True)):
        alone = compare_names(pa.array([a], pa.string()), pa.array([b], pa.string()))
        assert alone.level[0] == together.level[i], (a, b)
        assert np.array_equal(alone.score, together.score[i:i + 1], equal_nan=True), (a, b)


# Keys as the token-set bound meets them: repeated words, subsets, other scripts, long.
bound_words = st.sampled_from(["an", "anh", "nguyen", "nguyan", "thi", "van", "hoa", "hoang",
                               "hoan", "le", "ngoc", "ngọc", "đ", "明", "a", "aaaaaaaaaa"])
bound_keys = st.lists(bound_words, min_size=1, max_size=10).map(" ".join)


@given(st.lists(st.tuples(bound_keys, bound_keys), min_size=1, max_size=40),
       st.sampled_from([0.0, 50.0, 80.0, 90.0, 95.0, 100.0]))
@PROPERTY
def test_the_token_set_bound_never_drops_a_pair_that_reaches_the_threshold(
        pairs: list[tuple[str, str]], threshold: float) -> None:
    """``_TokenSetBound``: a pair it rules out scores under the threshold in rapidfuzz."""
    from rapidfuzz import fuzz

    from matching.names import _lengths, _TokenSetBound

    keys = pa.array([k for pair in pairs for k in pair])
    left, right = np.arange(0, len(keys), 2), np.arange(1, len(keys), 2)
    reach = _TokenSetBound.of(keys, _lengths(keys)).may_reach(left, right, threshold, step=7)
    scores = np.array([fuzz.token_set_ratio(a, b) for a, b in pairs])
    assert reach[scores >= threshold].all()


def test_the_token_set_bound_rules_out_names_far_apart() -> None:
    from matching.names import _lengths, _TokenSetBound

    keys = pa.array(["an nguyen van", "binh tran", "an nguyen", "an le nguyen", "an an nguyen",
                     "hoa pham thi", "hoa pham thu"])
    bound = _TokenSetBound.of(keys, _lengths(keys))
    reach = bound.may_reach(np.array([0, 0, 0, 4, 5]), np.array([1, 2, 3, 3, 6]), 90.0)
    # unrelated; a subset (100); few words and letters in common; a repeated word (never
    # bounded); one word apart but close in letters (2·LCS/(X+Y) may reach 90%)
    assert reach.tolist() == [False, True, False, True, True]


@given(st.lists(st.one_of(st.none(), st.text(max_size=14),
                          st.sampled_from(["Nguyễn Văn An", "NGUYỄN VĂN AN", "Huỳnh Thị Lý",
                                           "Trần  thị Bích-Ngọc", "", " "])),
                max_size=40))
@settings(max_examples=60, deadline=None)
def test_sequence_and_canonical_keys_at_once_are_each_function_s(
        names: list[str | None]) -> None:
    from matching.names import sequence_and_canonical_keys, sequence_name_key

    sequence, canonical = sequence_and_canonical_keys(names)
    assert sequence.to_pylist() == sequence_name_key(names).to_pylist()
    assert canonical.to_pylist() == canonical_name_key(names).to_pylist()
