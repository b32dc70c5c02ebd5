"""Where each CSV record starts and ends in a buffer of UTF-8 bytes, without parsing it.

The reader needs the spans for three things the CSV parser does not give: the
original text of every record (``raw_record``, sent back to the telco when the row
is quarantined), the physical line where each record starts (error details), and
safe places to cut a large file into chunks (a record boundary, never a line break
inside a quoted value).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# A quoted value may hold a few line breaks (an address); a record spanning more
# physical lines than this is a quote left open by mistake, which would swallow
# the rows after it into one "row": the file is refused instead.
MAX_LINES_PER_RECORD = 20


@dataclass(frozen=True)
class Records:
    """Byte spans of the non-blank records of a CSV buffer (the header is record 0)."""

    starts: np.ndarray
    ends: np.ndarray
    open_quote_at_end: bool
    first_lines: np.ndarray  # 1-based physical line where each record starts
    line_counts: np.ndarray  # physical lines each record spans

    def __len__(self) -> int:
        return len(self.starts)

    def head(self, n: int) -> Records:
        """The first ``n`` records (none of them the last of the buffer any more)."""
        return Records(self.starts[:n], self.ends[:n], False, self.first_lines[:n],
                       self.line_counts[:n])

    def shifted(self, offset: int, lines: int) -> Records:
        """The same records seen from ``offset`` bytes and ``lines`` lines further in."""
        return Records(self.starts - offset, self.ends - offset, self.open_quote_at_end,
                       self.first_lines + lines, self.line_counts)


def _record_grammar(delimiter: str, quote: str) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """Regexes for one record as pyarrow reads it: a quote opens a quoted value only at
    the start of a field; ``""`` inside is a quote; after the closing quote the value
    goes on unquoted. Returns (record incl. line end, record whose quotes all close)."""
    d, q = re.escape(delimiter.encode()), re.escape(quote.encode())
    inside = b"[^" + q + b"]*(?:" + q + q + b"[^" + q + b"]*)*"
    after = b"[^" + d + b"\r\n]*"
    unquoted = b"[^" + d + q + b"\r\n]" + after
    field_open = b"(?:" + q + inside + b"(?:" + q + after + rb"|\Z)|" + unquoted + b")?"
    field_closed = b"(?:" + q + inside + q + after + b"|" + unquoted + b")?"
    record = re.compile(b"(" + field_open + b"(?:" + d + field_open + rb")*)(?:\r\n|\n|\r|\Z)")
    closed = re.compile(field_closed + b"(?:" + d + field_closed + b")*")
    return record, closed


def record_spans(buf: bytes, delimiter: str, quote: str) -> Records:
    """Where each record starts and ends, vectorised when no quote can hide a line break."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    if not len(arr):
        empty = np.zeros(0, dtype=np.int64)
        return Records(empty, empty, False, empty, empty)
    newlines = np.flatnonzero(arr == 10)
    simple_cr = b"\r" not in buf or buf.count(b"\r") == buf.count(b"\r\n")
    if quote.encode() not in buf and simple_cr:
        starts = np.concatenate(([0], newlines + 1)).astype(np.int64)
        ends = np.concatenate((newlines, [len(buf)])).astype(np.int64)
        has_cr = (ends > starts) & (arr[np.maximum(ends - 1, 0)] == 13)
        ends = ends - has_cr
        keep = ends > starts
        starts, ends = starts[keep], ends[keep]
        first_lines = np.flatnonzero(keep).astype(np.int64) + 1
        return Records(starts, ends, False, first_lines, np.ones(len(starts), np.int64))
    if simple_cr:
        fast = _quoted_record_spans(buf, arr, newlines, delimiter, quote)
        if fast is not None:
            return fast
    record, closed = _record_grammar(delimiter, quote)
    spans = [(m.start(1), m.end(1)) for m in record.finditer(buf) if m.end(1) > m.start(1)]
    starts = np.array([s for s, _ in spans], dtype=np.int64)
    ends = np.array([e for _, e in spans], dtype=np.int64)
    open_quote = bool(spans) and closed.fullmatch(buf, spans[-1][0], spans[-1][1]) is None
    first_lines = np.searchsorted(newlines, starts) + 1
    last_lines = np.searchsorted(newlines, np.maximum(ends - 1, starts)) + 1
    return Records(starts, ends, open_quote, first_lines.astype(np.int64),
                    (last_lines - first_lines + 1).astype(np.int64))


def _quoted_record_spans(buf: bytes, arr: np.ndarray, newlines: np.ndarray, delimiter: str,
                         quote: str) -> Records | None:
    """Record spans of a file with quoted values, vectorised: a line break ends a record
    exactly where an even number of quotes comes before it.

    That holds when every quote is where the grammar of :func:`_record_grammar` puts
    one: opening a value (at the start of a field), closing it (before a delimiter, a
    line break or the end), or doubled inside it. Anything else (a quote inside an
    unquoted value, text after a closing quote) returns None: the grammar decides.
    """
    if len(delimiter.encode()) != 1 or len(quote.encode()) != 1 or not len(arr):
        return None
    q, d = quote.encode()[0], delimiter.encode()[0]
    at = np.flatnonzero(arr == q)
    edge = np.zeros(256, dtype=bool)
    edge[[d, 10, 13, q]] = True
    # Opening (or the second quote of a doubled pair): after a delimiter, a line end, a
    # quote or at the start. Closing (or the first of a pair): before the same or the end.
    # Quotes alternate: even positions in ``at`` open, odd ones close.
    opening, closing = at[0::2], at[1::2]
    if not (edge[arr[np.maximum(opening - 1, 0)]] | (opening == 0)).all():
        return None
    if not (edge[arr[np.minimum(closing + 1, len(arr) - 1)]] | (closing + 1 == len(arr))).all():
        return None
    if len(at) > 2 and (at[2:] - at[:-2] == 2).any():  # three quotes in a row: ambiguous
        return None
    even = (np.searchsorted(at, newlines) % 2) == 0
    ends_at = newlines[even]
    starts = np.concatenate(([0], ends_at + 1)).astype(np.int64)
    ends = np.concatenate((ends_at, [len(buf)])).astype(np.int64)
    last_open = len(at) % 2 == 1
    has_cr = (ends > starts) & (arr[np.maximum(ends - 1, 0)] == 13)
    has_cr[-1] &= not last_open  # inside an open quote the rest of the file is the value
    ends = ends - has_cr
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    first_lines = np.searchsorted(newlines, starts) + 1
    last_lines = np.searchsorted(newlines, np.maximum(ends - 1, starts)) + 1
    # Whether the last record leaves a quote open: the grammar's own reading (one record).
    _, closed = _record_grammar(delimiter, quote)
    open_quote = bool(len(starts)) and \
        closed.fullmatch(buf, int(starts[-1]), int(ends[-1])) is None
    return Records(starts, ends, open_quote, first_lines.astype(np.int64),
                    (last_lines - first_lines + 1).astype(np.int64))


def raw_texts(buf: pa.Buffer, records: Records) -> pa.Array:
    """Each record's original text, zero-copy over ``buf`` (trailing line ends trimmed).

    ``records`` must start at ``buf``'s first byte and cover it to the end (blank
    lines between records end up trimmed from the record before them).
    """
    if not len(records):
        return pa.array([], pa.string())
    offsets = np.concatenate((records.starts, [buf.size])).astype(np.int64)
    offsets[0] = 0
    raw = pa.LargeStringArray.from_buffers(len(records.starts), pa.py_buffer(offsets), buf)
    raw = pc.utf8_rtrim(raw, characters="\r\n")
    if records.open_quote_at_end:  # only there can a line break end the record itself
        last = buf.to_pybytes()[records.starts[-1]:records.ends[-1]].decode("utf-8")
        raw = pa.concat_arrays([raw.slice(0, len(raw) - 1), pa.array([last], raw.type)])
    return pc.cast(raw, pa.string()) if buf.size < 2**31 else raw
