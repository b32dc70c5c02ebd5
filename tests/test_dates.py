"""Date parsing with configured formats, year-only values, and age in completed years."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching import dates

FAST = settings(max_examples=60, deadline=None)
FORMATS = ["%d/%m/%Y", "%Y-%m-%d", "%Y"]
D = dt.date


def parse(values, formats=FORMATS):
    out = dates.parse_dates(values, formats)
    return out.value.to_pylist(), out.precision.to_pylist(), out.unparsed.tolist()


@pytest.mark.parametrize(
    ("raw", "formats", "expected"),
    [
        ("01/03/2024", ["%d/%m/%Y"], D(2024, 3, 1)),
        ("1/3/2024", ["%d/%m/%Y"], D(2024, 3, 1)),
        (" 01/03/2024 ", ["%d/%m/%Y"], D(2024, 3, 1)),
        ("2024-03-01", ["%Y-%m-%d"], D(2024, 3, 1)),
        ("01-03-2024", ["%d-%m-%Y"], D(2024, 3, 1)),
        ("01.03.2024", ["%d.%m.%Y"], D(2024, 3, 1)),
        ("20240301", ["%Y%m%d"], D(2024, 3, 1)),
        ("03/01/2024", ["%m/%d/%Y"], D(2024, 3, 1)),
        ("01/03/84", ["%d/%m/%y"], D(1984, 3, 1)),
        ("01/03/2024 10:20:30", ["%d/%m/%Y %H:%M:%S"], D(2024, 3, 1)),
        ("29/02/2020", ["%d/%m/%Y"], D(2020, 2, 29)),
    ],
)
def test_day_formats(raw, formats, expected):
    assert parse([raw], formats) == ([expected], ["day"], [False])


@pytest.mark.parametrize(
    "raw",
    ["2024-03-01 00:00:00", "2024-03-01T00:00:00", "2024-03-01T23:59:59.123456",
     "2024-03-01T10:00:00+07:00", "2024-03-01T10:00:00Z", "2024-03-01 10:00"],
)
def test_iso_datetimes_when_iso_date_is_a_format(raw):
    assert parse([raw], ["%Y-%m-%d"]) == ([D(2024, 3, 1)], ["day"], [False])
    assert parse([raw], ["%d/%m/%Y"]) == ([None], [None], [True])


def test_year_only():
    assert parse(["1984", " 2001 "]) == ([D(1984, 1, 1), D(2001, 1, 1)], ["year"] * 2,
                                         [False, False])
    # Without "%Y" among the formats a bare year is not a date.
    assert parse(["1984"], ["%d/%m/%Y"]) == ([None], [None], [True])


@pytest.mark.parametrize(
    "raw",
    ["31/02/2020", "29/02/2021", "31/04/2024", "00/01/2024", "01/13/2024", "32/01/2024",
     "01/01/0000", "0000", "01/03/85", "984", "19840", "01/03/2024x", "garbage", "2024/03/01",
     "2024-02-30", "2024-02-30 00:00:00"],
)
def test_impossible_or_foreign_values_are_unparsed(raw):
    assert parse([raw]) == ([None], [None], [True])


def test_empty_is_missing_not_unparsed():
    assert parse(["", "   ", None]) == ([None] * 3, [None] * 3, [False] * 3)


def test_first_matching_format_wins():
    # 01/02/2024 is ambiguous between d/m and m/d: the configured order decides.
    assert parse(["01/02/2024"], ["%d/%m/%Y", "%m/%d/%Y"])[0] == [D(2024, 2, 1)]
    assert parse(["01/02/2024"], ["%m/%d/%Y", "%d/%m/%Y"])[0] == [D(2024, 1, 2)]
    # ...but a value impossible under the first falls through to the second.
    assert parse(["13/02/2024"], ["%m/%d/%Y", "%d/%m/%Y"])[0] == [D(2024, 2, 13)]


def test_mixed_column():
    values, precision, unparsed = parse(
        ["01/03/2024", "1984", "2024-03-01 00:00:00", "31/02/2020", "", None, "abc"]
    )
    assert values == [D(2024, 3, 1), D(1984, 1, 1), D(2024, 3, 1), None, None, None, None]
    assert precision == ["day", "year", "day", None, None, None, None]
    assert unparsed == [False, False, False, True, False, False, True]


def test_output_types():
    out = dates.parse_dates(pa.chunked_array([["01/03/2024"], [None]]), FORMATS)
    assert out.value.type == pa.date32() and out.precision.type == pa.string()
    assert isinstance(out.unparsed, np.ndarray) and out.unparsed.dtype == bool


def test_accepts_pandas_and_date_columns():
    assert parse(pd.Series(["01/03/2024", None]))[0] == [D(2024, 3, 1), None]
    # A column that already holds dates/timestamps is read through its ISO text.
    assert parse(pa.array([D(2024, 3, 1)]))[0] == [D(2024, 3, 1)]
    assert parse(pd.Series(pd.to_datetime(["2024-03-01 00:00:00"])))[0] == [D(2024, 3, 1)]


@pytest.mark.parametrize("bad", ["%m/%Y", "%d/%m", "%d/%m/%Y %Z", "%d/%d/%Y"])
def test_unsupported_formats_fail_fast(bad):
    with pytest.raises(ValueError):
        dates.parse_dates(["01/03/2024"], [bad])


# --- age_in_years -----------------------------------------------------------------------------


def test_age_in_completed_years():
    birth = [D(2010, 3, 1), D(2010, 3, 2), D(2010, 2, 28), None, D(2012, 2, 29)]
    age = dates.age_in_years(birth, D(2024, 3, 1))
    assert age[:3].tolist() == [14.0, 13.0, 14.0]
    assert np.isnan(age[3])
    assert age[4] == 12.0


def test_age_elementwise_and_leap_day():
    birth = pa.array([D(2012, 2, 29), D(2012, 2, 29), D(2000, 1, 1)])
    on = pa.array([D(2023, 2, 28), D(2023, 3, 1), None])
    age = dates.age_in_years(birth, on)
    assert age[:2].tolist() == [10.0, 11.0] and np.isnan(age[2])


def test_age_under_14_rule_boundary():
    on = D(2026, 4, 15)
    age = dates.age_in_years([D(2012, 4, 15), D(2012, 4, 16)], on)
    assert (age < 14).tolist() == [False, True]


def test_age_accepts_parsed_dates_and_timestamps():
    parsed = dates.parse_dates(["15/04/2012", "2012"], FORMATS)
    assert dates.age_in_years(parsed.value, D(2026, 4, 15)).tolist() == [14.0, 14.0]
    stamps = pd.Series(pd.to_datetime(["2012-04-16"]))
    assert dates.age_in_years(stamps, dt.datetime(2026, 4, 15, 12)).tolist() == [13.0]


def test_age_rejects_text():
    with pytest.raises(TypeError):
        dates.age_in_years(["2012-04-16"], D(2026, 4, 15))


# --- properties -------------------------------------------------------------------------------


@FAST
@given(st.lists(st.one_of(st.none(), st.text(max_size=25),
                          st.from_regex(r"\A[0-9]{1,4}[/-][0-9]{1,2}[/-][0-9]{1,4}\Z")),
                max_size=20))
def test_any_text(values):
    out = dates.parse_dates(values, FORMATS)
    assert len(out.value) == len(out.precision) == len(out.unparsed) == len(values)
    parsed = [v is not None for v in out.value.to_pylist()]
    assert [p is not None for p in out.precision.to_pylist()] == parsed
    assert not any(p and u for p, u in zip(parsed, out.unparsed, strict=True))


@FAST
@given(st.dates())
def test_round_trip_every_valid_date(day):
    text = [day.strftime("%d/%m/") + f"{day.year:04d}", f"{day.year:04d}" + day.strftime("-%m-%d")]
    assert parse(text)[0] == [day, day]


@FAST
@given(st.lists(st.one_of(st.none(), st.dates()), max_size=20), st.dates())
def test_age_any_dates(births, on):
    age = dates.age_in_years(pa.array(births, pa.date32()), on)
    assert len(age) == len(births)
    for b, a in zip(births, age, strict=True):
        if b is None:
            assert np.isnan(a)
        else:
            expected = on.year - b.year - ((on.month, on.day) < (b.month, b.day))
            assert a == expected


@given(st.lists(st.one_of(st.none(), st.sampled_from(["01/03/2024", "31/02/2020", "1985", "",
                                                      " 15/04/2012 ", "x", "2024-03-01"]),
                          st.text(max_size=10)), min_size=4, max_size=20))
@settings(max_examples=40, deadline=None)
def test_long_columns_are_parsed_once_per_distinct_text(values: list[str | None]) -> None:
    one, many = dates.parse_dates(values, FORMATS), dates.parse_dates(values * 20, FORMATS)
    assert many.value.to_pylist() == one.value.to_pylist() * 20
    assert many.precision.to_pylist() == one.precision.to_pylist() * 20
    assert many.unparsed.tolist() == one.unparsed.tolist() * 20


def test_two_digit_years_take_the_century_by_rule():
    date = dt.date
    """The CCCD's century where known, else the latest year not after the given date."""
    parsed = dates.parse_dates(pa.array(["8/8/67", "29/02/00", "1/1/24", "31/12/24",
                                         "12/03/1985", None]), ["%d/%m/%y", "%d/%m/%Y"])
    assert parsed.short_year.tolist() == [True, True, True, True, False, False]
    assert parsed.value[0].as_py() == date(2067, 8, 8)  # Arrow's pivot, before the rule
    limit = pa.array([date(2024, 5, 1)] * 5 + [None])
    resolved = dates.resolve_two_digit_years(parsed, not_after=limit)
    assert resolved.value.to_pylist() == [date(1967, 8, 8), date(2000, 2, 29),
                                          date(2024, 1, 1), date(1924, 12, 31),
                                          date(1985, 3, 12), None]
    by_cccd = dates.resolve_two_digit_years(
        parsed, not_after=date(2024, 5, 1), century=np.array([-1, 1900, 2000, -1, 1900, -1]))
    # 1900 has no 29 February: unparsed, never moved to another day
    assert by_cccd.value.to_pylist() == [date(1967, 8, 8), None, date(2024, 1, 1),
                                         date(1924, 12, 31), date(1985, 3, 12), None]
    assert by_cccd.unparsed.tolist() == [False, True, False, False, False, False]
    assert by_cccd.precision.to_pylist()[:3] == ["day", None, "day"]


def test_a_date_without_two_digit_years_is_left_as_parsed():
    date = dt.date
    parsed = dates.parse_dates(pa.array(["12/03/1985"]), ["%d/%m/%Y"])
    assert dates.resolve_two_digit_years(parsed, not_after=date(1900, 1, 1)) is parsed
