"""Regenerate the hostile-file corpus: ``python tests/hostile/make_corpus.py``.

Windows-1258 and TCVN3 bytes come from GNU iconv (CP1258, TCVN5712-1), an
encoder independent of ``pipelines.intake.encodings``; VNI bytes from the published
VNI table (``pipelines/data/vni_windows.csv``). Outcomes: ``manifest.yaml``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEADER = ("SO_THUE_BAO,HO_TEN,NGAY_SINH,GIOI_TINH,LOAI_GIAY_TO,SO_GIAY_TO,NGAY_KICH_HOAT,"
          "LOAI_TB,TRANG_THAI,MA_DIEM_BAN")
PEOPLE = [
    ("0912345678", "Nguyễn Văn Đức", "12/03/1985", "Nam", "001085012345"),
    ("0987654321", "Trần Thị Thủy", "01/07/1990", "Nữ", "079190004321"),
    ("0358123456", "Phạm Hoàng Yến", "23/11/1979", "Nữ", "031179006789"),
    ("0903111222", "Lê Hữu Nghĩa", "05/05/1968", "Nam", "048068001122"),
    ("0771234567", "Huỳnh Thị Bích Ngọc", "30/09/2001", "Nữ", "092301009876"),
    ("0868765432", "Võ Minh Quân", "14/02/1995", "Nam", "052095003344"),
    ("0393456789", "Đặng Thị Hồng Nhung", "08/08/1988", "Nữ", "036188005566"),
    ("0946789012", "Bùi Quang Vinh", "19/12/1972", "Nam", "026072007788"),
]


def row(i: int, person: tuple[str, ...], sep: str = ",") -> str:
    msisdn, name, dob, gender, cccd = person
    return sep.join([msisdn, name, dob, gender, "CCCD", cccd, "01/04/2025", "TRA_TRUOC",
                     "HOAT_DONG", f"VT-HNI-{i:04d}"])


def table(sep: str = ",", eol: str = "\n", people=PEOPLE) -> str:
    return eol.join([HEADER.replace(",", sep), *(row(i, p, sep) for i, p in enumerate(people))]) \
        + eol


def iconv(text: str, encoding: str) -> bytes:
    return subprocess.run(["iconv", "-f", "UTF-8", "-t", encoding], input=text.encode(),
                          capture_output=True, check=True).stdout


def vni(text: str) -> bytes:
    import csv
    rows = csv.DictReader(line for line in (HERE.parents[1] / "pipelines" / "data" /
                                            "vni_windows.csv").read_text("utf-8").splitlines()
                          if not line.startswith("#"))
    table_ = {r["char"]: bytes.fromhex(r["bytes"]) for r in rows}
    return b"".join(table_[ch] if ch in table_ else ch.encode("ascii") for ch in text)


def main() -> None:
    files: dict[str, bytes] = {}
    base = table()
    files["01_utf8.csv"] = base.encode()
    files["02_utf8_bom.csv"] = b"\xef\xbb\xbf" + base.encode()
    files["03_utf8_crlf.csv"] = table(eol="\r\n").encode()
    files["04_utf16le_bom.csv"] = base.encode("utf-16")  # BOM + little-endian
    files["05_utf16be_bom.csv"] = b"\xfe\xff" + base.encode("utf-16-be")
    files["06_windows1258.csv"] = iconv(base, "CP1258")
    files["07_tcvn3.csv"] = iconv(base, "TCVN5712-1")
    files["08_vni.csv"] = vni(base)
    files["09_semicolon.csv"] = table(sep=";").encode()
    lines = base.splitlines()
    # quoted line break inside a name (row 2) and a point of sale (row 4); a short row 6
    quoted = list(lines)
    quoted[2] = quoted[2].replace("Trần Thị Thủy", '"Trần Thị\nThủy"')
    quoted[4] = quoted[4].replace("VT-HNI-0003", '"VT-HNI-0003\n(kiosk, ""chợ"")"')
    quoted[6] = "0868765432,Võ Minh Quân,14/02/1995"
    files["10_quoted_newlines.csv"] = ("\n".join(quoted) + "\n").encode()
    files["11_truncated_last_line.csv"] = (base[: base.rindex("CCCD")]).encode()
    cut = "\n".join([*lines[:-1], lines[-1].replace("VT-HNI-0007", '"VT-HNI-0007')])
    files["12_truncated_in_quote.csv"] = cut.encode()
    files["13_empty.csv"] = b""
    files["14_header_only.csv"] = (HEADER + "\n").encode()
    extra = [lines[0] + ",GHI_CHU,KENH"] + [line + ",,app" for line in lines[1:]]
    files["15_extra_columns.csv"] = ("\n".join(extra) + "\n").encode()
    drop = 5  # SO_GIAY_TO
    missing = [",".join(c for i, c in enumerate(line.split(",")) if i != drop) for line in lines]
    files["16_missing_column.csv"] = ("\n".join(missing) + "\n").encode()
    excel = list(lines)
    excel[1] = excel[1].replace("0912345678", "9.12345678E8")      # exact: repaired
    excel[2] = excel[2].replace("0987654321", "987654321")         # leading zero lost
    excel[3] = excel[3].replace("0358123456", "3.58123E+08")       # rounded: unusable
    excel[4] = excel[4].replace("048068001122", "48068001122")     # CCCD lost its 0
    excel[5] = excel[5].replace("092301009876", "9.23010E+10")     # rounded CCCD
    files["17_excel_numbers.csv"] = ("\n".join(excel) + "\n").encode()
    serial = list(lines)
    serial[1] = serial[1].replace("01/04/2025", "45748")           # 2025-04-01
    serial[2] = serial[2].replace("01/07/1990", "32990")           # 1990-04-27
    serial[3] = serial[3].replace("01/04/2025", "45748.5")         # with a time fraction
    files["18_excel_dates.csv"] = ("\n".join(serial) + "\n").encode()
    files["19_duplicate_rows.csv"] = ("\n".join([*lines, lines[1]]) + "\n").encode()
    malformed = list(lines)
    malformed[3] = "0358123456,Phạm Hoàng Yến,23/11/1979"
    malformed[5] = lines[5] + ",surplus,fields"
    files["20_malformed_rows.csv"] = ("\n".join(malformed) + "\n").encode()
    values = list(lines)
    values[2] = values[2].replace(",Nữ,", ",Khác?,")
    values[4] = values[4].replace("01/04/2025", "31/02/2025")
    values[6] = values[6].replace("14/02/1995", "1995-02-14")
    files["21_bad_values.csv"] = ("\n".join(values) + "\n").encode()
    many = [lines[0]] + [row(i, PEOPLE[i % len(PEOPLE)]) for i in range(40)]
    many[3] = many[3].replace("Phạm Hoàng Yến", '"Phạm Hoàng Yến')  # never closed
    files["22_stray_quote.csv"] = ("\n".join(many) + "\n").encode()
    files["23_ambiguous_8bit.csv"] = (
        HEADER + "\n0912345678,L\xea V\xe3n,12/03/1985,Nam,CCCD,001085012345,01/04/2025,"
        "TRA_TRUOC,HOAT_DONG,VT-HNI-0000\n").encode("latin-1")
    blank = [lines[0], lines[1], "", lines[2], "", "", lines[3]]
    files["24_blank_lines.csv"] = ("\n".join(blank) + "\n").encode()
    import unicodedata
    files["25_nfd_utf8.csv"] = unicodedata.normalize("NFD", base).encode()
    broken = base.encode().split(b"\n")
    broken[4] = broken[4].replace("Lê".encode(), b"L\xea")  # line 5
    files["26_invalid_utf8.csv"] = b"\n".join(broken)
    files["27_tcvn3_declared_vni.csv"] = iconv(base, "TCVN5712-1")
    files["28_no_final_newline.csv"] = base.rstrip("\n").encode()
    files.update(issue_14_files(lines))
    for name, data in files.items():
        (HERE / name).write_bytes(data)
    print(f"{len(files)} files written to {HERE}")


def mojibake(text: str, codepage: str) -> str:
    """UTF-8 text decoded as a Windows code page (undefined bytes as the C1 control of
    the same number, as Windows does) and saved again: what a careless export does."""
    python = "cp1252" if codepage == "1252" else "cp1258"
    out = []
    for byte in text.encode("utf-8"):
        try:
            out.append(bytes([byte]).decode(python))
        except UnicodeDecodeError:
            out.append(chr(byte))
    return "".join(out)


def issue_14_files(lines: list[str]) -> dict[str, bytes]:
    """Exports that read as text but lie (issue 14): one file per class."""
    files: dict[str, bytes] = {}
    header, body = lines[0], lines[1:]
    files["29_mojibake_1252.csv"] = (
        "\n".join([header, *(mojibake(line, "1252") for line in body)]) + "\n").encode()
    files["30_mojibake_1258.csv"] = (
        "\n".join([header, *(mojibake(line, "1258") for line in body)]) + "\n").encode()
    lost = [mojibake(line, "1252").replace("\x90", "") for line in body]  # a byte dropped
    files["31_mojibake_lost_byte.csv"] = ("\n".join([header, *lost]) + "\n").encode()
    control = list(body)
    control[1] = control[1].replace("Trần Thị", "Trần\x00Thị")   # NUL inside a name
    control[4] = control[4].replace("092301009876", "0923010\x079876")  # BEL in an ID
    control[5] = control[5].replace("Võ Minh", "Võ\tMinh")      # a tab is only a space
    files["32_control_characters.csv"] = ("\n".join([header, *control]) + "\n").encode()
    long = list(body)
    long[2] = long[2].replace("Phạm Hoàng Yến", "Phạm Hoàng Yến" * 200)  # 2,800 characters
    long[6] = long[6].replace("VT-HNI-0006", "X" * 250)  # a dealer code of 250
    files["33_field_too_long.csv"] = ("\n".join([header, *long]) + "\n").encode()
    cut = ("\n".join([header, *body]) + "\n").encode()
    cut = cut[:cut.rindex("Bùi".encode()) + 2]  # inside the two bytes of "ù"
    files["34_truncated_in_character.csv"] = cut
    born = list(body)
    born[1] = born[1].replace("01/07/1990", "02/04/2025")  # activated 01/04/2025
    born[3] = born[3].replace("05/05/1968", "2025")        # year only: may be before
    files["35_birth_after_activation.csv"] = ("\n".join([header, *born]) + "\n").encode()
    short = list(body)
    short[0] = short[0].replace("12/03/1985", "12/03/85")    # CCCD 001085…: 1900s
    short[2] = short[2].replace("23/11/1979", "23/11/20").replace("031179", "031120")
    short[3] = short[3].replace("05/05/1968", "8/8/67")       # CCCD 048068…: 1900s
    short[4] = short[4].replace("30/09/2001", "30/09/01").replace("092301", "092201")
    short[5] = short[5].replace("14/02/1995", "14/02/38").replace(",CCCD,052095003344",
                                                                  ",CMND,052095003")
    short[6] = short[6].replace("01/04/2025", "01/04/25")     # activation: not after run date
    files["36_two_digit_years.csv"] = ("\n".join([header, *short]) + "\n").encode()
    twice = [*body[:3], body[0], body[1].replace("VT-HNI-0001", "VT-HNI-0009"), body[0],
             *body[3:]]
    files["37_identical_rows.csv"] = ("\n".join([header, *twice]) + "\n").encode()
    return files


if __name__ == "__main__":
    main()
