"""Short verdict labels for the report, with the long text kept for "on demand".

A compliance officer scans a table by its labels: a flag's full sentence
(``pipelines/data/reason_codes.yaml``, the text the telco reads) wraps over
several lines in a table cell, so the report shows a short label in English and
Vietnamese and keeps the full sentence behind a ``<details>`` or a tooltip.
The long text stays the one in ``reason_codes.yaml`` so that the report and the
correction lists never say different things.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.delivery.reasons import reason_descriptions


@dataclass(frozen=True)
class Verdict:
    """A short label (en, vi) and the long explanation (en, vi)."""

    code: str
    short_en: str
    short_vi: str
    long_en: str
    long_vi: str


# Short labels per flag: at most a few words, so that a table cell holds one line.
_FLAG_SHORT: dict[str, tuple[str, str]] = {
    "NO_ID": ("No ID number", "Không có số giấy tờ"),
    "INVALID_ID": ("Malformed ID", "Số giấy tờ sai"),
    "ID_NOT_FOUND": ("ID not in registry", "Không có trong CSDL"),
    "LEGACY_ID": ("Old CMND", "CMND cũ"),
    "NAME_MISMATCH": ("Name differs", "Sai họ tên"),
    "DOB_MISMATCH": ("Birth date differs", "Sai ngày sinh"),
    "GENDER_MISMATCH": ("Gender differs", "Sai giới tính"),
    "NEEDS_REVIEW": ("Awaiting review", "Chờ kiểm tra"),
    "DECEASED_HOLDER": ("Holder deceased", "Chủ đã qua đời"),
    "UNDERAGE_HOLDER": ("Holder under 14", "Chủ dưới 14 tuổi"),
    "EXCESS_SUBSCRIPTIONS": ("Too many SIMs", "Quá nhiều thuê bao"),
    "BULK_ACTIVATION": ("Bulk activation", "Kích hoạt hàng loạt"),
    "DUPLICATE_MSISDN": ("Number repeated", "Số trùng lặp"),
    "INVALID_MSISDN": ("Invalid number", "Số không hợp lệ"),
}

# The reconciliation outcome of a subscription (pipelines.schema.STATUSES).
_STATUS: dict[str, tuple[str, str, str, str]] = {
    "VERIFIED": ("Verified", "Đã xác thực",
                 "The subscriber's name, date of birth and gender agree with the citizen "
                 "registry record of the document.",
                 "Họ tên, ngày sinh và giới tính khớp với Cơ sở dữ liệu quốc gia về dân cư."),
    "MISMATCH": ("Mismatch", "Không khớp",
                 "The document leads to a citizen whose data clearly disagree with the "
                 "subscriber's: the SIM is probably not in the holder's name.",
                 "Giấy tờ dẫn tới một công dân có thông tin khác rõ rệt: thuê bao có thể "
                 "không chính chủ."),
    "UNREGISTERED": ("No valid ID", "Không có giấy tờ hợp lệ",
                     "No usable identity document: missing, malformed or not in the registry.",
                     "Không có giấy tờ dùng được: thiếu, sai hoặc không có trong CSDL."),
    "REVIEW": ("In review", "Chờ kiểm tra",
               "The evidence is unclear: a compliance officer decides in the review queue.",
               "Bằng chứng chưa rõ: cán bộ tuân thủ quyết định trong hàng đợi kiểm tra."),
    "FOREIGN_DOCUMENT": ("Foreign document", "Giấy tờ nước ngoài",
                         "Registered with a passport: not checked against the citizen registry.",
                         "Đăng ký bằng hộ chiếu: không đối chiếu với CSDL dân cư."),
}

# A reviewer's decision (pipelines.correction_cycle.review.DECISIONS).
_DECISION: dict[str, tuple[str, str, str, str]] = {
    "CONFIRMED_HOLDER": ("Holder confirmed", "Đã xác nhận chính chủ",
                         "A reviewer confirmed the subscriber is the document's holder; the row "
                         "is no longer flagged while its data are unchanged.",
                         "Cán bộ đã xác nhận chính chủ; không còn bị gắn cờ khi dữ liệu "
                         "không đổi."),
    "NOT_HOLDER": ("Not the holder", "Không chính chủ",
                   "A reviewer found the subscriber is not the document's holder (MISMATCH).",
                   "Cán bộ xác định người dùng không phải chủ giấy tờ (không chính chủ)."),
    "NEEDS_TELCO_CHECK": ("Telco to check", "Nhà mạng kiểm tra",
                          "The telco must check the record; it stays in the review queue.",
                          "Nhà mạng cần kiểm tra hồ sơ; vẫn nằm trong hàng đợi kiểm tra."),
}


def flag(code: str) -> Verdict:
    """The verdict of a flag: short label here, long text from ``reason_codes.yaml``."""
    texts = reason_descriptions().get(code, {"en": code, "vi": code})
    short_en, short_vi = _FLAG_SHORT.get(code, (code, code))
    return Verdict(code, short_en, short_vi, texts["en"], texts["vi"])


def status(code: str) -> Verdict:
    """The verdict of a reconciliation status."""
    short_en, short_vi, long_en, long_vi = _STATUS.get(code, (code, code, code, code))
    return Verdict(code, short_en, short_vi, long_en, long_vi)


def decision(code: str) -> Verdict:
    """The verdict of a review decision."""
    short_en, short_vi, long_en, long_vi = _DECISION.get(code, (code, code, code, code))
    return Verdict(code, short_en, short_vi, long_en, long_vi)


def all_flags(codes: tuple[str, ...] | list[str]) -> dict[str, Verdict]:
    """Verdicts of ``codes``, in their order (the template's lookup table)."""
    return {c: flag(c) for c in codes}


def as_json(codes: tuple[str, ...] | list[str]) -> dict[str, dict[str, str]]:
    """Verdicts for the page's script: code → short/long texts."""
    return {c: {"short_en": v.short_en, "short_vi": v.short_vi, "en": v.long_en,
                "vi": v.long_vi} for c, v in all_flags(codes).items()}
