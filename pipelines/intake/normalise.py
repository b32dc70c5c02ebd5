"""Normalise stage: turn one telco's canonical text columns into typed, comparable values.

All work is column-at-a-time (pyarrow compute, via ``matching``). A row whose
activation date, date of birth or coded fields cannot be interpreted goes to
the quarantine with its reason and original values; every other row goes on.
Values that are bad in a way the *flags* speak about (missing or malformed ID,
non-mobile number) are kept and flagged later, not quarantined.

A quarantined row carries its original text (``raw_record`` from ingest: the
CSV record as sent) or, when there is none (Parquet), its mapped fields as JSON.
Besides strptime patterns, ``date_formats`` accept ``excel_serial``: a day
number in Excel's 1900 date system (``45123`` = 2023-07-16), which is what a
date column becomes when someone saves the export from Excel as General. A
two-digit year (``%y``) gets its century by a documented rule
(``matching.dates.resolve_two_digit_years``): a date of birth the century digit
of the holder's CCCD, else the latest year not after the activation date; an
activation date the latest year not after the run date. A birth after the
activation date is quarantined (``BIRTH_AFTER_ACTIVATION``).

Every row is normalised on its own, so a telco's rows are normalised in batches
(:func:`normalise_file`) and memory does not grow with the export.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching import dates, ids, normalize, phones
from matching.columns import as_bool_mask, distinct_codes, take_codes
from pipelines.config import TelcoMapping
from pipelines.intake.ingest import RAW_RECORD, raw_or_fields
from pipelines.intake.quarantine import QUARANTINE_SCHEMA, empty_quarantine, quarantine_table
from pipelines.storage.files import AtomicParquetWriter, arrow_schema, open_arrow

log = logging.getLogger("simrecon.normalise")

CODED_FIELDS = ("gender", "id_type", "subscription_type", "line_status")
EXCEL_SERIAL = "excel_serial"
# Excel's 1900 date system counts days from 1899-12-30 for every serial from 61
# (1900-03-01) on; serials 1-60 straddle its fictitious 1900-02-29 and are refused.
_EXCEL_EPOCH_TO_UNIX = 25569
_EXCEL_SERIAL_RANGE = (61, 2958465)  # 1900-03-01 .. 9999-12-31
_NULL_STR = pa.scalar(None, pa.string())

NORMALISED_SCHEMA = pa.schema(
    [
        ("telco", pa.string()),
        ("source_file", pa.string()),
        ("source_row", pa.int64()),
        ("msisdn", pa.string()),
        ("msisdn_raw", pa.string()),
        ("msisdn_issue", pa.string()),
        ("msisdn_legacy_converted", pa.bool_()),
        ("full_name", pa.string()),
        ("date_of_birth", pa.date32()),
        ("dob_precision", pa.string()),
        ("gender", pa.string()),
        ("id_type", pa.string()),
        ("id_number", pa.string()),
        ("id_valid", pa.bool_()),
        ("id_issue", pa.string()),
        ("activation_date", pa.date32()),
        ("subscription_type", pa.string()),
        ("line_status", pa.string()),
        ("point_of_sale", pa.string()),
    ]
)

# Columns of a normalised file (and of a telco's shards) whose values are nearly all
# distinct: written without a dictionary, which would overflow and be thrown away.
NEARLY_UNIQUE = ("source_row", "msisdn", "msisdn_raw", "id_number")


@dataclass(frozen=True)
class NormaliseResult:
    rows: pa.Table
    quarantine: pa.Table
    # Names as ingested (non-null, every row, quarantined or not) and those not in NFC:
    # the export gate's raw-name form, counted where the names are put in NFC anyway.
    names: int = 0
    names_not_nfc: int = 0


class NormalisedFile(NamedTuple):
    """What ``normalise_file`` did: rows written, rows quarantined, and the names as
    ingested and those not in NFC (``NormaliseResult``)."""
    normalised: int
    quarantined: int
    names: int
    names_not_nfc: int


def vocabulary_key(values: pa.Array) -> pa.Array:
    """What a coded value is matched on: NFC, trimmed, single spaces, lower case."""
    return pc.utf8_lower(normalize.clean_text(values))


def map_vocabulary(values: pa.Array, vocabulary: dict[str, str]) -> tuple[pa.Array, np.ndarray]:
    """Map a coded column through the telco's vocabulary (NFC, case- and space-insensitive).

    Returns the canonical codes and a mask of non-empty values the vocabulary
    does not know (those rows are quarantined rather than guessed).
    """
    distinct, codes = distinct_codes(values)  # a coded column has a handful of values
    keys = vocabulary_key(distinct)
    source = vocabulary_key(pa.array(list(vocabulary.keys()), pa.string()))
    targets = pa.array(list(vocabulary.values()), pa.string())
    index = pc.index_in(keys, value_set=source)
    unknown = np.asarray(pc.and_(pc.is_valid(keys), pc.is_null(index))
                         .to_numpy(zero_copy_only=False), dtype=bool)
    mapped = take_codes(pc.take(targets, index), codes)
    return mapped, (codes >= 0) & (unknown[np.maximum(codes, 0)] if len(unknown)
                                   else np.zeros(len(codes), dtype=bool))


def _excel_serial(s: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Rows of trimmed ``s`` that are Excel day serials (a time fraction is ignored)."""
    pattern = r"^(?P<n>[0-9]{1,7})(?:[.,][0-9]+)?$"
    ok = np.asarray(pc.fill_null(pc.match_substring_regex(s, pattern), False)
                    .to_numpy(zero_copy_only=False), dtype=bool)
    number = pc.struct_field(pc.extract_regex(pc.if_else(pa.array(ok), s, "0"), pattern), "n")
    serial = pc.fill_null(pc.cast(number, pa.int64()), 0).to_numpy()
    ok &= (serial >= _EXCEL_SERIAL_RANGE[0]) & (serial <= _EXCEL_SERIAL_RANGE[1])
    return ok, (serial - _EXCEL_EPOCH_TO_UNIX).astype(np.int32)


def parse_dates(values: pa.Array, formats: list[str]) -> dates.ParsedDates:
    """``matching.dates.parse_dates`` plus the ``excel_serial`` token; first format wins.

    Each distinct text is parsed once (``dates.parsed_per_distinct``).
    """
    if EXCEL_SERIAL not in formats:
        return dates.parse_dates(values, formats)
    return dates.parsed_per_distinct(lambda s: _parse_dates(s, formats), values)


def _parse_dates(values: pa.Array, formats: list[str]) -> dates.ParsedDates:
    s = pc.utf8_trim_whitespace(values)
    s = pc.if_else(pc.equal(s, ""), _NULL_STR, s)
    n = len(s)
    present = np.asarray(pc.is_valid(s).to_numpy(zero_copy_only=False), dtype=bool)
    done = np.zeros(n, dtype=bool)
    days = np.zeros(n, dtype=np.int32)
    year_only = np.zeros(n, dtype=bool)
    for fmt in formats:
        if fmt == EXCEL_SERIAL:
            ok, found = _excel_serial(s)
            by_year = np.zeros(n, dtype=bool)
        else:
            parsed = dates.parse_dates(s, [fmt])
            ok = np.asarray(pc.is_valid(parsed.value).to_numpy(zero_copy_only=False), dtype=bool)
            found = pc.fill_null(pc.cast(parsed.value, pa.int32()), 0).to_numpy()
            by_year = np.asarray(pc.fill_null(pc.equal(parsed.precision, "year"), False)
                                 .to_numpy(zero_copy_only=False), dtype=bool)
        take = ok & ~done
        days[take] = found[take]
        year_only[take] = by_year[take]
        done |= take
    precision = np.where(done, year_only.astype(np.int8), -1)
    return dates.ParsedDates(
        value=pa.array(days, pa.int32(), mask=~done).view(pa.date32()),
        precision=pc.take(pa.array(["day", "year"]), pa.array(precision, mask=precision < 0)),
        unparsed=present & ~done,
    )


def _cccd_century(documents: pa.Table) -> np.ndarray:
    """Per row, the century the CCCD's century/sex digit gives (1900, 2000…), else -1."""
    is_cccd = as_bool_mask(pc.equal(documents["id_type"], "CCCD"))
    year = ids.cccd_parts(documents["id_number"])["birth_year"]
    century = pc.fill_null(pc.cast(year, pa.int64()), -1).to_numpy(zero_copy_only=False)
    return np.where(is_cccd & (century >= 0), century // 100 * 100, -1)


def normalise(rows: pa.Table, mapping: TelcoMapping, *, run_date: date,
              raw_records: Callable[[np.ndarray], pa.Array] | None = None) -> NormaliseResult:
    """Normalise one telco's ingested rows; see module docstring.

    ``raw_records``: when ``rows`` were read without their ``raw_record`` column (it is
    needed only for the few quarantined rows), gives it for the given row indices.
    """
    n = rows.num_rows
    problems: list[tuple[str, str, np.ndarray]] = []

    coded: dict[str, pa.Array] = {}
    for field in CODED_FIELDS:
        values = rows[field].combine_chunks()
        vocabulary = mapping.vocabulary(field)
        if vocabulary is None:
            coded[field] = pa.nulls(n, pa.string())
            continue
        coded[field], unknown = map_vocabulary(values, vocabulary)
        problems.append(("UNKNOWN_VOCABULARY_VALUE", f"{field} not in vocabulary", unknown))

    documents = ids.classify_documents(
        coded["id_type"], rows["id_number"].combine_chunks(), reference_year=run_date.year
    )
    activation = dates.resolve_two_digit_years(parse_dates(
        rows["activation_date"].combine_chunks(), mapping.date_formats["activation_date"]
    ), not_after=run_date)
    activation_missing = np.asarray(
        pc.is_null(activation.value).to_numpy(zero_copy_only=False), dtype=bool
    )
    problems.append(("UNPARSEABLE_ACTIVATION_DATE",
                     f"activation_date not in {mapping.date_formats['activation_date']}",
                     activation_missing))
    birth = parse_dates(
        rows["date_of_birth"].combine_chunks(), mapping.date_formats["date_of_birth"]
    )
    if birth.short_year.any():
        birth = dates.resolve_two_digit_years(birth, not_after=pc.coalesce(
            activation.value, pa.scalar(run_date, pa.date32())), century=_cccd_century(documents))
    problems.append(("UNPARSEABLE_DATE_OF_BIRTH",
                     f"date_of_birth not in {mapping.date_formats['date_of_birth']}",
                     np.asarray(birth.unparsed, dtype=bool)))
    problems.append(("BIRTH_AFTER_ACTIVATION", "date_of_birth is after activation_date",
                     as_bool_mask(pc.greater(birth.value, activation.value))))

    phone = phones.canonical_msisdn(rows["msisdn"].combine_chunks())
    raw_names = rows["full_name"].combine_chunks()
    names, names_not_nfc = normalize.clean_text_counting_nfc(raw_names)

    normalised = pa.table(
        {
            "telco": rows["telco"],
            "source_file": rows["source_file"],
            "source_row": rows["source_row"],
            "msisdn": phone["msisdn"],
            "msisdn_raw": rows["msisdn"],
            "msisdn_issue": phone["msisdn_issue"],
            "msisdn_legacy_converted": phone["legacy_converted"],
            "full_name": names,
            "date_of_birth": birth.value,
            "dob_precision": birth.precision,
            "gender": coded["gender"],
            "id_type": documents["id_type"],
            "id_number": documents["id_number"],
            "id_valid": documents["id_valid"],
            "id_issue": documents["id_issue"],
            "activation_date": activation.value,
            "subscription_type": coded["subscription_type"],
            "line_status": coded["line_status"],
            "point_of_sale": normalize.clean_whitespace(rows["point_of_sale"].combine_chunks()),
        },
        schema=NORMALISED_SCHEMA,
    )

    bad = np.zeros(n, dtype=bool)
    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    for code, text, mask in problems:
        first = mask & ~bad
        reason[first] = code
        detail[first] = text
        bad |= mask
    if bad.any():
        bad_idx = np.flatnonzero(bad)
        bad_rows = rows.take(bad_idx)
        if RAW_RECORD not in bad_rows.column_names and raw_records is not None:
            bad_rows = bad_rows.append_column(RAW_RECORD, raw_records(bad_idx))
        # the record as sent, where ingest kept it; else (Parquet) the mapped fields as JSON
        raw_json = raw_or_fields(bad_rows)
        quarantine = quarantine_table(
            telco=mapping.telco,
            source_file=rows["source_file"][0].as_py(),
            source_rows=rows["source_row"].combine_chunks().take(bad_idx),
            stage="normalise",
            reasons=pa.array(reason[bad_idx], pa.string()),
            details=pa.array(detail[bad_idx], pa.string()),
            raw_records=raw_json,
        )
        normalised = normalised.filter(pa.array(~bad))
    else:
        quarantine = empty_quarantine()
    if normalised.num_rows + quarantine.num_rows != n:
        raise AssertionError(f"{mapping.telco}: row conservation broken at normalise")
    log.debug("normalise %s: %d rows normalised, %d quarantined", mapping.telco,
             normalised.num_rows, quarantine.num_rows)
    return NormaliseResult(rows=normalised, quarantine=quarantine,
                           names=len(raw_names) - raw_names.null_count,
                           names_not_nfc=names_not_nfc)


def _chunk_runs(source: pa.ipc.RecordBatchFileReader, batch_rows: int
                ) -> Iterator[tuple[list[int], pa.Table]]:
    """Runs of consecutive record batches of ``source`` of at most ``batch_rows`` rows
    together (a larger batch alone): their numbers and their rows."""
    run: list[pa.RecordBatch] = []
    first = held = 0
    for i in range(source.num_record_batches):
        batch = source.get_batch(i)
        if run and held + batch.num_rows > batch_rows:
            yield list(range(first, i)), pa.Table.from_batches(run, source.schema)
            run, first, held = [], i, 0
        run.append(batch)
        held += batch.num_rows
    if run:
        yield (list(range(first, source.num_record_batches)),
               pa.Table.from_batches(run, source.schema))


def normalise_file(ingested: Path, mapping: TelcoMapping, *, run_date: date,
                   rows_path: Path, quarantine_path: Path,
                   batch_rows: int = 500_000) -> NormalisedFile:
    """Normalise an ingested file (Arrow IPC, ``ingest_to_files``) into ``rows_path`` and
    ``quarantine_path`` (each complete or absent), in batches of whole record batches
    (ingest chunks) of about ``batch_rows``; returns the counts (``NormalisedFile``).
    ``raw_record`` is read only for the rows that are quarantined."""
    normalised = quarantined = names = names_not_nfc = 0
    columns = [c for c in arrow_schema(ingested).names if c != RAW_RECORD]
    source, raw_source = open_arrow(ingested, columns), open_arrow(ingested, [RAW_RECORD])
    with AtomicParquetWriter(rows_path, plain=NEARLY_UNIQUE) as rows_out, \
            AtomicParquetWriter(quarantine_path) as quarantine_out:
        for chunks, rows in _chunk_runs(source, batch_rows):
            rows = rows.select(columns)

            def raw_records(index: np.ndarray, chunks: list[int] = chunks) -> pa.Array:
                raw = pa.chunked_array([raw_source.get_batch(i).column(0) for i in chunks],
                                       pa.string())
                return raw.take(pa.array(index)).combine_chunks()

            result = normalise(rows, mapping, run_date=run_date, raw_records=raw_records)
            if result.rows.num_rows:
                rows_out.write(result.rows)
            if result.quarantine.num_rows:
                quarantine_out.write(result.quarantine)
            normalised += result.rows.num_rows
            quarantined += result.quarantine.num_rows
            names += result.names
            names_not_nfc += result.names_not_nfc
        rows_out.close(NORMALISED_SCHEMA)
        quarantine_out.close(QUARANTINE_SCHEMA)
    log.info("normalise %s: %d rows normalised, %d quarantined", mapping.telco, normalised,
             quarantined)
    return NormalisedFile(normalised, quarantined, names, names_not_nfc)
