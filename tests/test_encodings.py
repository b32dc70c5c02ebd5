"""Decoding telco exports: real byte sequences of known names in every supported encoding.

The expected bytes are literals taken from the published tables (TCVN3: TCVN
5712 as in XFree86/glibc iconv; VNI: xvnkb vni.h and duydev/vietnamese-conversion;
Windows-1258: glibc iconv CP1258, which writes a toned vowel as base + combining
tone), not produced by our own encoder. Round trips come in addition.
"""

from __future__ import annotations

import unicodedata

import pytest

from pipelines.config import CsvOptions
from pipelines.intake import encodings
from pipelines.intake.encodings import (
    Decoded,
    EncodingUndetectedError,
    UndecodableError,
    decode,
    decode_tcvn3,
    decode_vni,
    decode_windows_1258,
    is_vietnamese_word,
)

NAMES = ["Nguyễn Văn Đức", "Trần Thị Thủy", "Phạm Hoàng Yến", "Lê Hữu Nghĩa"]

TCVN3 = {
    "Nguyễn Văn Đức": b"Nguy\xd4n V\xa8n \xa7\xf8c",
    "Trần Thị Thủy": b"Tr\xc7n Th\xde Th\xf1y",
    "Phạm Hoàng Yến": b"Ph\xb9m Ho\xb5ng Y\xd5n",
    "Lê Hữu Nghĩa": b"L\xaa H\xf7u Ngh\xdca",
    # upper case: TCVN 5712 VN1 positions (0xD9 = Ễ, 0xA1 = Ă, 0x11 = Ứ), as glibc writes them
    "NGUYỄN VĂN ĐỨC": b"NGUY\xd9N V\xa1N \xa7\x11C",
}
VNI = {
    "Nguyễn Văn Đức": b"Nguye\xe3n Va\xean \xd1\xf6\xf9c",
    "Trần Thị Thủy": b"Tra\xe0n Th\xf2 Thu\xfby",
    "Phạm Hoàng Yến": b"Pha\xefm Hoa\xf8ng Ye\xe1n",
    "Lê Hữu Nghĩa": b"Le\xe2 H\xf6\xf5u Ngh\xf3a",
    "NGUYỄN VĂN ĐỨC": b"NGUYE\xc3N VA\xcaN \xd1\xd6\xd9C",
}
WINDOWS_1258 = {
    "Nguyễn Văn Đức": b"Nguy\xea\xden V\xe3n \xd0\xfd\xecc",
    "Trần Thị Thủy": b"Tr\xe2\xccn Thi\xf2 Thu\xd2y",
    "Phạm Hoàng Yến": b"Pha\xf2m Ho\xe0ng Y\xea\xecn",
    "Lê Hữu Nghĩa": b"L\xea H\xfd\xdeu Nghi\xdea",
}
UTF8 = {"Nguyễn Văn Đức": b"Nguy\xe1\xbb\x85n V\xc4\x83n \xc4\x90\xe1\xbb\xa9c"}
UTF16LE_BOM = {"Đức": b"\xff\xfe\x10\x01\xe9\x1ec\x00"}
UTF16BE_BOM = {"Đức": b"\xfe\xff\x01\x10\x1e\xe9\x00c"}


def _file(table: dict[str, bytes], sep: bytes = b"\n") -> bytes:
    """A small export: one name per line, with numbers around it like a real row."""
    return sep.join(b"09%08d," % i + raw + b",12/03/1985" for i, raw in enumerate(table.values()))


@pytest.mark.parametrize(("name", "raw"), TCVN3.items())
def test_tcvn3_known_names(name: str, raw: bytes) -> None:
    assert decode_tcvn3(raw) == name
    assert decode(raw, "tcvn3").text == name


@pytest.mark.parametrize(("name", "raw"), VNI.items())
def test_vni_known_names(name: str, raw: bytes) -> None:
    assert decode_vni(raw) == name
    assert decode(raw, "vni").text == name


@pytest.mark.parametrize(("name", "raw"), WINDOWS_1258.items())
def test_windows_1258_known_names_come_out_nfc(name: str, raw: bytes) -> None:
    assert raw.decode("cp1258") != name  # the code page itself gives base + combining tone
    assert decode_windows_1258(raw) == name
    assert unicodedata.is_normalized("NFC", decode(raw, "windows-1258").text)


def test_utf8_and_utf16_known_bytes() -> None:
    assert decode(UTF8["Nguyễn Văn Đức"], "utf-8").text == "Nguyễn Văn Đức"
    with_bom = decode(b"\xef\xbb\xbf" + UTF8["Nguyễn Văn Đức"], "utf-8")
    assert with_bom == Decoded("Nguyễn Văn Đức", "utf-8", bom=True)
    assert decode(UTF16LE_BOM["Đức"], "utf-16").text == "Đức"
    assert decode(UTF16BE_BOM["Đức"], "utf-16").text == "Đức"
    assert decode(UTF16LE_BOM["Đức"][2:], "utf-16").text == "Đức"  # no BOM: LE guessed
    assert decode(UTF16BE_BOM["Đức"][2:], "utf-16").text == "Đức"  # no BOM: BE guessed


def test_utf8_is_not_normalised_by_decoding() -> None:
    """UTF-8 text stays as sent: the export gate measures the telco's NFD share."""
    nfd = unicodedata.normalize("NFD", "Nguyễn")
    assert decode(nfd.encode(), "utf-8").text == nfd


@pytest.mark.parametrize(("table", "expected"), [
    (TCVN3, "tcvn3"), (VNI, "vni"), (WINDOWS_1258, "windows-1258"), (UTF8, "utf-8")])
def test_auto_detects_each_encoding(table: dict[str, bytes], expected: str) -> None:
    decoded = decode(_file(table), "auto")
    assert decoded.encoding == expected
    for name in table:
        assert name in decoded.text


@pytest.mark.parametrize(("raw", "expected"), [
    (b"\xef\xbb\xbf" + UTF8["Nguyễn Văn Đức"], "utf-8"),
    (UTF16LE_BOM["Đức"], "utf-16"), (UTF16BE_BOM["Đức"], "utf-16"),
    ("SO,HO_TEN\n1,Đức\n".encode("utf-16-le"), "utf-16"),
    (b"SO,HO_TEN\n1,Nguyen Van Duc\n", "utf-8")])
def test_auto_trusts_boms_and_plain_text(raw: bytes, expected: str) -> None:
    assert decode(raw, "auto").encoding == expected


def test_auto_refuses_to_guess_and_names_the_candidates() -> None:
    with pytest.raises(EncodingUndetectedError) as error:
        decode(b"1,L\xea\n", "auto")  # "Lê" in Windows-1258, "Lờ" in TCVN3
    message = str(error.value)
    assert all(name in message for name in ("windows-1258", "tcvn3", "vni"))
    assert error.value.scores["windows-1258"] == error.value.scores["tcvn3"] == 1.0


def test_auto_refuses_binary_garbage() -> None:
    with pytest.raises(EncodingUndetectedError):
        decode(bytes(range(0x80, 0x100)) * 3, "auto")


def test_declared_utf8_with_a_bad_byte_names_line_and_offset() -> None:
    data = b"a,b\n1,2\n3," + b"\xd4" + b"\n"
    with pytest.raises(UndecodableError) as error:
        decode(data, "utf-8")
    assert (error.value.line, error.value.offset) == (3, 10)
    assert "line 3" in str(error.value) and "byte offset 10" in str(error.value)


def test_auto_does_not_take_broken_utf8_for_an_8bit_file() -> None:
    data = (_file(UTF8) + b"\n") * 5 + b"1,L\xea,x\n"
    with pytest.raises(UndecodableError) as error:
        decode(data, "auto")
    assert error.value.encoding == "utf-8" and error.value.line == 6


def test_declared_legacy_encoding_that_reads_as_another_is_refused() -> None:
    with pytest.raises(UndecodableError) as error:
        decode(_file(TCVN3), "vni")
    assert "declared vni but the bytes read as tcvn3" in str(error.value)
    assert error.value.line == 1
    with pytest.raises(UndecodableError, match="read as vni"):
        decode(_file(VNI), "tcvn3")


def test_undefined_windows_1258_byte_names_line() -> None:
    with pytest.raises(UndecodableError) as error:
        decode(b"a\nb\n\x8a\n", "windows-1258")
    assert error.value.line == 3 and "not defined" in str(error.value)


def test_utf16_truncated_names_offset() -> None:
    with pytest.raises(UndecodableError) as error:
        decode(UTF16LE_BOM["Đức"] + b"\n", "utf-16")
    assert error.value.offset == 8


def test_every_published_vni_sequence_decodes_to_its_letter() -> None:
    sequences = encodings.vni_sequences()
    assert len(sequences) == 146  # 12 vowels x 6 tones + Đ, upper and lower case
    for letter, raw in sequences.items():
        assert decode_vni(raw) == letter, (letter, raw)


def test_tcvn3_table_covers_every_vietnamese_lower_case_letter() -> None:
    decoded = set(encodings.tcvn3_table().values())
    for letter in encodings.vni_sequences():
        if letter.islower() and not letter.isascii():
            assert letter in decoded, letter


def test_round_trip_every_letter() -> None:
    """Additional to the literals: our tables invert cleanly for all 134 letters."""
    inverse = {ch: bytes([b]) for b, ch in encodings.tcvn3_table().items()}
    for letter, vni_raw in encodings.vni_sequences().items():
        assert decode_vni(vni_raw * 2) == letter * 2
        if letter in inverse:
            assert decode_tcvn3(inverse[letter]) == letter


@pytest.mark.parametrize("word", [*" ".join(NAMES).split(), "NGUYỄN", "Quyền", "gì",
                                  "Khuyến", "Ngoẵng", "Thuở", "Hoà", "Hòa"])
def test_vietnamese_words_are_recognised(word: str) -> None:
    assert is_vietnamese_word(word)


@pytest.mark.parametrize("word", ["NguyÔn", "V¨n", "§øc", "Nguyeãn", "Vaên", "Lĕ", "Nguyẽễn",
                                  "ĐứcĐức", "", "x̉"])
def test_mojibake_is_not_vietnamese(word: str) -> None:
    assert not is_vietnamese_word(word)


def test_encoding_names_and_config() -> None:
    assert encodings.canonical_encoding("UTF8") == "utf-8"
    assert encodings.canonical_encoding("utf-8-sig") == "utf-8"
    assert encodings.canonical_encoding("CP1258") == "windows-1258"
    assert encodings.canonical_encoding("ABC") == "tcvn3"
    assert encodings.canonical_encoding("VNI-Windows") == "vni"
    assert CsvOptions(encoding="auto").encoding == "auto"
    with pytest.raises(ValueError, match="unknown encoding"):
        CsvOptions(encoding="viscii")
    with pytest.raises(ValueError, match="differ"):
        CsvOptions(delimiter='"')
