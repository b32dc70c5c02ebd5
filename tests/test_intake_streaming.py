"""Intake in bounded memory (issue 11): chunked ingest, batched normalise, same results.

The outcome must not depend on the chunk size: rows, raw text, quarantine and
counts are the same read in one piece or in many (memory itself is measured by
``benchmarks/intake.py``, not here).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.config import IntakeSettings
from pipelines.errors import TelcoInputError
from pipelines.intake.ingest import ingest, ingest_to_files
from pipelines.intake.normalise import normalise, normalise_file
from pipelines.intake.suspect import chunk_is_suspect
from pipelines.stages import ingest_telco, normalise_telco
from pipelines.stages.run import plan_run
from pipelines.storage.files import open_arrow, read_arrow

from .conftest import REPO, write_config
from .test_hostile_files import RUN_DATE, VIETTEL_COLUMNS, viettel_like

HEADER = ",".join(VIETTEL_COLUMNS.values())


def _export(tmp_path: Path, n: int = 400, *, eol: str = "\n", bom: bool = False) -> Path:
    """Rows with quoted names holding line breaks and quotes, a malformed row, a copy."""
    lines = [HEADER]
    for i in range(n):
        name = f'"Trần Thị\n""Thủy"" {i}"' if i % 7 == 0 else f"Nguyễn Văn Đức {i}"
        lines.append(f"09{i:08d},{name},12/03/1985,Nam,CCCD,001085{i:06d},01/04/2025,"
                     f"TRA_TRUOC,HOAT_DONG,VT-{i % 13}")
    if n > 300:
        lines[50] = "0900000049,Lê Hữu Nghĩa,05/05/1968"  # three fields
        lines[300] = lines[100]  # an identical copy
    path = tmp_path / "export.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + (eol.join(lines) + eol).encode())
    return path


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
@pytest.mark.parametrize("chunk_bytes", [97, 1000, 4096])
def test_reading_in_chunks_gives_what_one_piece_gives(tmp_path: Path, chunk_bytes: int,
                                                      eol: str) -> None:
    mapping = viettel_like(_export(tmp_path, eol=eol, bom=True))
    whole = ingest(mapping)
    chunked = ingest(mapping, IntakeSettings(chunk_mb=chunk_bytes / 2**20))
    assert whole.report.chunks == 1 and chunked.report.chunks > 10
    assert chunked.rows.equals(whole.rows)
    assert chunked.quarantine.equals(whole.quarantine)
    reasons = dict(zip(whole.quarantine["source_row"].to_pylist(),
                       whole.quarantine["reason"].to_pylist(), strict=True))
    assert reasons == {50: "MALFORMED_ROW", 300: "DUPLICATE_ROW"}
    assert whole.rows_in_file == chunked.rows_in_file == 400
    raw = dict(zip(whole.rows["source_row"].to_pylist(), whole.rows["raw_record"].to_pylist(),
                   strict=True))
    assert raw[1].startswith('0900000000,"Trần Thị\n""Thủy"" 0",12/03/1985')


def test_streamed_files_hold_the_same_rows_in_row_groups(tmp_path: Path) -> None:
    mapping = viettel_like(_export(tmp_path))
    settings = IntakeSettings(chunk_mb=2000 / 2**20)
    report = ingest_to_files(mapping, tmp_path / "rows.arrow", tmp_path / "q.parquet",
                             settings)
    in_memory = ingest(mapping, settings)
    rows = read_arrow(tmp_path / "rows.arrow")
    assert rows.equals(in_memory.rows)
    assert pq.read_table(tmp_path / "q.parquet").equals(in_memory.quarantine)
    assert open_arrow(tmp_path / "rows.arrow").num_record_batches == report.chunks > 10
    assert report.rows_in_file == rows.num_rows + report.quarantined == 400

    done = normalise_file(
        tmp_path / "rows.arrow", mapping, run_date=RUN_DATE, rows_path=tmp_path / "n.parquet",
        quarantine_path=tmp_path / "nq.parquet", batch_rows=1_000)
    at_once = normalise(in_memory.rows, mapping, run_date=RUN_DATE)
    assert pq.read_table(tmp_path / "n.parquet").equals(at_once.rows)
    assert (done.normalised, done.quarantined) == (at_once.rows.num_rows,
                                                   at_once.quarantine.num_rows)
    assert (done.names, done.names_not_nfc) == (at_once.names, at_once.names_not_nfc)


def test_normalise_batches_read_raw_text_only_for_quarantined_rows(tmp_path: Path) -> None:
    path = _export(tmp_path, n=50)
    text = path.read_text("utf-8").replace("12/03/1985,Nam,CCCD,001085000033",
                                           "31/02/1985,Nam,CCCD,001085000033")
    path.write_text(text, "utf-8")
    mapping = viettel_like(path)
    ingest_to_files(mapping, tmp_path / "rows.arrow", tmp_path / "q.parquet",
                    IntakeSettings(chunk_mb=500 / 2**20))
    normalise_file(tmp_path / "rows.arrow", mapping, run_date=RUN_DATE,
                   rows_path=tmp_path / "n.parquet", quarantine_path=tmp_path / "nq.parquet",
                   batch_rows=1_000)
    (q,) = pq.read_table(tmp_path / "nq.parquet").to_pylist()
    assert q["source_row"] == 34 and q["reason"] == "UNPARSEABLE_DATE_OF_BIRTH"
    assert q["raw_record"].startswith("0900000033,Nguyễn Văn Đức 33,31/02/1985,")


def test_a_file_refused_late_leaves_no_partial_output(tmp_path: Path) -> None:
    path = _export(tmp_path)
    data = path.read_bytes()
    at = data.index("Đức 351".encode())
    path.write_bytes(data[:at] + b"\xff" + data[at + 1:])  # an invalid byte near the end
    mapping = viettel_like(path)
    with pytest.raises(TelcoInputError, match=r"line \d+: bytes ff are not valid"):
        ingest_to_files(mapping, tmp_path / "rows.arrow", tmp_path / "q.parquet",
                        IntakeSettings(chunk_mb=1000 / 2**20))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.csv"]


def test_stages_stream_and_keep_row_conservation(tmp_path: Path) -> None:
    telcos = tmp_path / "telcos"
    telcos.mkdir()
    mapping = yaml.safe_load((REPO / "config" / "telcos" / "viettel.yaml").read_text("utf-8"))
    mapping["source"] = str(_export(tmp_path))
    (telcos / "viettel.yaml").write_text(yaml.safe_dump(mapping, allow_unicode=True), "utf-8")
    config = str(write_config(tmp_path, telcos_dir=telcos,
                              intake={"chunk_mb": 0.002, "normalise_batch_rows": 1000}))
    run_date = "2026-11-28"
    plan_run(config, run_date)
    ingested = ingest_telco(config, run_date, "viettel")
    normalised = normalise_telco(config, run_date, "viettel")
    assert ingested["rows_in_file"] == 400 and ingested["quarantined_at_ingest"] == 2
    assert ingested["rows_in_file"] == (normalised["rows_normalised"]
                                        + ingested["quarantined_at_ingest"]
                                        + normalised["quarantined_at_normalise"])
    work = tmp_path / "runs" / ".work" / run_date
    stats = json.loads((work / "stats" / "viettel.ingest.json").read_text("utf-8"))
    assert stats == ingested and stats["encoding"] == "utf-8"
    staging = tmp_path / "runs-private" / ".staging" / run_date  # engineer-only outputs
    assert pq.read_metadata(staging / "normalised" / "viettel.parquet").num_rows == \
        normalised["rows_normalised"]
    assert open_arrow(work / "ingested" / "viettel.arrow").num_record_batches > 5
    assert not list((work / "ingested").glob(".*.tmp"))


def test_two_digit_year_rule_is_per_row_even_when_values_repeat() -> None:
    """parsed_per_distinct parses each distinct text once; the century is per row."""
    from matching import dates

    values = pa.array(["8/8/67"] * 100 + ["8/8/67"])
    parsed = dates.parse_dates(values, ["%d/%m/%y"])
    resolved = dates.resolve_two_digit_years(
        parsed, not_after=date(2026, 1, 1),
        century=__import__("numpy").array([-1] * 100 + [2000]))
    assert resolved.value.to_pylist()[:100] == [date(1967, 8, 8)] * 100
    assert resolved.value.to_pylist()[100] == date(2067, 8, 8)


def test_stopping_early_stops_the_prefetch_thread(tmp_path: Path) -> None:
    """``simrecon mapping check`` reads only the first rows: the reader must let go."""
    import threading

    from pipelines.intake.ingest import ExportReader

    reader = ExportReader(viettel_like(_export(tmp_path)), IntakeSettings(chunk_mb=500 / 2**20))
    batches = reader.batches()
    rows, _ = next(batches)
    assert 0 < rows.num_rows < 400
    batches.close()
    assert not [t for t in threading.enumerate() if t.name == "intake-prefetch"]


def test_chunk_test_for_suspect_bytes_tells_line_ends_from_controls() -> None:
    clean = "Nguyễn Văn Đức,\t0901234567\r\nTrần Thị Thủy,0907654321\n".encode() * 50
    assert not chunk_is_suspect(clean) and not chunk_is_suspect(pa.py_buffer(clean))
    for control in (b"\x00", b"\x01", b"\x1f", b"\x0b", b"\x0c"):
        assert chunk_is_suspect(clean + b"Le Van" + control + b"An\n")
    assert chunk_is_suspect(clean + "Tráº§n\n".encode())  # mojibake
