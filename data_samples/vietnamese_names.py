"""Reference data for the sample-world generator: names, provinces, prefixes.

Data only, no logic. Weights are relative frequencies (normalised by the
generator). Sources are in /work/shared/domain/vietnam.md unless noted; the
per-name frequencies below the surname level are plausible, not measured.
"""

from __future__ import annotations

# --- Surnames --------------------------------------------------------------
# Shares in percent (domain doc §4): Nguyễn 38–39, Trần 11, Lê 9.5, Phạm 7.1,
# Huỳnh/Hoàng 5.1, Phan 4.5, Vũ/Võ 3.9, Đặng 2.1, Bùi 2; 14 surnames ≈ 90%.
# "Hoàng|Huỳnh" and "Vũ|Võ" are one surname with a regional spelling: the
# generator picks Hoàng/Vũ mostly in the North, Huỳnh/Võ mostly in the
# Centre and South (by the province code of birth registration).
SURNAMES: tuple[tuple[str, float], ...] = (
    ("Nguyễn", 38.4),
    ("Trần", 11.0),
    ("Lê", 9.5),
    ("Phạm", 7.1),
    ("Hoàng|Huỳnh", 5.1),
    ("Phan", 4.5),
    ("Vũ|Võ", 3.9),
    ("Đặng", 2.1),
    ("Bùi", 2.0),
    ("Đỗ", 1.4),
    ("Hồ", 1.3),
    ("Ngô", 1.3),
    ("Dương", 1.0),
    ("Lý", 0.5),
)
# The remaining ~10.9% (relative weights, scaled by the generator).
OTHER_SURNAMES: tuple[tuple[str, float], ...] = (
    ("Đinh", 8), ("Đoàn", 7), ("Trương", 8), ("Lâm", 6), ("Mai", 6), ("Trịnh", 6),
    ("Cao", 5), ("Lưu", 4), ("Tạ", 3), ("Hà", 5), ("Tô", 3), ("Châu", 4),
    ("Thái", 3), ("Quách", 2), ("La", 2), ("Lương", 5), ("Kiều", 2), ("Triệu", 3),
    ("Phùng", 3), ("Chu", 3), ("Nông", 3), ("Đào", 5), ("Vương", 3), ("Tăng", 2),
    ("Hứa", 2), ("Giang", 2), ("Thân", 1), ("Doãn", 1), ("Mạc", 1), ("Khổng", 1),
    ("Âu", 1), ("Lục", 1), ("Tôn Thất", 1), ("Tôn Nữ", 0.5),
)
OTHER_SURNAMES_SHARE = 100.0 - sum(w for _, w in SURNAMES)
# Regional spelling pairs (domain doc §4: Huỳnh = Hoàng, Võ = Vũ).
SURNAME_VARIANTS: dict[str, str] = {"Hoàng": "Huỳnh", "Huỳnh": "Hoàng", "Vũ": "Võ", "Võ": "Vũ"}

# --- Middle names ----------------------------------------------------------
# Văn (male) / Thị (female) are the classic, optional middle names; their
# share falls for younger cohorts (shares used by the generator).
MIDDLE_CLASSIC = {"M": "Văn", "F": "Thị"}
MIDDLE_MALE: tuple[tuple[str, float], ...] = (
    ("Hữu", 5), ("Đức", 6), ("Minh", 7), ("Quốc", 5), ("Thanh", 5), ("Công", 4),
    ("Ngọc", 3), ("Xuân", 3), ("Hoàng", 4), ("Anh", 3), ("Duy", 3), ("Gia", 3),
    ("Trọng", 3), ("Tuấn", 2), ("Bảo", 3), ("Đình", 4), ("Quang", 4), ("Thành", 3),
    ("Tiến", 2), ("Mạnh", 2), ("Việt", 2), ("Nhật", 2), ("Khánh", 2), ("Trung", 2),
    ("Hải", 2), ("Thế", 2), ("Kim", 1),
)
MIDDLE_FEMALE: tuple[tuple[str, float], ...] = (
    ("Ngọc", 7), ("Thanh", 5), ("Kim", 4), ("Thu", 4), ("Minh", 4), ("Bảo", 3),
    ("Phương", 3), ("Hồng", 3), ("Mai", 2), ("Thùy", 3), ("Diệu", 2), ("Khánh", 2),
    ("Hoài", 2), ("Thảo", 2), ("Như", 2), ("Quỳnh", 2), ("Hải", 2), ("Mỹ", 3),
    ("Thúy", 2), ("Lan", 2), ("Bích", 2), ("Cẩm", 2), ("Tuyết", 1), ("Ánh", 2),
    ("Xuân", 2), ("Gia", 1), ("Tường", 1),
)

# --- Given names -----------------------------------------------------------
GIVEN_MALE: tuple[tuple[str, float], ...] = (
    ("Anh", 6), ("Minh", 5), ("Hùng", 5), ("Dũng", 5), ("Tuấn", 5), ("Huy", 4),
    ("Nam", 4), ("Hải", 4), ("Hoàng", 3), ("Long", 3), ("Sơn", 3), ("Thắng", 3),
    ("Cường", 3), ("Đức", 3), ("Trung", 3), ("Quang", 3), ("Thành", 3), ("Khánh", 2),
    ("Phúc", 2), ("Tâm", 2), ("Tùng", 2), ("Hiếu", 2), ("Việt", 2), ("Vinh", 2),
    ("Phong", 2), ("Bình", 2), ("Hưng", 2), ("Toàn", 2), ("An", 2), ("Bảo", 2),
    ("Quân", 2), ("Duy", 2), ("Đạt", 2), ("Tiến", 1.5), ("Nghĩa", 1.5), ("Khoa", 1.5),
    ("Linh", 1), ("Tú", 1), ("Thịnh", 1), ("Tài", 1), ("Lộc", 1), ("Hậu", 1),
    ("Hòa", 1), ("Khang", 1), ("Kiên", 1), ("Lâm", 1), ("Nhân", 1), ("Phát", 1),
    ("Phước", 1), ("Quốc", 1), ("Tân", 1), ("Thiện", 1), ("Trí", 1), ("Vũ", 1),
    ("Dương", 1), ("Chiến", 1), ("Giang", 0.8), ("Hào", 0.8), ("Công", 0.8),
    ("Thái", 0.8), ("Sang", 0.8), ("Lợi", 0.6), ("Thông", 0.6), ("Luân", 0.5),
    ("Hiển", 0.5), ("Trọng", 0.5),
)
GIVEN_FEMALE: tuple[tuple[str, float], ...] = (
    ("Anh", 5), ("Linh", 4), ("Hương", 4), ("Trang", 4), ("Hà", 3), ("Lan", 3),
    ("Hoa", 3), ("Hằng", 3), ("Ngọc", 3), ("Thảo", 3), ("Mai", 3), ("Phương", 3),
    ("Huyền", 3), ("Nhung", 2), ("Thủy", 2), ("Thúy", 2), ("Yến", 2), ("Hạnh", 2),
    ("Nga", 2), ("Hiền", 2), ("Dung", 2), ("Vân", 2), ("Vy", 2), ("My", 2),
    ("Nhi", 2), ("Ngân", 2), ("Quỳnh", 2), ("Thùy", 1), ("Oanh", 1.5), ("Loan", 1.5),
    ("Chi", 1.5), ("Uyên", 1.5), ("Thanh", 1.5), ("Hồng", 1.5), ("Ánh", 1.5),
    ("Duyên", 1.5), ("Giang", 1.5), ("Thư", 1.5), ("Trâm", 1), ("Tâm", 1), ("Xuân", 1),
    ("Liên", 1), ("Huệ", 1), ("Bích", 1), ("Châu", 1), ("Diễm", 1), ("Tuyết", 1),
    ("Tiên", 1), ("Trinh", 1), ("Phượng", 1), ("Quyên", 1), ("An", 1), ("Ly", 1),
    ("Khánh", 0.8), ("Nguyệt", 0.8), ("Nhàn", 0.7), ("Hòa", 0.6), ("Lệ", 0.6),
    ("Diệp", 0.5), ("Thơ", 0.5), ("Ngà", 0.5), ("Kiều", 0.5),
)

# Tone-placement and i/y spelling variants (domain doc §4: "Hòa"/"Hoà",
# "Thủy"/"Thuỷ", "Lý"/"Lí" are the same name). Old style -> new style.
TONE_VARIANTS: dict[str, str] = {
    "Hòa": "Hoà", "Hóa": "Hoá", "Thủy": "Thuỷ", "Thúy": "Thuý", "Thùy": "Thuỳ",
    "Thụy": "Thuỵ", "Tùy": "Tuỳ", "Khỏe": "Khoẻ", "Lý": "Lí", "Mỹ": "Mĩ",
}

# --- Foreigners (passport holders) -------------------------------------------
# (name as on the passport, gender, passport-number style)
FOREIGN_PEOPLE: tuple[tuple[str, str, str], ...] = (
    ("KIM MIN JUN", "M", "M8"), ("PARK JI HOON", "M", "M8"), ("LEE SEO YEON", "F", "M8"),
    ("CHOI YOUNG HO", "M", "M8"), ("JUNG HAE IN", "M", "M8"), ("KANG MIN JI", "F", "M8"),
    ("ZHANG WEI", "M", "E8"), ("WANG FANG", "F", "E8"), ("LI NA", "F", "EA7"),
    ("LIU YANG", "M", "E8"), ("CHEN JING", "F", "EA7"), ("HUANG LEI", "M", "E8"),
    ("TANAKA HIROSHI", "M", "TK7"), ("SATO YUKI", "F", "TK7"), ("SUZUKI KENTA", "M", "TR7"),
    ("JOHN SMITH", "M", "C8"), ("MICHAEL BROWN", "M", "C8"), ("EMILY JOHNSON", "F", "C8"),
    ("DAVID WILSON", "M", "C8"), ("SARAH TAYLOR", "F", "C8"), ("THOMAS MUELLER", "M", "C8"),
    ("PIERRE DUBOIS", "M", "B7"), ("ANNA IVANOVA", "F", "B7"), ("SOMCHAI SRISUK", "M", "AA7"),
    ("SOK DARA", "M", "N7"), ("KHAMPHOUY VONGSA", "M", "P7"), ("RAJESH KUMAR", "M", "B7"),
    ("MARIA SANTOS", "F", "P7"), ("NGUYEN THI MAI ANH", "F", "C8"),  # Việt kiều, foreign passport
)

# --- Provinces ---------------------------------------------------------------
# (code, name, weight). Codes: Circular 07/2016 Appendix 1 (domain doc §1).
# Weights: population in millions, 2019 census (rounded) — for a realistic mix.
PROVINCES: tuple[tuple[str, str, float], ...] = (
    ("001", "Hà Nội", 8.05), ("002", "Hà Giang", 0.85), ("004", "Cao Bằng", 0.53),
    ("006", "Bắc Kạn", 0.31), ("008", "Tuyên Quang", 0.78), ("010", "Lào Cai", 0.73),
    ("011", "Điện Biên", 0.60), ("012", "Lai Châu", 0.46), ("014", "Sơn La", 1.25),
    ("015", "Yên Bái", 0.82), ("017", "Hòa Bình", 0.85), ("019", "Thái Nguyên", 1.29),
    ("020", "Lạng Sơn", 0.78), ("022", "Quảng Ninh", 1.32), ("024", "Bắc Giang", 1.80),
    ("025", "Phú Thọ", 1.46), ("026", "Vĩnh Phúc", 1.15), ("027", "Bắc Ninh", 1.37),
    ("030", "Hải Dương", 1.89), ("031", "Hải Phòng", 2.03), ("033", "Hưng Yên", 1.25),
    ("034", "Thái Bình", 1.86), ("035", "Hà Nam", 0.85), ("036", "Nam Định", 1.78),
    ("037", "Ninh Bình", 0.98), ("038", "Thanh Hóa", 3.64), ("040", "Nghệ An", 3.33),
    ("042", "Hà Tĩnh", 1.29), ("044", "Quảng Bình", 0.90), ("045", "Quảng Trị", 0.63),
    ("046", "Thừa Thiên Huế", 1.13), ("048", "Đà Nẵng", 1.13), ("049", "Quảng Nam", 1.50),
    ("051", "Quảng Ngãi", 1.23), ("052", "Bình Định", 1.49), ("054", "Phú Yên", 0.87),
    ("056", "Khánh Hòa", 1.23), ("058", "Ninh Thuận", 0.59), ("060", "Bình Thuận", 1.23),
    ("062", "Kon Tum", 0.54), ("064", "Gia Lai", 1.51), ("066", "Đắk Lắk", 1.87),
    ("067", "Đắk Nông", 0.62), ("068", "Lâm Đồng", 1.30), ("070", "Bình Phước", 0.99),
    ("072", "Tây Ninh", 1.17), ("074", "Bình Dương", 2.43), ("075", "Đồng Nai", 3.10),
    ("077", "Bà Rịa–Vũng Tàu", 1.15), ("079", "TP.HCM", 8.99), ("080", "Long An", 1.69),
    ("082", "Tiền Giang", 1.76), ("083", "Bến Tre", 1.29), ("084", "Trà Vinh", 1.01),
    ("086", "Vĩnh Long", 1.02), ("087", "Đồng Tháp", 1.60), ("089", "An Giang", 1.91),
    ("091", "Kiên Giang", 1.72), ("092", "Cần Thơ", 1.24), ("093", "Hậu Giang", 0.73),
    ("094", "Sóc Trăng", 1.20), ("095", "Bạc Liêu", 0.91), ("096", "Cà Mau", 1.19),
)
# Provinces with code <= this are "North" for the surname spelling split.
NORTH_MAX_CODE = 46
PROVINCE_DONG_NAI = "075"
PROVINCE_BA_RIA_VUNG_TAU = "077"

# Old 9-digit CMND: leading two digits name the issuing police office
# (domain doc §1 gives 01 Hà Nội, 02 TP.HCM, 03 Hải Phòng, 280 Bình Dương; the
# rest follows the commonly published table and is for realism only).
CMND_OFFICE_PREFIX: dict[str, str] = {
    "001": "01", "079": "02", "031": "03", "011": "04", "012": "04", "014": "05",
    "010": "06", "015": "06", "002": "07", "008": "07", "020": "08", "004": "08",
    "019": "09", "006": "09", "022": "10", "017": "11", "024": "12", "027": "12",
    "025": "13", "026": "13", "030": "14", "033": "14", "034": "15", "036": "16",
    "035": "16", "037": "16", "038": "17", "040": "18", "042": "18", "044": "19",
    "045": "19", "046": "19", "048": "20", "049": "20", "051": "21", "052": "21",
    "056": "22", "054": "22", "064": "23", "062": "23", "066": "24", "067": "24",
    "068": "25", "058": "26", "060": "26", "075": "27", "077": "27", "074": "28",
    "070": "28", "072": "29", "080": "30", "082": "31", "083": "32", "086": "33",
    "084": "33", "087": "34", "089": "35", "092": "36", "093": "36", "094": "36",
    "091": "37", "096": "38", "095": "38",
}
# Known collision (domain doc §1): these Bà Rịa–Vũng Tàu numbers duplicate
# Đồng Nai numbers.
CMND_COLLISION_RANGE = (271450001, 271500000)

# --- Mobile numbers ----------------------------------------------------------
# Leads are the digits after the trunk 0 ("91" = 091...). A 3-digit lead is a
# sub-range: libphonenumber (PyPI `phonenumbers` 9.x) only knows these blocks
# as allocated for 089x, 052x and 099x, so only those are generated.
CARRIER_LEADS: dict[str, tuple[tuple[str, float], ...]] = {
    "Viettel": (("96", 9), ("97", 9), ("98", 9), ("86", 6), ("32", 3), ("33", 3), ("34", 3),
                ("35", 3), ("36", 3), ("37", 3), ("38", 3), ("39", 3)),
    "VinaPhone": (("91", 9), ("94", 8), ("88", 6), ("81", 3), ("82", 3), ("83", 3), ("84", 3),
                  ("85", 3)),
    "MobiFone": (("90", 9), ("93", 8), ("896", 1.5), ("897", 1.5), ("898", 1.5), ("899", 1.5),
                 ("70", 3), ("76", 3), ("77", 3), ("78", 3), ("79", 3)),
    "Vietnamobile": (("92", 4), ("522", 1), ("523", 1), ("528", 1), ("56", 2), ("58", 2)),
    "Gmobile": (("990", 1), ("991", 1), ("993", 1), ("994", 1), ("995", 1), ("996", 1),
                ("997", 1), ("998", 1), ("999", 1), ("59", 3)),
    "Itelecom": (("87", 1),),
}
TELCO_CARRIER = {"viettel": "Viettel", "vinaphone": "VinaPhone", "mobifone": "MobiFone"}
# Carriers a ported number may come from, with weights.
PORT_SOURCES: tuple[tuple[str, float], ...] = (
    ("Viettel", 4), ("VinaPhone", 3), ("MobiFone", 3), ("Vietnamobile", 0.6),
    ("Gmobile", 0.2), ("Itelecom", 0.2),
)
# 2018 conversion (domain doc §2): new 2-digit lead -> old 3-digit lead
# (both without the trunk 0); the last 7 digits are kept.
NEW_TO_OLD_LEAD: dict[str, str] = {
    "70": "120", "79": "121", "77": "122", "76": "126", "78": "128",
    "83": "123", "84": "124", "85": "125", "81": "127", "82": "129",
    "32": "162", "33": "163", "34": "164", "35": "165", "36": "166", "37": "167",
    "38": "168", "39": "169", "56": "186", "58": "188", "59": "199",
}

# --- Points of sale ------------------------------------------------------------
TELCO_DEALER_PREFIX = {"viettel": "VT", "vinaphone": "VNP", "mobifone": "MBF"}
DEALER_AREAS: tuple[tuple[str, float], ...] = (
    ("HCM", 9), ("HNI", 8), ("HPG", 2), ("DNG", 1.5), ("CTO", 1.3), ("BDG", 2.4),
    ("DNI", 3), ("KHA", 1.2), ("NAN", 3.3), ("THA", 3.6), ("QNH", 1.3), ("BNH", 1.4),
    ("LAN", 1.7), ("AGG", 1.9), ("DLK", 1.9), ("GLI", 1.5), ("BDH", 1.5), ("HUE", 1.1),
    ("TNN", 1.3), ("VPC", 1.2), ("HDG", 1.9), ("NDH", 1.8), ("TBH", 1.9), ("BGG", 1.8),
    ("KGG", 1.7), ("TGG", 1.8), ("LDG", 1.3), ("BTN", 1.2), ("VTU", 1.2), ("QNM", 1.5),
)
