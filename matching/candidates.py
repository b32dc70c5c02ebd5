"""Finding the registry citizen a subscription's document points to, or candidates for it.

The ID number dominates identity (surname + date of birth is a weak key in
Vietnam: ~38% of people are Nguyễn), so the link is by document number:
CCCD against ``citizen_id``, old CMND against ``legacy_id``. When the
document leads nowhere (NO_ID, INVALID_ID, ID_NOT_FOUND), candidates come
from one-edit variants of a well-formed number (one digit substituted, two
adjacent digits swapped), lookalike letters mapped back to digits, and
blocking keys (date of birth + given name / surname / canonical name, birth
year + canonical name, birth year + sex from a malformed CCCD + given name).
Every candidate is scored by the same Fellegi–Sunter model
(``matching.model``); only a clearly best one is reported. All joins are
Arrow hash joins: no Python loop per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching import ids
from matching.columns import as_bool_mask
from matching.names import (
    canonical_name_key,
    given_name_key,
    surname_key,
)


class LinkMethod:
    CCCD = "CCCD"
    LEGACY_CMND = "LEGACY_CMND"


@dataclass(frozen=True)
class IdLinks:
    """Per subscription: registry row index (-1 when none) and how it was found."""

    registry_index: np.ndarray  # int64, -1 = not linked
    method: np.ndarray  # object: LinkMethod value or None
    ambiguous: np.ndarray  # bool: CMND shared by several citizens (known collision)


def _index_in(keys: pa.Array, universe: pa.Array) -> np.ndarray:
    index = pc.index_in(keys, value_set=universe)
    return np.asarray(pc.fill_null(index, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def link_by_document(
    id_type: pa.Array,
    id_number: pa.Array,
    id_valid: pa.Array,
    registry_citizen_id: pa.Array,
    registry_legacy_id: pa.Array,
) -> IdLinks:
    """Exact link: CCCD -> citizen_id, CMND -> legacy_id (vectorised hash lookups)."""
    n = len(id_number)
    valid = as_bool_mask(id_valid)
    is_cccd = as_bool_mask(pc.equal(id_type, "CCCD")) & valid
    is_cmnd = as_bool_mask(pc.equal(id_type, "CMND")) & valid

    index = np.full(n, -1, dtype=np.int64)
    method = np.full(n, None, dtype=object)
    by_cccd = _index_in(id_number, registry_citizen_id)
    hit = is_cccd & (by_cccd >= 0)
    index[hit] = by_cccd[hit]
    method[hit] = LinkMethod.CCCD

    by_legacy = _index_in(id_number, registry_legacy_id)
    hit = is_cmnd & (by_legacy >= 0)
    index[hit] = by_legacy[hit]
    method[hit] = LinkMethod.LEGACY_CMND

    counts = pc.value_counts(pc.drop_null(registry_legacy_id))
    shared = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    ambiguous = is_cmnd & np.asarray(
        pc.is_in(id_number, value_set=shared).to_numpy(zero_copy_only=False), dtype=bool
    )
    return IdLinks(registry_index=index, method=method, ambiguous=ambiguous)


# --- Candidate search without a usable document ----------------------------------------
# Letters that a hand-typed or OCR'd number carries for a digit (O for 0, I for 1, ...).
_LOOKALIKE_DIGITS = (("O", "0"), ("D", "0"), ("Q", "0"), ("I", "1"), ("L", "1"), ("Z", "2"),
                     ("S", "5"), ("G", "6"), ("T", "7"), ("B", "8"))


@dataclass(frozen=True)
class CandidatePairs:
    """Candidate (subscription row, registry row) pairs and how each was reached."""

    row: np.ndarray  # int64 index into the searched subscriptions
    citizen: np.ndarray  # int64 registry row
    id_level: np.ndarray  # int8 IdLevel: ONE_EDIT when a number variant led there, else NONE


def _date_text(dates: pa.Array, precision: pa.Array, *, day: bool) -> pa.Array:
    """ISO date (day precision only) or the year, as text; null where not applicable."""
    if day:
        is_day = pc.equal(pc.fill_null(precision, "day"), "day")
        text = pc.strftime(dates, format="%Y-%m-%d")
        return pc.if_else(is_day, text, pa.scalar(None, pa.string()))
    return pc.cast(pc.year(dates), pa.string())


def _keys(family: str, *parts: pa.Array) -> pa.Array:
    """``family|part1|part2``; null when any part is null (no key, no block)."""
    return pc.binary_join_element_wise(pa.scalar(family), *parts, "|",
                                       null_handling="emit_null")


def blocking_keys(full_name: pa.Array, date_of_birth: pa.Array, dob_precision: pa.Array,
                  birth_year: pa.Array, sex: pa.Array) -> pa.Table:
    """Every blocking key of each row (``row``, ``key``); same recipe for both sides.

    Families: date of birth + given name, date of birth + surname, date of birth
    + canonical (order/diacritic/Văn-Thị-free) name, birth year + canonical name
    (year-only dates), and birth year + sex + given name, where ``birth_year``
    and ``sex`` may come from the century/sex and year digits of a malformed CCCD.
    Surname + date of birth alone is weak in Vietnam (Nguyễn ≈ 38%), so every
    family still goes through the full model before anything is suggested.
    """
    given, surname = given_name_key(full_name), surname_key(full_name)
    canonical = canonical_name_key(full_name)
    day = _date_text(date_of_birth, dob_precision, day=True)
    year = _date_text(date_of_birth, dob_precision, day=False)
    birth_year = pc.cast(birth_year, pa.string())
    families = (
        _keys("dg", day, given), _keys("ds", day, surname), _keys("dc", day, canonical),
        _keys("yc", year, canonical), _keys("ysg", birth_year, pc.cast(sex, pa.string()), given),
    )
    n = len(full_name)
    rows = np.tile(np.arange(n, dtype=np.int64), len(families))
    keys = pa.concat_arrays([k.cast(pa.string()) for k in families])
    table = pa.table({"row": rows, "key": keys})
    return table.filter(pc.is_valid(table["key"]))


def _block_join(left: pa.Table, right: pa.Table, max_block: int) -> tuple[np.ndarray, np.ndarray]:
    """Hash join on ``key``; registry blocks larger than ``max_block`` are skipped."""
    if left.num_rows == 0 or right.num_rows == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    sizes = pc.value_counts(right["key"])
    small = pc.filter(sizes.field("values"), pc.less_equal(sizes.field("counts"), max_block))
    right = right.filter(pc.is_in(right["key"], value_set=small))
    joined = left.join(right.rename_columns(["citizen", "key"]), "key", join_type="inner",
                       use_threads=True)
    return (np.asarray(joined["row"].to_numpy(), np.int64),
            np.asarray(joined["citizen"].to_numpy(), np.int64))


def repaired_number(id_number: pa.Array) -> pa.Array:
    """Lookalike letters mapped back to digits (``O``->0, ``I``->1, ``S``->5 ...)."""
    s = pc.utf8_upper(id_number)
    for letter, digit in _LOOKALIKE_DIGITS:
        s = pc.replace_substring(s, letter, digit)
    return s


def candidate_pairs(
    *,
    full_name: pa.Array,
    date_of_birth: pa.Array,
    dob_precision: pa.Array,
    id_number: pa.Array,
    id_birth_year: pa.Array,
    id_sex: pa.Array,
    registry_blocking: pa.Table,
    registry_citizen_id: pa.Array,
    near_miss: np.ndarray,
    max_block: int = 200,
) -> CandidatePairs:
    """Candidates of rows whose document leads nowhere: number variants plus blocking keys.

    ``near_miss`` marks rows whose number gets one-edit variants (well-formed
    CCCDs not found); every row with lookalike letters is also tried with them
    mapped back to digits. Pairs are unique; ONE_EDIT wins over NONE.
    """
    rows_parts, cit_parts, lvl_parts = [], [], []
    searched = np.flatnonzero(near_miss)
    if searched.size:
        variants = ids.near_miss_variants(pc.take(id_number, pa.array(searched)))
        if variants.num_rows:
            found = _index_in(variants["variant"], registry_citizen_id)
            keep = found >= 0
            rows_parts.append(searched[np.asarray(variants["row"].to_numpy(), np.int64)[keep]])
            cit_parts.append(found[keep])
    repaired = repaired_number(id_number)
    changed = as_bool_mask(pc.not_equal(repaired, pc.utf8_upper(id_number)))
    by_repair = _index_in(repaired, registry_citizen_id)
    hit = changed & (by_repair >= 0)
    rows_parts.append(np.flatnonzero(hit))
    cit_parts.append(by_repair[hit])
    n_id = sum(len(r) for r in rows_parts)
    lvl_parts.append(np.full(n_id, 1, dtype=np.int8))  # IdLevel.ONE_EDIT

    sub_keys = blocking_keys(full_name, date_of_birth, dob_precision, id_birth_year, id_sex)
    b_rows, b_cit = _block_join(sub_keys, registry_blocking, max_block)
    rows_parts.append(b_rows)
    cit_parts.append(b_cit)
    lvl_parts.append(np.zeros(len(b_rows), dtype=np.int8))  # IdLevel.NONE

    rows = np.concatenate(rows_parts)
    cit = np.concatenate(cit_parts)
    lvl = np.concatenate(lvl_parts)
    if rows.size == 0:
        return CandidatePairs(rows, cit, lvl)
    # Unique pairs, highest ID level first.
    order = np.lexsort((-lvl, cit, rows))
    rows, cit, lvl = rows[order], cit[order], lvl[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (rows[1:] != rows[:-1]) | (cit[1:] != cit[:-1])
    return CandidatePairs(rows[first], cit[first], lvl[first])


@dataclass(frozen=True)
class BestCandidates:
    """Per searched row: the best candidate (-1 none), its weight, the runner-up gap."""

    citizen: np.ndarray
    id_level: np.ndarray
    probability: np.ndarray
    margin: np.ndarray  # bits between best and second best (inf when alone)
    count: np.ndarray


def best_candidates(pairs: CandidatePairs, weight: np.ndarray, probability: np.ndarray,
                    n_rows: int) -> BestCandidates:
    """The highest-weight candidate per row and how far ahead of the next one it is."""
    citizen = np.full(n_rows, -1, dtype=np.int64)
    level = np.zeros(n_rows, dtype=np.int8)
    prob = np.zeros(n_rows)
    margin = np.zeros(n_rows)
    count = np.bincount(pairs.row, minlength=n_rows).astype(np.int64)
    if pairs.row.size == 0:
        return BestCandidates(citizen, level, prob, margin, count)
    order = np.lexsort((-weight, pairs.row))
    rows, w = pairs.row[order], weight[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    second = np.zeros(len(rows), dtype=bool)
    second[1:] = first[:-1] & ~first[1:]
    best_at = order[first]
    citizen[rows[first]] = pairs.citizen[best_at]
    level[rows[first]] = pairs.id_level[best_at]
    prob[rows[first]] = probability[best_at]
    margin[rows[first]] = np.inf
    margin[rows[second]] = w[np.flatnonzero(second) - 1] - w[second]
    return BestCandidates(citizen, level, prob, margin, count)
