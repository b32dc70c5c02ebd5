"""Ingest stage: read one telco's export and map its columns onto canonical fields.

Every mapped column is read as text; interpretation (dates, vocabularies,
numbers) is the normalise stage's job, so that a bad value quarantines one row
instead of failing a whole file. What makes the *file* unusable (cannot be
decoded, a mapped column is missing, wrong delimiter, empty file) raises
``TelcoInputError`` naming the file and the line or column.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from pipelines.config import TelcoMapping
from pipelines.errors import TelcoInputError
from pipelines.quarantine import empty_quarantine, quarantine_table
from pipelines.schema import SUBSCRIPTION_FIELDS

log = logging.getLogger("simrecon.ingest")

_CANDIDATE_DELIMITERS = (",", ";", "\t", "|")


@dataclass(frozen=True)
class IngestResult:
    rows: pa.Table
    quarantine: pa.Table
    rows_in_file: int


def _decode(mapping: TelcoMapping, path: Path, data: bytes) -> str:
    """Decode the whole file strictly; an undecodable byte names its line."""
    encoding = mapping.csv.encoding
    if encoding.replace("-", "").replace("_", "").lower() in {"utf8", "utf8sig"}:
        encoding = "utf-8-sig"  # accept (and drop) a BOM
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start : exc.end].hex(" ")
        raise TelcoInputError(
            mapping.telco,
            str(path),
            f"line {line}: bytes {bad} are not valid {mapping.csv.encoding} "
            f"(byte offset {exc.start}); check the encoding declared in {mapping.mapping_file}",
        ) from exc
    except LookupError as exc:
        raise TelcoInputError(
            mapping.telco, str(path), f"unknown encoding {mapping.csv.encoding!r}"
        ) from exc


def _header(mapping: TelcoMapping, path: Path, text: str) -> list[str]:
    first_line = text.split("\n", 1)[0].rstrip("\r")
    if not first_line.strip():
        raise TelcoInputError(mapping.telco, str(path), "file is empty (no header line)")
    return next(csv.reader([first_line], delimiter=mapping.csv.delimiter,
                           quotechar=mapping.csv.quote_char))


def _check_columns(mapping: TelcoMapping, path: Path, header: list[str], text: str) -> None:
    present = {c.strip() for c in header}
    missing = [(field, col) for field, col in mapping.columns.items() if col not in present]
    if not missing:
        return
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


def _read_csv(mapping: TelcoMapping, path: Path) -> tuple[pa.Table, pa.Table, int]:
    data = path.read_bytes()
    text = _decode(mapping, path, data)
    header = _header(mapping, path, text)
    _check_columns(mapping, path, header, text)

    invalid: list[tuple[int, str, str]] = []  # only bad rows reach this list

    def on_invalid_row(row: pa_csv.InvalidRow) -> str:
        record = (row.number or 0) - 1  # pyarrow counts the header as record 1
        invalid.append((record, row.text,
                        f"expected {row.expected_columns} fields, found {row.actual_columns}"))
        return "skip"

    try:
        table = pa_csv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            read_options=pa_csv.ReadOptions(use_threads=False),
            parse_options=pa_csv.ParseOptions(
                delimiter=mapping.csv.delimiter,
                quote_char=mapping.csv.quote_char,
                newlines_in_values=True,
                invalid_row_handler=on_invalid_row,
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=False,
                include_columns=list(dict.fromkeys(mapping.columns.values())),
            ),
        )
    except pa.ArrowInvalid as exc:
        raise TelcoInputError(mapping.telco, str(path), f"cannot be parsed as CSV: {exc}") from exc

    total = table.num_rows + len(invalid)
    bad_records = np.array(sorted(r for r, _, _ in invalid), dtype=np.int64)
    good_records = np.setdiff1d(np.arange(1, total + 1, dtype=np.int64), bad_records)
    table = table.append_column("source_row", pa.array(good_records, pa.int64()))
    if invalid:
        invalid.sort()
        quarantine = quarantine_table(
            telco=mapping.telco,
            source_file=path.name,
            source_rows=pa.array([r for r, _, _ in invalid], pa.int64()),
            stage="ingest",
            reasons=pa.array(["MALFORMED_ROW"] * len(invalid)),
            details=pa.array([d for _, _, d in invalid]),
            raw_records=pa.array([t for _, t, _ in invalid]),
        )
    else:
        quarantine = empty_quarantine()
    return table, quarantine, total


def _read_parquet(mapping: TelcoMapping, path: Path) -> tuple[pa.Table, pa.Table, int]:
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TelcoInputError(mapping.telco, str(path), f"not a readable Parquet file: {exc}") \
            from exc
    _check_columns(mapping, path, list(schema.names), "")
    table = pq.read_table(path, columns=list(dict.fromkeys(mapping.columns.values())))
    text_columns = {}
    for name in table.column_names:
        column = table[name]
        if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
            column = pc.cast(column, pa.string())
        text_columns[name] = column
    table = pa.table(text_columns)
    table = table.append_column(
        "source_row", pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64)))
    return table, empty_quarantine(), table.num_rows


def ingest(mapping: TelcoMapping) -> IngestResult:
    """Read ``mapping``'s export and return canonical text columns plus the quarantine."""
    path = mapping.source_path()
    if not path.exists():
        raise TelcoInputError(mapping.telco, str(path), "export file not found")
    reader = _read_csv if mapping.format == "csv" else _read_parquet
    raw, quarantine, rows_in_file = reader(mapping, path)

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
    rows = pa.table(columns)
    if rows.num_rows + quarantine.num_rows != rows_in_file:
        raise AssertionError(f"{mapping.telco}: row conservation broken at ingest")
    log.info("ingest %s: %d rows read, %d quarantined", mapping.telco, rows.num_rows,
             quarantine.num_rows)
    return IngestResult(rows=rows, quarantine=quarantine, rows_in_file=rows_in_file)
