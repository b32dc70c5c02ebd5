"""Finding the registry citizen a subscription's document points to.

The ID number dominates identity (surname + date of birth is a weak key in
Vietnam: ~38% of people are Nguyễn), so the link is by document number:
CCCD against ``citizen_id``, old CMND against ``legacy_id``. When a
well-formed number is absent, one-edit variants (one digit substituted, two
adjacent digits swapped) are looked up and a citizen is *suggested* only when
name and date of birth also agree and exactly one candidate does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching import ids
from matching.columns import as_bool_mask
from matching.compare import DOB_AGREEING_LEVELS, compare_dates_of_birth
from matching.names import NameComparisonSettings, NameLevel, compare_names


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


@dataclass(frozen=True)
class Suggestions:
    """Per searched subscription: suggested registry row (-1 = none) and candidate count."""

    registry_index: np.ndarray
    agreeing_candidates: np.ndarray


def suggest_by_near_miss(
    id_number: pa.Array,
    full_name: pa.Array,
    date_of_birth: pa.Array,
    dob_precision: pa.Array,
    registry_key: pa.Array,
    registry_name: pa.Array,
    registry_dob: pa.Array,
    registry_dob_precision: pa.Array,
    *,
    name_settings: NameComparisonSettings,
    min_name_level: NameLevel = NameLevel.ONE_TYPO,
) -> Suggestions:
    """Suggest the citizen whose ID is one edit away and whose name and DOB agree.

    Only a *unique* agreeing candidate is suggested: two agreeing candidates
    mean the evidence cannot tell them apart, and a wrong suggestion would send
    a telco after the wrong person.
    """
    n = len(id_number)
    result = np.full(n, -1, dtype=np.int64)
    agreeing = np.zeros(n, dtype=np.int64)
    if n == 0:
        return Suggestions(result, agreeing)
    variants = ids.near_miss_variants(id_number)
    if variants.num_rows == 0:
        return Suggestions(result, agreeing)
    found = _index_in(variants["variant"], registry_key)
    keep = found >= 0
    rows = np.asarray(variants["row"].to_numpy(zero_copy_only=False), dtype=np.int64)[keep]
    candidates = found[keep]
    if rows.size == 0:
        return Suggestions(result, agreeing)
    rows_pa = pa.array(rows)
    cand_pa = pa.array(candidates)
    names = compare_names(
        pc.take(full_name, rows_pa), pc.take(registry_name, cand_pa), name_settings
    )
    dob = compare_dates_of_birth(
        pc.take(date_of_birth, rows_pa), pc.take(dob_precision, rows_pa),
        pc.take(registry_dob, cand_pa), pc.take(registry_dob_precision, cand_pa),
    )
    ok = (names.level >= int(min_name_level)) & np.isin(dob, [int(x) for x in DOB_AGREEING_LEVELS])
    rows, candidates = rows[ok], candidates[ok]
    # A citizen reached by two different edits of one ID is still one candidate.
    pairs = np.unique(np.stack([rows, candidates], axis=1), axis=0) if rows.size else \
        np.empty((0, 2), dtype=np.int64)
    np.add.at(agreeing, pairs[:, 0], 1)
    unique_rows = agreeing[pairs[:, 0]] == 1
    result[pairs[unique_rows, 0]] = pairs[unique_rows, 1]
    return Suggestions(result, agreeing)
