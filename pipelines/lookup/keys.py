"""What an officer may ask for, normalised; and the key hash that places it in the index.

A query is one subscription number or one document number, nothing else: the number
goes through the pipeline's own canonicalisation (``matching.phones``: ``+84 90…``,
``090.…`` and pre-2018 11-digit numbers all become ``0`` + 9 digits) and the document
through ``matching.ids.clean_document_number``; anything with a character that is
neither a letter nor a digit once separators are removed (``*``, ``%``, ``?``…) is
refused, so there is no wildcard, prefix or list query.

The index places each key in a bucket by a 64-bit hash (``key_hashes``, vectorised over
Arrow string arrays for the build; ``key_hash`` for one query, the same function in
plain Python): a digit key's value and length, any other key's polynomial over its
bytes, finished with SplitMix64 so that the top bits spread evenly. The top ``bits``
bits are the bucket, the top few the build's partition (docs/lookup.md, "The index").
"""

from __future__ import annotations

import functools
import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching import reference
from matching.ids import clean_document_number
from matching.phones import canonical_msisdn

_MULTIPLIER = 0x100000001B3  # FNV-64 prime: odd, so powers never vanish mod 2**64
_MASK = (1 << 64) - 1
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_MAX_DIGITS = 18  # 10**18 * 32 + 18 < 2**64
_DOCUMENT = re.compile(r"^[0-9A-Z]{5,20}$")
_CANONICAL = re.compile(r"^0[0-9]{9}$")


class QueryError(ValueError):
    """The query is not one number or one document number."""


@functools.lru_cache(maxsize=1)
def _mobile_prefixes() -> frozenset[str]:
    return frozenset(reference.mobile_prefixes()["prefix"].to_pylist())


def normalise_number(text: str) -> str:
    """The canonical subscription number (``0`` + 9 digits) of ``text``, or QueryError."""
    text = (text or "").strip()
    if not text or len(text) > 32:
        raise QueryError("enter one mobile number")
    if _CANONICAL.match(text) and text[:3] in _mobile_prefixes():
        return text  # already canonical: what canonical_msisdn would return
    number = canonical_msisdn(pa.array([text], pa.string()))["msisdn"][0].as_py()
    if number is None:
        raise QueryError("not a Vietnamese mobile number (one number, no wildcard)")
    return number


def normalise_document(text: str) -> str:
    """The document number as the pipeline stores it (separators removed, upper case)."""
    text = (text or "").strip()
    if not text or len(text) > 40:
        raise QueryError("enter one document number")
    document = clean_document_number(pa.array([text], pa.string()))[0].as_py()
    if document is None or not _DOCUMENT.match(document):
        raise QueryError("a document number is 5 to 20 letters or digits (no wildcard)")
    return document


def _finish(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(_MIX1)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(_MIX2)
    return h ^ (h >> np.uint64(31))


def _powers(length: int) -> np.ndarray:
    powers = np.ones(length, dtype=np.uint64)
    if length > 1:
        powers[1:] = np.uint64(_MULTIPLIER)
        powers = np.multiply.accumulate(powers)  # wraps mod 2**64, like key_hash
    return powers


def key_hashes(keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The 64-bit hash of every key (non-null, non-empty strings), as uint64.

    A key of at most 18 digits (numbers, CCCDs, CMNDs: nearly all) is hashed as its
    value and length, read by one Arrow cast; any other key as a polynomial over its
    bytes. Only the spread matters: a look-up compares the keys themselves.
    """
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    if keys.null_count:
        raise ValueError("key_hashes: null key")
    lengths = pc.binary_length(keys).to_numpy().astype(np.uint64)
    if (lengths == 0).any():
        raise ValueError("key_hashes: empty key")
    numeric = (pc.ascii_is_decimal(keys).to_numpy(zero_copy_only=False)
               & (lengths <= _MAX_DIGITS))
    h = np.empty(n, dtype=np.uint64)
    if numeric.all():
        h[:] = pc.cast(keys, pa.int64()).to_numpy().astype(np.uint64) * np.uint64(32) + lengths
        return _finish(h)
    chosen = pa.array(numeric)
    h[numeric] = pc.cast(keys.filter(chosen), pa.int64()).to_numpy().astype(np.uint64) \
        * np.uint64(32) + lengths[numeric]
    h[~numeric] = _polynomial(keys.filter(pc.invert(chosen)))
    return _finish(h)


def _polynomial(keys: pa.Array) -> np.ndarray:
    keys = keys.cast(pa.large_binary())
    n = len(keys)
    offsets = np.frombuffer(keys.buffers()[1], dtype=np.int64)[keys.offset:keys.offset + n + 1]
    lengths = np.diff(offsets)
    data = np.frombuffer(keys.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    starts = offsets[:-1] - offsets[0]
    position = np.arange(len(data), dtype=np.int64) - np.repeat(starts, lengths)
    terms = (data.astype(np.uint64) + np.uint64(1)) * _powers(int(lengths.max()))[position]
    return np.add.reduceat(terms, starts) ^ lengths.astype(np.uint64)


def key_hash(key: str) -> int:
    """``key_hashes`` of one key, in plain Python (for a query)."""
    data = key.encode("utf-8")
    if not data:
        raise ValueError("key_hash: empty key")
    if data.isdigit() and len(data) <= _MAX_DIGITS:
        h = (int(data) * 32 + len(data)) & _MASK
    else:
        h, power = 0, 1
        for byte in data:
            h = (h + (byte + 1) * power) & _MASK
            power = (power * _MULTIPLIER) & _MASK
        h ^= len(data)
    h ^= h >> 30
    h = (h * _MIX1) & _MASK
    h ^= h >> 27
    h = (h * _MIX2) & _MASK
    return h ^ (h >> 31)


def top_bits(hashes: np.ndarray, bits: int) -> np.ndarray:
    """The top ``bits`` bits of each hash (0 for ``bits == 0``) as int64: the bucket or the
    build partition."""
    if bits == 0:
        return np.zeros(len(hashes), dtype=np.int64)
    return (hashes >> np.uint64(64 - bits)).astype(np.int64)


def bucket_of(key: str, bits: int) -> int:
    return key_hash(key) >> (64 - bits) if bits else 0


def without_nulls(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A string array with null and empty entries as null (keys the index never holds)."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, values.type), values)
