"""Coercing column-like inputs, shared by every module of the matching library."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

ArrayLike = pa.Array | pa.ChunkedArray | pd.Series | Sequence[object]


def as_string_array(values: ArrayLike) -> pa.Array:
    """Any supported column as one flat ``pa.string()`` array (nulls kept).

    Mixed Excel cells (``79084000999`` next to ``"x"``) are read as text.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
    if not isinstance(values, pa.Array):
        try:
            values = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            series = pd.Series(values, dtype=object)
            values = pa.array(series.astype(str).where(series.notna(), None), pa.string())
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if values.type != pa.string():
        values = pc.cast(values, pa.string())
    return values


def as_bool_mask(mask: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
    """A boolean column as numpy bools, null counted as False."""
    if isinstance(mask, np.ndarray):
        return mask.astype(bool)
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)
