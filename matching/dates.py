"""Dates from telco exports and the registry: parse with the configured formats.

Each telco's mapping lists the strptime patterns its exports use; the special
pattern ``"%Y"`` means a year-only value (registries hold some births by year
only), which becomes 1 January with ``precision == 'year'`` so that comparisons
downstream can compare years only. Dates feed the date-of-birth match (Decree
49/2017 requires name, date of birth and ID number) and the under-14 rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching.columns import ArrayLike, as_bool_mask, as_string_array, distinct_codes, take_codes

_NULL_STR = pa.scalar(None, pa.string())
_ISO_DATETIME = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}(:[0-9]{2}([.,][0-9]{1,9})?)?"
    r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)?$"
)
# strptime directive -> regex. Used to pin the shape of a value (a %Y is exactly
# 4 digits, no trailing garbage) and to read back the components, because
# Arrow's strptime silently rolls 31/02/2020 over to 2 March.
_DIRECTIVES = {
    "d": r"(?P<d>[0-9]{1,2})",
    "m": r"(?P<m>[0-9]{1,2})",
    "Y": r"(?P<Y>[0-9]{4})",
    "y": r"(?P<y>[0-9]{2})",
    "H": r"[0-9]{1,2}",
    "M": r"[0-9]{2}",
    "S": r"[0-9]{2}",
    "%": "%",
}
_RE2_SPECIAL = set(r".^$*+?()[]{}|\/-")


@dataclass(frozen=True)
class ParsedDates:
    """``value`` (date32, null when unparsed), ``precision`` ('day'/'year'/null),
    ``unparsed`` (numpy bool: non-empty input that matched no format), ``two_digit_year``
    (numpy bool: parsed by a ``%y`` format, whose century :func:`resolve_two_digit_years`
    decides; until then it is Arrow's pivot, 1969-2068)."""

    value: pa.Array
    precision: pa.Array
    unparsed: np.ndarray
    two_digit_year: np.ndarray | None = None

    @property
    def short_year(self) -> np.ndarray:
        return self.two_digit_year if self.two_digit_year is not None \
            else np.zeros(len(self.value), dtype=bool)




def _ints(values: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.cast(values, pa.int64()), -1).to_numpy()


def _format_regex(fmt: str) -> tuple[str, set[str]]:
    """Translate a strptime pattern to an anchored RE2 regex; fail fast on bad config."""
    out, seen, i = ["^"], set(), 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%":
            if i + 1 >= len(fmt) or fmt[i + 1] not in _DIRECTIVES:
                raise ValueError(f"unsupported directive in date format {fmt!r}")
            d = fmt[i + 1]
            if d in seen and d != "%":
                raise ValueError(f"repeated %{d} in date format {fmt!r}")
            seen.add(d)
            out.append(_DIRECTIVES[d])
            i += 2
        else:
            out.append("\\" + ch if ch in _RE2_SPECIAL else ch)
            i += 1
    if not ({"d", "m"} <= seen and seen & {"Y", "y"}):
        raise ValueError(f"date format {fmt!r} needs %d, %m and %Y/%y (or be exactly '%Y')")
    return "".join(out) + "$", seen


def _parse_day_format(s: pa.Array, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``s`` matching ``fmt`` exactly as a real calendar date -> (ok, days)."""
    pattern, seen = _format_regex(fmt)
    parsed = pc.strptime(s, format=fmt, unit="s", error_is_null=True)
    parts = pc.extract_regex(s, pattern)
    ok = as_bool_mask(pc.match_substring_regex(s, pattern)) & as_bool_mask(pc.is_valid(parsed))
    # Read the components back: a rolled-over date (31/02 -> 02/03) disagrees.
    ok &= _ints(pc.day(parsed)) == _ints(pc.struct_field(parts, "d"))
    ok &= _ints(pc.month(parsed)) == _ints(pc.struct_field(parts, "m"))
    year = _ints(pc.year(parsed))
    if "Y" in seen:
        written = _ints(pc.struct_field(parts, "Y"))
        ok &= (year == written) & (written >= 1)  # year 0 has no Python date
    else:
        ok &= (year % 100) == _ints(pc.struct_field(parts, "y"))
    days = pc.fill_null(pc.cast(pc.cast(parsed, pa.date32()), pa.int32()), 0).to_numpy()
    return ok, days


def parsed_per_distinct(parse: Callable[[pa.Array], ParsedDates],
                        values: ArrayLike) -> ParsedDates:
    """``parse(values)``, computed once per distinct text and taken back to every row.

    Dates repeat a great deal (a few thousand activation days, tens of thousands of
    birth dates per million rows). ``parse`` must treat each value on its own and
    leave null missing (not unparsed).
    """
    s = as_string_array(values)
    if len(s) < 64:
        return parse(s)
    distinct, codes = distinct_codes(s)
    if len(distinct) * 4 > len(s) * 3:  # hardly any repeat
        return parse(s)
    parsed = parse(distinct)
    unparsed = np.zeros(len(s), dtype=bool)
    short = np.zeros(len(s), dtype=bool)
    if len(distinct):
        unparsed = (codes >= 0) & np.asarray(parsed.unparsed, dtype=bool)[np.maximum(codes, 0)]
        short = (codes >= 0) & parsed.short_year[np.maximum(codes, 0)]
    return ParsedDates(value=take_codes(parsed.value, codes),
                       precision=take_codes(parsed.precision, codes), unparsed=unparsed,
                       two_digit_year=short)


def parse_dates(values: ArrayLike, formats: Sequence[str]) -> ParsedDates:
    """Parse with each format in turn; the first format that fits a row wins.

    Input is trimmed; null and empty strings are missing (null, *not*
    unparsed). Impossible dates (31/02/2020) are unparsed. When ``%Y-%m-%d``
    is among the formats, ISO datetimes (``2024-03-01 00:00:00``,
    ``2024-03-01T00:00:00+07:00``) are accepted too, keeping their written date.
    Each distinct text is parsed once.
    """
    for fmt in formats:  # a bad format fails even on a column without a value
        if fmt != "%Y":
            _format_regex(fmt)
    return parsed_per_distinct(lambda s: _parse_dates(s, formats), values)


def _parse_dates(values: pa.Array, formats: Sequence[str]) -> ParsedDates:
    s = pc.utf8_trim_whitespace(values)
    s = pc.if_else(pc.equal(s, ""), _NULL_STR, s)
    n = len(s)
    present = as_bool_mask(pc.is_valid(s))
    done = np.zeros(n, dtype=bool)
    days = np.zeros(n, dtype=np.int32)
    year_only = np.zeros(n, dtype=bool)
    short = np.zeros(n, dtype=bool)

    for fmt in formats:
        if fmt == "%Y":
            ok = as_bool_mask(pc.match_substring_regex(s, r"^[0-9]{4}$"))
            year = pc.fill_null(pc.cast(pc.if_else(pa.array(ok), s, "1970"), pa.int64()), 1970)
            year = year.to_numpy()
            ok &= year >= 1
            jan1 = (year - 1970).astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)
            take = ok & ~done
            days[take] = jan1[take]
            year_only[take] = True
            done |= take
            continue
        target = s
        if fmt == "%Y-%m-%d":
            iso = pc.match_substring_regex(s, _ISO_DATETIME)
            target = pc.if_else(iso, pc.utf8_slice_codeunits(s, 0, 10), s)
        ok, parsed_days = _parse_day_format(target, fmt)
        take = ok & ~done
        days[take] = parsed_days[take]
        short[take] = "%y" in fmt
        done |= take

    precision = np.where(done, year_only.astype(np.int8), -1)
    return ParsedDates(
        value=pa.array(days, pa.int32(), mask=~done).view(pa.date32()),
        precision=pc.take(pa.array(["day", "year"]), pa.array(precision, mask=precision < 0)),
        unparsed=present & ~done,
        two_digit_year=short,
    )


def _ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = days.astype("datetime64[D]")
    years = d.astype("datetime64[Y]")
    months = d.astype("datetime64[M]")
    return (years.astype(np.int64) + 1970, (months - years).astype(np.int64) + 1,
            (d - months).astype(np.int64) + 1)


def _days_of(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Day numbers of (year, month, day), and whether each is a real date (29 Feb)."""
    first = ((year - 1970).astype("datetime64[Y]").astype("datetime64[M]")
             + (month - 1).astype("timedelta64[M]"))
    days = first.astype("datetime64[D]") + (day - 1).astype("timedelta64[D]")
    real = days.astype("datetime64[M]") == first
    return days.astype(np.int64), real


def resolve_two_digit_years(parsed: ParsedDates, *, not_after: ArrayLike | dt.date,
                            century: np.ndarray | None = None) -> ParsedDates:
    """Give the dates parsed with ``%y`` their century, by a documented rule.

    ``century`` (per row, e.g. 1900 or 2000; negative where unknown) wins where it is
    known: for a date of birth, the century/sex digit of the holder's CCCD. Elsewhere
    the year is the latest one ending in those two digits whose date is not after
    ``not_after`` (per row, or one date; for a date of birth the activation date, for
    an activation date the run date): ``8/8/67`` activated in 2024 is 1967, not 2067.
    A 29 February that does not exist in the year so chosen is unparsed.
    """
    short = parsed.short_year & as_bool_mask(pc.is_valid(parsed.value))
    if not short.any():
        return parsed
    n = len(parsed.value)
    days = pc.fill_null(pc.cast(parsed.value, pa.int32()), 0).to_numpy().astype(np.int64)
    year, month, day = _ymd(days)
    two = year % 100
    if isinstance(not_after, dt.date):
        limit = np.full(n, (not_after - dt.date(1970, 1, 1)).days, dtype=np.int64)
        known = np.ones(n, dtype=bool)
    else:
        limit_array = _dates(not_after)
        known = as_bool_mask(pc.is_valid(limit_array))
        limit = pc.fill_null(pc.cast(limit_array, pa.int32()), 0).to_numpy().astype(np.int64)
    ly, lm, ld = _ymd(limit)
    latest = ly - ((ly - two) % 100)
    after = (latest == ly) & ((month * 100 + day) > (lm * 100 + ld))
    latest = latest - 100 * after
    chosen = np.where(known, latest, year)
    if century is not None:
        chosen = np.where(np.asarray(century) >= 0, np.asarray(century) + two, chosen)
    new_days, real = _days_of(chosen, month, day)
    ok = ~short | real
    value = np.where(short, new_days, days).astype(np.int32)
    valid = as_bool_mask(pc.is_valid(parsed.value)) & ok
    return ParsedDates(
        value=pa.array(value, pa.int32(), mask=~valid).view(pa.date32()),
        precision=pc.if_else(pa.array(valid), parsed.precision,
                             pa.scalar(None, pa.string())),
        unparsed=parsed.unparsed | (short & ~real),
        two_digit_year=parsed.two_digit_year,
    )


def _dates(values: ArrayLike | dt.date | pa.Scalar) -> pa.Array | pa.Scalar:
    if isinstance(values, dt.date):
        return pa.scalar(values, pa.date32()) if not isinstance(values, dt.datetime) \
            else pa.scalar(values.date(), pa.date32())
    if isinstance(values, pa.Scalar):
        return pc.cast(values, pa.date32())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(values, from_pandas=True)
    if pa.types.is_null(values.type):
        return pa.nulls(len(values), pa.date32())
    if not pa.types.is_temporal(values.type) or pa.types.is_time(values.type):
        raise TypeError(f"expected a date or timestamp column, got {values.type}")
    return pc.cast(values, pa.date32())


def age_in_years(
    birth: ArrayLike, on: ArrayLike | dt.date | pa.Scalar
) -> np.ndarray:
    """Completed years of age at ``on`` (an array, or one date such as the run date).

    Used for the under-14 rule (Decree 49/2017: under-14s are registered by a
    parent or guardian). Someone born on 29 Feb completes a year on 1 Mar in
    non-leap years. float64, NaN where either date is null; negative when
    ``birth`` is after ``on`` (the caller decides what that means).
    """
    b, o = _dates(birth), _dates(on)
    if isinstance(o, pa.Array) and len(o) != len(b):
        raise ValueError("birth and on must have the same length")
    years = pc.subtract(pc.year(o), pc.year(b))
    before = pc.or_(
        pc.less(pc.month(o), pc.month(b)),
        pc.and_(pc.equal(pc.month(o), pc.month(b)), pc.less(pc.day(o), pc.day(b))),
    )
    age = pc.subtract(years, pc.cast(before, pa.int64()))
    return np.asarray(pc.cast(age, pa.float64()).to_numpy(zero_copy_only=False), dtype=float)
