"""Vietnamese text normalisation (matching/normalize.py), with real edge cases."""

from __future__ import annotations

import unicodedata

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching.normalize import (
    as_string_array,
    clean_text,
    clean_text_counting_nfc,
    clean_whitespace,
    display_name,
    fold_diacritics,
    name_key,
    nfc,
)

VIETNAMESE_LETTERS = (
    "ĐđÀÁẢÃẠĂẰẮẲẴẶÂẦẤẨẪẬÈÉẺẼẸÊỀẾỂỄỆÌÍỈĨỊÒÓỎÕỌÔỒỐỔỖỘƠỜỚỞỠỢÙÚỦŨỤƯỪỨỬỮỰỲÝỶỸỴ"
    "àáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵ"
)
ALL_FUNCTIONS = (nfc, clean_whitespace, fold_diacritics, name_key, display_name)


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


# --- as_string_array -------------------------------------------------------------------
@pytest.mark.parametrize(
    "values",
    [
        ["Nguyễn", None, "An"],
        pd.Series(["Nguyễn", None, "An"]),
        pd.Series(["Nguyễn", float("nan"), "An"]),
        pa.array(["Nguyễn", None, "An"], pa.large_string()),
        pa.chunked_array([["Nguyễn"], [None, "An"]]),
        pa.array(["Nguyễn", None, "An"]).dictionary_encode(),
    ],
    ids=["list", "series", "series-nan", "large_string", "chunked", "dictionary"],
)
def test_every_input_kind_becomes_one_flat_string_array(values: object) -> None:
    out = as_string_array(values)
    assert isinstance(out, pa.Array)
    assert out.type == pa.string()
    assert out.to_pylist() == ["Nguyễn", None, "An"]


def test_empty_inputs() -> None:
    assert as_string_array(pa.chunked_array([], pa.string())).to_pylist() == []
    assert name_key([]).to_pylist() == []


# --- nfc ---------------------------------------------------------------------------------
def test_nfd_input_becomes_nfc() -> None:
    raw = nfd("Nguyễn")
    assert len(raw) == 8 and len("Nguyễn") == 6  # really different code points
    out = nfc([raw, None]).to_pylist()
    assert out == ["Nguyễn", None]
    assert len(out[0]) == 6


def test_windows_1258_mixed_form_becomes_nfc() -> None:
    # Windows-1258 decodes to a precomposed base vowel plus a combining tone mark.
    mixed = "Nguy\u00ea\u0303n"  # ê + combining tilde
    assert mixed != "Nguyễn"
    assert nfc([mixed]).to_pylist() == ["Nguyễn"]


# --- clean_whitespace --------------------------------------------------------------------
def test_whitespace_is_trimmed_and_collapsed() -> None:
    values = ["  Nguyễn\u00a0 Văn\t\tAn \n", "Trần\u2003Thị\u3000Bích", "Lê  Văn  Cường"]
    assert clean_whitespace(values).to_pylist() == [
        "Nguyễn Văn An", "Trần Thị Bích", "Lê Văn Cường"]


def test_invisible_characters_are_removed() -> None:
    assert clean_whitespace(["\ufeffNguy\u200bễn\u00ad Văn"]).to_pylist() == ["Nguyễn Văn"]


def test_blank_becomes_null_and_null_stays_null() -> None:
    assert clean_whitespace(["", "   ", "\u00a0\t", None, "a"]).to_pylist() == [
        None, None, None, None, "a"]


# --- fold_diacritics ---------------------------------------------------------------------
def test_d_with_stroke_is_folded_explicitly() -> None:
    # The domain fact: NFD + dropping combining marks leaves Đ in place...
    assert "Đ" in nfd("Đặng")
    # ...so the explicit mapping is what makes it ASCII.
    assert fold_diacritics(["Đặng Đức đạt", nfd("Đỗ Đình"), None]).to_pylist() == [
        "Dang Duc dat", "Do Dinh", None]


def test_eth_lookalike_of_d_with_stroke_is_folded() -> None:
    assert fold_diacritics(["\u00d0\u1eb7ng"]).to_pylist() == ["Dang"]  # Ð (U+00D0) + ặng


def test_folding_keeps_case_and_spacing() -> None:
    assert fold_diacritics(["Nguyễn  THỊ Ánh"]).to_pylist() == ["Nguyen  THI Anh"]


@given(st.text(alphabet=VIETNAMESE_LETTERS + " abcxyzABC-'."))
@settings(deadline=None)
def test_folded_vietnamese_is_ascii(text: str) -> None:
    for form in (text, nfd(text)):
        folded = fold_diacritics([form]).to_pylist()[0]
        assert folded.isascii()
        assert len(folded) == len(text)  # one letter per letter, nothing dropped


# --- name_key -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("Hòa", "Hoà"),  # tone placement
        ("Thủy", "Thuỷ"),
        ("Khỏe", "Khoẻ"),
        ("Lý", "Lí"),  # i/y after a consonant
        ("Mỹ", "Mĩ"),
        ("Kỳ", "Kì"),
        ("Quý", "Quí"),
        ("Nguyễn\u00a0 Văn  An", "nguyen van an"),
        (nfd("Nguyễn Văn An"), "Nguyễn Văn An"),
        ("NGUYỄN VĂN AN", "nguyễn văn an"),
        ("Đặng", "dang"),
    ],
)
def test_spelling_variants_share_a_key(left: str, right: str) -> None:
    assert name_key([left]).to_pylist() == name_key([right]).to_pylist()


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("Mai", "Mây"),  # y inside a rhyme is not an i/y variant
        ("Mai", "May"),
        ("Hải", "Hay"),
        ("Huy", "Hui"),
        ("Thủy", "Thui"),
        ("Anh", "Ánh Sáng"),
    ],
)
def test_different_names_keep_different_keys(left: str, right: str) -> None:
    assert name_key([left]).to_pylist() != name_key([right]).to_pylist()


def test_i_y_rule_only_touches_a_lone_y_after_an_initial() -> None:
    names = ["Lý", "Thy", "Quý", "Huy", "Duy", "Thủy", "Quỳnh", "Huỳnh", "Uyên", "Ý", "Thhy"]
    assert name_key(names).to_pylist() == [
        "li", "thi", "qui", "huy", "duy", "thuy", "quynh", "huynh", "uyen", "y", "thhy"]


def test_punctuation_separates_words() -> None:
    assert name_key(["Nguyễn-Văn  A.N", "Lê,Thị O'Hoa", "(Trần) Bích/"]).to_pylist() == [
        "nguyen van a n", "le thi o hoa", "tran bich"]


def test_key_of_nothing_is_null() -> None:
    assert name_key([None, "", "  ", "...", "-'-"]).to_pylist() == [None] * 5


def test_other_scripts_are_kept() -> None:
    assert name_key(["Иван  ПЕТРОВ", "金 正恩"]).to_pylist() == ["иван петров", "金 正恩"]


def test_key_is_ascii_for_vietnamese_names() -> None:
    key = name_key(["Huỳnh Thị Ngọc Hương", "Võ Đình Lộc"]).to_pylist()
    assert key == ["huynh thi ngoc huong", "vo dinh loc"]
    assert all(k.isascii() for k in key)


@given(st.text())
@settings(deadline=None)
def test_name_key_is_idempotent(text: str) -> None:
    once = name_key([text])
    assert name_key(once).to_pylist() == once.to_pylist()


_NAME_PIECES = st.sampled_from([
    "Nguyễn", "VĂN", "an", "Lý", "Mỹ", "quý", "Thy", "Huy", "Đặng", "\u00d0ỗ", "-", ".", "'",
    "O'Brien", "Jean-Luc", "Ng\u00adọc", "Tr\u200bần", "Müller", "Жанна", "李", "\u0301",
    " ", "  ", "\t", "\u00a0", "\u3000", "\n", "ß", "İ", "ǅ", "1990", "y", "Y"])


@given(st.lists(st.one_of(st.none(), st.text(max_size=16),
                          st.lists(_NAME_PIECES, max_size=6).map("".join)),
                min_size=300, max_size=400))
@settings(max_examples=60, deadline=None)
def test_name_key_by_words_is_the_key_of_the_whole_value(values: list[str | None]) -> None:
    """Long columns get their keys word by word (normalize._name_key); the key is the
    one computed over each whole value (whitespace, punctuation, marks, other scripts,
    empty and null values included)."""
    from matching.normalize import _WORDS_FROM, _name_key, _name_key_of_values

    column = pa.array(values, pa.string())
    assert len(column) >= _WORDS_FROM
    assert _name_key(column).to_pylist() == _name_key_of_values(column).to_pylist()


# --- display_name -------------------------------------------------------------------------
def test_display_name() -> None:
    assert display_name(["NGUYỄN  văn AN", nfd("trần thị bích"), " ", None]).to_pylist() == [
        "Nguyễn Văn An", "Trần Thị Bích", None, None]


# --- robustness ---------------------------------------------------------------------------
@given(st.lists(st.one_of(st.none(), st.text()), max_size=20))
@settings(deadline=None)
def test_no_input_crashes_and_nulls_stay_null(values: list[str | None]) -> None:
    for function in ALL_FUNCTIONS:
        out = function(values)
        assert isinstance(out, pa.Array) and out.type == pa.string()
        assert len(out) == len(values)
        for value, result in zip(values, out.to_pylist(), strict=True):
            if value is None:
                assert result is None


@given(st.lists(st.one_of(st.none(), st.text(max_size=12),
                          st.sampled_from(["Nguyễn Văn An", " NGUYỄN  văn an ", "Lý\u00a0Thị"])),
                min_size=4, max_size=20))
@settings(max_examples=40, deadline=None)
def test_long_columns_are_computed_once_per_distinct_value(texts: list[str | None]) -> None:
    """A long column with repeats goes through the distinct values; same result."""
    for function in (*ALL_FUNCTIONS, clean_text):
        assert function(texts * 20).to_pylist() == function(texts).to_pylist() * 20


@given(st.lists(st.one_of(st.none(), st.text(max_size=12),
                          st.sampled_from(["Nguyễn Văn An", "Nguye\u0302\u0303n", " Lý  Thị "])),
                max_size=30))
@settings(max_examples=40, deadline=None)
def test_clean_text_counting_nfc_counts_the_values_not_in_nfc(texts: list[str | None]) -> None:
    """Same text as clean_text; the count is that of non-null values that NFC changes."""
    cleaned, not_nfc = clean_text_counting_nfc(texts)
    assert cleaned.to_pylist() == clean_text(texts).to_pylist()
    assert not_nfc == sum(1 for t in texts
                          if t is not None and unicodedata.normalize("NFC", t) != t)
