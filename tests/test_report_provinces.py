"""The old 63 CCCD province codes and the 34 units of Resolution 202/2025/QH15."""

from __future__ import annotations

import pyarrow as pa
import pytest

from matching.reference import provinces as cccd_provinces
from pipelines.reporting import provinces

# Written out from Resolution 202/2025/QH15 independently of the data file: each merged
# unit and the old provinces it was formed from (the first keeps its name).
MERGED = {
    "Tuyên Quang": {"Tuyên Quang", "Hà Giang"},
    "Lào Cai": {"Lào Cai", "Yên Bái"},
    "Thái Nguyên": {"Thái Nguyên", "Bắc Kạn"},
    "Phú Thọ": {"Phú Thọ", "Vĩnh Phúc", "Hòa Bình"},
    "Bắc Ninh": {"Bắc Ninh", "Bắc Giang"},
    "Hưng Yên": {"Hưng Yên", "Thái Bình"},
    "Hải Phòng": {"Hải Phòng", "Hải Dương"},
    "Ninh Bình": {"Ninh Bình", "Hà Nam", "Nam Định"},
    "Quảng Trị": {"Quảng Trị", "Quảng Bình"},
    "Đà Nẵng": {"Đà Nẵng", "Quảng Nam"},
    "Quảng Ngãi": {"Quảng Ngãi", "Kon Tum"},
    "Gia Lai": {"Gia Lai", "Bình Định"},
    "Khánh Hòa": {"Khánh Hòa", "Ninh Thuận"},
    "Lâm Đồng": {"Lâm Đồng", "Đắk Nông", "Bình Thuận"},
    "Đắk Lắk": {"Đắk Lắk", "Phú Yên"},
    "TP. Hồ Chí Minh": {"TP. Hồ Chí Minh", "Bình Dương", "Bà Rịa–Vũng Tàu"},
    "Đồng Nai": {"Đồng Nai", "Bình Phước"},
    "Tây Ninh": {"Tây Ninh", "Long An"},
    "Cần Thơ": {"Cần Thơ", "Sóc Trăng", "Hậu Giang"},
    "Vĩnh Long": {"Vĩnh Long", "Bến Tre", "Trà Vinh"},
    "Đồng Tháp": {"Đồng Tháp", "Tiền Giang"},
    "Cà Mau": {"Cà Mau", "Bạc Liêu"},
    "An Giang": {"An Giang", "Kiên Giang"},
}
UNCHANGED = {"Hà Nội", "Huế", "Lai Châu", "Điện Biên", "Sơn La", "Lạng Sơn", "Quảng Ninh",
             "Thanh Hóa", "Nghệ An", "Hà Tĩnh", "Cao Bằng"}
CITIES = {"Hà Nội", "Huế", "Hải Phòng", "Đà Nẵng", "TP. Hồ Chí Minh", "Cần Thơ"}


def test_every_old_code_maps_and_there_are_34_units() -> None:
    table = provinces.mapping()
    codes = table["old_code"].to_pylist()
    assert len(codes) == 63 == len(set(codes))
    assert set(codes) == set(cccd_provinces()["code"].to_pylist())
    units = provinces.units()
    assert len(units) == 34 == len(set(units))
    assert set(units) == set(MERGED) | UNCHANGED
    assert len(MERGED) == 23 and not set(MERGED) & UNCHANGED


def test_the_mapping_is_the_resolutions() -> None:
    rows = provinces.mapping().to_pylist()
    formed: dict[str, set[str]] = {}
    for row in rows:
        formed.setdefault(row["unit"], set()).add(row["old_name"])
    assert {u: formed[u] for u in MERGED} == MERGED
    for unit in UNCHANGED:
        assert len(formed[unit]) == 1, unit
    assert formed["Huế"] == {"Thừa Thiên Huế"}
    kinds = {r["unit"]: r["unit_kind"] for r in rows}
    assert {u for u, k in kinds.items() if k == "city"} == CITIES
    changes = {r["unit"]: r["change"] for r in rows}
    assert {u for u, c in changes.items() if c == "unchanged"} == UNCHANGED
    # The file's names agree with the CCCD code list, up to how TP.HCM is written.
    official = dict(zip(*(cccd_provinces()[c].to_pylist() for c in ("code", "name")),
                        strict=True))
    for row in rows:
        if row["old_code"] != "079":
            assert row["old_name"] == official[row["old_code"]], row


def test_codes_are_read_from_cccds_only() -> None:
    ids = pa.array(["079084000999", "002190000001", "123456789", None, "0791", "999084000001",
                    "B1234567"])
    types = pa.array(["CCCD", "CCCD", "CMND", "CCCD", "CCCD", "CCCD", "PASSPORT"])
    codes = provinces.birth_province_code(ids, types)
    assert codes.to_pylist() == ["079", "002", None, None, None, "999", None]
    old, unit, known = provinces.locate(codes)
    assert old.to_pylist()[:2] == ["TP. Hồ Chí Minh", "Hà Giang"]
    assert unit.to_pylist() == ["TP. Hồ Chí Minh", "Tuyên Quang", *[provinces.UNKNOWN] * 5]
    assert known.to_pylist() == ["079", "002", None, None, None, None, None]


def test_a_broken_mapping_file_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "p.csv"
    bad.write_text("old_code,old_name,unit,unit_kind,change\n001,Hà Nội,Hà Nội,town,unchanged\n",
                   encoding="utf-8")
    with pytest.raises(ValueError, match="unit_kind"):
        provinces.mapping(bad)
    bad.write_text("old_code,old_name,unit\n001,Hà Nội,Hà Nội\n", encoding="utf-8")
    with pytest.raises(ValueError, match="missing column"):
        provinces.mapping(bad)
