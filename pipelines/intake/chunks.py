"""An export read as record-aligned chunks of UTF-8 bytes, in bounded memory.

The whole file is never held: bytes are read in blocks of about ``chunk_bytes``,
turned into UTF-8 (validated for a UTF-8 export, decoded for any other
encoding), and cut at the start of the last record of the block, so that every
chunk holds whole records and a quoted line break, a ``\\r\\n`` or a multi-byte
character is never split; the cut-off record starts the next chunk. The
encoding is established on the first block (declared, or detected with
``auto``), and every later block is validated in it.

The first chunk starts with the header record. A file that ends inside a
multi-byte character (cut off during transfer) is not refused: the incomplete
bytes are dropped and the chunk says so (``cut_in_character``), so that its last
record is quarantined as truncated, like a file cut inside a quoted value.
"""

from __future__ import annotations

import codecs
import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

import numpy as np
import pyarrow as pa

from pipelines.intake import encodings
from pipelines.intake.records import MAX_LINES_PER_RECORD, Records, record_spans
from pipelines.storage.objectstore import RemoteFile

# One record may extend a chunk to at most this many times the chunk size (and at
# least to MIN_RECORD_LIMIT): no plausible record is that long, and memory must stay
# bounded.
MAX_RECORD_CHUNKS = 4
# The encoding is established on the first block, of at least this many bytes (an
# 8-bit encoding is told from the words that hold a non-ASCII byte).
DETECTION_BYTES = 1 << 20
MIN_RECORD_LIMIT = 8 << 20


class ExportProblem(ValueError):
    """The file cannot be read as a CSV export; the message names the line (and column)."""


@dataclass(frozen=True)
class Chunk:
    """Whole records as UTF-8 bytes. ``records`` are spans in ``data`` with file line
    numbers; ``first_record`` is the index of the first one in the file (0: the header)."""

    data: pa.Buffer
    records: Records
    first_record: int
    last: bool
    cut_in_character: bool = False


@dataclass
class ExportText:
    """What the first block established: the encoding, BOM and detection scores."""

    encoding: str
    bom: bool = False
    scores: dict[str, float] = field(default_factory=dict)


def _incomplete_utf8_tail(data: bytes) -> int:
    """How many bytes at the end of ``data`` are an incomplete UTF-8 sequence (0-3)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return 0
        if byte >= 0xC0:  # a lead byte: how long its sequence should be
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return back if need > back else 0
    return 0


def _validate_utf8(data: pa.Buffer) -> bool:
    text = pa.LargeStringArray.from_buffers(
        1, pa.py_buffer(np.array([0, data.size], dtype=np.int64)), data)
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _with_last(pieces: Iterator[bytes]) -> Iterator[tuple[bytes, bool]]:
    """(piece, whether it is the last one); one empty piece for an empty stream."""
    previous = next(pieces, b"")
    for piece in pieces:
        yield previous, False
        previous = piece
    yield previous, True


class _Utf8Blocks:
    """Blocks of at most ``block`` bytes of the file, as UTF-8 (decoded when the file is
    in another encoding); errors name their line and byte offset in the file."""

    def __init__(self, handle: IO[bytes], first: bytes, text: ExportText, block: int) -> None:
        self.handle, self.text, self.block = handle, text, block
        self.first = first
        self.cut_in_character = False

    def __iter__(self) -> Iterator[tuple[bytes, bool]]:
        """(bytes, at end of file)."""
        encoding = self.text.encoding
        if encoding == encodings.UTF8:
            yield from self._utf8()
        elif encoding == encodings.UTF16:
            yield from self._utf16()
        else:
            yield from self._legacy(encoding)

    def _pieces(self, skip: int = 0) -> Iterator[bytes]:
        """The file from byte ``skip`` in blocks: the first block read (for detection)
        first, then the rest."""
        head = self.first
        self.first = b""
        for start in range(skip, len(head), self.block):
            yield head[start:start + self.block]
        while piece := self.handle.read(self.block):
            yield piece

    def _utf8(self) -> Iterator[tuple[bytes, bool]]:
        for data, last in _with_last(self._pieces(3 if self.text.bom else 0)):
            if last:
                cut = _incomplete_utf8_tail(data)
                if cut and not data.endswith((b"\n", b"\r")):
                    self.cut_in_character = True
                    data = data[:-cut]
            yield data, last

    def _utf16(self) -> Iterator[tuple[bytes, bool]]:
        first = self.first
        if first.startswith(codecs.BOM_UTF16_LE):
            codec, skip = "utf-16-le", 2
        elif first.startswith(codecs.BOM_UTF16_BE):
            codec, skip = "utf-16-be", 2
        else:  # ASCII characters leave their zero byte on the high side
            codec = "utf-16-be" if first[0::2].count(0) > first[1::2].count(0) else "utf-16-le"
            skip = 0
        decoder = codecs.getincrementaldecoder(codec)("strict")
        offset, lines = skip, 0
        for data, last in _with_last(self._pieces(skip)):
            try:  # never final: an incomplete character at the end stays pending
                text = decoder.decode(data)
            except UnicodeDecodeError as exc:
                line = lines + data[:exc.start].decode(codec, "replace").count("\n") + 1
                raise encodings.UndecodableError(
                    encodings.UTF16, line, offset + exc.start,
                    f"bytes {data[exc.start:exc.start + 2].hex(' ')} are not valid "
                    f"{codec} ({exc.reason})") from exc
            if last and decoder.getstate()[0]:
                self.cut_in_character = True  # the file ends inside a character
            lines += text.count("\n")
            offset += len(data)
            yield text.encode("utf-8"), last

    def _legacy(self, encoding: str) -> Iterator[tuple[bytes, bool]]:
        """8-bit encodings: decoded per block cut at a line end (a byte never spans two
        characters there: a VNI letter and its diacritic bytes sit on one line)."""
        carry, offset, lines = b"", 0, 0
        for data, last in _with_last(self._pieces()):
            data = carry + data
            cut = len(data) if last else data.rfind(b"\n") + 1
            piece, carry = data[:cut], data[cut:]
            if not piece and not last:
                continue
            try:
                text = encodings.decode_piece(piece, encoding)
            except encodings.UndecodableError as exc:
                raise exc.shifted(lines, offset) from exc
            yield text.encode("utf-8"), last
            offset += len(piece)
            lines += piece.count(b"\n")


class ExportChunks:
    """Iterate over an export as :class:`Chunk` s (see module doc).

    ``text`` (the encoding) is known once the first block is read, i.e. after
    :meth:`open`. Raises ``encodings.EncodingProblem`` or ``ExportProblem``.
    """

    def __init__(self, source: Path | RemoteFile, *, declared: str, delimiter: str,
                 quote: str, chunk_bytes: int) -> None:
        self.source, self.declared = source, declared
        self.delimiter, self.quote = delimiter, quote
        self.chunk_bytes = max(int(chunk_bytes), 16)
        self.text: ExportText | None = None
        self._handle: IO[bytes] | None = None
        self._first = b""

    def open(self) -> ExportText:
        self._handle = self.source.open("rb")
        size = max(self.chunk_bytes, DETECTION_BYTES)
        first = self._handle.read(size)
        self._first = first
        self.text = _establish(first, self.declared, complete=len(first) < size)
        return self.text

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> ExportChunks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Chunk]:
        if self.text is None:
            self.open()
        assert self._handle is not None and self.text is not None
        blocks = _Utf8Blocks(self._handle, self._first, self.text, self.chunk_bytes)
        self._first = b""
        utf8 = self.text.encoding == encodings.UTF8
        offset = 3 if self.text.bom else 0  # file offset of buf[0] (UTF-8 only)
        line = 1  # file line of buf[0]
        record = 0  # index of buf's first record (0: the header)
        carry = b""
        for block, at_end in blocks:
            buf = carry + block if carry else block
            if not at_end and buf.endswith(b"\r"):  # keep "\r\n" in one chunk
                buf, carry = buf[:-1], b"\r"
            else:
                carry = b""
            records = record_spans(buf, self.delimiter, self.quote)
            if at_end:
                self._refuse_runaway(buf, records, line)
                chunk = pa.py_buffer(buf)
                if utf8:
                    self._check_utf8(chunk, buf, offset, line)
                yield Chunk(chunk, records.shifted(0, line - 1), record, True,
                            cut_in_character=blocks.cut_in_character)
                return
            self._refuse_runaway(buf, records, line)
            if len(records) < 2:  # one record longer than the block: read on
                if len(buf) > max(MAX_RECORD_CHUNKS * self.chunk_bytes, MIN_RECORD_LIMIT):
                    raise ExportProblem(
                        f"line {line}: one record runs over {len(buf)} bytes; no record of "
                        "a subscriber export is that long")
                carry = buf + carry
                continue
            cut = int(records.starts[-1])
            kept = records.head(len(records) - 1)
            chunk = pa.py_buffer(buf).slice(0, cut)
            if utf8:
                self._check_utf8(chunk, buf, offset, line, cut)
            yield Chunk(chunk, kept.shifted(0, line - 1), record, False)
            record += len(kept)
            line += int(records.first_lines[-1]) - 1  # the line breaks before the cut
            offset += cut
            carry = buf[cut:] + carry

    def _check_utf8(self, chunk: pa.Buffer, data: bytes, offset: int, line: int,
                    end: int | None = None) -> None:
        """Refuse a chunk that is not UTF-8, naming the line and byte; ``data[:end]`` is
        the chunk's bytes (sliced only when it is refused)."""
        if _validate_utf8(chunk):
            return
        data = data[:end]
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = data[exc.start:exc.end].hex(" ")
            declared = self.declared if encodings.canonical_encoding(self.declared) \
                != encodings.AUTO else "utf-8 (detected)"
            raise encodings.UndecodableError(
                encodings.UTF8, line + data.count(b"\n", 0, exc.start), offset + exc.start,
                f"bytes {bad} are not valid {declared}") from exc

    def _refuse_runaway(self, buf: bytes, records: Records, line: int) -> None:
        long = np.flatnonzero(records.line_counts > MAX_LINES_PER_RECORD)
        if not len(long):
            return
        i = int(long[0])
        start = int(records.starts[i])
        quote_at = buf.find(self.quote.encode(), start, int(records.ends[i]))
        column = buf.count(self.delimiter.encode(), start, quote_at) + 1
        raise ExportProblem(
            f"line {int(records.first_lines[i]) + line - 1}, column {column}: a quote opened "
            f"in this field runs over {int(records.line_counts[i])} lines (at most "
            f"{MAX_LINES_PER_RECORD} allowed in one value); a stray quote character would "
            "swallow the rows after it")


def _establish(first: bytes, declared: str, *, complete: bool) -> ExportText:
    """The encoding of the export from its first block (``complete``: the whole file)."""
    encoding = encodings.canonical_encoding(declared)
    if encoding == encodings.UTF8:
        return ExportText(encodings.UTF8, bom=first.startswith(codecs.BOM_UTF8))
    other_bom = any(first.startswith(bom) for bom, _, _ in encodings.BOMS[1:])
    if encoding == encodings.UTF16 or (encoding == encodings.AUTO and (
            other_bom or encodings.looks_utf16(first))):
        return ExportText(encodings.UTF16, bom=other_bom)
    if complete:
        head = first
        if not first.endswith((b"\n", b"\r")):  # a file cut inside a character
            head = first[:len(first) - _incomplete_utf8_tail(first)]
    else:
        head = first[:max(first.rfind(b"\n"), first.rfind(b"\r")) + 1] or first
    if encoding == encodings.AUTO:
        bom = first.startswith(codecs.BOM_UTF8)
        if bom or _validate_utf8(pa.py_buffer(head)):
            return ExportText(encodings.UTF8, bom=bom)
    # An 8-bit encoding, declared or detected on the first block (or broken UTF-8).
    decoded = encodings.decode(head, declared)
    return ExportText(decoded.encoding, bom=decoded.bom, scores=decoded.scores)


T = TypeVar("T")


def prefetched(items: Iterable[T]) -> Iterator[T]:
    """``items``, produced one ahead in a thread of their own: reading and preparing the
    next chunk (file I/O, numpy and Arrow, which release the GIL) overlaps with the work
    on this one. An exception in the producer is raised here; closing this iterator
    early stops the producer."""
    handoff: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=1)
    # At most one item ahead: the producer starts the next one only once the consumer
    # has taken the last (memory holds two chunks, not three).
    turn = threading.Semaphore(1)
    stop = threading.Event()

    def wait_turn() -> bool:
        while not stop.is_set():
            if turn.acquire(timeout=0.1):
                return True
        return False

    def put(kind: str, value: object) -> None:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                handoff.put((kind, value), timeout=0.1)
                return

    def produce() -> None:
        try:
            iterator = iter(items)
            while wait_turn():
                try:
                    item = next(iterator)
                except StopIteration:
                    put("done", None)
                    return
                put("item", item)
        except BaseException as exc:  # handed over to the consumer
            put("error", exc)

    thread = threading.Thread(target=produce, name="intake-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = handoff.get()
            turn.release()
            if kind == "done":
                return
            if kind == "error":
                raise value  # type: ignore[misc]
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                handoff.get(timeout=0.05)
