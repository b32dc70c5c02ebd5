"""Exports that read but lie (issue 14): each class with a small file made for it.

Mojibake is repaired only when exact and refused otherwise; control characters,
implausible lengths, births after activation and identical rows are quarantined
with their reason (and so listed for the telco to resend); a file cut inside a
character loses only its last row; two-digit years follow the documented rule.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from matching import flags as rules
from pipelines.config import IntakeSettings
from pipelines.delivery.correction_lists import resend_list
from pipelines.errors import TelcoInputError
from pipelines.intake import suspect
from pipelines.intake.duplicates import RowHashSet, row_hashes
from pipelines.intake.ingest import ingest
from pipelines.intake.normalise import normalise
from pipelines.intake.quarantine import QUARANTINE_REASONS

from .test_hostile_files import RUN_DATE, VIETTEL_COLUMNS, viettel_like

HEADER = ",".join(VIETTEL_COLUMNS.values())


def row(name: str = "Nguyễn Văn Đức", *, msisdn: str = "0912345678", dob: str = "12/03/1985",
        cccd: str = "001085012345", activation: str = "01/04/2025", pos: str = "VT-1") -> str:
    return ",".join([msisdn, name, dob, "Nam", "CCCD", cccd, activation, "TRA_TRUOC",
                     "HOAT_DONG", pos])


def export(tmp_path: Path, lines: list[str], *, raw: bytes | None = None,
           name: str = "export.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(raw if raw is not None else ("\n".join([HEADER, *lines]) + "\n").encode())
    return path


def read(path: Path, settings: IntakeSettings | None = None, **mapping: dict):
    m = viettel_like(path, **mapping)
    ingested = ingest(m, settings)
    result = normalise(ingested.rows, m, run_date=RUN_DATE)
    quarantine = pa.concat_tables([ingested.quarantine, result.quarantine]).to_pylist()
    assert result.rows.num_rows + len(quarantine) == ingested.rows_in_file
    return ingested, result, {q["source_row"]: q for q in quarantine}


def mangle(text: str, codepage: str = "cp1252") -> str:
    """UTF-8 read as a Windows code page (holes as C1 controls) and written again."""
    out = []
    for byte in text.encode():
        try:
            out.append(bytes([byte]).decode(codepage))
        except UnicodeDecodeError:
            out.append(chr(byte))
    return "".join(out)


# -- mojibake ----------------------------------------------------------------------------


@pytest.mark.parametrize("codepage", ["cp1252", "cp1258"])
def test_mojibake_with_one_exact_reading_is_repaired_and_reported(tmp_path: Path,
                                                                 codepage: str) -> None:
    names = ["Nguyễn Văn Đức", "Trần Thị Thủy", "Phạm Hoàng Yến", "Dương Quốc Trưởng"]
    path = export(tmp_path, [mangle(row(n, msisdn=f"091234567{i}"), codepage)
                             for i, n in enumerate(names)])
    assert "Nguyá»…n" in path.read_text("utf-8")  # valid UTF-8: no decoder complains
    ingested, result, quarantined = read(path)
    assert result.rows["full_name"].to_pylist() == names
    assert result.rows["gender"].to_pylist() == ["M"] * 4  # "Nam" was never touched
    assert not quarantined
    stats = ingested.report.stats()
    assert stats["mojibake_repaired"]["rows"] == 4
    assert "windows-12" in stats["mojibake_repaired"]["read_as"]


def test_mojibake_is_refused_when_the_policy_says_so(tmp_path: Path) -> None:
    path = export(tmp_path, [row(), mangle(row("Trần Thị Thủy"))])
    with pytest.raises(TelcoInputError) as error:
        read(path, IntakeSettings(mojibake="refuse"))
    message = str(error.value)
    assert "line 3, column 'HO_TEN'" in message and "mojibake" in message
    assert "Thủy" not in message  # the evidence is the damaged piece, not the name


def test_mojibake_with_a_lost_byte_is_refused_never_half_repaired(tmp_path: Path) -> None:
    damaged = mangle(row()).replace("\x90", "")  # "Ä" lost the \x90 of "Đ"
    path = export(tmp_path, [row("Lê Văn An"), damaged])
    with pytest.raises(TelcoInputError) as error:
        read(path)
    assert "line 3, column 'HO_TEN'" in str(error.value)
    assert "'Äá»©c'" in str(error.value) and "no exact reading" in str(error.value)


@pytest.mark.parametrize("value", [
    "Nguyễn Văn Đức", "João Müller", "Hà\u00a0Nội", "Ha\u0300\u00a0No\u0302\u0323i",
    "ĐẶNG THỊ HỒNG NHUNG", "Nguyen Van Duc", "O'Brien-Smith", "Lê «Ba»",
])
def test_genuine_text_is_not_taken_for_mojibake(value: str) -> None:
    assert suspect.read_value(value) is None
    _, scan = suspect.scan_column(pa.array([value]))
    assert not scan.repairs and not scan.unreadable


# -- control characters and lengths ------------------------------------------------------


def test_control_characters_quarantine_the_row_not_dropped_silently(tmp_path: Path) -> None:
    path = export(tmp_path, [row("Nguyễn\x00Văn Đức"), row("Trần Thị\tThủy", msisdn="0987"),
                             row(cccd="0010850\x1b12345", msisdn="0911"),
                             row("Lê\x85An", msisdn="0912")])
    _, result, quarantined = read(path)
    assert sorted(quarantined) == [1, 3, 4]
    assert {q["reason"] for q in quarantined.values()} == {"CONTROL_CHARACTER"}
    assert "full_name holds control character U+0000" in quarantined[1]["detail"]
    assert "id_number holds control character U+001B" in quarantined[3]["detail"]
    assert "U+0085" in quarantined[4]["detail"]  # C1 controls too
    assert "\x00" in quarantined[1]["raw_record"]  # sent back exactly as received
    assert result.rows["full_name"].to_pylist() == ["Trần Thị Thủy"]  # a tab is a space


def test_a_million_character_name_is_quarantined(tmp_path: Path) -> None:
    path = export(tmp_path, [row(), row("Phạm " * 200_000, msisdn="0987654321")])
    _, result, quarantined = read(path)
    assert quarantined[2]["reason"] == "FIELD_TOO_LONG"
    assert "full_name has 999999 characters" in quarantined[2]["detail"]  # trimmed
    assert result.rows.num_rows == 1


def test_plausible_lengths_are_settings(tmp_path: Path) -> None:
    path = export(tmp_path, [row(pos="VT-" + "9" * 30)])
    _, _, quarantined = read(path, IntakeSettings(max_field_length={"point_of_sale": 20}))
    assert quarantined[1]["reason"] == "FIELD_TOO_LONG"
    assert "at most 20" in quarantined[1]["detail"]
    _, result, _ = read(path)
    assert result.rows.num_rows == 1
    with pytest.raises(ValueError, match="unknown canonical field"):
        IntakeSettings(max_field_length={"nickname": 3})


# -- cut inside a character --------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_file_cut_inside_a_character_loses_only_its_last_row(tmp_path: Path,
                                                             encoding: str) -> None:
    text = "\n".join([HEADER, row(), row("Bùi Quang Vinh", msisdn="0987654321")]) + "\n"
    data = text.encode(encoding)
    cut = data[:data.rindex("ù".encode(encoding.replace("16", "16-le"))) + 1]  # inside "ù"
    path = export(tmp_path, [], raw=cut)
    ingested, result, quarantined = read(path, csv={"encoding": encoding})
    assert ingested.rows_in_file == 2 and result.rows["source_row"].to_pylist() == [1]
    assert quarantined[2]["reason"] == "TRUNCATED_ROW"
    assert "ends inside a multi-byte character" in quarantined[2]["detail"]
    assert quarantined[2]["raw_record"].startswith("0987654321,B")


def test_invalid_bytes_inside_the_file_are_still_refused(tmp_path: Path) -> None:
    data = ("\n".join([HEADER, row(), row("Bùi Quang Vinh")]) + "\n").encode()
    broken = data.replace("ù".encode(), b"\xc3")  # a lead byte without its continuation
    with pytest.raises(TelcoInputError, match=r"line 3: bytes c3 are not valid"):
        read(export(tmp_path, [], raw=broken))


# -- dates -------------------------------------------------------------------------------


def test_birth_after_activation_is_quarantined(tmp_path: Path) -> None:
    path = export(tmp_path, [row(dob="02/04/2025"), row(dob="01/04/2025", msisdn="0911"),
                             row(dob="2025", msisdn="0912")])
    _, result, quarantined = read(path)
    assert list(quarantined) == [1]
    assert quarantined[1]["reason"] == "BIRTH_AFTER_ACTIVATION"
    assert quarantined[1]["stage"] == "normalise"
    assert result.rows["source_row"].to_pylist() == [2, 3]  # same day, and year only


def test_two_digit_years_follow_the_cccd_then_the_activation_date(tmp_path: Path) -> None:
    formats = {"date_of_birth": ["%d/%m/%y"], "activation_date": ["%d/%m/%Y", "%d/%m/%y"]}
    path = export(tmp_path, [
        row(dob="8/8/67", cccd="048067001122"),                   # CCCD: 1900s
        row(dob="5/5/20", cccd="001120012345", msisdn="0911"),    # CCCD beats "latest"
        row(dob="5/5/20", cccd="001320012345", msisdn="0912"),    # century digit 3: 2000s
        row(dob="8/8/67", cccd="123456789", msisdn="0913"),       # no CCCD: not after 2025
        row(dob="2/4/24", cccd="123456780", activation="1/4/24", msisdn="0914"),  # 1924
        row(dob="1/1/90", activation="1/1/27", msisdn="0915"),    # activation: 1927
    ])
    _, result, quarantined = read(path, date_formats=formats)
    births = dict(zip(result.rows["source_row"].to_pylist(),
                      result.rows["date_of_birth"].to_pylist(), strict=True))
    assert births[1] == date(1967, 8, 8)
    assert births[2] == date(1920, 5, 5)
    assert births[3] == date(2020, 5, 5)
    assert births[4] == date(1967, 8, 8)
    assert births[5] == date(1924, 4, 2)  # 2024 would be after the activation day
    assert 6 in quarantined  # activated 1927 (latest "27" not after the run date)...
    assert quarantined[6]["reason"] == "BIRTH_AFTER_ACTIVATION"  # ...before a 1990 birth


# -- identical rows ----------------------------------------------------------------------


def test_identical_rows_are_quarantined_across_chunks_distinct_ones_stay(tmp_path: Path) -> None:
    lines = [row(msisdn=f"09{i:08d}", pos=f"VT-{i}") for i in range(60)]
    lines += [lines[3], row(msisdn="0900000003", pos="VT-OTHER"), lines[3], lines[59]]
    path = export(tmp_path, lines)
    ingested, result, quarantined = read(path, IntakeSettings(chunk_mb=300 / 2**20))
    assert ingested.report.chunks > 10  # the copies are several chunks after the originals
    assert sorted(quarantined) == [61, 63, 64]
    assert {q["reason"] for q in quarantined.values()} == {"DUPLICATE_ROW"}
    assert quarantined[61]["detail"] == \
        "identical to line 5 (the first copy); this copy is line 62"
    assert "line 61 (the first copy); this copy is line 65" in quarantined[64]["detail"]
    # The distinct row sharing row 4's number stays, and is a DUPLICATE_MSISDN later.
    msisdn = result.rows["msisdn"]
    dup = rules.duplicate_msisdn(msisdn, np.ones(len(msisdn), dtype=bool))
    flagged = set(np.asarray(result.rows["source_row"])[dup].tolist())
    assert flagged == {4, 62}
    # Every quarantined row is in the telco's resend list, with a documented reason.
    q = pa.concat_tables([ingested.quarantine, result.quarantine])
    pq.write_table(q, tmp_path / "quarantine.parquet")
    resend = resend_list([tmp_path / "quarantine.parquet"], "hostile")
    assert resend["source_row"].to_pylist() == [61, 63, 64]
    assert set(q["reason"].to_pylist()) <= set(QUARANTINE_REASONS)


def test_identical_parquet_rows_are_quarantined(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    lines = [row(msisdn=f"09{i:08d}").split(",") for i in range(5)]
    lines.append(list(lines[2]))
    path = tmp_path / "export.parquet"
    names = list(VIETTEL_COLUMNS.values())
    pq.write_table(pa.table({n: [r[i] for r in lines] for i, n in enumerate(names)}), path)
    m = viettel_like(path).model_copy(update={"format": "parquet"})
    ingested = ingest(m)
    (q,) = ingested.quarantine.to_pylist()
    assert q["source_row"] == 6 and q["reason"] == "DUPLICATE_ROW"
    assert q["detail"] == "identical to row 3 (the first copy); this copy is row 6"
    assert '"msisdn":"0900000002"' in q["raw_record"]  # no raw line: the fields as JSON


def test_row_hashes_tell_apart_what_padding_could_confuse() -> None:
    texts = ["", "a", "a\x00", "a ", "ab", "b" * 31, "b" * 32, "b" * 33, "x" * 70_000,
             "Nguyễn", None]
    hashes = row_hashes(pa.array(texts))
    assert len(set(hashes[:-1].tolist())) == len(texts) - 1
    assert hashes[-1] == hashes[0]  # null is the empty text
    again = row_hashes(pa.array(["ab", "Nguyễn", "x" * 70_000]))
    assert again.tolist() == [hashes[4], hashes[9], hashes[8]]  # not bound to the chunk
    many = row_hashes(pa.array([f"row {i}" for i in range(200_000)]))
    assert len(np.unique(many)) == 200_000


def test_row_hash_set_reports_the_first_copy() -> None:
    seen = RowHashSet()
    h = np.array([5, 7, 5, 9], dtype=np.uint64)
    assert seen.add(h, np.array([2, 3, 4, 5])).tolist() == [-1, -1, 2, -1]
    for k in range(20):  # many runs, merged as they grow
        seen.add(np.array([100 + k], dtype=np.uint64), np.array([10 + k]))
    assert seen.add(np.array([9, 105, 11, 9], dtype=np.uint64),
                    np.array([40, 41, 42, 43])).tolist() == [5, 15, -1, 5]
    assert len(seen) == 24 and seen.nbytes == 24 * 12
