"""Flag rules and the status decision, over whole columns.

Each rule is a pure function returning a boolean mask. Rules that span
telcos (EXCESS_SUBSCRIPTIONS, BULK_ACTIVATION, DUPLICATE_MSISDN) group over
all subscriptions of the run. Thresholds come from the caller (settings),
never from here. docs/flags.md documents every rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching.columns import as_bool_mask

# Order is the order flags are listed in outputs.
FLAGS: tuple[str, ...] = (
    "NO_ID",
    "INVALID_ID",
    "ID_NOT_FOUND",
    "LEGACY_ID",
    "NAME_MISMATCH",
    "DOB_MISMATCH",
    "GENDER_MISMATCH",
    "NEEDS_REVIEW",
    "DECEASED_HOLDER",
    "UNDERAGE_HOLDER",
    "EXCESS_SUBSCRIPTIONS",
    "BULK_ACTIVATION",
    "DUPLICATE_MSISDN",
    "INVALID_MSISDN",
)


def key_codes(keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Dense integer code per row for a key column (-1 where null), via Arrow's hash
    dictionary encoding: grouping then becomes integer arithmetic."""
    encoded = pc.dictionary_encode(pa.chunked_array([keys]) if isinstance(keys, pa.Array)
                                   else keys).combine_chunks()
    return np.asarray(pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False),
                      dtype=np.int64)


def group_sizes(codes: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Per row, how many rows with ``where`` true share its key code (0 where code < 0)."""
    counted = where & (codes >= 0)
    if not counted.any():
        return np.zeros(len(codes), dtype=np.int64)
    counts = np.bincount(codes[counted], minlength=int(codes.max()) + 1)
    return np.where(codes >= 0, counts[np.maximum(codes, 0)], 0)


def excess_subscriptions(holder_key: pa.Array, counted: np.ndarray, max_per_holder: int) \
        -> np.ndarray:
    """Counted (active) rows whose holder has more than ``max_per_holder`` counted rows."""
    return counted & (group_sizes(key_codes(holder_key), counted) > max_per_holder)


def bulk_activation(
    point_of_sale: pa.Array,
    activation_date: pa.Array,
    document_key: pa.Array,
    *,
    min_activations: int,
    max_distinct_documents: int,
) -> np.ndarray:
    """Rows of (point of sale, day) groups with many activations on a handful of documents."""
    pos = key_codes(point_of_sale)
    day = key_codes(activation_date)
    doc = key_codes(document_key)
    known = (pos >= 0) & (day >= 0)
    group = np.full(len(pos), -1, dtype=np.int64)
    if known.any():  # dense labels of the (point of sale, day) pairs, by sorting
        group[known] = np.unique(pos[known] * (int(day.max()) + 1) + day[known],
                                 return_inverse=True)[1].reshape(-1)
    size = group_sizes(group, known)
    # Distinct documents per group: the distinct (group, document) pairs, counted per group
    # (one int64 per pair, sorted: no 2-D unique).
    width = int(doc.max()) + 2  # doc is -1 where null: shifted to 0
    pairs = np.sort(group[known] * width + (doc[known] + 1))
    pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]] if pairs.size else pairs
    distinct = np.bincount(pairs // width, minlength=int(group.max()) + 1) if pairs.size \
        else np.zeros(1, dtype=np.int64)
    per_row = np.where(known, distinct[np.maximum(group, 0)], 0)
    return known & (size >= min_activations) & (per_row <= max_distinct_documents)


def duplicate_msisdn(msisdn: pa.Array, counted: np.ndarray) -> np.ndarray:
    """Counted rows whose canonical number appears in more than one counted row."""
    return counted & (group_sizes(key_codes(msisdn), counted) > 1)


def underage_at_activation(birth: pa.Array, activation: pa.Array, years: int) -> np.ndarray:
    """Holder younger than ``years`` completed years on the activation day.

    A year-only birth date is stored as 1 January of that year, the earliest
    possible birthday, so the rule only fires when the holder was certainly
    under age (Decree 49/2017: under-14s are registered by a guardian).
    """

    def parts(d: pa.Array) -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(pc.fill_null(f(d), 0).to_numpy(zero_copy_only=False), np.int64)
                     for f in (pc.year, pc.month, pc.day))

    by, bm, bd = parts(birth)
    ay, am, ad = parts(activation)
    age = ay - by - ((am * 100 + ad) < (bm * 100 + bd)).astype(np.int64)
    known = as_bool_mask(pc.and_(pc.is_valid(birth), pc.is_valid(activation)))
    return known & (age < years)


def activated_after_death(activation: pa.Array, death: pa.Array) -> np.ndarray:
    return as_bool_mask(pc.greater(activation, death))


def build_flag_lists(masks: Mapping[str, np.ndarray], n: int) -> pa.ListArray:
    """Turn per-flag boolean masks into one list<string> column in ``FLAGS`` order."""
    order = [f for f in FLAGS if f in masks]
    if not order:
        empty_offsets = pa.array(np.zeros(n + 1, np.int32))
        return pa.ListArray.from_arrays(empty_offsets, pa.array([], pa.string()))
    matrix = np.stack([np.asarray(masks[f], dtype=bool) for f in order], axis=1)
    _, cols = np.nonzero(matrix)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(matrix.sum(axis=1), out=offsets[1:])
    values = pa.array(np.asarray(order, dtype=object)[cols], pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets), values)


STATUSES: tuple[str, ...] = ("VERIFIED", "REVIEW", "MISMATCH", "UNREGISTERED",
                             "FOREIGN_DOCUMENT")


def status_codes(
    *,
    foreign_document: np.ndarray,
    unregistered: np.ndarray,
    mismatch: np.ndarray,
    review: np.ndarray,
) -> np.ndarray:
    """Index into ``STATUSES`` per row, by precedence (see docs/flags.md)."""
    code = np.zeros(len(foreign_document), dtype=np.int8)
    for value, mask in enumerate((review, mismatch, unregistered, foreign_document), start=1):
        code[np.asarray(mask, dtype=bool)] = value
    return code


def decide_status(
    *,
    foreign_document: np.ndarray,
    unregistered: np.ndarray,
    mismatch: np.ndarray,
    review: np.ndarray,
) -> np.ndarray:
    """One status per row, by precedence (see docs/flags.md)."""
    code = status_codes(foreign_document=foreign_document, unregistered=unregistered,
                        mismatch=mismatch, review=review)
    return np.asarray(STATUSES, dtype=object)[code]


def any_of(masks: Sequence[np.ndarray]) -> np.ndarray:
    return np.logical_or.reduce([np.asarray(m, dtype=bool) for m in masks])
