"""Date-of-birth and gender comparison levels."""

from __future__ import annotations

from datetime import date

import pyarrow as pa
import pytest

from matching.compare import DobLevel, GenderLevel, compare_dates_of_birth, compare_genders


def _d(values: list[date | None]) -> pa.Array:
    return pa.array(values, pa.date32())


@pytest.mark.parametrize(
    ("left", "lp", "right", "rp", "expected"),
    [
        (date(1984, 3, 7), "day", date(1984, 3, 7), "day", DobLevel.EXACT),
        (date(1984, 1, 1), "year", date(1984, 9, 30), "day", DobLevel.SAME_YEAR_ONE_SIDE_YEAR_ONLY),
        (date(1984, 9, 30), "day", date(1984, 1, 1), "year", DobLevel.SAME_YEAR_ONE_SIDE_YEAR_ONLY),
        (date(1983, 1, 1), "year", date(1984, 9, 30), "day",
         DobLevel.NEAR_YEAR_ONE_SIDE_YEAR_ONLY),
        (date(1984, 3, 7), "day", date(1984, 7, 3), "day", DobLevel.DAY_MONTH_SWAPPED),
        (date(1984, 3, 7), "day", date(1985, 3, 7), "day", DobLevel.ONE_DIGIT_OFF),
        (date(1984, 3, 17), "day", date(1984, 3, 27), "day", DobLevel.ONE_DIGIT_OFF),
        (date(1984, 3, 7), "day", date(1991, 11, 20), "day", DobLevel.DIFFERENT),
        (date(1984, 3, 9), "day", date(1984, 3, 10), "day", DobLevel.DAYS_APART),
        (date(1984, 2, 28), "day", date(1984, 3, 1), "day", DobLevel.DAYS_APART),
        (date(1984, 3, 9), "day", date(1984, 3, 13), "day", DobLevel.DIFFERENT),
        (date(1989, 3, 7), "day", date(1991, 3, 7), "day", DobLevel.SAME_DAY_MONTH),
        (date(1983, 1, 1), "year", date(1985, 9, 30), "day", DobLevel.NEAR_YEAR_ONE_SIDE_YEAR_ONLY),
        (date(1981, 1, 1), "year", date(1984, 9, 30), "day", DobLevel.DIFFERENT),
        (None, None, date(1991, 11, 20), "day", DobLevel.MISSING),
    ],
)
def test_dob_levels(left, lp, right, rp, expected) -> None:
    level = compare_dates_of_birth(_d([left]), pa.array([lp], pa.string()),
                                   _d([right]), pa.array([rp], pa.string()))
    assert level.tolist() == [expected]


def test_gender_levels() -> None:
    level = compare_genders(pa.array(["M", "F", None, "M"]), pa.array(["M", "M", "F", None]))
    assert level.tolist() == [GenderLevel.EQUAL, GenderLevel.DIFFERENT, GenderLevel.MISSING,
                              GenderLevel.MISSING]


def test_pairs_by_index_compare_as_the_pairs_written_out() -> None:
    """compare_dates_of_birth_at / compare_genders_at (each side once, pairs as indexes,
    in any order and repeated) give the levels of the same pairs written out."""
    import numpy as np

    from matching.compare import compare_dates_of_birth_at, compare_genders_at

    dates = [date(1984, 3, 7), date(1984, 7, 3), date(1984, 1, 1), date(1985, 3, 7), None,
             date(1984, 3, 9), date(1986, 1, 1), date(1984, 3, 27), date(1989, 3, 7)]
    precision = ["day", "day", "year", "day", None, "day", "year", "day", "day"]
    genders = ["M", "F", None, "M", "F", "M", None, "F", "M"]
    rng = np.random.default_rng(7)
    left, right = rng.integers(0, len(dates), 3_000), rng.integers(0, len(dates), 3_000)
    by_index = compare_dates_of_birth_at(_d(dates), pa.array(precision), left,
                                         _d(dates), pa.array(precision), right)
    written_out = compare_dates_of_birth(
        _d([dates[i] for i in left]), pa.array([precision[i] for i in left], pa.string()),
        _d([dates[i] for i in right]), pa.array([precision[i] for i in right], pa.string()))
    assert (by_index == written_out).all() and len(set(written_out.tolist())) >= 7
    by_index = compare_genders_at(pa.array(genders), left, pa.array(genders), right)
    written_out = compare_genders(pa.array([genders[i] for i in left], pa.string()),
                                  pa.array([genders[i] for i in right], pa.string()))
    assert (by_index == written_out).all() and len(set(written_out.tolist())) == 3
