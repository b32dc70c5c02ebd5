"""Reference tables (province codes, mobile prefixes, the 2018 prefix conversion).

The tables are data, not code: they ship as CSVs in ``matching/data`` and a
setting may point at another file (e.g. when the regulator opens a new prefix).
Every loader takes an optional ``path``; ``None`` means the bundled file.
Columns are read as strings so that leading zeros ("001", "0123") survive.
Loaded tables are cached per path and are immutable Arrow tables, so sharing them
is safe. This is the only I/O in ``matching``.
"""

from __future__ import annotations

import functools
import io
import re
from importlib import resources
from os import PathLike
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

PathArg = str | PathLike[str] | None

_PROVINCE_CODE = re.compile(r"^[0-9]{3}$")
_PREFIX = re.compile(r"^0[0-9]{2}$")
_OLD_PREFIX = re.compile(r"^01[0-9]{2}$")


def _read_csv(path: PathArg, bundled: str, columns: tuple[str, ...]) -> pa.Table:
    if path is None:
        raw = resources.files("matching").joinpath("data").joinpath(bundled).read_bytes()
    else:
        raw = Path(path).read_bytes()
    table = pacsv.read_csv(
        io.BytesIO(raw),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(columns, pa.string()), strings_can_be_null=False
        ),
    )
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ValueError(f"{path or bundled}: missing column(s) {missing}")
    return table.select(list(columns))


def _check(table: pa.Table, column: str, pattern: re.Pattern[str], source: str) -> None:
    # Reference files are tiny (tens of rows): a Python loop here is fine.
    values = table.column(column).to_pylist()
    bad = [v for v in values if not pattern.match(v)]
    if bad:
        raise ValueError(f"{source}: malformed {column} value(s) {bad[:5]}")
    if len(set(values)) != len(values):
        raise ValueError(f"{source}: duplicate {column} values")


def _key(path: PathArg) -> str | None:
    return None if path is None else str(Path(path).resolve())


@functools.lru_cache(maxsize=8)
def _provinces(key: str | None) -> pa.Table:
    table = _read_csv(key, "provinces.csv", ("code", "name"))
    _check(table, "code", _PROVINCE_CODE, key or "provinces.csv")
    return table


@functools.lru_cache(maxsize=8)
def _mobile_prefixes(key: str | None) -> pa.Table:
    table = _read_csv(key, "mobile_prefixes.csv", ("prefix", "carrier"))
    _check(table, "prefix", _PREFIX, key or "mobile_prefixes.csv")
    return table


@functools.lru_cache(maxsize=8)
def _legacy_prefixes(key: str | None) -> pa.Table:
    table = _read_csv(key, "legacy_prefixes.csv", ("old_prefix", "new_prefix", "carrier"))
    source = key or "legacy_prefixes.csv"
    _check(table, "old_prefix", _OLD_PREFIX, source)
    new = table.column("new_prefix").to_pylist()
    if not all(_PREFIX.match(v) for v in new):
        raise ValueError(f"{source}: malformed new_prefix value(s)")
    return table


def provinces(path: PathArg = None) -> pa.Table:
    """Province codes of the CCCD (``code``, ``name``), Circular 07/2016 Appendix 1.

    These are the 63 pre-2025 codes: the 2025 merger into 34 units did not
    change existing ID numbers, so the code in an ID is historical.
    """
    return _provinces(_key(path))


def mobile_prefixes(path: PathArg = None) -> pa.Table:
    """Current 3-digit mobile prefixes (``prefix``, ``carrier``).

    ``carrier`` is the operator the prefix was allocated to, not the current
    carrier of a number: mobile number portability exists since 16 Nov 2018.
    """
    return _mobile_prefixes(_key(path))


def legacy_prefixes(path: PathArg = None) -> pa.Table:
    """The 2018 11->10 digit conversion (``old_prefix``, ``new_prefix``, ``carrier``).

    The old 4-digit prefix (``01xx``) is replaced by the new 3-digit one; the
    last 7 digits of the number are kept.
    """
    return _legacy_prefixes(_key(path))
