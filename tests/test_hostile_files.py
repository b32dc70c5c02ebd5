"""The hostile-file corpus (tests/hostile/): each file gives its documented outcome.

Parsed (every row normalised or quarantined with its reason and raw text), or
rejected with ``TelcoInputError`` naming the file and the line or column.
Never a crash. Outcomes live in ``tests/hostile/manifest.yaml``.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from pipelines.config import IntakeSettings, TelcoMapping
from pipelines.errors import TelcoInputError
from pipelines.intake.ingest import ingest
from pipelines.intake.normalise import normalise

HOSTILE = Path(__file__).resolve().parent / "hostile"
MANIFEST: list[dict[str, Any]] = yaml.safe_load((HOSTILE / "manifest.yaml").read_text("utf-8"))
RUN_DATE = date(2026, 11, 28)

VIETTEL_COLUMNS = {
    "msisdn": "SO_THUE_BAO", "full_name": "HO_TEN", "date_of_birth": "NGAY_SINH",
    "gender": "GIOI_TINH", "id_type": "LOAI_GIAY_TO", "id_number": "SO_GIAY_TO",
    "activation_date": "NGAY_KICH_HOAT", "subscription_type": "LOAI_TB",
    "line_status": "TRANG_THAI", "point_of_sale": "MA_DIEM_BAN",
}


def viettel_like(source: Path, *, csv: dict | None = None,
                 date_formats: dict | None = None) -> TelcoMapping:
    """A Viettel-like mapping (config/telcos/viettel.yaml) pointing at ``source``."""
    return TelcoMapping.model_validate({
        "telco": "hostile",
        "display_name": "Hostile",
        "source": str(source),
        "format": "csv",
        "csv": {"delimiter": ",", "encoding": "utf-8", **(csv or {})},
        "columns": VIETTEL_COLUMNS,
        "date_formats": date_formats or {"date_of_birth": ["%d/%m/%Y", "%Y"],
                                         "activation_date": ["%d/%m/%Y"]},
        "vocabularies": {
            "gender": {"Nam": "M", "Nữ": "F"},
            "id_type": {"CCCD": "CCCD", "CMND": "CMND", "HO_CHIEU": "PASSPORT"},
            "subscription_type": {"TRA_TRUOC": "PREPAID", "TRA_SAU": "POSTPAID"},
            "line_status": {"HOAT_DONG": "ACTIVE", "CHAN_1_CHIEU": "BLOCKED_ONE_WAY",
                            "CHAN_2_CHIEU": "BLOCKED_TWO_WAY", "DA_HUY": "CANCELLED"},
        },
        "mapping_file": str(source.parent / "hostile.yaml"),
    })


def _case_id(case: dict[str, Any]) -> str:
    return case["file"] + (f" [{case['case']}]" if "case" in case else "")


@pytest.mark.parametrize("case", MANIFEST, ids=_case_id)
def test_hostile_file_gives_documented_outcome(case: dict[str, Any]) -> None:
    _check_case(case, IntakeSettings(**case.get("intake", {})))


# Chunk sizes that cut the corpus files everywhere: inside quoted line breaks, CRLF pairs,
# multi-byte and UTF-16 characters, 8-bit lines, the BOM and the header.
SMALL_CHUNKS = [16, 37, 64, 101]


@pytest.mark.parametrize("chunk_bytes", SMALL_CHUNKS)
@pytest.mark.parametrize("case", MANIFEST, ids=_case_id)
def test_hostile_file_outcome_does_not_depend_on_chunk_size(case: dict[str, Any],
                                                           chunk_bytes: int) -> None:
    settings = IntakeSettings(**{**case.get("intake", {}), "chunk_mb": chunk_bytes / 2**20})
    _check_case(case, settings)


def _check_case(case: dict[str, Any], settings: IntakeSettings) -> None:
    path = HOSTILE / case["file"]
    mapping = viettel_like(path, csv=case.get("csv"), date_formats=case.get("date_formats"))
    if case["outcome"] == "rejected":
        with pytest.raises(TelcoInputError) as error:
            ingested = ingest(mapping, settings)
            normalise(ingested.rows, mapping, run_date=RUN_DATE)
        message = str(error.value)
        for expected in [case["file"], *case["error"]]:
            assert expected in message, f"{expected!r} not in {message!r}"
        return

    assert case["outcome"] == "parsed"
    ingested = ingest(mapping, settings)
    result = normalise(ingested.rows, mapping, run_date=RUN_DATE)
    if "encoding" in case:
        assert ingested.encoding == case["encoding"]
    assert ingested.report is not None
    assert ingested.report.mojibake_rows == case.get("mojibake_rows", 0)
    quarantine = pa.concat_tables([ingested.quarantine, result.quarantine]).to_pylist()
    # conservation: every row of the file is normalised or quarantined, none twice
    assert ingested.rows_in_file == case["rows_in_file"]
    assert result.rows.num_rows == case["normalised"]
    assert result.rows.num_rows + len(quarantine) == ingested.rows_in_file
    rows_seen = result.rows["source_row"].to_pylist() + [q["source_row"] for q in quarantine]
    assert sorted(rows_seen) == list(range(1, ingested.rows_in_file + 1))

    expected_q = case.get("quarantined", [])
    assert len(quarantine) == len(expected_q), quarantine
    for want, got in zip(expected_q, sorted(quarantine, key=lambda q: q["source_row"]),
                         strict=True):
        assert got["source_row"] == want["source_row"]
        assert (got["stage"], got["reason"]) == (want["stage"], want["reason"])
        assert want["raw"] in got["raw_record"], got
        assert want.get("detail", "") in got["detail"], got
        assert got["source_file"] == case["file"]

    by_row = {r["source_row"]: r for r in result.rows.to_pylist()}
    for source_row, values in (case.get("expect") or {}).items():
        for column, value in values.items():
            assert by_row[source_row][column] == value, (source_row, column)


def test_corpus_is_complete_and_documented() -> None:
    files = sorted(p.name for p in HOSTILE.glob("*.csv"))
    assert len(files) >= 20
    assert sorted({c["file"] for c in MANIFEST}) == files
    readme = (HOSTILE / "README.md").read_text("utf-8")
    assert all(name in readme for name in files)


def test_every_row_keeps_its_raw_text_through_ingest() -> None:
    mapping = viettel_like(HOSTILE / "10_quoted_newlines.csv")
    rows = ingest(mapping).rows
    raw = dict(zip(rows["source_row"].to_pylist(), rows["raw_record"].to_pylist(), strict=True))
    assert raw[2].startswith('0987654321,"Trần Thị\nThủy",01/07/1990')
    assert raw[4].endswith('"VT-HNI-0003\n(kiosk, ""chợ"")"')
    assert raw[7].startswith("0393456789,Đặng Thị Hồng Nhung")


def test_excel_serial_dates_follow_the_1900_system() -> None:
    from pipelines.intake.normalise import parse_dates

    parsed = parse_dates(pa.array(["45748", "61", "60", "2958465", "45748.75", " 1985 ", "",
                                   "12/03/1985", "4.5e4", None]),
                         ["%d/%m/%Y", "%Y", "excel_serial"])
    assert parsed.value.to_pylist() == [
        date(2025, 4, 1), date(1900, 3, 1), None, date(9999, 12, 31), date(2025, 4, 1),
        date(1985, 1, 1), None, date(1985, 3, 12), None, None]
    assert parsed.precision.to_pylist()[:6] == ["day", "day", None, "day", "day", "year"]
    assert parsed.unparsed.tolist() == [False, False, True, False, False, False, False, False,
                                        True, False]


@pytest.mark.slow
@pytest.mark.parametrize("quoted", [False, True], ids=["plain", "quoted names"])
def test_million_row_file_with_one_bad_row_in_the_middle(tmp_path: Path, quoted: bool) -> None:
    """Quoted names take the other record splitter (quotes may hide line breaks)."""
    n, bad = 1_000_000, 500_000
    header = ",".join(VIETTEL_COLUMNS.values())
    names = ["Nguyễn Văn Đức", "Trần Thị Thủy", "Phạm Hoàng Yến", "Lê Hữu Nghĩa"]
    if quoted:
        names = [f'"{name}"' for name in names]
    lines = [header]
    for i in range(1, n + 1):
        if i == bad:
            lines.append(f"09{i:08d},Lê Hữu Nghĩa,05/05/1968")  # three fields
        else:
            lines.append(f"09{i % 10**8:08d},{names[i % 4]},12/03/1985,Nam,CCCD,"
                         f"001085{i % 10**6:06d},01/04/2025,TRA_TRUOC,HOAT_DONG,VT-{i % 997}")
    path = tmp_path / "million.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    del lines
    mapping = viettel_like(path)

    started = time.perf_counter()
    ingested = ingest(mapping)
    result = normalise(ingested.rows, mapping, run_date=RUN_DATE)
    elapsed = time.perf_counter() - started

    assert ingested.rows_in_file == n
    assert result.rows.num_rows == n - 1 and result.quarantine.num_rows == 0
    (row,) = ingested.quarantine.to_pylist()
    assert row["source_row"] == bad and row["reason"] == "MALFORMED_ROW"
    assert row["raw_record"] == f"09{bad:08d},Lê Hữu Nghĩa,05/05/1968"
    assert f"line {bad + 1}" in row["detail"]
    source_rows = result.rows["source_row"]
    assert source_rows[bad - 2].as_py() == bad - 1 and source_rows[bad - 1].as_py() == bad + 1
    assert elapsed < 30, f"{elapsed:.1f}s"


def test_parquet_rows_without_raw_line_quarantine_their_fields_as_json(tmp_path: Path) -> None:
    import json

    import pyarrow.parquet as pq

    lines = (HOSTILE / "21_bad_values.csv").read_text("utf-8").splitlines()
    header, rows = lines[0].split(","), [line.split(",") for line in lines[1:]]
    path = tmp_path / "export.parquet"
    pq.write_table(pa.table({name: [r[i] for r in rows] for i, name in enumerate(header)}), path)
    mapping = viettel_like(path).model_copy(update={"format": "parquet"})
    ingested = ingest(mapping)
    result = normalise(ingested.rows, mapping, run_date=RUN_DATE)
    quarantined = {q["source_row"]: q for q in result.quarantine.to_pylist()}
    assert sorted(quarantined) == [2, 4, 6]
    fields = json.loads(quarantined[2]["raw_record"])
    assert fields["gender"] == "Khác?" and fields["full_name"] == "Trần Thị Thủy"
    assert "raw_record" not in fields
