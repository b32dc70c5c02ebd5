"""Province of a CCCD's birth registration, old (63) and after the 2025 merger (34).

The first three digits of a CCCD are the code of the province where the birth
was registered (Circular 07/2016/TT-BCA, Appendix 1). Resolution 202/2025/QH15
merged the 63 provinces into 34 units from 1 July 2025 without changing any ID
number, so the code is historical; ``pipelines/data/provinces_2025.csv`` (see
``provinces_2025.md`` next to it) maps each old code to its unit today. The
table is data: a setting (``report.provinces_file``) may name another file.
"""

from __future__ import annotations

import functools
import io
from importlib import resources
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

COLUMNS = ("old_code", "old_name", "unit", "unit_kind", "change")
UNKNOWN = "unknown province"
UNIT_KINDS = ("city", "province")
CHANGES = ("unchanged", "merged")


@functools.lru_cache(maxsize=4)
def _load(key: str | None) -> pa.Table:
    raw = (resources.files("pipelines").joinpath("data/provinces_2025.csv").read_bytes()
           if key is None else Path(key).read_bytes())
    table = pacsv.read_csv(io.BytesIO(raw), convert_options=pacsv.ConvertOptions(
        column_types=dict.fromkeys(COLUMNS, pa.string()), strings_can_be_null=False))
    source = key or "provinces_2025.csv"
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}")
    table = table.select(list(COLUMNS))
    # A reference table of 63 rows: checking it row by row is fine.
    codes = table["old_code"].to_pylist()
    bad = [c for c in codes if len(c) != 3 or not c.isdigit()]
    if bad or len(set(codes)) != len(codes):
        raise ValueError(f"{source}: old_code must be unique 3-digit codes ({bad[:5]})")
    for column, allowed in (("unit_kind", UNIT_KINDS), ("change", CHANGES)):
        wrong = set(table[column].to_pylist()) - set(allowed)
        if wrong:
            raise ValueError(f"{source}: {column} must be one of {allowed}, not {sorted(wrong)}")
    if any(not u.strip() for u in table["unit"].to_pylist()):
        raise ValueError(f"{source}: empty unit")
    return table


def mapping(path: str | Path | None = None) -> pa.Table:
    """The old-code → unit table (``old_code, old_name, unit, unit_kind, change``)."""
    return _load(None if path is None else str(Path(path).resolve()))


def units(path: str | Path | None = None) -> list[str]:
    """The provincial units after the merger, in the order of their first old code."""
    return list(dict.fromkeys(mapping(path)["unit"].to_pylist()))


def birth_province_code(id_number: pa.Array | pa.ChunkedArray,
                        id_type: pa.Array | pa.ChunkedArray | None = None) -> pa.Array:
    """The 3-digit province code of each 12-digit CCCD (null for anything else).

    With ``id_type``, only rows typed ``CCCD`` count; a CMND's leading digits
    name an issuing police office, not a birth province.
    """
    ids = pc.cast(id_number, pa.string())
    shaped = pc.match_substring_regex(ids, r"^[0-9]{12}$")
    if id_type is not None:
        shaped = pc.and_kleene(shaped, pc.equal(id_type, "CCCD"))
    code = pc.utf8_slice_codeunits(ids, 0, 3)
    result = pc.if_else(pc.fill_null(shaped, False), code, pa.scalar(None, pa.string()))
    return result.combine_chunks() if isinstance(result, pa.ChunkedArray) else result


def locate(codes: pa.Array | pa.ChunkedArray,
           path: str | Path | None = None) -> tuple[pa.Array, pa.Array, pa.Array]:
    """For each code: the old province name, the unit after the merger, and the code
    itself, each ``UNKNOWN`` (or null code) where the code is not one of the 63."""
    table = mapping(path)
    index = pc.index_in(codes, value_set=table["old_code"])
    old_name = pc.fill_null(pc.take(table["old_name"], index), UNKNOWN)
    unit = pc.fill_null(pc.take(table["unit"], index), UNKNOWN)
    known_code = pc.take(table["old_code"], index)
    return (_array(old_name), _array(unit), _array(known_code))


def _array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
