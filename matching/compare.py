"""Field comparisons besides names: date of birth and gender, as readable levels.

Each comparison returns an int8 level per row (higher = stronger agreement)
so that a reviewer sees *how* two values agree, not just a yes/no.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching.columns import paired_codes


class DobLevel(IntEnum):
    EXACT = 8
    SAME_YEAR_ONE_SIDE_YEAR_ONLY = 7
    DAY_MONTH_SWAPPED = 6
    ONE_DIGIT_OFF = 5
    DAYS_APART = 4  # at most DOB_DAYS_APART days apart (e.g. 1984-03-09 / 1984-03-10)
    SAME_DAY_MONTH = 3  # same day and month, another year
    NEAR_YEAR_ONE_SIDE_YEAR_ONLY = 2  # one side holds only a year, one or two years off
    DIFFERENT = 1
    MISSING = 0


DOB_LEVEL_LABELS: dict[DobLevel, str] = {
    DobLevel.EXACT: "same date",
    DobLevel.SAME_YEAR_ONE_SIDE_YEAR_ONLY: "same year (one side holds only a year)",
    DobLevel.DAY_MONTH_SWAPPED: "day and month swapped",
    DobLevel.ONE_DIGIT_OFF: "one digit off",
    DobLevel.DAYS_APART: "a few days apart",
    DobLevel.SAME_DAY_MONTH: "same day and month, another year",
    DobLevel.NEAR_YEAR_ONE_SIDE_YEAR_ONLY: "one or two years apart (one side holds only a "
                                           "year)",
    DobLevel.DIFFERENT: "different",
    DobLevel.MISSING: "missing",
}
# DAYS_APART: dates at most this many days apart (a slip of the day, or of the day at a
# month's end).
DOB_DAYS_APART = 3
# Levels at which two dates of birth are taken to agree.
DOB_AGREEING_LEVELS = (DobLevel.EXACT, DobLevel.SAME_YEAR_ONE_SIDE_YEAR_ONLY)


class GenderLevel(IntEnum):
    EQUAL = 2
    DIFFERENT = 1
    MISSING = 0


GENDER_LEVEL_LABELS: dict[GenderLevel, str] = {
    GenderLevel.EQUAL: "same",
    GenderLevel.DIFFERENT: "different",
    GenderLevel.MISSING: "missing",
}


def _np(values: pa.Array | pa.ChunkedArray, fill: object) -> np.ndarray:
    return np.asarray(pc.fill_null(values, fill).to_numpy(zero_copy_only=False))


def _ymd(dates: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (_np(pc.year(dates), 0).astype(np.int32), _np(pc.month(dates), 0).astype(np.int32),
            _np(pc.day(dates), 0).astype(np.int32))


def _digit_string(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    return year * 10000 + month * 100 + day


def _one_digit_off(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """True where the 8-digit YYYYMMDD forms differ in exactly one decimal digit."""
    differing = np.zeros(left.shape, dtype=np.int8)
    a, b = left.copy(), right.copy()
    for _ in range(8):
        differing += (a % 10 != b % 10).astype(np.int8)
        a //= 10
        b //= 10
    return differing == 1


@dataclass(frozen=True)
class _DobParts:
    """One side of a date-of-birth comparison, as integers per value."""

    year: np.ndarray
    month: np.ndarray
    day: np.ndarray
    days: np.ndarray  # days since the epoch (0 where null)
    null: np.ndarray
    year_only: np.ndarray

    @classmethod
    def of(cls, dates: pa.Array | pa.ChunkedArray,
           precision: pa.Array | pa.ChunkedArray) -> _DobParts:
        year, month, day = _ymd(dates)
        return cls(year=year, month=month, day=day,
                   days=_np(pc.cast(pc.cast(dates, pa.date32()), pa.int32()), 0)
                   .astype(np.int64),
                   null=_np(pc.is_null(dates), True).astype(bool),
                   year_only=_np(pc.equal(precision, "year"), False).astype(bool))

    def at(self, index: np.ndarray) -> _DobParts:
        return _DobParts(*(getattr(self, f.name)[index] for f in fields(self)))


def compare_dates_of_birth(
    left: pa.Array | pa.ChunkedArray,
    left_precision: pa.Array | pa.ChunkedArray,
    right: pa.Array | pa.ChunkedArray,
    right_precision: pa.Array | pa.ChunkedArray,
) -> np.ndarray:
    """Pairwise level of agreement of two date-of-birth columns.

    ``*_precision`` is ``'day'`` or ``'year'`` (a registry or export may hold only
    the year; the date is then 1 January). A year-only side agrees with any date
    in that year: it is a lack of information, not a contradiction.
    """
    return _dob_levels(_DobParts.of(left, left_precision), _DobParts.of(right, right_precision))


def compare_dates_of_birth_at(
    left: pa.Array | pa.ChunkedArray, left_precision: pa.Array | pa.ChunkedArray,
    left_at: np.ndarray, right: pa.Array | pa.ChunkedArray,
    right_precision: pa.Array | pa.ChunkedArray, right_at: np.ndarray,
) -> np.ndarray:
    """:func:`compare_dates_of_birth` of the pairs ``(left[left_at[i]], right[right_at[i]])``:
    each side's dates are read into integers once per value and gathered per pair (a
    candidate search compares millions of pairs of a few thousand rows and citizens)."""
    return _dob_levels(_DobParts.of(left, left_precision).at(np.asarray(left_at, np.int64)),
                       _DobParts.of(right, right_precision).at(np.asarray(right_at, np.int64)))


def _dob_levels(left: _DobParts, right: _DobParts) -> np.ndarray:
    ly, lm, ld = left.year, left.month, left.day
    ry, rm, rd = right.year, right.month, right.day
    days_apart = np.abs(left.days - right.days)
    missing = left.null | right.null
    year_only = left.year_only | right.year_only
    same_year = ly == ry
    exact = same_year & (lm == rm) & (ld == rd) & ~year_only
    swapped = same_year & (lm == rd) & (ld == rm) & (lm != ld) & ~year_only
    one_digit = _one_digit_off(_digit_string(ly, lm, ld), _digit_string(ry, rm, rd)) & ~year_only

    level = np.full(ly.shape, DobLevel.DIFFERENT, dtype=np.int8)
    level[year_only & (np.abs(ly - ry) <= 2)] = DobLevel.NEAR_YEAR_ONE_SIDE_YEAR_ONLY
    level[~year_only & (lm == rm) & (ld == rd)] = DobLevel.SAME_DAY_MONTH
    level[~year_only & (days_apart <= DOB_DAYS_APART)] = DobLevel.DAYS_APART
    level[one_digit] = DobLevel.ONE_DIGIT_OFF
    level[swapped] = DobLevel.DAY_MONTH_SWAPPED
    level[year_only & same_year] = DobLevel.SAME_YEAR_ONE_SIDE_YEAR_ONLY
    level[exact] = DobLevel.EXACT
    level[missing] = DobLevel.MISSING
    return level


def compare_genders(
    left: pa.Array | pa.ChunkedArray, right: pa.Array | pa.ChunkedArray
) -> np.ndarray:
    """Pairwise gender agreement ('M'/'F'; null is missing, never a mismatch)."""
    missing = _np(pc.or_(pc.is_null(left), pc.is_null(right)), True).astype(bool)
    equal = _np(pc.equal(left, right), False).astype(bool)
    level = np.where(equal, GenderLevel.EQUAL, GenderLevel.DIFFERENT).astype(np.int8)
    level[missing] = GenderLevel.MISSING
    return level


def compare_genders_at(left: pa.Array | pa.ChunkedArray, left_at: np.ndarray,
                       right: pa.Array | pa.ChunkedArray, right_at: np.ndarray) -> np.ndarray:
    """:func:`compare_genders` of the pairs ``(left[left_at[i]], right[right_at[i]])``, on
    integer codes of the values (equal values, equal codes; -1: null)."""
    lc, rc = paired_codes(left, left_at, right, right_at)
    level = np.where(lc == rc, GenderLevel.EQUAL, GenderLevel.DIFFERENT).astype(np.int8)
    level[(lc < 0) | (rc < 0)] = GenderLevel.MISSING
    return level
