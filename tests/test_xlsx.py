"""The vectorised XLSX writer: what openpyxl and pandas read back is what was written."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import zipfile
from pathlib import Path

import openpyxl
import pandas as pd
import pyarrow as pa
import pytest

from pipelines.storage import xlsx
from pipelines.storage.xlsx import column_letters, write_xlsx

HOSTILE = ['=HYPERLINK("http://x","y")', "+84 912", "-1+1", "@SUM(A1)", "a & <b> \"c\" 'd'",
           "tab\there\nnewline", "bell\x07nul\x00", "Nguyễn Văn An", "  spaces  "]


def read_back(path: Path) -> dict[str, list[tuple]]:
    book = openpyxl.load_workbook(path)
    return {name: list(book[name].iter_rows(values_only=True)) for name in book.sheetnames}


def test_values_and_types_survive_the_round_trip(tmp_path: Path) -> None:
    table = pa.table({
        "text": ["a", None, "Nguyễn Thị Vân"],
        "count": pa.array([1, None, -7], pa.int64()),
        "share": [0.5, float("nan"), 1e-3],
        "ok": [True, None, False],
        "day": pa.array([dt.date(2026, 11, 29), None, dt.date(1950, 1, 1)]),
        "at": pa.array([dt.datetime(2026, 11, 29, 7, 5, 1, 250), None, None]),
        "code": pa.array(["VT", "VT", None]).dictionary_encode(),
        "wide": pa.array(["x", None, "y"], pa.large_string()),
    })
    rows = read_back(write_xlsx({"s": table}, tmp_path / "a.xlsx"))["s"]
    assert rows[0] == tuple(table.column_names)
    assert rows[1] == ("a", 1, 0.5, True, "2026-11-29", "2026-11-29T07:05:01", "VT", "x")
    assert rows[2] == (None, None, None, None, None, None, "VT", None)
    assert rows[3] == ("Nguyễn Thị Vân", -7, 0.001, False, "1950-01-01", None, None, "y")


def test_text_that_looks_like_a_formula_stays_text(tmp_path: Path) -> None:
    path = write_xlsx({"s": pa.table({"v": HOSTILE})}, tmp_path / "h.xlsx")
    sheet = openpyxl.load_workbook(path)["s"]
    cells = [row[0] for row in sheet.iter_rows(min_row=2)]
    assert all(c.data_type == "s" for c in cells)  # never "f" (formula)
    expected = [v.replace("\x07", "\ufffd").replace("\x00", "\ufffd") for v in HOSTILE]
    assert [c.value for c in cells][:6] == expected[:6]
    assert cells[6].value == "bell\ufffdnul\ufffd"  # XML cannot carry C0 controls
    assert cells[7].value == "Nguyễn Văn An" and cells[8].value == "  spaces  "
    sheet_xml = zipfile.ZipFile(path).read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in sheet_xml


def test_pandas_reads_every_row_across_batches(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xlsx, "BATCH_ROWS", 7)
    n = 100
    table = pa.table({"msisdn": [f"09{i:08d}" for i in range(n)], "i": list(range(n))})
    path = write_xlsx({"one": table, "two": table.slice(0, 0)}, tmp_path / "b.xlsx")
    frames = pd.read_excel(path, sheet_name=None, dtype=str)
    assert list(frames) == ["one", "two"]
    assert frames["one"]["msisdn"].tolist() == table["msisdn"].to_pylist()  # leading 0 kept
    assert frames["one"]["i"].tolist() == [str(i) for i in range(n)]
    assert frames["two"].empty and list(frames["two"].columns) == ["msisdn", "i"]


def test_same_tables_give_the_same_bytes(tmp_path: Path) -> None:
    table = pa.table({"v": HOSTILE})
    first = write_xlsx({"s": table}, tmp_path / "1.xlsx").read_bytes()
    second = write_xlsx({"s": table}, tmp_path / "2.xlsx").read_bytes()
    assert first == second


def test_sheet_names_follow_excels_rules(tmp_path: Path) -> None:
    sheets = {"a/b": pa.table({"x": [1]}), "A/B": pa.table({"x": [2]}), "x" * 40: pa.table({})}
    names = list(read_back(write_xlsx(sheets, tmp_path / "n.xlsx")))
    assert names == ["a_b", "A_B_2", "x" * 31]


def test_a_table_longer_than_a_sheet_continues_on_more_sheets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xlsx, "MAX_SHEET_ROWS", 3)  # header + 2 rows a sheet
    path = write_xlsx({"big": pa.table({"x": [1, 2, 3, 4, 5]}), "small": pa.table({"y": [9]})},
                      tmp_path / "big.xlsx")
    assert read_back(path) == {"big": [("x",), (1,), (2,)], "big_2": [("x",), (3,), (4,)],
                               "big_3": [("x",), (5,)], "small": [("y",), (9,)]}


def test_column_letters() -> None:
    letters = column_letters(703)
    assert letters[:3] == ["A", "B", "C"] and letters[25:28] == ["Z", "AA", "AB"]
    assert letters[701:] == ["ZZ", "AAA"]


@pytest.mark.slow
def test_libreoffice_opens_the_workbook_and_reads_text_as_text(tmp_path: Path) -> None:
    """A real spreadsheet application reads what the hand-written format says.

    LibreOffice Calc (Debian's libreoffice-calc-nogui, installed by
    scripts/test.sh) converts each sheet to CSV; a formula would be exported as
    its result, so "=1+1" must come back as "=1+1", not "2".
    """
    soffice = shutil.which("soffice")
    assert soffice, "soffice not found: scripts/test.sh installs libreoffice-calc-nogui"
    table = pa.table({"text": ["=1+1", "a & <b>", None, "Nguyễn Văn An"],
                      "count": pa.array([1, None, 3, -4], pa.int64()),
                      "day": pa.array([dt.date(2026, 1, 2), None, None, dt.date(1999, 12, 31)])})
    write_xlsx({"first": table, "second": pa.table({"x": [7]})}, tmp_path / "t.xlsx")
    # CSV filter options: comma, double quote, UTF-8, from row 1, ..., every sheet (-1).
    options = "csv:Text - txt - csv (StarCalc):44,34,76,1,,0,false,true,false,false,false,-1"
    subprocess.run([soffice, f"-env:UserInstallation=file://{tmp_path}/profile", "--headless",
                    "--convert-to", options, "--outdir", str(tmp_path), str(tmp_path / "t.xlsx")],
                   check=True, capture_output=True, timeout=180)
    first = (tmp_path / "t-first.csv").read_text(encoding="utf-8").splitlines()
    assert first == ["text,count,day", "=1+1,1,2026-01-02", "a & <b>,,", ",3,",
                     "Nguyễn Văn An,-4,1999-12-31"]
    assert (tmp_path / "t-second.csv").read_text(encoding="utf-8").splitlines() == ["x", "7"]


def test_repeated_texts_are_shared_and_the_bytes_do_not_depend_on_the_cuts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xlsx, "BATCH_ROWS", 7)
    n = 300
    table = pa.table({
        "reason": [["Lý do A & <b>", "  B  ", None][i % 3] for i in range(n)],
        "msisdn": [f"09{i:08d}" for i in range(n)],
        "late": ["x"] * 250 + [f"new {i}" for i in range(50)],  # shared, then new texts
        "day": pa.array([dt.date(2026, 11, 28 + i % 2) for i in range(n)]),
    })
    paths = []
    for cut in (n, 5, 64):
        workbook = xlsx.XlsxWriter(tmp_path / f"{cut}.xlsx")
        sheet = workbook.sheet("s", table.schema)
        for start in range(0, n, cut):
            sheet.append(table.slice(start, cut))
        sheet.close()
        paths.append(workbook.close())
    assert len({p.read_bytes() for p in paths}) == 1
    names = zipfile.ZipFile(paths[0]).namelist()
    assert "xl/sharedStrings.xml" in names
    rows = read_back(paths[0])["s"]
    assert rows[0] == tuple(table.column_names)
    assert [r[0] for r in rows[1:]] == table["reason"].to_pylist()
    assert [r[1] for r in rows[1:]] == table["msisdn"].to_pylist()
    assert [r[2] for r in rows[1:]] == table["late"].to_pylist()
    assert [r[3] for r in rows[1:]] == [d.isoformat() for d in table["day"].to_pylist()]


def test_texts_past_the_shared_limit_are_written_inline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xlsx, "SHARED_MAX", 2)
    values = [["a", "b", "c", None][i % 4] for i in range(40)]
    path = write_xlsx({"s": pa.table({"v": values})}, tmp_path / "cap.xlsx")
    assert [r[0] for r in read_back(path)["s"][1:]] == values
    sheet_xml = zipfile.ZipFile(path).read("xl/worksheets/sheet1.xml").decode()
    assert 't="s"' in sheet_xml and 't="inlineStr"><is><t xml:space="preserve">c<' in sheet_xml
