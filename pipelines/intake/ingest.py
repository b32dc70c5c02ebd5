"""Ingest stage: read one telco's export and map its columns onto canonical fields.

Every mapped column is read as text; interpretation (dates, vocabularies,
numbers) is the normalise stage's job, so that a bad value quarantines one row
instead of failing a whole file. What makes the *file* unusable (cannot be
decoded, encoding not established, a mapped column missing, wrong delimiter,
empty or header-only, a quote left open over many lines) raises
``TelcoInputError`` naming the file and the line or column.

Each CSV row keeps its original text (``raw_record``: the record as it stands
in the file, quoted line breaks included) so that a row quarantined at any
stage can be sent back to the telco exactly as received.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from pipelines.config import TelcoMapping
from pipelines.errors import TelcoInputError
from pipelines.intake import encodings
from pipelines.intake.quarantine import empty_quarantine, quarantine_table
from pipelines.schema import SUBSCRIPTION_FIELDS
from pipelines.storage import objectstore

log = logging.getLogger("simrecon.ingest")

_CANDIDATE_DELIMITERS = (",", ";", "\t", "|")
# A quoted value may hold a few line breaks (an address); a record spanning more
# physical lines than this is a quote left open by mistake, which would swallow
# the rows after it into one "row": the file is refused instead.
MAX_LINES_PER_RECORD = 20
RAW_RECORD = "raw_record"


@dataclass(frozen=True)
class IngestResult:
    rows: pa.Table
    quarantine: pa.Table
    rows_in_file: int
    encoding: str = encodings.UTF8


def _decode(mapping: TelcoMapping, path: Path, data: bytes) -> encodings.Decoded:
    """Decode the file (declared encoding, or detected with ``auto``); see encodings. For
    valid UTF-8 only the head is decoded (``encodings.decode_head``).

    Bytes invalid in the declared encoding, bytes that clearly read as another
    encoding, or an encoding ``auto`` cannot establish: the file is refused
    with line and byte offset, or with the candidates' scores.
    """
    declared = mapping.csv.encoding
    # Valid UTF-8 (the usual case): only the head is decoded (the header line); the
    # parser reads the bytes themselves.
    decoded = encodings.decode_head(data, declared)
    try:
        decoded = decoded or encodings.decode(data, declared)
    except encodings.UndecodableError as exc:
        raise TelcoInputError(
            mapping.telco, str(path),
            f"{exc}; check csv.encoding ({declared!r}) in {mapping.mapping_file}") from exc
    except encodings.EncodingProblem as exc:
        raise TelcoInputError(mapping.telco, str(path), str(exc)) from exc
    if encodings.canonical_encoding(declared) == encodings.AUTO:
        log.info("%s: %s detected as %s %s", mapping.telco, path.name, decoded.encoding,
                 decoded.scores or "")
    return decoded


def _header(mapping: TelcoMapping, path: Path, text: str) -> list[str]:
    if re.search(r"\S", text) is None:  # stops at the first visible character
        raise TelcoInputError(mapping.telco, str(path), "file is empty (no header line)")
    line_end = re.search(r"\r|\n", text)
    first_line = text[:line_end.start()] if line_end else text
    if not first_line.strip():
        raise TelcoInputError(mapping.telco, str(path),
                              "line 1 is blank: the header must be the first line")
    return next(csv.reader([first_line], delimiter=mapping.csv.delimiter,
                           quotechar=mapping.csv.quote_char))


def _check_columns(mapping: TelcoMapping, path: Path, header: list[str],
                   text: str) -> dict[str, str]:
    """Mapped column -> its name as written in the header (surrounding spaces tolerated)."""
    present: dict[str, str] = {}
    for name in header:
        present.setdefault(name.strip(), name)
    missing = [(field, col) for field, col in mapping.columns.items() if col not in present]
    if not missing:
        return {col: present[col] for col in mapping.columns.values()}
    described = ", ".join(f"{col!r} (for {field})" for field, col in missing)
    message = f"line 1: missing column(s) {described}; header has {sorted(present)}"
    if mapping.format == "csv" and len(header) <= 1:
        first_line = text.split("\n", 1)[0]
        better = [d for d in _CANDIDATE_DELIMITERS
                  if d != mapping.csv.delimiter and first_line.count(d) >= 2]
        if better:
            message += (f"; the header does not split on {mapping.csv.delimiter!r} but does on "
                        f"{better[0]!r}: is the delimiter in {mapping.mapping_file} wrong?")
    raise TelcoInputError(mapping.telco, str(path), message)


@dataclass(frozen=True)
class _Records:
    """Byte spans of the non-blank records of a CSV buffer (the header is record 0)."""

    starts: np.ndarray
    ends: np.ndarray
    open_quote_at_end: bool
    first_lines: np.ndarray  # 1-based physical line where each record starts
    line_counts: np.ndarray  # physical lines each record spans


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


def _record_spans(buf: bytes, delimiter: str, quote: str) -> _Records:
    """Where each record starts and ends, vectorised when no quote can hide a line break."""
    arr = np.frombuffer(buf, dtype=np.uint8)
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
        return _Records(starts, ends, False, first_lines, np.ones(len(starts), np.int64))
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
    return _Records(starts, ends, open_quote, first_lines.astype(np.int64),
                    (last_lines - first_lines + 1).astype(np.int64))


def _quoted_record_spans(buf: bytes, arr: np.ndarray, newlines: np.ndarray, delimiter: str,
                         quote: str) -> _Records | None:
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
    return _Records(starts, ends, open_quote, first_lines.astype(np.int64),
                    (last_lines - first_lines + 1).astype(np.int64))


def _raw_texts(buf: bytes, records: _Records) -> pa.Array:
    """Each record's original text, zero-copy over ``buf`` (trailing line ends trimmed)."""
    offsets = np.concatenate((records.starts, [len(buf)])).astype(np.int64)
    raw = pa.LargeStringArray.from_buffers(len(records.starts), pa.py_buffer(offsets),
                                           pa.py_buffer(buf))
    raw = pc.utf8_rtrim(raw, characters="\r\n")
    if records.open_quote_at_end:  # only there can a line break end the record itself
        last = buf[records.starts[-1]:records.ends[-1]].decode("utf-8")
        raw = pa.concat_arrays([raw.slice(0, len(raw) - 1), pa.array([last], raw.type)])
    return pc.cast(raw, pa.string()) if len(buf) < 2**31 else raw


def _refuse_runaway_quote(mapping: TelcoMapping, path: Path, buf: bytes,
                          records: _Records) -> None:
    long = np.flatnonzero(records.line_counts > MAX_LINES_PER_RECORD)
    if not len(long):
        return
    i = int(long[0])
    start = int(records.starts[i])
    quote_at = buf.find(mapping.csv.quote_char.encode(), start, int(records.ends[i]))
    column = buf.count(mapping.csv.delimiter.encode(), start, quote_at) + 1
    raise TelcoInputError(
        mapping.telco, str(path),
        f"line {int(records.first_lines[i])}, column {column}: a quote opened in this field "
        f"runs over {int(records.line_counts[i])} lines (at most {MAX_LINES_PER_RECORD} allowed "
        f"in one value); a stray quote character would swallow the rows after it")


def _read_csv(mapping: TelcoMapping, path: Path) -> tuple[pa.Table, pa.Table, int, str]:
    data = path.read_bytes()
    decoded = _decode(mapping, path, data)
    encoding = decoded.encoding
    header = _header(mapping, path, decoded.text)
    names = _check_columns(mapping, path, header, decoded.text)
    if encoding == encodings.UTF8:  # already valid UTF-8: hand pyarrow the bytes
        buf = data[3:] if decoded.bom else data
    else:
        buf = decoded.text.encode("utf-8")
    del decoded, data  # the text can be large (2-4 bytes per character): keep only `buf`

    # Before parsing: a stray quote must be refused with its line, not fed to the parser.
    records = _record_spans(buf, mapping.csv.delimiter, mapping.csv.quote_char)
    _refuse_runaway_quote(mapping, path, buf, records)

    invalid: list[tuple[int, str, int, int]] = []  # only bad rows reach this list

    def on_invalid_row(row: pa_csv.InvalidRow) -> str:
        record = (row.number or 0) - 1  # pyarrow counts the header as record 1
        invalid.append((record, row.text or "", row.expected_columns, row.actual_columns))
        return "skip"

    def parse(threads: bool) -> pa.Table:
        try:
            return pa_csv.read_csv(
                io.BytesIO(buf),
                read_options=pa_csv.ReadOptions(use_threads=threads, block_size=1 << 24),
                parse_options=pa_csv.ParseOptions(
                    delimiter=mapping.csv.delimiter,
                    quote_char=mapping.csv.quote_char,
                    newlines_in_values=True,
                    invalid_row_handler=on_invalid_row,
                ),
                convert_options=pa_csv.ConvertOptions(
                    column_types={name: pa.string() for name in header},
                    strings_can_be_null=False,
                    include_columns=list(dict.fromkeys(names.values())),
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowKeyError) as exc:
            raise TelcoInputError(mapping.telco, str(path),
                                  f"cannot be parsed as CSV: {exc}") from exc

    # Every core first; parsed in parallel, a bad row's line number is not known, so a
    # file with any bad row is parsed again on one thread (bad rows are rare).
    table = parse(threads=len(buf) > 1 << 24)
    if invalid and len(buf) > 1 << 24:
        invalid.clear()
        table = parse(threads=False)
    table = table.rename_columns([c.strip() for c in table.column_names])

    total = table.num_rows + len(invalid)
    if total == 0:
        raise TelcoInputError(mapping.telco, str(path),
                              "line 2: the file has a header but no data rows")
    raw = _raw_texts(buf, records) if len(records.starts) == total + 1 else None
    if raw is None:
        log.warning("%s: record boundaries disagree with the CSV parser (%d vs %d): raw "
                    "text of quarantined rows falls back to their fields", mapping.telco,
                    len(records.starts) - 1, total)

    good = np.ones(total + 1, dtype=bool)
    good[0] = False  # the header
    good[[r for r, *_ in invalid]] = False
    good_records = np.flatnonzero(good).astype(np.int64)
    table = table.append_column("source_row", pa.array(good_records, pa.int64()))
    if raw is None:
        raw_column = pa.nulls(table.num_rows, pa.string())
    elif invalid:
        raw_column = raw.take(pa.array(good_records))
    else:  # every record after the header, as it is
        raw_column = raw.slice(1)
    table = table.append_column(RAW_RECORD, raw_column)

    quarantined = _classify_invalid(invalid, records, buf, raw)
    if records.open_quote_at_end and len(good_records) and good_records[-1] == total:
        # pyarrow accepts a value whose closing quote never came: the file was cut off.
        last = table.slice(table.num_rows - 1).to_pylist()[0]
        quarantined.append((total, last[RAW_RECORD] or "", "TRUNCATED_ROW",
                            f"line {int(records.first_lines[-1])}: the last record ends "
                            "inside a quoted value: the file looks cut off"))
        table = table.slice(0, table.num_rows - 1)
    if quarantined:
        quarantined.sort()
        quarantine = quarantine_table(
            telco=mapping.telco,
            source_file=path.name,
            source_rows=pa.array([r for r, _, _, _ in quarantined], pa.int64()),
            stage="ingest",
            reasons=pa.array([c for _, _, c, _ in quarantined]),
            details=pa.array([d for _, _, _, d in quarantined]),
            raw_records=pa.array([t for _, t, _, _ in quarantined]),
        )
    else:
        quarantine = empty_quarantine()
    return table, quarantine, total, encoding


def _classify_invalid(invalid: list[tuple[int, str, int, int]], records: _Records,
                      buf: bytes, raw: pa.Array | None) -> list[tuple[int, str, str, str]]:
    """(record, raw text, reason, detail) for the rows pyarrow rejected.

    The last record is TRUNCATED_ROW when it is short and the file does not
    end with a line break (a cut-off export); any other is MALFORMED_ROW.
    """
    out = []
    last = len(records.starts) - 1
    cut_off = not buf.endswith((b"\n", b"\r"))
    for record, text, expected, actual in invalid:
        where = f"line {int(records.first_lines[record])}: " if raw is not None else ""
        original = raw[record].as_py() if raw is not None else text
        if record == last and cut_off and actual < expected:
            out.append((record, original, "TRUNCATED_ROW",
                        f"{where}the last line has no line break and {actual} of {expected} "
                        "fields: the file looks cut off"))
        else:
            out.append((record, original, "MALFORMED_ROW",
                        f"{where}expected {expected} fields, found {actual}"))
    return out


def _read_parquet(mapping: TelcoMapping, path: Path) -> tuple[pa.Table, pa.Table, int, str]:
    try:
        schema = objectstore.read_parquet_schema(path)  # a local path or a URL
    except (pa.ArrowInvalid, OSError) as exc:
        raise TelcoInputError(mapping.telco, str(path), f"not a readable Parquet file: {exc}") \
            from exc
    names = _check_columns(mapping, path, list(schema.names), "")
    table = objectstore.read_parquet(path, columns=list(dict.fromkeys(names.values())))
    text_columns = {}
    for name in table.column_names:
        column = table[name]
        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            column = pc.cast(column, pa.string())
        text_columns[name.strip()] = column
    table = pa.table(text_columns)
    table = table.append_column(
        "source_row", pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64)))
    # Parquet has no raw line: a quarantined row shows its mapped fields instead.
    table = table.append_column(RAW_RECORD, pa.nulls(table.num_rows, pa.string()))
    return table, empty_quarantine(), table.num_rows, "parquet"


def ingest(mapping: TelcoMapping) -> IngestResult:
    """Read ``mapping``'s export and return canonical text columns plus the quarantine."""
    path = mapping.source_path()
    if not path.exists():
        raise TelcoInputError(mapping.telco, str(path), "export file not found")
    reader = _read_csv if mapping.format == "csv" else _read_parquet
    raw, quarantine, rows_in_file, encoding = reader(mapping, path)

    n = raw.num_rows
    columns: dict[str, pa.Array | pa.ChunkedArray] = {
        "telco": pa.repeat(pa.scalar(mapping.telco), n),
        "source_file": pa.repeat(pa.scalar(path.name), n),
        "source_row": raw["source_row"],
    }
    for field in SUBSCRIPTION_FIELDS:
        if field in mapping.columns:
            columns[field] = pc.cast(raw[mapping.columns[field]], pa.string())
        elif field in mapping.defaults:
            columns[field] = pa.repeat(pa.scalar(mapping.defaults[field]), n)
        else:
            columns[field] = pa.nulls(n, pa.string())
    columns[RAW_RECORD] = raw[RAW_RECORD]
    rows = pa.table(columns)
    if rows.num_rows + quarantine.num_rows != rows_in_file:
        raise AssertionError(f"{mapping.telco}: row conservation broken at ingest")
    log.info("ingest %s: %d rows read (%s), %d quarantined", mapping.telco, rows.num_rows,
             encoding, quarantine.num_rows)
    return IngestResult(rows=rows, quarantine=quarantine, rows_in_file=rows_in_file,
                        encoding=encoding)
