"""Identical rows sent twice: 64-bit row hashes and a compact set of them over a file.

A telco that sends the same row twice would make every count over rows count the
holder twice (excess subscriptions per holder). The later copies are quarantined
(``DUPLICATE_ROW``); rows that differ but share a number stay and are flagged
``DUPLICATE_MSISDN`` later. Rows are compared by a 64-bit hash of their text as
sent, over the whole file, chunk by chunk: the set keeps 12 bytes per distinct
row (hash and line of the first copy), never the rows; it is the one part of
intake whose memory grows with the file (60 MB for 5 million rows). Two different rows share
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
    """Hashes of the rows seen so far with the line of their first copy.

    Split by the hash's top byte into 256 buckets, each a few sorted runs merged like a
    log-structured tree: adding n rows costs O(n log n) overall, and a merge never
    copies more than one bucket (1/256 of the set) at a time.
    """

    BUCKET_SHIFT = np.uint64(56)

    def __init__(self) -> None:
        self._buckets: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(256)]

    def __len__(self) -> int:
        return sum(len(h) for runs in self._buckets for h, _ in runs)

    @property
    def nbytes(self) -> int:
        return sum(h.nbytes + line.nbytes for runs in self._buckets for h, line in runs)

    @staticmethod
    def _lookup(runs: list[tuple[np.ndarray, np.ndarray]],
                sorted_hashes: np.ndarray) -> np.ndarray:
        """Line of the first copy for each (sorted) hash already in ``runs``, else -1."""
        found = np.full(len(sorted_hashes), -1, dtype=np.int64)
        for run, lines in runs:
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
        bounds = np.searchsorted(sorted_hashes >> self.BUCKET_SHIFT,
                                 np.arange(257, dtype=np.uint64))
        buckets = [(b, int(bounds[b]), int(bounds[b + 1])) for b in range(256)
                   if bounds[b + 1] > bounds[b]]
        before = np.full(len(hashes), -1, dtype=np.int64)
        for b, lo, hi in buckets:
            if self._buckets[b]:
                before[lo:hi] = self._lookup(self._buckets[b], sorted_hashes[lo:hi])
        new_group = np.r_[True, sorted_hashes[1:] != sorted_hashes[:-1]]
        group_start = np.maximum.accumulate(np.where(new_group, np.arange(len(order)), 0))
        # the earliest copy: an earlier chunk's, else the first of this chunk's group
        earlier = np.where(before[group_start] >= 0, before[group_start],
                           sorted_lines[group_start])
        repeated = ~new_group | (before >= 0)
        result = np.full(len(hashes), -1, dtype=np.int64)
        result[order] = np.where(repeated, earlier, -1)
        keep = new_group & (before < 0)
        for b, lo, hi in buckets:
            kept = keep[lo:hi]
            if not kept.any():
                continue
            runs = self._buckets[b]
            runs.append((sorted_hashes[lo:hi][kept], sorted_lines[lo:hi][kept]
                         .astype(np.uint32)))
            while len(runs) > 1 and len(runs[-1][0]) * 2 >= len(runs[-2][0]):
                newer, older = runs.pop(), runs.pop()
                runs.append(_merge(older, newer))
        return result


def _merge(older: tuple[np.ndarray, np.ndarray],
           newer: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Two sorted runs (no hash in both) as one, placing the smaller run's entries by
    binary search: no sort and no index array the size of both."""
    (big_h, big_l), (small_h, small_l) = (older, newer) if len(older[0]) >= len(newer[0]) \
        else (newer, older)
    at = np.searchsorted(big_h, small_h) + np.arange(len(small_h))
    hashes = np.empty(len(big_h) + len(small_h), dtype=np.uint64)
    lines = np.empty(len(hashes), dtype=np.uint32)
    rest = np.ones(len(hashes), dtype=bool)
    rest[at] = False
    hashes[at], lines[at] = small_h, small_l
    hashes[rest], lines[rest] = big_h, big_l
    return hashes, lines
