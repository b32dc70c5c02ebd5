"""Property tests: no bytes and no field value crash ingest, normalise or the decoders.

Each example either is rejected as a file (``TelcoInputError``) or ends with
every row of the file normalised or quarantined, exactly once.
"""

from __future__ import annotations

import contextlib
import unicodedata
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.errors import TelcoInputError
from pipelines.intake import encodings
from pipelines.intake.ingest import ingest
from pipelines.intake.normalise import normalise
from pipelines.schema import SUBSCRIPTION_FIELDS

from .test_hostile_files import VIETTEL_COLUMNS, viettel_like

RUN_DATE = date(2026, 11, 28)
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
HEADER = ",".join(VIETTEL_COLUMNS.values())
ENCODINGS = ["utf-8", "auto", "utf-16", "windows-1258", "tcvn3", "vni"]

# Field values that look like what a telco sends, mixed with arbitrary text.
_PLAUSIBLE = st.sampled_from([
    "0912345678", "+84912345678", "9.12345678E8", "Nguyễn Văn Đức", "12/03/1985", "1985",
    "45123", "Nam", "Nữ", "CCCD", "CMND", "001085012345", "01/04/2025", "TRA_TRUOC",
    "HOAT_DONG", "DA_HUY", "", " ", '"', '""', "\n", "\r\n", ",", ";", "\x00", "\ufeff"])
_FIELD = st.one_of(_PLAUSIBLE, st.text(max_size=20))


def _check_outcome(path: Path, mapping_kwargs: dict) -> None:
    """Run ingest + normalise; assert a clean rejection or exact row conservation."""
    mapping = viettel_like(path, **mapping_kwargs)
    try:
        ingested = ingest(mapping)
    except TelcoInputError as exc:
        assert path.name in str(exc)
        return
    result = normalise(ingested.rows, mapping, run_date=RUN_DATE)
    quarantined = (ingested.quarantine["source_row"].to_pylist()
                   + result.quarantine["source_row"].to_pylist())
    rows = result.rows["source_row"].to_pylist() + quarantined
    assert sorted(rows) == list(range(1, ingested.rows_in_file + 1))
    reasons = set(ingested.quarantine["reason"].to_pylist()
                  + result.quarantine["reason"].to_pylist())
    from pipelines.intake.quarantine import QUARANTINE_REASONS

    assert reasons <= set(QUARANTINE_REASONS)
    assert None not in ingested.quarantine["raw_record"].to_pylist()
    assert None not in result.quarantine["raw_record"].to_pylist()


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(body=st.binary(max_size=600), with_header=st.booleans(),
       encoding=st.sampled_from(ENCODINGS))
def test_arbitrary_bytes_never_crash(fuzz_dir: Path, body: bytes, with_header: bool,
                                     encoding: str) -> None:
    path = fuzz_dir / "bytes.csv"
    path.write_bytes((HEADER.encode() + b"\n" if with_header else b"") + body)
    _check_outcome(path, {"csv": {"encoding": encoding}})


@FUZZ
@given(rows=st.lists(st.lists(_FIELD, min_size=8, max_size=12), max_size=8),
       quote_all=st.booleans(), eol=st.sampled_from(["\n", "\r\n"]),
       final_eol=st.booleans(), encoding=st.sampled_from(["utf-8", "utf-16"]),
       delimiter=st.sampled_from([",", ";"]))
def test_arbitrary_field_values_never_crash(fuzz_dir: Path, rows: list[list[str]],
                                            quote_all: bool, eol: str, final_eol: bool,
                                            encoding: str, delimiter: str) -> None:
    def cell(value: str) -> str:
        if quote_all or any(ch in value for ch in f'"{delimiter}\r\n'):
            return '"' + value.replace('"', '""') + '"'
        return value

    lines = [HEADER.replace(",", delimiter)]
    lines += [delimiter.join(cell(v) for v in row) for row in rows]
    text = eol.join(lines) + (eol if final_eol else "")
    path = fuzz_dir / "fields.csv"
    path.write_bytes(text.encode(encoding, errors="surrogatepass"))
    _check_outcome(path, {"csv": {"encoding": encoding, "delimiter": delimiter}})


@FUZZ
@given(columns=st.fixed_dictionaries({f: st.lists(_FIELD, min_size=5, max_size=5)
                                      for f in SUBSCRIPTION_FIELDS}))
def test_normalise_takes_any_strings(fuzz_dir: Path, columns: dict[str, list[str]]) -> None:
    mapping = viettel_like(fuzz_dir / "unused.csv",
                           date_formats={"date_of_birth": ["%d/%m/%Y", "%Y", "excel_serial"],
                                         "activation_date": ["%d/%m/%Y", "excel_serial"]})
    n = 5
    table = pa.table({
        "telco": ["hostile"] * n, "source_file": ["x.csv"] * n,
        "source_row": pa.array(range(1, n + 1), pa.int64()),
        **{f: pa.array(columns[f], pa.string()) for f in SUBSCRIPTION_FIELDS},
        "raw_record": pa.array(["raw"] * n),
    })
    result = normalise(table, mapping, run_date=RUN_DATE)
    got = result.rows["source_row"].to_pylist() + result.quarantine["source_row"].to_pylist()
    assert sorted(got) == list(range(1, n + 1))
    names = result.rows["full_name"].to_pylist()
    assert all(name is None or unicodedata.is_normalized("NFC", name) for name in names)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400))
def test_legacy_decoders_take_any_bytes(data: bytes) -> None:
    for decoder in (encodings.decode_tcvn3, encodings.decode_vni):
        text = decoder(data)
        assert unicodedata.is_normalized("NFC", text)
        assert text.count("\n") == data.count(b"\n")  # line ends survive: line numbers hold
    with contextlib.suppress(UnicodeDecodeError):  # the code page leaves five bytes undefined
        encodings.decode_windows_1258(data)
    for declared in encodings.DECLARABLE:
        try:
            decoded = encodings.decode(data, declared)
        except encodings.EncodingProblem:
            continue
        assert isinstance(decoded.text, str)


_LETTERS = sorted(encodings.vni_sequences())
_VIET_TEXT = st.text(alphabet=st.sampled_from([*_LETTERS, " ", ",", "0", "9", "\n"]),
                     max_size=60)


@settings(max_examples=200, deadline=None)
@given(text=_VIET_TEXT)
def test_vni_and_tcvn3_round_trip_vietnamese_text(text: str) -> None:
    vni = encodings.vni_sequences()
    encoded = b"".join(vni[ch] if ch in vni else ch.encode() for ch in text)
    assert encodings.decode_vni(encoded) == unicodedata.normalize("NFC", text)
    inverse = {ch: bytes([b]) for b, ch in encodings.tcvn3_table().items()
               if unicodedata.category(ch) != "Mn"}
    if all(ch in inverse or ch.isascii() for ch in text):
        encoded = b"".join(inverse.get(ch, ch.encode()) for ch in text)
        assert encodings.decode_tcvn3(encoded) == text


@FUZZ
@given(rows=st.lists(st.lists(_FIELD, min_size=10, max_size=10), min_size=1, max_size=8),
       eol=st.sampled_from(["\n", "\r\n"]), final_eol=st.booleans(),
       encoding=st.sampled_from(["utf-8", "utf-16"]), chunk=st.integers(16, 300))
def test_outcome_does_not_depend_on_the_chunk_size(fuzz_dir: Path, rows: list[list[str]],
                                                   eol: str, final_eol: bool, encoding: str,
                                                   chunk: int) -> None:
    """Whatever the bytes, reading in chunks of ``chunk`` bytes gives what one piece gives:
    the same rows, raw text and quarantine, or the same refusal."""
    from pipelines.config import IntakeSettings

    def cell(value: str) -> str:
        return '"' + value.replace('"', '""') + '"' if any(c in value for c in '",\r\n') \
            else value

    text = eol.join([HEADER, *(",".join(cell(v) for v in row) for row in rows)])
    path = fuzz_dir / "chunks.csv"
    path.write_bytes((text + (eol if final_eol else "")).encode(encoding, "surrogatepass"))
    mapping = viettel_like(path, csv={"encoding": encoding})
    outcomes = []
    for intake in (None, IntakeSettings(chunk_mb=chunk / 2**20)):
        try:
            result = ingest(mapping, intake)
            outcomes.append((result.rows.to_pylist(), result.quarantine.to_pylist()))
        except TelcoInputError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]
