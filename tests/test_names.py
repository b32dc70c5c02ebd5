"""Name normalisation and comparison levels, with Vietnamese edge cases."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from matching.names import (
    NameComparisonSettings,
    NameLevel,
    canonical_name_key,
    compare_names,
    given_name_key,
    surname_key,
)
from matching.normalize import clean_whitespace, display_name, fold_diacritics, name_key, nfc


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def test_nfd_input_becomes_nfc() -> None:
    raw = nfd("Nguyễn")
    assert len(raw) == 8 and len("Nguyễn") == 6
    assert nfc([raw]).to_pylist() == ["Nguyễn"]


def test_d_with_stroke_is_folded_explicitly() -> None:
    assert fold_diacritics(["Đặng Đức đạt"]).to_pylist() == ["Dang Duc dat"]
    # NFD alone leaves Đ in place: the explicit mapping is what makes it ASCII.
    assert "Đ" in unicodedata.normalize("NFD", "Đ")


@pytest.mark.parametrize(("left", "right"), [("Hòa", "Hoà"), ("Thủy", "Thuỷ"), ("Lý", "Lí"),
                                             ("Nguyễn\u00a0 Văn  An", "nguyen van an")])
def test_spelling_variants_share_a_key(left: str, right: str) -> None:
    assert name_key([left]).to_pylist() == name_key([right]).to_pylist()


def test_whitespace_and_empty_values() -> None:
    assert clean_whitespace(["  a \t b\u00a0c  ", "   ", None]).to_pylist() == ["a b c", None, None]
    assert display_name(["NGUYỄN  văn AN"]).to_pylist() == ["Nguyễn Văn An"]


@pytest.mark.parametrize(
    ("left", "right", "level"),
    [
        ("Nguyễn Văn An", "nguyễn  văn an", NameLevel.EXACT),
        (nfd("Trần Thị Bích"), "Trần Thị Bích", NameLevel.EXACT),
        ("NGUYEN VAN AN", "Nguyễn Văn An", NameLevel.FOLDED),
        ("Lê Thị Hoà", "Lê Thị Hòa", NameLevel.FOLDED),
        ("Văn An Nguyễn", "Nguyễn Văn An", NameLevel.REORDERED),
        ("Nguyễn An", "Nguyễn Văn An", NameLevel.DROPPED_MIDDLE),
        ("Phạm Mai", "Phạm Thị Mai", NameLevel.DROPPED_MIDDLE),
        ("Huỳnh Thị Mai", "Hoàng Thị Mai", NameLevel.SURNAME_VARIANT),
        ("Võ Minh Tuấn", "Vũ Minh Tuấn", NameLevel.SURNAME_VARIANT),
        ("Nguyễn Văn Anh", "Nguyễn Văn An", NameLevel.ONE_TYPO),
        ("TRQN TRỌNG HẢI", "Trần Trọng Hải", NameLevel.ONE_TYPO),
        ("Võ Thị Vâb", "Võ Thị Vân", NameLevel.ONE_TYPO),
        ("Nguyễn Minh An", "Nguyễn An", NameLevel.PARTIAL),
        ("Nguyễn Văn An", "Trần Thị Bích", NameLevel.DIFFERENT),
        ("Nguyễn Văn An", "Nguyễn Thị Hoa", NameLevel.DIFFERENT),
        ("Nguyễn Văn Minh", "Nguyễn Văn Tuấn", NameLevel.DIFFERENT),
        (None, "Nguyễn Văn An", NameLevel.MISSING),
        ("   ", "Nguyễn Văn An", NameLevel.MISSING),
    ],
)
def test_levels(left: str | None, right: str, level: NameLevel) -> None:
    result = compare_names([left], [right])
    assert NameLevel(result.level[0]) == level, (left, right, result.score[0])


def test_typo_tolerance_is_a_setting() -> None:
    strict = NameComparisonSettings(max_typo_edits=0)
    assert compare_names(["Nguyễn Văn Anh"], ["Nguyễn Văn An"], strict).level[0] != \
        NameLevel.ONE_TYPO


def test_blocking_keys() -> None:
    names = ["Huỳnh Thị Mai", "Võ Văn Kiệt"]
    assert surname_key(names).to_pylist() == ["hoang", "vu"]
    assert given_name_key(names).to_pylist() == ["mai", "kiet"]
    assert canonical_name_key(["Văn An Nguyễn"]).to_pylist() == \
        canonical_name_key(["Nguyễn An"]).to_pylist()


def test_columns_are_compared_pairwise_at_scale() -> None:
    left = ["Nguyễn Văn An", "Trần Thị Bích"] * 50_000
    right = ["NGUYEN VAN AN", "Lê Văn Cường"] * 50_000
    result = compare_names(left, right)
    assert result.level.shape == (100_000,)
    assert (result.level[0::2] == NameLevel.FOLDED).all()
    assert (result.level[1::2] == NameLevel.DIFFERENT).all()


@given(st.text(min_size=1).filter(lambda s: s.strip() != ""))
def test_any_text_equals_itself(text: str) -> None:
    level = compare_names([text], [text]).level[0]
    assert level in (NameLevel.EXACT, NameLevel.MISSING)


@given(st.lists(st.one_of(st.none(), st.text()), max_size=20),
       st.lists(st.one_of(st.none(), st.text()), max_size=20))
def test_no_input_crashes(left: list, right: list) -> None:
    n = min(len(left), len(right))
    result = compare_names(left[:n], right[:n])
    assert len(result.level) == n
    assert len(name_key(left)) == len(left)


@given(st.text(alphabet="ĐđÀÁẢÃẠĂẰẮẲẴẶÂẦẤẨẪẬÈÉẺẼẸÊỀẾỂỄỆÌÍỈĨỊÒÓỎÕỌÔỒỐỔỖỘƠỜỚỞỠỢÙÚỦŨỤƯỪỨỬỮỰỲÝỶỸỴ"
               "àáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵ abc"))
def test_folded_vietnamese_is_ascii(text: str) -> None:
    folded = fold_diacritics([text]).to_pylist()[0]
    assert folded is None or folded.isascii()
