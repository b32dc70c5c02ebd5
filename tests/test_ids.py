"""Personal document numbers: CCCD structure (Decree 137/2015 Art. 13), CMND, passports."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching import ids, reference

TEXTS = st.lists(st.one_of(st.none(), st.text(max_size=20)), max_size=20)
FAST = settings(max_examples=60, deadline=None)


def classify(id_type, id_number, year=2026):
    return ids.classify_documents(id_type, id_number, reference_year=year).to_pylist()


# --- clean_document_number -------------------------------------------------------------------


def test_clean_strips_separators_and_uppercases():
    out = ids.clean_document_number([" 079-084.000 999 ", "b123_4567", "", "   ", None])
    assert out.to_pylist() == ["079084000999", "B1234567", None, None, None]


def test_clean_drops_excel_float_suffix_instead_of_gluing_a_digit():
    assert ids.clean_document_number(["79084000999.0"]).to_pylist() == ["79084000999"]


@pytest.mark.parametrize(
    "values",
    [
        pa.chunked_array([["079084000999"], [None]]),
        pd.Series(["079084000999", None]),
        ["079084000999", None],
        pa.array(["079084000999", None]).dictionary_encode(),
    ],
)
def test_clean_accepts_every_input_kind(values):
    assert ids.clean_document_number(values).to_pylist() == ["079084000999", None]


def test_clean_accepts_mixed_excel_cells():
    # An Excel column read by pandas mixes ints (leading zero lost) and strings.
    out = ids.clean_document_number(pd.Series([79084000999, "079084000999", None], dtype=object))
    assert out.to_pylist() == ["79084000999", "079084000999", None]


# --- classify_documents: CCCD -----------------------------------------------------------------


def test_valid_cccd():
    assert classify(["CCCD"], ["087084000999"]) == [
        {"id_type": "CCCD", "id_number": "087084000999", "id_valid": True, "id_issue": None}
    ]


def test_unknown_province_code_is_still_valid():
    (row,) = classify(["CCCD"], ["999084000999"])
    assert row["id_valid"] is True and row["id_issue"] is None
    parts = ids.cccd_parts(["999084000999"]).to_pylist()[0]
    assert parts["province_known"] is False and parts["province_code"] == "999"


def test_future_birth_year_is_invalid():
    # G=2 -> 2000s, YY=27 -> 2027 > reference year 2026.
    (row,) = classify(["CCCD"], ["079227000001"])
    assert row["id_valid"] is False and row["id_issue"] == "FUTURE_BIRTH_YEAR"
    # ...but the same number is fine once 2027 is reached.
    assert classify(["CCCD"], ["079227000001"], year=2027)[0]["id_valid"] is True
    # G=4 -> 2100s is always in the future here.
    assert classify(["CCCD"], ["079400000001"])[0]["id_issue"] == "FUTURE_BIRTH_YEAR"


def test_cccd_non_digit_and_wrong_length():
    rows = classify(["CCCD", "CCCD", "CCCD"], ["07908400099X", "0790840009", "0790840009991"])
    assert [(r["id_valid"], r["id_issue"]) for r in rows] == [
        (False, "NON_DIGIT"), (False, "WRONG_LENGTH"), (False, "WRONG_LENGTH")
    ]


def test_excel_lost_leading_zero_is_restored():
    (row,) = classify(["CCCD"], [79084000999])
    assert row == {"id_type": "CCCD", "id_number": "079084000999", "id_valid": True,
                   "id_issue": "LEADING_ZERO_RESTORED"}


def test_restored_zero_still_checks_birth_year():
    (row,) = classify(["CCCD"], ["79499000001"])
    assert row["id_valid"] is False and row["id_issue"] == "FUTURE_BIRTH_YEAR"
    assert row["id_number"] == "79499000001"  # not padded when not accepted


def test_cccd_with_nine_digits_is_a_cmnd():
    (row,) = classify(["CCCD"], ["023456789"])
    assert row == {"id_type": "CMND", "id_number": "023456789", "id_valid": True,
                   "id_issue": "TYPE_CORRECTED"}


def test_missing_number():
    rows = classify(["CCCD", None, "PASSPORT"], [None, "", "  "])
    assert [(r["id_type"], r["id_valid"], r["id_issue"]) for r in rows] == [
        ("CCCD", None, "MISSING"), (None, None, "MISSING"), ("PASSPORT", None, "MISSING")
    ]


# --- classify_documents: CMND, passport, undeclared -------------------------------------------


def test_cmnd_nine_digits_valid_other_lengths_not():
    rows = classify(["CMND"] * 4, ["271450001", "12345", "27145000A", "1234567890"])
    assert [(r["id_valid"], r["id_issue"]) for r in rows] == [
        (True, None), (False, "WRONG_LENGTH"), (False, "NON_DIGIT"), (False, "WRONG_LENGTH")
    ]


def test_cmnd_lost_leading_zero_restored():
    # Hà Nội CMNDs start with 01: Excel turns 012345678 into 12345678.
    (row,) = classify(["CMND"], ["12345678"])
    assert row["id_number"] == "012345678" and row["id_issue"] == "LEADING_ZERO_RESTORED"


def test_twelve_digit_cmnd_becomes_cccd_when_it_parses():
    (row,) = classify(["CMND"], ["087084000999"])
    assert (row["id_type"], row["id_valid"], row["id_issue"]) == ("CCCD", True, "TYPE_CORRECTED")


def test_twelve_digit_cmnd_that_is_no_cccd_stays_cmnd():
    (row,) = classify(["CMND"], ["087484000999"])
    assert (row["id_type"], row["id_valid"], row["id_issue"]) == ("CMND", True, None)


@pytest.mark.parametrize(
    ("number", "valid", "issue"),
    [("B1234567", True, None), ("c1234567", True, None), ("AB12", False, "WRONG_LENGTH"),
     ("AB1234567890123", False, "WRONG_LENGTH"), ("AB#12345", False, "NON_DIGIT"),
     ("123456", True, None)],
)
def test_passport(number, valid, issue):
    (row,) = classify(["PASSPORT"], [number])
    assert (row["id_type"], row["id_valid"], row["id_issue"]) == ("PASSPORT", valid, issue)


def test_undeclared_type_is_inferred_from_digits_only():
    rows = classify([None] * 4, ["087084000999", "123456789", "B1234567", "12345"])
    assert [(r["id_type"], r["id_valid"], r["id_issue"]) for r in rows] == [
        ("CCCD", True, None), ("CMND", True, None), (None, False, "NON_DIGIT"),
        (None, False, "WRONG_LENGTH"),
    ]


def test_classify_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        ids.classify_documents(["CCCD"], [], reference_year=2026)


# --- cccd_parts / cccd_agrees_with ------------------------------------------------------------


def test_cccd_parts_example_from_decree():
    parts = ids.cccd_parts(["087084000999", "001303000001", "0870840009", None])
    assert parts.schema.field("birth_year").type == pa.int16()
    assert parts.to_pylist() == [
        {"province_code": "087", "province_known": True, "birth_year": 1984, "sex": "M"},
        {"province_code": "001", "province_known": True, "birth_year": 2003, "sex": "F"},
        {"province_code": None, "province_known": None, "birth_year": None, "sex": None},
        {"province_code": None, "province_known": None, "birth_year": None, "sex": None},
    ]


@pytest.mark.parametrize(
    ("digit", "year", "sex"),
    [(0, 1984, "M"), (1, 1984, "F"), (2, 2084, "M"), (3, 2084, "F"), (4, 2184, "M"),
     (5, 2184, "F"), (6, 2284, "M"), (7, 2284, "F"), (8, 2384, "M"), (9, 2384, "F")],
)
def test_century_sex_digit(digit, year, sex):
    row = ids.cccd_parts([f"087{digit}84000999"]).to_pylist()[0]
    assert (row["birth_year"], row["sex"]) == (year, sex)


def test_province_table_can_be_overridden():
    custom = pa.table({"code": ["999"], "name": ["Abroad"]})
    row = ids.cccd_parts(["999084000999"], provinces=custom).to_pylist()[0]
    assert row["province_known"] is True


def test_cccd_agrees_with_declared_data():
    out = ids.cccd_agrees_with(
        ["087084000999"] * 6 + ["001303000001", "001303000001", None, "garbage"],
        [1984, 1985, 1984, 1984, None, None, 2003, 1903, 1984, 1984],
        ["M", "M", "F", None, "M", None, "F", "F", "M", "M"],
    )
    assert out.to_pylist() == [True, False, False, None, None, None, True, False, None, None]


def test_cccd_agrees_with_accepts_dates_for_year():
    import datetime as dt

    out = ids.cccd_agrees_with(
        ["087084000999", "087084000999"], pa.array([dt.date(1984, 5, 1), dt.date(2084, 5, 1)]),
        ["M", "M"],
    )
    assert out.to_pylist() == [True, False]


def test_province_reference_table():
    table = reference.provinces()
    assert table.num_rows == 63
    names = dict(zip(table["code"].to_pylist(), table["name"].to_pylist(), strict=True))
    assert names["087"] == "Đồng Tháp" and names["079"] == "TP.HCM" and names["001"] == "Hà Nội"


# --- near_miss_variants -----------------------------------------------------------------------


def test_near_miss_counts_and_contents():
    number = "087084000999"
    out = ids.near_miss_variants([number])
    variants = out["variant"].to_pylist()
    unequal_pairs = sum(a != b for a, b in itertools.pairwise(number))
    assert unequal_pairs == 7
    assert out.num_rows == 108 + unequal_pairs
    assert len(set(variants)) == len(variants)
    assert number not in variants
    edits = dict(zip(variants, out["edit"].to_pylist(), strict=True))
    assert edits["187084000999"] == "SUBSTITUTION"
    assert edits["087084000998"] == "SUBSTITUTION"
    assert edits["807084000999"] == "SWAP"
    assert edits["087084009099"] == "SWAP"
    assert "087084000999"[::-1] not in edits
    assert all(len(v) == 12 for v in variants)


def test_near_miss_rows_nulls_and_non_digits():
    out = ids.near_miss_variants([None, "B1234567", "123456789", "", "12"])
    rows = out["row"].to_numpy()
    assert set(rows.tolist()) == {2, 4}
    assert np.all(np.diff(rows) >= 0)  # sorted by row
    assert (rows == 2).sum() == 81 + 8
    assert (rows == 4).sum() == 18 + 1
    assert out.schema.names == ["row", "variant", "edit"]
    assert out.schema.field("row").type == pa.int64()


def test_near_miss_options():
    subs = ids.near_miss_variants(["1234"], adjacent_swaps=False)
    swaps = ids.near_miss_variants(["1234"], substitutions=False)
    assert subs.num_rows == 36 and set(subs["edit"].to_pylist()) == {"SUBSTITUTION"}
    assert sorted(swaps["variant"].to_pylist()) == ["1243", "1324", "2134"]


def test_near_miss_many_rows_across_blocks():
    numbers = [f"{i:012d}" for i in range(20_000)]
    out = ids.near_miss_variants(numbers, adjacent_swaps=False)
    assert out.num_rows == 108 * len(numbers)
    rows = out["row"].to_numpy()
    assert rows[0] == 0 and rows[-1] == len(numbers) - 1 and np.all(np.diff(rows) >= 0)
    last = out.slice(out.num_rows - 108)
    assert "000000019998" in last["variant"].to_pylist()


def test_near_miss_empty_input():
    out = ids.near_miss_variants([])
    assert out.num_rows == 0 and out.schema.names == ["row", "variant", "edit"]


# --- mask_id ----------------------------------------------------------------------------------


def test_mask_id():
    out = ids.mask_id(["079084001234", "123456789", "12345", "1234567", None, ""])
    assert out.to_pylist() == ["*********234", "******789", "*****", "*****67", None, ""]


def test_mask_id_hides_what_a_reader_could_guess():
    """The province, century/sex and birth-year digits (the first six of a CCCD) are never
    shown: with the holder's birth date known they would leave too few digits hidden."""
    for number in ("079084001234", "001203000001"):
        (masked,) = ids.mask_id([number]).to_pylist()
        assert masked == "*" * 9 + number[-3:]


def test_mask_id_never_returns_the_full_value():
    values = ["1", "12", "123", "1234567", "12345678"]
    for original, masked in zip(values, ids.mask_id(values).to_pylist(), strict=True):
        assert len(masked) == len(original)
        assert masked.count("*") >= min(5, len(original))


# --- properties: arbitrary text never crashes ---------------------------------------------------


@FAST
@given(TEXTS)
def test_clean_and_mask_any_text(values):
    assert len(ids.clean_document_number(values)) == len(values)
    masked = ids.mask_id(values)
    assert len(masked) == len(values)
    assert pc.sum(pc.is_null(masked)).as_py() in (None, sum(v is None for v in values))


@FAST
@given(st.lists(st.tuples(st.sampled_from(["CCCD", "CMND", "PASSPORT", None, "x"]),
                          st.one_of(st.none(), st.text(max_size=20))), max_size=20))
def test_classify_any_text(pairs):
    types = [t for t, _ in pairs]
    numbers = [n for _, n in pairs]
    out = ids.classify_documents(types, numbers, reference_year=2026)
    assert out.num_rows == len(pairs)
    issues = out["id_issue"].to_pylist()
    assert all(i is None or i in ids.ISSUES for i in issues)
    assert all((v is None) == (i == "MISSING") for v, i in
               zip(out["id_valid"].to_pylist(), issues, strict=True))


@FAST
@given(TEXTS)
def test_cccd_parts_and_agreement_any_text(values):
    assert ids.cccd_parts(values).num_rows == len(values)
    out = ids.cccd_agrees_with(values, [1984] * len(values), ["M"] * len(values))
    assert len(out) == len(values)


@FAST
@given(st.lists(st.one_of(st.none(), st.text(max_size=14),
                          st.from_regex(r"\A[0-9]{1,13}\Z")), max_size=15))
def test_near_miss_any_text(values):
    out = ids.near_miss_variants(values)
    rows = out["row"].to_numpy()
    assert np.all((rows >= 0) & (rows < max(len(values), 1)))
    for r, variant in zip(rows.tolist(), out["variant"].to_pylist(), strict=True):
        assert variant != values[r] and len(variant) == len(values[r])


def test_near_miss_skips_overlong_digit_strings():
    out = ids.near_miss_variants(["1" * 21, "1" * 20])
    assert set(out["row"].to_pylist()) == {1}
    assert ids.near_miss_variants(["1" * 21], max_length=30).num_rows == 9 * 21


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from(["CCCD", "CMND", "PASSPORT", " cccd", None]),
    st.one_of(st.none(), st.from_regex(r"\A[0-9]{8,13}\Z"), st.text(max_size=14))),
    max_size=40), st.sampled_from([2026, 1995]))
def test_fast_path_agrees_with_the_general_path(rows, year):
    """Declared CCCD of 12 digits / CMND of 9 take a shortcut; it must change nothing."""
    types = pa.array([t for t, _ in rows], pa.string())
    numbers = pa.array([n for _, n in rows], pa.string())
    general = ids._classify_documents(types, numbers, reference_year=year)
    assert ids.classify_documents(types, numbers, reference_year=year).equals(general)
