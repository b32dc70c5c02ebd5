"""Identical rows sent twice: 64-bit row hashes and a compact set of them over a file.

A telco that sends the same row twice would make every count over rows count the
holder twice (excess subscriptions per holder). The later copies are quarantined
(``DUPLICATE_ROW``); rows that differ but share a number stay and are flagged
``DUPLICATE_MSISDN`` later. Rows are compared by a 64-bit hash of their text as
sent, over the whole file, chunk by chunk: the set keeps 12 bytes per distinct
row (hash and line of the first copy), never the rows. Two different rows share
a hash with probability about n²/2⁶⁵ per file (about 10⁻⁴ for 70 million rows).

The hash is vectorised: the texts are padded with Arrow to a common width per
length class (so no per-row Python) and the 8-byte words are mixed column by
column (a multiply-xorshift round per word, splitmix64's finaliser at the end,
with the byte length mixed in so that padding never makes two texts equal).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_MULTIPLY = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_WIDTHS = (32, 64, 128, 256, 512, 1024, 4096, 16384, 65536)


def _finalise(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _hash_fixed(words: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Hash rows of a (rows, words) uint64 matrix; ``lengths`` in bytes."""
    h = _finalise(lengths.astype(np.uint64) + _MULTIPLY)
    for j in range(words.shape[1]):
        h = (h ^ words[:, j]) * _MULTIPLY
        h ^= h >> np.uint64(29)
    return _finalise(h)


def _padded_words(texts: pa.Array, width: int) -> np.ndarray:
    """The texts (each at most ``width`` bytes) as a (rows, width / 8) uint64 matrix."""
    as_ascii = pc.cast(texts, pa.large_binary()).view(pa.large_string())
    padded = pc.ascii_rpad(as_ascii, width=width, padding="\x00")
    data = padded.buffers()[2]
    start = int(np.frombuffer(padded.buffers()[1], np.int64)[padded.offset]) if len(padded) \
        else 0
    raw = np.frombuffer(data, dtype=np.uint8, count=len(texts) * width, offset=start)
    return raw.view("<u8").reshape(len(texts), width // 8)


def row_hashes(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash of each text (null hashes like the empty text)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    texts = pc.fill_null(texts, "")
    lengths = pc.binary_length(texts).to_numpy(zero_copy_only=False).astype(np.int64)
    out = np.zeros(len(texts), dtype=np.uint64)
    lower = -1
    for width in (*_WIDTHS, None):
        if width is None:  # longer than any class: one class of its own width
            width = int(-(-max(int(lengths.max(initial=0)), 1) // 8) * 8)
        rows = np.flatnonzero((lengths > lower) & (lengths <= width))
        lower = width
        if not len(rows):
            continue
        part = texts.take(pa.array(rows)) if len(rows) < len(texts) else texts
        out[rows] = _hash_fixed(_padded_words(part, width), lengths[rows])
        if lower >= lengths.max(initial=0):
            break
    return out


def combine_hashes(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """One hash of two (order matters): a row's hash from its columns' hashes."""
    return _finalise((first * _MULTIPLY) ^ second)


class RowHashSet:
    """Hashes of the rows seen so far with the line of their first copy, as a few sorted
    runs merged like a log-structured tree (adding n rows costs O(n log n) overall)."""

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return sum(len(h) for h, _ in self._runs)

    @property
    def nbytes(self) -> int:
        return sum(h.nbytes + line.nbytes for h, line in self._runs)

    def _lookup(self, sorted_hashes: np.ndarray) -> np.ndarray:
        """Line of the first copy for each (sorted) hash already in the set, else -1."""
        found = np.full(len(sorted_hashes), -1, dtype=np.int64)
        for run, lines in self._runs:
            at = np.searchsorted(run, sorted_hashes)  # sorted needles: a sequential walk
            at_ok = at < len(run)
            hit = np.zeros(len(sorted_hashes), dtype=bool)
            hit[at_ok] = run[at[at_ok]] == sorted_hashes[at_ok]
            hit &= found < 0
            found[hit] = lines[at[hit]]
        return found

    def add(self, hashes: np.ndarray, lines: np.ndarray) -> np.ndarray:
        """Add a chunk's rows (in file order); return for each the line of an earlier
        identical row (in an earlier chunk or earlier in this one), or -1."""
        if len(lines) and int(lines.max()) >= 2**32:
            raise ValueError("line numbers beyond 2**32 do not fit the set")
        order = np.argsort(hashes, kind="stable")
        sorted_hashes = hashes[order]
        sorted_lines = lines[order]
        before = self._lookup(sorted_hashes)
        new_group = np.r_[True, sorted_hashes[1:] != sorted_hashes[:-1]]
        group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(order)), 0))
        # the earliest copy: an earlier chunk's, else the first of this chunk's group
        earlier = np.where(before[group_start] >= 0, before[group_start],
                           sorted_lines[group_start])
        repeated = ~new_group | (before >= 0)
        result = np.full(len(hashes), -1, dtype=np.int64)
        result[order] = np.where(repeated, earlier, -1)
        keep = new_group & (before < 0)
        if keep.any():
            self._runs.append((sorted_hashes[keep], sorted_lines[keep].astype(np.uint32)))
            while len(self._runs) > 1 and len(self._runs[-1][0]) * 2 >= len(self._runs[-2][0]):
                (h2, l2), (h1, l1) = self._runs.pop(), self._runs.pop()
                merged = np.concatenate((h1, h2))
                by = np.argsort(merged, kind="stable")  # two sorted runs: a linear merge
                self._runs.append((merged[by], np.concatenate((l1, l2))[by]))
        return result
