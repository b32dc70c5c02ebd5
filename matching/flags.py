"""Flag rules and the status decision, over whole columns.

Each rule is a pure function returning a boolean mask. Rules that span
telcos (EXCESS_SUBSCRIPTIONS, BULK_ACTIVATION, DUPLICATE_MSISDN) group over
all subscriptions of the run. Thresholds come from the caller (settings),
never from here. docs/flags.md documents every rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
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


def group_sizes(*keys: np.ndarray | pa.Array, where: np.ndarray) -> np.ndarray:
    """Per row, how many rows with ``where`` true share its key (0 where key is null)."""
    frame = pd.DataFrame({f"k{i}": np.asarray(k) if isinstance(k, np.ndarray)
                          else pa.array(k).to_pandas() for i, k in enumerate(keys)})
    frame = frame.where(where[:, None] if len(keys) else frame)
    sizes = frame.groupby(list(frame.columns), dropna=True, sort=False)[frame.columns[0]] \
        .transform("size")
    return np.asarray(sizes.fillna(0), dtype=np.int64)


def excess_subscriptions(holder_key: pa.Array, counted: np.ndarray, max_per_holder: int) \
        -> np.ndarray:
    """Counted (active) rows whose holder has more than ``max_per_holder`` counted rows."""
    sizes = group_sizes(pa.array(holder_key).to_pandas().to_numpy(dtype=object), where=counted)
    return counted & (sizes > max_per_holder)


def bulk_activation(
    point_of_sale: pa.Array,
    activation_date: pa.Array,
    document_key: pa.Array,
    *,
    min_activations: int,
    max_distinct_documents: int,
) -> np.ndarray:
    """Rows of (point of sale, day) groups with many activations on a handful of documents."""
    frame = pd.DataFrame(
        {
            "pos": pa.array(point_of_sale).to_pandas(),
            "day": pa.array(activation_date).to_pandas(),
            "doc": pa.array(document_key).to_pandas(),
        }
    )
    grouped = frame.groupby(["pos", "day"], dropna=True, sort=False)["doc"]
    size = grouped.transform("size")
    distinct = grouped.transform("nunique")
    hit = (size >= min_activations) & (distinct <= max_distinct_documents)
    return np.asarray(hit.fillna(False), dtype=bool)


def duplicate_msisdn(msisdn: pa.Array, counted: np.ndarray) -> np.ndarray:
    """Counted rows whose canonical number appears in more than one counted row."""
    keys = pa.array(msisdn).to_pandas().to_numpy(dtype=object)
    return counted & (group_sizes(keys, where=counted) > 1)


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


def decide_status(
    *,
    foreign_document: np.ndarray,
    unregistered: np.ndarray,
    mismatch: np.ndarray,
    review: np.ndarray,
) -> np.ndarray:
    """One status per row, by precedence (see docs/flags.md)."""
    status = np.full(len(foreign_document), "VERIFIED", dtype=object)
    for label, mask in (("REVIEW", review), ("MISMATCH", mismatch),
                        ("UNREGISTERED", unregistered), ("FOREIGN_DOCUMENT", foreign_document)):
        status[np.asarray(mask, dtype=bool)] = label
    return status


def any_of(masks: Sequence[np.ndarray]) -> np.ndarray:
    return np.logical_or.reduce([np.asarray(m, dtype=bool) for m in masks])
