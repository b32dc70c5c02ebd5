"""Seeded sample world: a citizen registry, three telco exports and their ground truth.

``generate_world(out_dir)`` builds a synthetic but realistic world (names,
ID numbers, phone numbers and dates follow /work/shared/domain/vietnam.md),
plants every reconciliation scenario the pipeline must recognise, writes

    registry/citizens.parquet
    exports/viettel_subscribers.csv
    exports/vinaphone_subscribers.csv
    exports/mobifone_subscribers.parquet
    ground_truth.parquet

and returns the counts per scenario / flag / status and the file paths.

The ground truth is derived from the generator's own knowledge of the world
(who really holds each document, whose name was written), by applying the
flag rules below to *all* rows — never from the project's ``matching`` or
``pipelines`` code, which is what the truth is used to test. The rule
thresholds are the constants right below; they mirror the defaults of
``FlagSettings`` (docs/flags.md), and changing one changes the truth.

Same seed and arguments -> byte-identical files. Run:
``python -m data_samples.generator --out data_samples``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

from data_samples import vietnamese_names as vn

# --- Flag-rule settings (names/defaults as pipelines.config.FlagSettings) ------
MAX_ACTIVE_SUBSCRIPTIONS_PER_HOLDER = 9
EXCESS_COUNTS_STATUSES: tuple[str, ...] = ("ACTIVE",)
BULK_MIN_ACTIVATIONS = 20
BULK_MAX_DISTINCT_IDS = 3
UNDERAGE_YEARS = 14
DUPLICATE_IGNORES_STATUSES: tuple[str, ...] = ("CANCELLED",)

# --- World defaults ------------------------------------------------------------------
DEFAULT_SEED = 20261128
DEFAULT_AS_OF = date(2026, 11, 28)
DEFAULT_N_CITIZENS = 2500
DEFAULT_N_SUBSCRIPTIONS = 4000
NOISE_LEVELS = ("samples", "benchmark")
TELCOS: tuple[str, ...] = ("viettel", "vinaphone", "mobifone")
TELCO_SHARES = (0.45, 0.30, 0.25)
FIRST_ACTIVATION = date(2015, 1, 1)
ACTIVATION_LAG_DAYS = 30  # last activation = as_of - 30 days
PORTED_SHARE = 0.10
VINAPHONE_LEGACY_NUMBER_SHARE = 0.05
NUMBER_CONVERSION_DAY = date(2018, 9, 15)  # 11 -> 10 digit conversion (started 15 Sep 2018)
LINE_STATUSES = ("ACTIVE", "BLOCKED_ONE_WAY", "BLOCKED_TWO_WAY", "CANCELLED")
LINE_STATUS_P = (0.88, 0.03, 0.03, 0.06)
PREPAID_SHARE = 0.85
MAX_ORDINARY_PER_CITIZEN = 4  # ordinary (unplanted) subscriptions per citizen
# Planted counts per 4000 subscriptions (scaled linearly, at least 1).
PLANT_PER_4000: dict[str, int] = {
    "no_id": 20, "invalid_id": 28, "fabricated_cccd": 15, "near_miss_cccd": 20,
    "unknown_cmnd": 10, "ambiguous_cmnd": 15, "wrong_person": 40, "wrong_dob": 20,
    "wrong_gender": 15, "passport": 25, "deceased_activation": 20, "underage_holder": 20,
    "excess_holders": 8, "at_limit_holders": 2, "bulk_dealer_days": 3, "busy_dealer_days": 2,
    "dealer_day_below_min": 1, "dealer_day_four_ids": 1, "duplicate_pairs": 10,
    "ported_cancelled_pairs": 10, "recycled_pairs": 5, "invalid_msisdn": 15,
}
# Cases that make the candidate search hard at scale, planted with noise="benchmark" only
# (per 4000 subscriptions; the samples stay as they are):
# * invented people carrying a well-formed CCCD that belongs to nobody (2% of rows, as
#   seen in a national-scale trial), some of them namesakes of a citizen born the same
#   day, and some whose number is one digit off a real citizen's;
# * invented people with no document at all;
# * citizens with a namesake born the same day, without a document or with a mistyped one;
# * a mistyped CCCD one digit off two citizens' (the holder's and another's), and one that
#   is exactly another citizen's (the row links to the wrong person: NAME_MISMATCH).
BENCHMARK_PLANT_PER_4000: dict[str, int] = {
    "invented_cccd": 65, "invented_namesake_cccd": 10, "invented_near_real_cccd": 4,
    "invented_no_id": 10, "namesake_no_id": 4, "namesake_near_miss": 4,
    "colliding_near_miss": 4, "mistyped_into_other": 4,
}
# Accepted name noise on genuine rows: probability per row where applicable.
NAME_NOISE_KINDS = ("no_diacritics", "upper", "nfd", "extra_spaces", "drop_van_thi",
                    "order_swap", "surname_variant", "typo", "tone_placement", "mixed_1258")
_NOISE_P: dict[str, tuple[float, ...]] = {
    "viettel":   (0.03, 0.00, 0.03, 0.03, 0.07, 0.02, 0.30, 0.025, 0.40, 0.00),
    "vinaphone": (0.03, 0.03, 0.00, 0.03, 0.07, 0.02, 0.30, 0.025, 0.40, 0.00),
    "mobifone":  (0.00, 0.00, 0.00, 0.03, 0.07, 0.02, 0.30, 0.025, 0.00, 0.00),
}
VIETTEL_UPPER_SHARE = 0.30
DOB_YEAR_ONLY_SHARE = {"viettel": 0.01, "vinaphone": 0.05, "mobifone": 0.02}
FLAG_NAMES = ("BULK_ACTIVATION", "DECEASED_HOLDER", "DOB_MISMATCH", "DUPLICATE_MSISDN",
              "EXCESS_SUBSCRIPTIONS", "GENDER_MISMATCH", "ID_NOT_FOUND", "INVALID_ID",
              "INVALID_MSISDN", "LEGACY_ID", "NAME_MISMATCH", "NEEDS_REVIEW", "NO_ID",
              "UNDERAGE_HOLDER")  # sorted: expected_flags lists are in this order

# --- Export layouts (must match config/telcos/*.yaml; tests check it) ----------------
LAYOUT_COLUMNS: dict[str, tuple[str, ...]] = {
    # canonical order: msisdn, full_name, date_of_birth, gender, id_type, id_number,
    # activation_date, subscription_type, line_status, point_of_sale
    "viettel": ("SO_THUE_BAO", "HO_TEN", "NGAY_SINH", "GIOI_TINH", "LOAI_GIAY_TO", "SO_GIAY_TO",
                "NGAY_KICH_HOAT", "LOAI_TB", "TRANG_THAI", "MA_DIEM_BAN"),
    "vinaphone": ("so_thue_bao", "ho_ten", "ngay_sinh", "gioi_tinh", "loai_giay_to",
                  "so_giay_to", "ngay_kich_hoat", "loai_thue_bao", "trang_thai", "ma_diem_ban"),
    "mobifone": ("msisdn", "subscriber_name", "birth_date", "sex", "document_type",
                 "document_number", "activated_on", "plan_type", "line_status", "dealer_code"),
}
LAYOUT_VOCAB: dict[str, dict[str, dict[str, str]]] = {  # canonical -> export value
    "viettel": {
        "gender": {"M": "Nam", "F": "Nữ"},
        "id_type": {"CCCD": "CCCD", "CMND": "CMND", "PASSPORT": "HO_CHIEU"},
        "subscription_type": {"PREPAID": "TRA_TRUOC", "POSTPAID": "TRA_SAU"},
        "line_status": {"ACTIVE": "HOAT_DONG", "BLOCKED_ONE_WAY": "CHAN_1_CHIEU",
                        "BLOCKED_TWO_WAY": "CHAN_2_CHIEU", "CANCELLED": "DA_HUY"},
    },
    "vinaphone": {
        "gender": {"M": "nam", "F": "nữ"},
        "id_type": {"CCCD": "cccd", "CMND": "cmnd", "PASSPORT": "ho_chieu"},
        "subscription_type": {"PREPAID": "tra_truoc", "POSTPAID": "tra_sau"},
        "line_status": {"ACTIVE": "hoat_dong", "BLOCKED_ONE_WAY": "chan_1_chieu",
                        "BLOCKED_TWO_WAY": "chan_2_chieu", "CANCELLED": "da_huy"},
    },
    "mobifone": {
        "gender": {"M": "MALE", "F": "FEMALE"},
        "id_type": {"CCCD": "NATIONAL_ID", "CMND": "OLD_ID", "PASSPORT": "PASSPORT"},
        "subscription_type": {"PREPAID": "PREPAID", "POSTPAID": "POSTPAID"},
        "line_status": {"ACTIVE": "ACTIVE", "BLOCKED_ONE_WAY": "SUSPENDED_OUTGOING",
                        "BLOCKED_TWO_WAY": "SUSPENDED", "CANCELLED": "TERMINATED"},
    },
}
CSV_DELIMITER = {"viettel": ",", "vinaphone": ";"}
PREVIOUS_EXPORTS = "exports_previous"  # the same exports as the previous run received them
FILES = {
    "registry": "registry/citizens.parquet",
    "viettel": "exports/viettel_subscribers.csv",
    "vinaphone": "exports/vinaphone_subscribers.csv",
    "mobifone": "exports/mobifone_subscribers.parquet",
    "ground_truth": "ground_truth.parquet",
}

_EPOCH = date(1970, 1, 1)
_CLASSIC_MIDDLE = frozenset(unicodedata.normalize("NFC", w) for w in ("Văn", "Thị"))
_SURNAME_VARIANTS = {unicodedata.normalize("NFC", k): unicodedata.normalize("NFC", v)
                     for k, v in vn.SURNAME_VARIANTS.items()}
_TONE_VARIANTS = {unicodedata.normalize("NFC", k): unicodedata.normalize("NFC", v)
                  for k, v in vn.TONE_VARIANTS.items()}
_MARKS = {cp: None for cp in range(0x300, 0x370)}
_TONE_MARKS = frozenset("\u0300\u0301\u0303\u0309\u0323")
_LOOKALIKE = {"0": "O", "1": "I", "5": "S", "8": "B", "2": "Z", "6": "G"}
_KEY_NEIGHBOURS = {
    "a": "qswz", "b": "vghn", "c": "xdfv", "d": "serfcx", "e": "wsdr", "f": "drtgvc",
    "g": "ftyhbv", "h": "gyujnb", "i": "ujko", "j": "huikmn", "k": "jiolm", "l": "kop",
    "m": "njk", "n": "bhjm", "o": "iklp", "p": "ol", "q": "wa", "r": "edft", "s": "awedxz",
    "t": "rfgy", "u": "yhji", "v": "cfgb", "w": "qase", "x": "zsdc", "y": "tghu", "z": "asx",
}


# --- Small helpers ---------------------------------------------------------------------
def _nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


def fold(text: str) -> str:
    """Diacritics removed, Đ/đ -> D/d explicitly (Đ has no Unicode decomposition)."""
    text = text.replace("Đ", "D").replace("đ", "d")
    return unicodedata.normalize("NFD", text).translate(_MARKS)


def _days(d: date) -> int:
    return (d - _EPOCH).days


def _to_date(days: int) -> date:
    return _EPOCH + timedelta(days=int(days))


def _ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dt = np.asarray(days, dtype=np.int64).astype("datetime64[D]")
    months = dt.astype("datetime64[M]")
    year = dt.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (dt - months.astype("datetime64[D]")).astype(np.int64) + 1
    return year, month, day


def _jan1(year: np.ndarray | int) -> np.ndarray:
    y = np.asarray(year, dtype=np.int64) - 1970
    return y.astype("datetime64[Y]").astype("datetime64[D]").astype(np.int64)


def _date_days(y: int, m: int, d: int) -> int:
    return _days(date(int(y), int(m), int(d)))


def _iso(days: np.ndarray) -> np.ndarray:
    return np.datetime_as_string(np.asarray(days, dtype=np.int64).astype("datetime64[D]"))


def _weights(pairs: Sequence[tuple[str, float]]) -> tuple[np.ndarray, np.ndarray]:
    values = np.array([_nfc(v) for v, _ in pairs], dtype=object)
    w = np.array([w for _, w in pairs], dtype=np.float64)
    return values, w / w.sum()


def dob_agrees(a_days: np.ndarray, a_year_only: np.ndarray, b_days: np.ndarray,
               b_year_only: np.ndarray) -> np.ndarray:
    """Rule: same date, or same year when either side holds only a year."""
    a_days, b_days = np.asarray(a_days), np.asarray(b_days)
    year_only = np.asarray(a_year_only, bool) | np.asarray(b_year_only, bool)
    return np.where(year_only, _ymd(a_days)[0] == _ymd(b_days)[0], a_days == b_days)


def completed_years(birth: np.ndarray, on: np.ndarray) -> np.ndarray:
    by, bm, bd = _ymd(birth)
    ay, am, ad = _ymd(on)
    return ay - by - ((am * 100 + ad) < (bm * 100 + bd)).astype(np.int64)


def one_edit_variants(number: str) -> list[str]:
    """Every string one digit substitution or one adjacent swap away (<= 119)."""
    out = []
    for i, ch in enumerate(number):
        for d in "0123456789":
            if d != ch:
                out.append(number[:i] + d + number[i + 1:])
    for i in range(len(number) - 1):
        if number[i] != number[i + 1]:
            out.append(number[:i] + number[i + 1] + number[i] + number[i + 2:])
    return out


def names_clearly_differ(a: str, b: str) -> bool:
    """Two names no tolerant comparison could take for one person.

    Given names at least 2 edits apart and not found among the other's words,
    and a token-set similarity well under the partial-match range.
    """
    fa, fb = fold(a).lower().split(), fold(b).lower().split()
    if Levenshtein.distance(fa[-1], fb[-1]) < 2 or fa[-1] in fb or fb[-1] in fa:
        return False
    variants = {"huynh": "hoang", "vo": "vu"}

    def keys(words: list[str]) -> list[str]:
        merged = [variants.get(w, w).replace("y", "i") for w in words]
        return [" ".join(words), " ".join(merged),
                " ".join(w for w in merged if w not in ("van", "thi"))]

    return all(fuzz.token_set_ratio(x, y) < 70 for x in keys(fa) for y in keys(fb))


# --- Registry ------------------------------------------------------------------------
@dataclass
class _Citizens:
    female: np.ndarray
    dob: np.ndarray  # true date of birth (days)
    year: np.ndarray
    year_only: np.ndarray  # registry holds only the year
    province: np.ndarray
    family: np.ndarray
    middle: np.ndarray
    given: np.ndarray
    full_name: np.ndarray
    cid: np.ndarray
    legacy: np.ndarray  # object, None = no CMND on record
    has_death: np.ndarray
    death: np.ndarray  # days, meaningful where has_death
    name_collision: np.ndarray
    cmnd_shared: np.ndarray

    @property
    def n(self) -> int:
        return len(self.cid)

    @property
    def registry_dob(self) -> np.ndarray:
        """Date the rules use for the registry DOB (year-only -> 1 January)."""
        return np.where(self.year_only, _jan1(self.year), self.dob)

    def gender(self, i: int) -> str:
        return "F" if self.female[i] else "M"


def _age_weights() -> np.ndarray:
    age = np.arange(100, dtype=np.float64)
    w = np.interp(age, [0, 40, 60, 75, 95, 99], [1.0, 1.0, 0.55, 0.2, 0.02, 0.0])
    return w / w.sum()


def _draw_names(rng: np.random.Generator, female: np.ndarray, year: np.ndarray,
                north: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(female)
    main_v, main_p = _weights(vn.SURNAMES)
    other_v, other_p = _weights(vn.OTHER_SURNAMES)
    main_share = sum(w for _, w in vn.SURNAMES)
    values = np.concatenate([main_v, other_v])
    p = np.concatenate([main_p * main_share, other_p * vn.OTHER_SURNAMES_SHARE])
    p /= p.sum()
    family = values[rng.choice(len(values), size=n, p=p)]
    u = rng.random(n)
    for pair, (northern, southern), p_north, p_south in (
        ("Hoàng|Huỳnh", ("Hoàng", "Huỳnh"), 0.9, 0.25),
        ("Vũ|Võ", ("Vũ", "Võ"), 0.9, 0.2),
    ):
        hit = family == _nfc(pair)
        first = np.where(north, u < p_north, u < p_south)
        family[hit] = np.where(first[hit], _nfc(northern), _nfc(southern))
    # Double surnames (father's + mother's), a recent fashion.
    second = main_v[rng.choice(len(main_v), size=n, p=main_p)]
    second = np.array([s.split("|")[0] for s in second], dtype=object)
    double = (year >= 1990) & (rng.random(n) < 0.015) & (second != family)
    family[double] = family[double] + " " + second[double]

    classic = rng.random(n) < np.select([year < 1975, year < 1990, year < 2005],
                                        [0.7, 0.55, 0.35], 0.2)
    none = ~classic & (rng.random(n) < 0.04)
    second_middle = rng.random(n) < np.where(female, 0.15, 0.05)
    mm_v, mm_p = _weights(vn.MIDDLE_MALE)
    mf_v, mf_p = _weights(vn.MIDDLE_FEMALE)
    other1 = np.where(female, mf_v[rng.choice(len(mf_v), n, p=mf_p)],
                      mm_v[rng.choice(len(mm_v), n, p=mm_p)])
    other2 = np.where(female, mf_v[rng.choice(len(mf_v), n, p=mf_p)],
                      mm_v[rng.choice(len(mm_v), n, p=mm_p)])
    gm_v, gm_p = _weights(vn.GIVEN_MALE)
    gf_v, gf_p = _weights(vn.GIVEN_FEMALE)
    given = np.where(female, gf_v[rng.choice(len(gf_v), n, p=gf_p)],
                     gm_v[rng.choice(len(gm_v), n, p=gm_p)])
    classic_word = np.where(female, _nfc("Thị"), _nfc("Văn"))
    middle = np.empty(n, dtype=object)
    for i in range(n):
        o1 = other1[i] if other1[i] != given[i] else other2[i]
        if classic[i]:
            with_other = second_middle[i] and o1 != given[i]
            m = f"{classic_word[i]} {o1}" if with_other else classic_word[i]
        elif none[i]:
            m = ""
        elif second_middle[i] and other2[i] not in (o1, given[i]):
            m = f"{o1} {other2[i]}"
        else:
            m = o1 if o1 != given[i] else classic_word[i]
        middle[i] = m
    return family, middle, given


def _full_names(family: np.ndarray, middle: np.ndarray, given: np.ndarray) -> np.ndarray:
    return np.array([f"{f} {m} {g}" if m else f"{f} {g}"
                     for f, m, g in zip(family, middle, given, strict=True)], dtype=object)


def _cccd(province: str, female: bool, year: int, rand: int) -> str:
    century_sex = (year // 100 - 19) * 2 + int(female)
    return f"{province}{century_sex}{year % 100:02d}{rand:06d}"


def _build_citizens(rng: np.random.Generator, n: int, as_of: date) -> _Citizens:
    if n < 200:
        raise ValueError("n_citizens must be at least 200")
    as_of_days = _days(as_of)
    age = rng.choice(100, size=n, p=_age_weights())
    dob = as_of_days - np.round(age * 365.2425).astype(np.int64) - rng.integers(0, 365, n)
    dob = np.minimum(dob, as_of_days - 1)
    year = _ymd(dob)[0]
    female = rng.random(n) < 0.505
    codes = np.array([c for c, _, _ in vn.PROVINCES], dtype=object)
    pw = np.array([w for _, _, w in vn.PROVINCES])
    province = codes[rng.choice(len(codes), size=n, p=pw / pw.sum())]
    north = np.array([int(c) <= vn.NORTH_MAX_CODE for c in province])
    family, middle, given = _draw_names(rng, female, year, north)

    # Common-name collisions: different citizens, same full name AND same DOB.
    name_collision = np.zeros(n, dtype=bool)
    n_groups = max(2, round(n * 6 / DEFAULT_N_CITIZENS))
    adult_age = (age >= 20) & (age <= 70)
    common = np.isin(family, [_nfc("Nguyễn"), _nfc("Trần"), _nfc("Lê")]) & np.isin(
        middle, [_nfc("Văn"), _nfc("Thị")])
    bases = rng.permutation(np.flatnonzero(adult_age & common))[:n_groups]
    others = rng.permutation(np.flatnonzero(adult_age & ~common))
    pos = 0
    for b in bases:
        size = 2 if rng.random() < 0.75 else 3
        for o in others[pos:pos + size - 1]:
            female[o], dob[o], year[o] = female[b], dob[b], year[b]
            family[o], middle[o], given[o] = family[b], middle[b], given[b]
            if rng.random() < 0.3:
                province[o] = province[b]
            name_collision[o] = True
        pos += size - 1
        name_collision[b] = True
    full_name = _full_names(family, middle, given)

    year_only = (rng.random(n) < np.where(year < 1955, 0.08, 0.012)) & ~name_collision

    # Old 9-digit CMND for ~60% of those born before 2000.
    has_legacy = (year < 2000) & (rng.random(n) < 0.6)
    office = np.array([vn.CMND_OFFICE_PREFIX[p] for p in province], dtype=object)
    moved = rng.random(n) < 0.15
    office[moved] = np.where(rng.random(int(moved.sum())) < 0.5, "01", "02")
    legacy_num = np.array([int(o) * 10_000_000 for o in office], dtype=np.int64)
    legacy_num += rng.integers(0, 10_000_000, n)
    lo, hi = vn.CMND_COLLISION_RANGE
    while True:
        bad = (legacy_num >= lo) & (legacy_num <= hi)
        dup = pd.Series(legacy_num).where(has_legacy).duplicated(keep="first").to_numpy()
        redo = has_legacy & (bad | dup)
        if not redo.any():
            break
        legacy_num[redo] = (legacy_num[redo] // 10_000_000) * 10_000_000 + rng.integers(
            0, 10_000_000, int(redo.sum()))
    legacy = np.array([f"{v:09d}" if h else None for v, h in zip(legacy_num, has_legacy,
                                                                 strict=True)], dtype=object)

    # Deaths: a small share, mostly the old.
    p_death = np.select([age >= 80, age >= 70, age >= 55], [0.15, 0.08, 0.025], 0.003)
    has_death = (rng.random(n) < p_death) & ~name_collision
    death_lo = np.maximum(dob + 1, _days(date(2014, 1, 1)))
    death_hi = as_of_days - 20
    has_death &= death_lo < death_hi
    death = death_lo + np.floor(rng.random(n) * np.maximum(death_hi - death_lo, 1)).astype(
        np.int64)

    # Known CMND collision: Bà Rịa–Vũng Tàu numbers duplicating Đồng Nai numbers.
    cmnd_shared = np.zeros(n, dtype=bool)
    n_pairs = max(2, round(n * 5 / DEFAULT_N_CITIZENS))
    ok = (year < 2000) & (age >= 25) & ~has_death & ~name_collision & ~year_only
    numbers = rng.choice(np.arange(lo, hi + 1), size=n_pairs, replace=False)
    spare = rng.permutation(np.flatnonzero(ok & ~np.isin(
        province, [vn.PROVINCE_DONG_NAI, vn.PROVINCE_BA_RIA_VUNG_TAU])))
    sides = []
    for prov in (vn.PROVINCE_DONG_NAI, vn.PROVINCE_BA_RIA_VUNG_TAU):
        side = rng.permutation(np.flatnonzero(ok & (province == prov)))[:n_pairs]
        short = n_pairs - len(side)  # tiny registries: anyone else, born before 2000
        sides.append(np.concatenate([side, spare[:short]]))
        spare = spare[short:]
    for number, a, b in zip(numbers, sides[0], sides[1], strict=True):
        cmnd_shared[[a, b]] = True
        legacy[a] = legacy[b] = f"{int(number):09d}"

    # CCCD: PPP G YY RRRRRR, unique.
    rand = rng.integers(0, 1_000_000, n)
    cid = np.array([_cccd(p, f, y, r) for p, f, y, r in zip(province, female, year, rand,
                                                           strict=True)], dtype=object)
    while True:
        dup = pd.Series(cid).duplicated(keep="first").to_numpy()
        if not dup.any():
            break
        for i in np.flatnonzero(dup):
            cid[i] = _cccd(province[i], female[i], year[i], int(rng.integers(0, 1_000_000)))

    return _Citizens(female=female, dob=dob, year=year, year_only=year_only, province=province,
                     family=family, middle=middle, given=given, full_name=full_name, cid=cid,
                     legacy=legacy, has_death=has_death, death=death,
                     name_collision=name_collision, cmnd_shared=cmnd_shared)


def _registry_table(cz: _Citizens) -> pa.Table:
    iso = _iso(cz.dob)
    dob_text = [str(y) if yo else s for s, y, yo in zip(iso, cz.year, cz.year_only, strict=True)]
    death = pa.array(np.where(cz.has_death, cz.death, 0).astype(np.int32), pa.int32(),
                     mask=~cz.has_death)
    return pa.table({
        "citizen_id": pa.array(list(cz.cid), pa.string()),
        "legacy_id": pa.array(list(cz.legacy), pa.string()),
        "full_name": pa.array(list(cz.full_name), pa.string()),
        "date_of_birth": pa.array(dob_text, pa.string()),
        "gender": pa.array(np.where(cz.female, "F", "M").tolist(), pa.string()),
        "date_of_death": death.cast(pa.date32()),
    })


def build_registry(n_citizens: int = DEFAULT_N_CITIZENS, *, seed: int = DEFAULT_SEED,
                   as_of: date = DEFAULT_AS_OF) -> pa.Table:
    """The registry ``generate_world`` writes for the same seed/size/as_of."""
    return _registry_table(_build_citizens(np.random.default_rng([seed, 1]), n_citizens, as_of))


# --- Subscriptions -------------------------------------------------------------------
_ROW_FIELDS = ("telco", "scenario", "id_type", "id_number", "name_cid", "name", "noise_ok",
               "dob", "dob_year_only", "gender", "activation", "status", "sub_type", "pos",
               "msisdn_group", "msisdn_invalid", "true_holder")


class _Builder:
    """Plants the scenarios row by row, then adds vectorised ordinary rows."""

    def __init__(self, rng: np.random.Generator, cz: _Citizens, n_subscriptions: int,
                 as_of: date, noise: str = "samples") -> None:
        self.rng, self.cz, self.as_of = rng, cz, as_of
        self.hard = noise == "benchmark"
        self.scale = n_subscriptions / DEFAULT_N_SUBSCRIPTIONS
        self.n_subscriptions = n_subscriptions
        self.first = _days(FIRST_ACTIVATION)
        self.last = _days(as_of) - ACTIVATION_LAG_DAYS
        n = cz.n
        self.adult_from = _jan1(cz.year + 16)  # >= 15 full years whatever the birthday
        self.alive_until = np.where(cz.has_death, cz.death - 1, self.last)
        self.lo = np.maximum(self.first, self.adult_from)
        self.hi = np.minimum(self.last, self.alive_until)
        self.window = self.lo <= self.hi
        self.reserved = np.zeros(n, dtype=bool)
        self.no_ordinary = np.zeros(n, dtype=bool)
        self.plain = self.window & ~cz.name_collision & ~cz.cmnd_shared
        self.plain_alive = self.plain & ~cz.has_death
        self.cid_set = set(cz.cid.tolist())
        self.legacy_set = {v for v in cz.legacy.tolist() if v is not None}
        self.cols: dict[str, list] = {f: [] for f in _ROW_FIELDS}
        self.next_group = 0
        self._dealers()
        fakes = max(400, int(60 * self.scale) + 200)
        if self.hard:  # every invented person of the hard cases is someone new
            fakes += sum(self.k_hard(k) for k in ("invented_cccd", "invented_namesake_cccd",
                                                  "invented_near_real_cccd", "invented_no_id"))
        self._fake_people(fakes)

    # -- pools ---------------------------------------------------------------------
    def k(self, key: str) -> int:
        return max(1, round(PLANT_PER_4000[key] * self.scale))

    def k_hard(self, key: str) -> int:
        return max(1, round(BENCHMARK_PLANT_PER_4000[key] * self.scale))

    def take(self, mask: np.ndarray, k: int, *, no_ordinary: bool = False) -> np.ndarray:
        cand = np.flatnonzero(mask & ~self.reserved)
        if len(cand) >= k:
            pick = self.rng.choice(cand, size=k, replace=False)
        else:
            cand = np.flatnonzero(mask)
            if len(cand) == 0:
                raise ValueError("registry too small for the planted scenarios")
            pick = self.rng.choice(cand, size=k, replace=True)
        self.reserved[pick] = True
        if no_ordinary:
            self.no_ordinary[pick] = True
        return pick

    def telco(self) -> str:
        return TELCOS[int(self.rng.choice(3, p=TELCO_SHARES))]

    def _dealers(self) -> None:
        areas, aw = _weights(vn.DEALER_AREAS)
        self.dealers: dict[str, np.ndarray] = {}
        self.special: dict[str, list[str]] = {}
        n_special = 20 + int(np.ceil(10 * self.scale))  # planted dealer-days need their own
        for t, share in zip(TELCOS, TELCO_SHARES, strict=True):
            want = min(max(40, int(self.n_subscriptions * share / 3)), 80_000) + n_special
            codes: np.ndarray = np.empty(0, dtype=np.int64)
            while len(codes) < want:
                more = self.rng.choice(len(areas), size=want, p=aw) * 10_000 + self.rng.integers(
                    1, 10_000, size=want)
                codes = pd.unique(np.concatenate([codes, more]))[:want]
            prefix = vn.TELCO_DEALER_PREFIX[t]
            text = np.array([f"{prefix}-{areas[c // 10_000]}-{c % 10_000:04d}" for c in codes],
                            dtype=object)
            self.dealers[t] = text[:-n_special]
            self.special[t] = list(text[-n_special:])

    def special_dealer(self, telco: str) -> str:
        return self.special[telco].pop()

    def _fake_people(self, n: int) -> None:
        """People who are not in the registry (fabricated or made-up holders)."""
        rng = self.rng
        self.fake_female = rng.random(n) < 0.5
        self.fake_year = rng.integers(1960, 2005, n)
        north = rng.random(n) < 0.45
        family, middle, given = _draw_names(rng, self.fake_female, self.fake_year, north)
        self.fake_name = _full_names(family, middle, given)
        self.fake_dob = _jan1(self.fake_year) + rng.integers(0, 365, n)
        codes = np.array([c for c, _, _ in vn.PROVINCES], dtype=object)
        self.fake_province = codes[rng.integers(0, len(codes), n)]
        self.fake_next = 0

    def fake(self) -> int:
        i = self.fake_next % len(self.fake_name)
        self.fake_next += 1
        return i

    # -- row helpers -------------------------------------------------------------------
    def act(self, cids: Sequence[int], lo: int | None = None, hi: int | None = None) -> int | None:
        low = max([self.first if lo is None else lo] + [int(self.lo[c]) for c in cids])
        high = min([self.last if hi is None else hi] + [int(self.hi[c]) for c in cids])
        if low > high:
            return None
        return int(self.rng.integers(low, high + 1))

    def doc_for(self, c: int, activation: int) -> str:
        if self.cz.legacy[c] is None or self.cz.cmnd_shared[c]:
            return "CCCD"
        p = 0.30 if activation < _days(date(2019, 1, 1)) else (
            0.10 if activation < _days(date(2022, 1, 1)) else 0.02)
        return "CMND" if self.rng.random() < p else "CCCD"

    def declared_dob(self, c: int, telco: str) -> tuple[int, bool]:
        p = 0.5 if self.cz.year_only[c] else DOB_YEAR_ONLY_SHARE[telco]
        return int(self.cz.dob[c]), bool(self.rng.random() < p)

    def status(self) -> str:
        return LINE_STATUSES[int(self.rng.choice(4, p=LINE_STATUS_P))]

    def new_group(self) -> int:
        self.next_group += 1
        return self.next_group - 1

    def add(self, *, telco: str, scenario: str, id_type: str, id_number: str, dob: int,
            dob_year_only: bool, gender: str, activation: int, name_cid: int = -1,
            name: str | None = None, noise_ok: bool = False, status: str | None = None,
            pos: str | None = None, msisdn_group: int | None = None,
            msisdn_invalid: str | None = None, true_holder: int = -1) -> None:
        c = self.cols
        c["telco"].append(telco)
        c["scenario"].append(scenario)
        c["id_type"].append(id_type)
        c["id_number"].append(id_number)
        c["name_cid"].append(name_cid)
        c["name"].append(name)
        c["noise_ok"].append(noise_ok)
        c["dob"].append(dob)
        c["dob_year_only"].append(dob_year_only)
        c["gender"].append(gender)
        c["activation"].append(activation)
        c["status"].append(status or self.status())
        c["sub_type"].append("PREPAID" if self.rng.random() < PREPAID_SHARE else "POSTPAID")
        c["pos"].append(pos or str(self.rng.choice(self.dealers[telco])))
        if msisdn_invalid is not None:
            c["msisdn_group"].append(-1)
        else:
            c["msisdn_group"].append(self.new_group() if msisdn_group is None else msisdn_group)
        c["msisdn_invalid"].append(msisdn_invalid)
        c["true_holder"].append(true_holder)

    def genuine(self, c: int, scenario: str, *, telco: str | None = None,
                activation: int | None = None, doc: str | None = None,
                id_type: str | None = None, id_number: str | None = None,
                noise_ok: bool = True, full_dob: bool = False, **kw: object) -> None:
        """A row of citizen ``c`` about ``c`` (own name, DOB, gender)."""
        telco = telco or self.telco()
        if activation is None:
            activation = self.act([c])
            if activation is None:
                raise RuntimeError(f"no activation window for citizen {c}")
        if id_type is None:
            doc = doc or self.doc_for(c, activation)
            id_type = doc
            id_number = self.cz.cid[c] if doc == "CCCD" else self.cz.legacy[c]
        dob, year_only = self.declared_dob(c, telco)
        self.add(telco=telco, scenario=scenario, id_type=id_type, id_number=id_number or "",
                 dob=dob, dob_year_only=year_only and not full_dob, gender=self.cz.gender(c),
                 activation=activation, name_cid=c, noise_ok=noise_ok, true_holder=c,
                 **kw)  # type: ignore[arg-type]

    def other_person(self, v: int, *, lo: int | None = None, hi: int | None = None,
                     same_surname: bool = False, v_window: bool = True) -> int | None:
        """A registry citizen whose name and birth year clearly differ from ``v``'s."""
        cz = self.cz
        if not hasattr(self, "_other_pool"):
            self._other_pool = np.flatnonzero(self.plain_alive)
            by_family = pd.Series(self._other_pool).groupby(cz.family[self._other_pool])
            self._other_by_family = {k: g.to_numpy() for k, g in by_family}
        cand = self._other_by_family[cz.family[v]] if same_surname else self._other_pool
        want_female = cz.female[v] if self.rng.random() < 0.8 else not cz.female[v]
        for attempt in range(200):
            h = int(self.rng.choice(cand))
            if h == v or cz.year[h] == cz.year[v]:
                continue
            if attempt < 100 and cz.female[h] != want_female:
                continue
            if not names_clearly_differ(cz.full_name[h], cz.full_name[v]):
                continue
            if self.act([v, h] if v_window else [h], lo, hi) is None:
                continue
            return h
        return None

    # -- scenarios -------------------------------------------------------------------
    def plant_all(self) -> None:
        if self.hard:
            self.make_twins()
        self.plant_identity()
        if self.hard:
            self.plant_hard_searches()
        self.plant_holder_rules()
        self.plant_dealer_days()
        self.plant_numbers()

    def plant_identity(self) -> None:
        cz, rng = self.cz, self.rng
        for c in self.take(self.plain_alive, self.k("no_id")):
            self.genuine(int(c), "no_id", id_type="" if rng.random() < 0.5 else "CCCD",
                         id_number="")

        as_of_yy = self.as_of.year % 100
        legacy_ok = np.array([v is not None for v in cz.legacy]) & ~cz.cmnd_shared
        future_ok = (cz.year >= 1930) & (cz.year < 2000) & (cz.year % 100 >= as_of_yy + 2)
        kinds = ("cccd_short", "cccd_long", "cccd_letter", "cccd_future", "cmnd_letter",
                 "cmnd_long", "cccd_letter")
        n_invalid = self.k("invalid_id")
        for kind in dict.fromkeys(kinds):
            count = sum(1 for i in range(n_invalid) if kinds[i % len(kinds)] == kind)
            mask = self.plain_alive & (legacy_ok if kind.startswith("cmnd") else True)
            mask = mask & (future_ok if kind == "cccd_future" else True)
            for c in self.take(mask, count) if count else ():
                c = int(c)
                number = cz.legacy[c] if kind.startswith("cmnd") else cz.cid[c]
                self.genuine(c, f"invalid_id/{kind}", id_type="CMND" if kind.startswith("cmnd")
                             else "CCCD", id_number=self._malform(number, kind))

        for _ in range(self.k("fabricated_cccd")):
            f = self.fake()
            number = self._fabricated_cccd(f)
            self._fake_row(f, "fabricated_cccd", "CCCD", number)

        for c in self.take(self.plain_alive & ~cz.year_only, self.k("near_miss_cccd")):
            c = int(c)
            number = self._near_miss(cz.cid[c])
            self.genuine(c, "near_miss_cccd", id_type="CCCD", id_number=number, noise_ok=False,
                         full_dob=True)

        no_legacy = np.array([v is None for v in cz.legacy]) & (cz.year < 2000)
        for c in self.take(self.plain_alive & no_legacy, self.k("unknown_cmnd")):
            c = int(c)
            self.genuine(c, "unknown_cmnd", id_type="CMND", id_number=self._unknown_cmnd(c))

        shared = np.flatnonzero(cz.cmnd_shared)
        self.reserved[shared] = True
        for i in range(self.k("ambiguous_cmnd")):
            c = int(shared[(i * 7) % len(shared)])
            act = self.act([c], hi=_days(date(2021, 6, 30))) or self.act([c])
            self.genuine(c, "ambiguous_cmnd", activation=act, id_type="CMND",
                         id_number=cz.legacy[c])

        for v in self.take(self.plain_alive, self.k("wrong_person")):
            self._wrong_person(int(v), "wrong_person")

        dob_kinds = ("day_month_swapped", "year_off", "day_off", "other_date", "year_only_other")
        for i, c in enumerate(self.take(self.plain_alive, self.k("wrong_dob"))):
            self._wrong_dob(int(c), dob_kinds[i % len(dob_kinds)])

        for c in self.take(self.plain_alive, self.k("wrong_gender")):
            c = int(c)
            telco = self.telco()
            dob, year_only = self.declared_dob(c, telco)
            self.add(telco=telco, scenario="wrong_gender", id_type="CCCD", id_number=cz.cid[c],
                     dob=dob, dob_year_only=year_only, gender="M" if cz.female[c] else "F",
                     activation=self.act([c]), name_cid=c, true_holder=c)

        for _ in range(self.k("passport")):
            name, gender, style = vn.FOREIGN_PEOPLE[int(rng.integers(len(vn.FOREIGN_PEOPLE)))]
            dob = _date_days(int(rng.integers(1960, 2003)), int(rng.integers(1, 13)),
                             int(rng.integers(1, 29)))
            act = int(rng.integers(max(self.first, dob + 19 * 366), self.last + 1))
            letters = "".join(ch for ch in style if ch.isalpha())
            digits = int("".join(ch for ch in style if ch.isdigit()))
            number = letters + "".join(str(d) for d in rng.integers(0, 10, digits))
            self.add(telco=self.telco(), scenario="passport", id_type="PASSPORT",
                     id_number=number, dob=dob, dob_year_only=False, gender=gender,
                     activation=act, name=name, true_holder=-1)

    def plant_holder_rules(self) -> None:
        cz, rng = self.cz, self.rng
        dead = cz.has_death & self.window & (cz.death + 15 <= self.last) & ~cz.name_collision
        for c in self.take(dead, self.k("deceased_activation")):
            c = int(c)
            act = int(min(self.last, cz.death[c] + rng.integers(15, 900)))
            if rng.random() < 0.75:
                self.genuine(c, "deceased_activation", activation=act)
            else:
                self._wrong_person(c, "deceased_activation/wrong_person", activation=act)

        dob = cz.dob
        u_lo = np.maximum(self.first, dob + int(8 * 365.25))
        u_hi = np.minimum(self.last, dob + int(14 * 365.2425) - 60)
        child = (u_lo <= u_hi) & ~cz.has_death & ~cz.year_only & ~cz.name_collision
        for c in self.take(child, self.k("underage_holder")):
            c = int(c)
            act = int(rng.integers(u_lo[c], u_hi[c] + 1))
            self.genuine(c, "underage_holder", activation=act, doc="CCCD")

        for label, key, low, high in (("excess_holder", "excess_holders", 10, 16),
                                      ("at_limit_holder", "at_limit_holders", 9, 9)):
            for c in self.take(self.plain_alive, self.k(key), no_ordinary=True):
                active = int(rng.integers(low, high + 1))
                others = int(rng.integers(0, 3))
                for j in range(active + others):
                    status = "ACTIVE" if j < active else str(rng.choice(LINE_STATUSES[1:]))
                    self.genuine(int(c), label, status=status)

    def plant_dealer_days(self) -> None:
        cz, rng = self.cz, self.rng
        recent = _days(date(2019, 1, 1))
        for i in range(self.k("bulk_dealer_days")):
            pattern = i % 3
            if pattern == 0:  # 24 SIMs on 2 real IDs, real data: junk SIMs on borrowed IDs
                holders = self.take(self.plain_alive, 2, no_ordinary=True)
                day = self.act([int(h) for h in holders], lo=recent) or self.act(
                    [int(h) for h in holders])
                pos = self.special_dealer("viettel")
                for j in range(24):
                    h = int(holders[j % 2])
                    status = "BLOCKED_TWO_WAY" if j in (0, 1) else "ACTIVE"
                    self.genuine(h, "bulk/two_ids", telco="viettel", activation=day, doc="CCCD",
                                 status=status, pos=pos)
            elif pattern == 1:  # 20 SIMs on 1 ID under made-up names
                h = int(self.take(self.plain_alive, 1, no_ordinary=True)[0])
                day = self.act([h], lo=recent) or self.act([h])
                pos = self.special_dealer("vinaphone")
                for j in range(20):
                    f = self.fake()
                    while not names_clearly_differ(self.fake_name[f], cz.full_name[h]):
                        f = self.fake()
                    self.add(telco="vinaphone", scenario="bulk/one_id_fake_names",
                             id_type="CCCD", id_number=cz.cid[h], dob=int(self.fake_dob[f]),
                             dob_year_only=False, gender="F" if self.fake_female[f] else "M",
                             activation=day, name=self.fake_name[f],
                             status="BLOCKED_ONE_WAY" if j < 2 else "ACTIVE", pos=pos)
            else:  # 30 SIMs on 3 IDs: a real one, a dead person's, a fabricated one
                dead = cz.has_death & self.window & (cz.death + 40 <= self.last) & \
                    ~cz.name_collision
                d = int(self.take(dead, 1, no_ordinary=True)[0])
                day = int(rng.integers(cz.death[d] + 10, self.last + 1))
                live = self.plain_alive & (self.lo <= day) & (self.hi >= day)
                r = int(self.take(live, 1, no_ordinary=True)[0])
                f = self.fake()
                while self.fake_dob[f] + 20 * 366 > day:  # an adult on that day
                    f = self.fake()
                fabricated = self._fabricated_cccd(f)
                pos = self.special_dealer("mobifone")
                for j in range(30):
                    if j % 3 == 0:
                        self.genuine(r, "bulk/three_ids", telco="mobifone", activation=day,
                                     doc="CCCD", status="ACTIVE", pos=pos)
                    elif j % 3 == 1:
                        self.genuine(d, "bulk/three_ids", telco="mobifone", activation=day,
                                     doc="CCCD", status="ACTIVE", pos=pos)
                    else:
                        self._fake_row(f, "bulk/three_ids", "CCCD", fabricated, telco="mobifone",
                                       activation=day, status="ACTIVE", pos=pos)

        for _ in range(self.k("busy_dealer_days")):  # busy but legitimate
            telco = self.telco()
            day = int(rng.integers(_days(date(2020, 1, 1)), self.last + 1))
            live = self.plain_alive & (self.lo <= day) & (self.hi >= day)
            pos = self.special_dealer(telco)
            for c in self.take(live, 25):
                self.genuine(int(c), "busy_dealer_day", telco=telco, activation=day, pos=pos)

        for label, key, per_holder in (("dealer_day_below_min", "dealer_day_below_min", (10, 9)),
                                       ("dealer_day_four_ids", "dealer_day_four_ids",
                                        (5, 5, 5, 5))):
            for _ in range(self.k(key)):
                telco = self.telco()
                day = int(rng.integers(recent, self.last + 1))
                live = self.plain_alive & (self.lo <= day) & (self.hi >= day)
                holders = self.take(live, len(per_holder), no_ordinary=True)
                pos = self.special_dealer(telco)
                for h, count in zip(holders, per_holder, strict=True):
                    for _ in range(count):
                        self.genuine(int(h), label, telco=telco, activation=day, doc="CCCD",
                                     status="ACTIVE", pos=pos)

    def plant_numbers(self) -> None:
        rng = self.rng
        n_pairs = self.k("duplicate_pairs")
        for a, b in zip(self.take(self.plain_alive, n_pairs).tolist(),
                        self.take(self.plain_alive, n_pairs).tolist(), strict=True):
            b = a if rng.random() < 0.3 else b  # one person registered twice, or two people
            t1 = self.telco()
            t2 = t1 if rng.random() < 0.4 else str(rng.choice([t for t in TELCOS if t != t1]))
            group = self.new_group()
            self.genuine(a, "duplicate_msisdn", telco=t1, status="ACTIVE", msisdn_group=group)
            self.genuine(b, "duplicate_msisdn", telco=t2, msisdn_group=group,
                         status="BLOCKED_ONE_WAY" if rng.random() < 0.2 else "ACTIVE")

        for label, key, same_telco in (("ported_cancelled", "ported_cancelled_pairs", False),
                                       ("recycled_number", "recycled_pairs", True)):
            n_pairs = self.k(key)
            for a, b in zip(self.take(self.plain_alive, n_pairs).tolist(),
                            self.take(self.plain_alive, n_pairs).tolist(), strict=True):
                b = a if (not same_telco and rng.random() < 0.7) else b  # ported by its holder
                t1 = self.telco()
                t2 = t1 if same_telco else str(rng.choice([t for t in TELCOS if t != t1]))
                first = self.act([a, b], hi=self.last - 400) or self.act([a, b])
                second = self.act([b], lo=first + 30) or first
                group = self.new_group()
                self.genuine(a, label, telco=t1, activation=first, status="CANCELLED",
                             msisdn_group=group)
                self.genuine(b, label, telco=t2, activation=second, status="ACTIVE",
                             msisdn_group=group)

        kinds = ("landline_hcm", "landline_hn", "too_short", "too_long", "letter",
                 "unknown_prefix")
        used: set[str] = set()
        for i, c in enumerate(self.take(self.plain_alive, self.k("invalid_msisdn"))):
            kind = kinds[i % len(kinds)]
            number = self._invalid_msisdn(kind)
            while number in used:
                number = self._invalid_msisdn(kind)
            used.add(number)
            self.genuine(int(c), f"invalid_msisdn/{kind}", msisdn_invalid=number)


    # -- hard cases for the candidate search (noise="benchmark") ---------------------------
    def make_twins(self) -> None:
        """Citizens whose CCCD is one or two digits from another citizen's of the same
        province, sex and birth year (the registry's numbers are rewritten before any row
        is planted): ``self.twins`` pairs (holder, other) for the colliding scenarios."""
        cz, rng = self.cz, self.rng
        want = self.k_hard("colliding_near_miss") + self.k_hard("mistyped_into_other")
        prefix = pd.Series([c[:6] for c in cz.cid])
        pool = self.plain_alive & ~cz.year_only
        by_prefix = pd.Series(np.arange(cz.n))[pool].groupby(prefix[pool]).agg(list)
        groups = [g for g in by_prefix if len(g) >= 2]
        rng.shuffle(groups)
        self.twins: list[tuple[int, int, str]] = []
        for group in groups:
            if len(self.twins) >= want:
                break
            c, d = (int(x) for x in rng.choice(group, size=2, replace=False))
            if self.reserved[c] or self.reserved[d] or \
                    not names_clearly_differ(cz.full_name[c], cz.full_name[d]):
                continue
            two = len(self.twins) < self.k_hard("colliding_near_miss")
            serial = list(cz.cid[c][6:])
            spots = rng.choice(6, size=2 if two else 1, replace=False)
            for spot in spots:
                serial[spot] = str((int(serial[spot]) + int(rng.integers(1, 10))) % 10)
            new = cz.cid[c][:6] + "".join(serial)
            if new in self.cid_set:
                continue
            self.cid_set.discard(cz.cid[d])
            cz.cid[d] = new
            self.cid_set.add(new)
            self.reserved[[c, d]] = True
            # The number the holder writes: one digit off both (two apart), or d's own.
            written = cz.cid[c][:6] + "".join(
                serial[i] if i == spots[0] else cz.cid[c][6 + i] for i in range(6)) \
                if two else new
            self.twins.append((c, d, written))

    def plant_hard_searches(self) -> None:
        cz, rng = self.cz, self.rng
        for _ in range(self.k_hard("invented_cccd")):
            f = self.fake()
            self._fake_row(f, "invented_cccd", "CCCD", self._fabricated_cccd(f))
        adult = cz.dob + 19 * 366 < self.last
        for c in self.take(self.plain_alive & ~cz.year_only & adult,
                           self.k_hard("invented_namesake_cccd")):
            # Someone not in the registry who shares a citizen's name, date of birth and
            # sex, carrying a number of their own (another province or serial).
            c, f = int(c), self.fake()
            self.fake_name[f], self.fake_dob[f] = cz.full_name[c], cz.dob[c]
            self.fake_female[f], self.fake_year[f] = cz.female[c], cz.year[c]
            self._fake_row(f, "invented_namesake_cccd", "CCCD", self._fabricated_cccd(f),
                           dob_year_only=False)
        for _ in range(self.k_hard("invented_near_real_cccd")):
            f = self.fake()
            number = self._near_real_cccd(f)
            self._fake_row(f, "invented_near_real_cccd", "CCCD", number)
        for _ in range(self.k_hard("invented_no_id")):
            f = self.fake()
            self._fake_row(f, "invented_no_id", "" if rng.random() < 0.5 else "CCCD", "")
        namesakes = cz.name_collision & self.window & ~cz.has_death
        for c in self.take(namesakes, self.k_hard("namesake_no_id")):
            self.genuine(int(c), "namesake_no_id", id_type="", id_number="")
        for c in self.take(namesakes, self.k_hard("namesake_near_miss")):
            c = int(c)
            self.genuine(c, "namesake_near_miss", id_type="CCCD",
                         id_number=self._near_miss(cz.cid[c]), noise_ok=False, full_dob=True)
        for c, _d, written in self.twins:
            two = written != cz.cid[_d]
            self.genuine(c, "colliding_near_miss" if two else "mistyped_into_other",
                         id_type="CCCD", id_number=written, noise_ok=False, full_dob=True)

    def _near_real_cccd(self, f: int) -> str:
        """A number one digit off a random citizen's CCCD and nobody's own."""
        for _ in range(1000):
            c = int(self.rng.integers(self.cz.n))
            cid = self.cz.cid[c]
            i = int(self.rng.integers(6, 12))
            number = cid[:i] + str((int(cid[i]) + int(self.rng.integers(1, 10))) % 10) \
                + cid[i + 1:]
            if number not in self.cid_set:
                return number
        raise RuntimeError("no number one digit off a citizen's")

    # -- scenario pieces ---------------------------------------------------------------
    def _wrong_person(self, v: int, scenario: str, activation: int | None = None) -> None:
        """The document is ``v``'s; name, DOB and gender are somebody else's."""
        cz = self.cz
        lo = hi = activation
        own = activation is None  # a given activation may lie after v's death
        h = self.other_person(v, lo=lo, hi=hi, same_surname=self.rng.random() < 0.3,
                              v_window=own)
        if h is None:
            h = self.other_person(v, lo=lo, hi=hi, v_window=own)
        if h is None:
            raise RuntimeError(f"no clearly different person found for citizen {v}")
        act = activation if activation is not None else self.act([v, h])
        telco = self.telco()
        doc = "CMND" if (cz.legacy[v] is not None and not cz.cmnd_shared[v]
                         and self.rng.random() < 0.15) else "CCCD"
        dob, year_only = self.declared_dob(h, telco)
        status = str(self.rng.choice(LINE_STATUSES, p=(0.7, 0.1, 0.15, 0.05)))
        self.add(telco=telco, scenario=scenario, id_type=doc,
                 id_number=cz.cid[v] if doc == "CCCD" else cz.legacy[v], dob=dob,
                 dob_year_only=year_only, gender=cz.gender(h), activation=act, name_cid=h,
                 status=status, true_holder=h)

    def _wrong_dob(self, c: int, kind: str) -> None:
        cz, rng = self.cz, self.rng
        y, m, d = (int(v[0]) for v in _ymd(np.array([cz.dob[c]])))
        year_only = False
        if kind == "day_month_swapped" and d <= 12 and d != m:
            new = _date_days(y, d, m)
        elif kind == "day_off":
            new = _date_days(y, m, d + 1 if d < 28 else d - 1)
        elif kind == "other_date":
            new = int(cz.dob[c] + rng.choice([-1, 1]) * rng.integers(400, 3000))
        elif kind == "year_only_other":
            new, year_only = _date_days(y + int(rng.choice([-2, -1, 1, 2])), 1, 1), True
        else:
            kind = "year_off"
            new = _date_days(y + int(rng.choice([-3, -2, -1, 1, 2])), m, min(d, 28))
        agree = dob_agrees(np.array([new]), np.array([year_only]), np.array([cz.dob[c]]),
                           np.array([cz.year_only[c]]))[0]
        if agree:  # registry holds only the year: move the year
            new, kind = _date_days(y + 1, m, min(d, 28)), "year_off"
        self.add(telco=self.telco(), scenario=f"wrong_dob/{kind}", id_type="CCCD",
                 id_number=cz.cid[c], dob=new, dob_year_only=year_only, gender=cz.gender(c),
                 activation=self.act([c]), name_cid=c, true_holder=c)

    def _fake_row(self, f: int, scenario: str, id_type: str, number: str, *,
                  telco: str | None = None, activation: int | None = None,
                  dob_year_only: bool | None = None, **kw: object) -> None:
        telco = telco or self.telco()
        dob = int(self.fake_dob[f])
        if activation is None:
            activation = int(self.rng.integers(max(self.first, dob + 19 * 366), self.last + 1))
        if dob_year_only is None:
            dob_year_only = bool(self.rng.random() < DOB_YEAR_ONLY_SHARE[telco])
        self.add(telco=telco, scenario=scenario, id_type=id_type, id_number=number, dob=dob,
                 dob_year_only=dob_year_only,
                 gender="F" if self.fake_female[f] else "M", activation=activation,
                 name=self.fake_name[f], **kw)  # type: ignore[arg-type]

    def _isolated(self, number: str) -> bool:
        """Nobody's ID, and no registry ID within one edit."""
        return number not in self.cid_set and not any(
            v in self.cid_set for v in one_edit_variants(number))

    def _fabricated_cccd(self, f: int) -> str:
        while True:
            number = _cccd(self.fake_province[f], bool(self.fake_female[f]),
                           int(self.fake_year[f]), int(self.rng.integers(0, 1_000_000)))
            if self._isolated(number):
                return number

    def _near_miss(self, cid: str) -> str:
        """The CCCD with one random-part digit substituted or two adjacent ones swapped,
        such that it is nobody's and only ``cid`` is one edit away."""
        rng = self.rng
        for _ in range(1000):
            if rng.random() < 0.6:
                i = int(rng.integers(6, 12))
                digit = str(int(rng.integers(0, 10)))
                if digit == cid[i]:
                    continue
                number = cid[:i] + digit + cid[i + 1:]
            else:
                i = int(rng.integers(6, 11))
                if cid[i] == cid[i + 1]:
                    continue
                number = cid[:i] + cid[i + 1] + cid[i] + cid[i + 2:]
            if number in self.cid_set:
                continue
            if [v for v in one_edit_variants(number) if v in self.cid_set] == [cid]:
                return number
        raise RuntimeError(f"no unique near miss for {cid}")

    def _unknown_cmnd(self, c: int) -> str:
        office = vn.CMND_OFFICE_PREFIX[self.cz.province[c]]
        lo, hi = vn.CMND_COLLISION_RANGE
        while True:
            value = int(office) * 10_000_000 + int(self.rng.integers(0, 10_000_000))
            number = f"{value:09d}"
            if number not in self.legacy_set and not lo <= value <= hi:
                return number

    def _malform(self, number: str, kind: str) -> str:
        rng = self.rng
        start = 6 if kind.startswith("cccd") else 2
        if kind == "cccd_short":  # two digits lost; still starts with 0: not an Excel lost zero
            i, j = sorted(rng.choice(np.arange(start, 12), size=2, replace=False))
            return number[:i] + number[i + 1:j] + number[j + 1:]
        if kind in ("cccd_long", "cmnd_long"):  # one digit typed twice / inserted
            i = int(rng.integers(start, len(number) + 1))
            return number[:i] + str(int(rng.integers(0, 10))) + number[i:]
        if kind == "cccd_future":  # century digit 0/1 -> 2/3: born in 20YY > as_of
            return number[:3] + str(int(number[3]) + 2) + number[4:]
        spots = [i for i in range(3 if kind.startswith("cccd") else 2, len(number))
                 if number[i] in _LOOKALIKE]
        i = int(rng.choice(spots)) if spots else len(number) - 1
        return number[:i] + _LOOKALIKE.get(number[i], "O") + number[i + 1:]

    def _invalid_msisdn(self, kind: str) -> str:
        """A number in local 0-form that is not a Vietnamese mobile number."""
        rng = self.rng

        def digits(k: int) -> str:
            return "".join(str(d) for d in rng.integers(0, 10, k))

        if kind == "landline_hcm":
            return "028" + str(int(rng.integers(3, 8))) + digits(7)
        if kind == "landline_hn":
            return "024" + str(int(rng.integers(3, 8))) + digits(7)
        if kind == "too_short":  # 8-digit national number
            return "09" + str(int(rng.choice([0, 1, 3, 4, 6, 7, 8]))) + digits(6)
        if kind == "too_long":  # 11 digits, not a pre-2018 01xx number
            return "09" + str(int(rng.choice([0, 1, 3, 4, 6, 7, 8]))) + digits(8)
        if kind == "letter":
            number = "09" + str(int(rng.choice([0, 1, 3, 4, 6, 7, 8]))) + digits(7)
            i = int(rng.integers(3, 10))
            return number[:i] + str(rng.choice(["O", "I", "l", "S", "B"])) + number[i + 1:]
        return "010" + digits(7)  # unknown prefix

    # -- ordinary rows ---------------------------------------------------------------------
    def ordinary(self, n_ordinary: int) -> dict[str, np.ndarray]:
        cz, rng = self.cz, self.rng
        eligible = self.window & ~self.no_ordinary
        age = (_days(self.as_of) - cz.dob) / 365.2425
        w = np.select([age < 18, age <= 60, age <= 75], [0.4, 1.0, 0.6], 0.3)
        w = np.where(cz.has_death, 0.5 * w, w) * eligible
        if eligible.sum() * MAX_ORDINARY_PER_CITIZEN < n_ordinary * 1.5:
            raise ValueError(
                f"n_citizens too small: {int(eligible.sum())} eligible adults cannot hold "
                f"{n_ordinary} subscriptions; use n_citizens >= ~0.6 * n_subscriptions")
        p = w / w.sum()
        counts = rng.multinomial(n_ordinary, p)
        while (over := counts > MAX_ORDINARY_PER_CITIZEN).any():
            extra = int((counts[over] - MAX_ORDINARY_PER_CITIZEN).sum())
            counts[over] = MAX_ORDINARY_PER_CITIZEN
            room = p * (counts < MAX_ORDINARY_PER_CITIZEN)
            counts += rng.multinomial(extra, room / room.sum())
        holder = rng.permutation(np.repeat(np.arange(cz.n), counts))
        n = len(holder)
        telco_i = rng.choice(3, size=n, p=TELCO_SHARES)
        telco = np.array(TELCOS, dtype=object)[telco_i]
        lo, hi = self.lo[holder], self.hi[holder]
        activation = lo + np.floor(rng.random(n) * (hi - lo + 1)).astype(np.int64)
        usable_legacy = np.array([v is not None for v in cz.legacy]) & ~cz.cmnd_shared
        p_cmnd = np.select([activation < _days(date(2019, 1, 1)),
                            activation < _days(date(2022, 1, 1))], [0.30, 0.10], 0.02)
        cmnd = usable_legacy[holder] & (rng.random(n) < p_cmnd)
        id_number = np.where(cmnd, cz.legacy[holder], cz.cid[holder])
        p_year_only = np.select([telco_i == 0, telco_i == 1],
                                [DOB_YEAR_ONLY_SHARE["viettel"], DOB_YEAR_ONLY_SHARE["vinaphone"]],
                                DOB_YEAR_ONLY_SHARE["mobifone"])
        p_year_only = np.where(cz.year_only[holder], 0.5, p_year_only)
        gender = np.where(cz.female[holder], "F", "M").astype(object)
        gender[rng.random(n) < 0.01] = ""
        dealer = np.empty(n, dtype=object)
        for t in TELCOS:
            m = telco == t
            dealer[m] = self.dealers[t][rng.integers(0, len(self.dealers[t]), int(m.sum()))]
        groups = np.arange(self.next_group, self.next_group + n)
        self.next_group += n
        return {
            "telco": telco,
            "scenario": np.where(cmnd, "genuine_cmnd", "genuine").astype(object),
            "id_type": np.where(cmnd, "CMND", "CCCD").astype(object),
            "id_number": id_number.astype(object),
            "name_cid": holder,
            "name": np.full(n, None, dtype=object),
            "noise_ok": np.ones(n, dtype=bool),
            "dob": cz.dob[holder],
            "dob_year_only": rng.random(n) < p_year_only,
            "gender": gender,
            "activation": activation,
            "status": np.array(LINE_STATUSES, dtype=object)[rng.choice(4, n, p=LINE_STATUS_P)],
            "sub_type": np.where(rng.random(n) < PREPAID_SHARE, "PREPAID", "POSTPAID").astype(
                object),
            "pos": dealer,
            "msisdn_group": groups,
            "msisdn_invalid": np.full(n, None, dtype=object),
            "true_holder": holder,
        }

    def frame(self) -> pd.DataFrame:
        planted = len(self.cols["telco"])
        n_ordinary = self.n_subscriptions - planted
        if n_ordinary < 0.5 * self.n_subscriptions:
            raise ValueError(f"n_subscriptions={self.n_subscriptions} is too small for the "
                             f"{planted} planted rows; use at least {2 * planted}")
        ordinary = self.ordinary(n_ordinary)
        data = {}
        for f in _ROW_FIELDS:
            planted_col = np.empty(planted, dtype=object)
            planted_col[:] = self.cols[f]
            data[f] = np.concatenate([planted_col, ordinary[f].astype(object)])
        frame = pd.DataFrame({f: pd.Series(v, dtype=object) for f, v in data.items()})
        for f in ("name_cid", "dob", "activation", "msisdn_group", "true_holder"):
            frame[f] = frame[f].astype(np.int64)
        for f in ("noise_ok", "dob_year_only"):
            frame[f] = frame[f].astype(bool)
        return frame


# --- Phone numbers -------------------------------------------------------------------
def _assign_numbers(rng: np.random.Generator, rows: pd.DataFrame, noise: str) -> None:
    """Canonical numbers per msisdn_group (planted pairs share one) and written forms."""
    valid = rows["msisdn_invalid"].isna().to_numpy()
    groups = rows.loc[valid, "msisdn_group"].to_numpy()
    uniq, first_idx = np.unique(groups, return_index=True)
    first_rows = np.flatnonzero(valid)[first_idx]
    telco = rows["telco"].to_numpy()[first_rows]
    carrier = np.array([vn.TELCO_CARRIER[t] for t in telco], dtype=object)
    ported = rng.random(len(uniq)) < PORTED_SHARE
    src_v, src_p = _weights(vn.PORT_SOURCES)
    for i in np.flatnonzero(ported):
        while True:
            other = src_v[rng.choice(len(src_v), p=src_p)]
            if other != carrier[i]:
                carrier[i] = other
                break
    lead = np.empty(len(uniq), dtype=object)
    for name, leads in vn.CARRIER_LEADS.items():
        m = carrier == name
        lv, lp = _weights(leads)
        lead[m] = lv[rng.choice(len(lv), size=int(m.sum()), p=lp)]
    lead_len = np.array([len(x) for x in lead])
    base = np.array([int(x) for x in lead], dtype=np.int64) * 10 ** (9 - lead_len)
    span = 10 ** (9 - lead_len)
    number = base + (rng.random(len(uniq)) * span).astype(np.int64)
    while True:
        dup = pd.Series(number).duplicated(keep="first").to_numpy()
        if not dup.any():
            break
        number[dup] = base[dup] + (rng.random(int(dup.sum())) * span[dup]).astype(np.int64)
    canonical_by_group = pd.Series([f"0{v:09d}" for v in number], index=uniq)
    canonical = np.full(len(rows), None, dtype=object)
    canonical[valid] = canonical_by_group.loc[groups].to_numpy()
    rows["msisdn"] = canonical
    rows["msisdn_valid"] = valid

    # Written forms per layout.
    tel = rows["telco"].to_numpy()
    local = np.where(valid, canonical, rows["msisdn_invalid"].to_numpy())
    written = np.empty(len(rows), dtype=object)
    vt, vp, mf = tel == "viettel", tel == "vinaphone", tel == "mobifone"
    written[vt] = local[vt]
    written[vp] = ["84" + s[1:] for s in local[vp]]
    written[mf] = ["+84" + s[1:] for s in local[mf]]
    # VinaPhone: ~5% of rows still carry the pre-2018 11-digit form.
    convertible = vp & valid & (rows["activation"].to_numpy() < _days(NUMBER_CONVERSION_DAY))
    convertible &= np.array([s is not None and s[1:3] in vn.NEW_TO_OLD_LEAD for s in canonical])
    n_target = round(VINAPHONE_LEGACY_NUMBER_SHARE * int(vp.sum()))
    cand = np.flatnonzero(convertible)
    legacy_rows = rng.permutation(cand)[:n_target]
    for i in legacy_rows:
        s = canonical[i]
        written[i] = "84" + vn.NEW_TO_OLD_LEAD[s[1:3]] + s[3:]
    rows["msisdn_legacy_form"] = False
    rows.loc[legacy_rows, "msisdn_legacy_form"] = True
    if noise == "benchmark":  # separators as typed by hand
        for i in np.flatnonzero(vt & valid & (rng.random(len(rows)) < 0.03)):
            s, sep = written[i], str(rng.choice([" ", ".", "-"]))
            written[i] = f"{s[:4]}{sep}{s[4:7]}{sep}{s[7:]}"
        for i in np.flatnonzero(vp & valid & (rng.random(len(rows)) < 0.01)):
            s = written[i]
            written[i] = f"{s[:2]} {s[2:5]} {s[5:8]} {s[8:]}"
    rows["msisdn_written"] = written


# --- Names ---------------------------------------------------------------------------------
def _mixed_1258(text: str) -> str:
    """Windows-1258 style: precomposed base vowel + combining tone mark."""
    out: list[str] = []
    base, marks = "", []
    for ch in unicodedata.normalize("NFD", text) + " ":
        if unicodedata.combining(ch):
            marks.append(ch)
            continue
        if base:
            tones = [m for m in marks if m in _TONE_MARKS]
            rest = [m for m in marks if m not in _TONE_MARKS]
            out.append(unicodedata.normalize("NFC", base + "".join(rest)) + "".join(tones))
        base, marks = ch, []
    return "".join(out)


def _noisy_name(kind: str, family: str, middle: str, given: str, u1: float, u2: float) -> str:
    fam, mid = family.split(), middle.split()
    tokens = [*fam, *mid, given]
    text = " ".join(tokens)
    if kind == "no_diacritics":
        return fold(text)
    if kind == "upper":
        return text.upper()
    if kind == "nfd":
        return unicodedata.normalize("NFD", text)
    if kind == "mixed_1258":
        return _mixed_1258(text)
    if kind == "extra_spaces":
        i = int(u1 * (len(tokens) - 1)) + 1
        out = " ".join(tokens[:i]) + "  " + " ".join(tokens[i:])
        return (" " + out) if u2 < 0.2 else (out + " ") if u2 > 0.7 else out
    if kind == "drop_van_thi":
        drop = next(i for i, m in enumerate(mid) if m in _CLASSIC_MIDDLE)
        return " ".join([*fam, *mid[:drop], *mid[drop + 1:], given])
    if kind == "order_swap":  # Western order: family name last
        return " ".join([*mid, given, *fam])
    if kind == "surname_variant":
        return " ".join([_SURNAME_VARIANTS[fam[0]], *fam[1:], *mid, given])
    if kind == "tone_placement":
        return " ".join(_TONE_VARIANTS.get(t, t) for t in tokens)
    if kind == "typo":  # one letter replaced by a keyboard neighbour
        # Not in Văn/Thị or a Huỳnh/Võ-type surname (keeps each tolerance separate);
        # longest words first, never their first letter.
        spots: list[tuple[int, int]] = []
        for min_len, avoid in ((4, True), (3, True), (2, True), (2, False)):
            spots = [(ti, ci) for ti, t in enumerate(tokens)
                     if len(t) >= min_len and not (avoid and (t in _CLASSIC_MIDDLE
                                                              or t in _SURNAME_VARIANTS))
                     for ci in range(1, len(t)) if fold(t[ci]).lower() in _KEY_NEIGHBOURS]
            if spots:
                break
        ti, ci = spots[int(u1 * len(spots))]
        ch = tokens[ti][ci]
        options = _KEY_NEIGHBOURS[fold(ch).lower()]
        new = options[int(u2 * len(options))]
        tokens[ti] = tokens[ti][:ci] + (new.upper() if ch.isupper() else new) + tokens[ti][ci + 1:]
        return " ".join(tokens)
    raise ValueError(kind)


def _apply_names(rng: np.random.Generator, rows: pd.DataFrame, cz: _Citizens,
                 noise: str) -> None:
    """Base name (+ accepted noise on genuine rows) and the written name per layout."""
    n = len(rows)
    cid = rows["name_cid"].to_numpy()
    has_cid = cid >= 0
    base = rows["name"].to_numpy().copy()
    base[has_cid] = cz.full_name[cid[has_cid]]
    # Applicability per citizen.
    has_classic = np.array([any(m in _CLASSIC_MIDDLE for m in mid.split()) for mid in cz.middle])
    variant = np.array([f.split()[0] in _SURNAME_VARIANTS for f in cz.family])
    tone = np.array([any(t in _TONE_VARIANTS for t in name.split()) for name in cz.full_name])
    kinds = list(NAME_NOISE_KINDS)
    p = np.zeros((n, len(kinds)))
    telco = rows["telco"].to_numpy()
    for t in TELCOS:
        probs = np.array(_NOISE_P[t], dtype=np.float64)
        if noise == "benchmark":
            probs[kinds.index("extra_spaces")] *= 2
            if t == "viettel":
                probs[kinds.index("mixed_1258")] = 0.02
        p[telco == t] = probs
    safe_cid = np.where(has_cid, cid, 0)
    p[:, kinds.index("drop_van_thi")] *= has_classic[safe_cid]
    p[:, kinds.index("surname_variant")] *= variant[safe_cid]
    p[:, kinds.index("tone_placement")] *= tone[safe_cid]
    p *= (rows["noise_ok"].to_numpy() & has_cid)[:, None]
    total = p.sum(axis=1)
    p *= np.where(total > 0.6, 0.6 / np.maximum(total, 1e-9), 1.0)[:, None]
    u = rng.random(n)
    cum = np.cumsum(p, axis=1)
    pick = (u[:, None] >= cum).sum(axis=1)  # == len(kinds) -> no noise
    u1, u2 = rng.random(n), rng.random(n)
    noise_kind = np.full(n, "", dtype=object)
    name = base.copy()
    for i in np.flatnonzero(pick < len(kinds)):
        kind = kinds[pick[i]]
        c = cid[i]
        noise_kind[i] = kind
        name[i] = _noisy_name(kind, cz.family[c], cz.middle[c], cz.given[c], u1[i], u2[i])
    rows["name_noise"] = noise_kind

    written = np.empty(n, dtype=object)
    vt, vp, mf = telco == "viettel", telco == "vinaphone", telco == "mobifone"
    upper = vt & (rng.random(n) < VIETTEL_UPPER_SHARE)
    nfd = noise_kind == "nfd"
    for i in np.flatnonzero(vt):
        s = name[i].upper() if upper[i] else name[i]
        written[i] = unicodedata.normalize("NFD", s) if nfd[i] else s
    written[vp] = name[vp]  # the whole VinaPhone file is written in NFD
    written[mf] = [fold(s).upper() for s in name[mf]]
    rows["name_written"] = written


# --- Ground truth --------------------------------------------------------------------
def _ground_truth(rows: pd.DataFrame, cz: _Citizens, as_of: date) -> pd.DataFrame:
    n = len(rows)
    id_type = rows["id_type"].to_numpy().astype(str)
    number = pd.Series(rows["id_number"].to_numpy(), dtype=object).fillna("").astype(str)
    is_cccd, is_cmnd, is_pass = id_type == "CCCD", id_type == "CMND", id_type == "PASSPORT"
    empty = (number == "").to_numpy()

    twelve = number.str.fullmatch(r"\d{12}").to_numpy()
    birth_year = np.zeros(n, dtype=np.int64)
    t = number[twelve]
    birth_year[twelve] = (1900 + (t.str[3].astype(int) // 2) * 100
                          + t.str[4:6].astype(int)).to_numpy()
    wf_cccd = is_cccd & twelve & (birth_year <= as_of.year)
    wf_cmnd = is_cmnd & number.str.fullmatch(r"\d{9}|\d{12}").to_numpy()
    wf_pass = is_pass & number.str.fullmatch(r"[A-Z]{1,2}\d{7,8}").to_numpy()
    well_formed = wf_cccd | wf_cmnd | wf_pass

    no_id = empty & ~is_pass
    invalid_id = ~empty & ~is_pass & ~well_formed
    by_cid = pd.Series(np.arange(cz.n), index=pd.Index(cz.cid))
    legacy = pd.Series(cz.legacy).dropna()
    legacy_count = legacy.value_counts()
    unique_legacy = legacy[legacy.map(legacy_count) == 1]
    by_legacy = pd.Series(unique_legacy.index.to_numpy(), index=pd.Index(unique_legacy.values))
    doc = np.full(n, -1, dtype=np.int64)
    hit = number.map(by_cid).to_numpy(dtype=np.float64)
    m = wf_cccd & ~np.isnan(hit)
    doc[m] = hit[m].astype(np.int64)
    hit = number.map(by_legacy).to_numpy(dtype=np.float64)
    m = wf_cmnd & ~np.isnan(hit)
    doc[m] = hit[m].astype(np.int64)
    ambiguous = wf_cmnd & (number.map(legacy_count).fillna(0).to_numpy() > 1)
    id_not_found = (wf_cccd | wf_cmnd) & (doc < 0) & ~ambiguous
    legacy_id = is_cmnd & ~empty
    linked = doc >= 0
    d = np.where(linked, doc, 0)

    name_cid = rows["name_cid"].to_numpy()
    declared = rows["dob"].to_numpy()
    declared_yo = rows["dob_year_only"].to_numpy()
    name_mm = linked & (name_cid != doc)
    reg_dob = cz.registry_dob
    dob_mm = linked & ~dob_agrees(declared, declared_yo, reg_dob[d], cz.year_only[d])
    gender = rows["gender"].to_numpy().astype(str)
    reg_gender = np.where(cz.female[d], "F", "M")
    gender_mm = linked & (gender != "") & (gender != reg_gender)

    activation = rows["activation"].to_numpy()
    deceased = linked & cz.has_death[d] & (activation > cz.death[d])
    declared_rule = np.where(declared_yo, _jan1(_ymd(declared)[0]), declared)
    birth = np.where(linked, reg_dob[d], declared_rule)
    underage = completed_years(birth, activation) < UNDERAGE_YEARS

    status_line = rows["status"].to_numpy().astype(str)
    holder = np.where(linked, np.char.add("C:", cz.cid[d].astype(str)),
                      np.char.add(np.char.add(id_type, ":"), number.to_numpy().astype(str)))
    holder = pd.Series(holder, dtype=object).where(linked | well_formed)
    counted = np.isin(status_line, EXCESS_COUNTS_STATUSES)
    per_holder = holder.where(counted).map(holder.where(counted).value_counts())
    excess = counted & (per_holder.fillna(0).to_numpy() > MAX_ACTIVE_SUBSCRIPTIONS_PER_HOLDER)

    day = pd.DataFrame({"pos": rows["pos"].to_numpy(), "day": activation,
                        "doc": number.replace("", np.nan).to_numpy()})
    grouped = day.groupby(["pos", "day"], sort=False)["doc"]
    bulk = ((grouped.transform("size") >= BULK_MIN_ACTIVATIONS)
            & (grouped.transform("nunique") <= BULK_MAX_DISTINCT_IDS)).to_numpy()

    valid_msisdn = rows["msisdn_valid"].to_numpy()
    dup_counted = valid_msisdn & ~np.isin(status_line, DUPLICATE_IGNORES_STATUSES)
    msisdn = pd.Series(rows["msisdn"].to_numpy(), dtype=object).where(dup_counted)
    duplicate = dup_counted & (msisdn.map(msisdn.value_counts()).fillna(0).to_numpy() > 1)
    invalid_msisdn = ~valid_msisdn

    # Near-miss suggestion: the registry CCCD one edit away whose name and DOB agree.
    suggested = np.full(n, -1, dtype=np.int64)
    cid_index = {v: i for i, v in enumerate(cz.cid)}
    # (Several citizens one edit away: the one whose name and date of birth the row carries.)
    for i in np.flatnonzero(id_not_found & wf_cccd):
        near = [cid_index[v] for v in one_edit_variants(number.iat[i]) if v in cid_index]
        agreeing = [c for c in near if name_cid[i] == c and dob_agrees(
            declared[i:i + 1], declared_yo[i:i + 1], reg_dob[c:c + 1], cz.year_only[c:c + 1])[0]]
        if len(agreeing) == 1:
            suggested[i] = agreeing[0]

    status = np.full(n, "VERIFIED", dtype=object)
    status[gender_mm | ambiguous] = "REVIEW"
    status[name_mm | dob_mm] = "MISMATCH"
    status[no_id | invalid_id | id_not_found] = "UNREGISTERED"
    status[is_pass] = "FOREIGN_DOCUMENT"
    masks = {
        "BULK_ACTIVATION": bulk, "DECEASED_HOLDER": deceased, "DOB_MISMATCH": dob_mm,
        "DUPLICATE_MSISDN": duplicate, "EXCESS_SUBSCRIPTIONS": excess,
        "GENDER_MISMATCH": gender_mm, "ID_NOT_FOUND": id_not_found, "INVALID_ID": invalid_id,
        "INVALID_MSISDN": invalid_msisdn, "LEGACY_ID": legacy_id, "NAME_MISMATCH": name_mm,
        "NEEDS_REVIEW": status == "REVIEW", "NO_ID": no_id, "UNDERAGE_HOLDER": underage,
    }
    matrix = np.stack([np.asarray(masks[f], dtype=bool) for f in FLAG_NAMES], axis=1)
    _, cols = np.nonzero(matrix)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(matrix.sum(axis=1), out=offsets[1:])
    values = pa.array(np.array(FLAG_NAMES, dtype=object)[cols], pa.string())
    flags = pa.ListArray.from_arrays(pa.array(offsets), values)

    def cids(index: np.ndarray) -> list[str | None]:
        return [cz.cid[i] if i >= 0 else None for i in index]

    noise_kind = rows["name_noise"].to_numpy()
    scenario = [s if not k else f"{s}/name:{k}"
                for s, k in zip(rows["scenario"].to_numpy(), noise_kind, strict=True)]
    return pd.DataFrame({
        "telco": rows["telco"].to_numpy(),
        "source_row": rows["source_row"].to_numpy(),
        "scenario": scenario,
        "document_citizen_id": cids(doc),
        "true_holder_citizen_id": cids(rows["true_holder"].to_numpy()),
        "expected_status": status,
        "expected_flags": pd.Series(flags.to_pylist(), dtype=object),
        "expected_suggested_citizen_id": cids(suggested),
    })


# --- Writing -------------------------------------------------------------------------------
def _export_columns(rows: pd.DataFrame, telco: str) -> list[np.ndarray]:
    vocab = LAYOUT_VOCAB[telco]
    dob_iso = _iso(rows["dob"].to_numpy())
    year = _ymd(rows["dob"].to_numpy())[0]
    act_iso = _iso(rows["activation"].to_numpy())
    yo = rows["dob_year_only"].to_numpy()
    if telco == "viettel":
        dob = [str(y) if o else f"{s[8:10]}/{s[5:7]}/{s[:4]}" for s, y, o in zip(dob_iso, year,
                                                                             yo, strict=True)]
        act = [f"{s[8:10]}/{s[5:7]}/{s[:4]}" for s in act_iso]
    else:
        dob = [str(y) if o else s for s, y, o in zip(dob_iso, year, yo, strict=True)]
        act = list(act_iso)

    def coded(field: str, column: str) -> list[str]:
        return [vocab[field].get(v, "") for v in rows[column].to_numpy()]

    return [rows["msisdn_written"].to_numpy(), rows["name_written"].to_numpy(),
            np.array(dob, dtype=object), np.array(coded("gender", "gender"), dtype=object),
            np.array(coded("id_type", "id_type"), dtype=object),
            rows["id_number"].to_numpy(), np.array(act, dtype=object),
            np.array(coded("subscription_type", "sub_type"), dtype=object),
            np.array(coded("line_status", "status"), dtype=object), rows["pos"].to_numpy()]


def _write_csv(path: Path, rows: pd.DataFrame, telco: str) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=CSV_DELIMITER[telco], lineterminator="\n")
    writer.writerow(LAYOUT_COLUMNS[telco])
    writer.writerows(zip(*_export_columns(rows, telco), strict=True))
    text = buffer.getvalue()
    if telco == "vinaphone":  # legacy system exporting decomposed Unicode
        text = unicodedata.normalize("NFD", text)
    path.write_bytes(text.encode("utf-8"))


def _write_parquet(path: Path, table: pa.Table) -> None:
    pq.write_table(table, path, compression="zstd", write_statistics=True)


def _mobifone_table(rows: pd.DataFrame) -> pa.Table:
    cols = _export_columns(rows, "mobifone")
    names = LAYOUT_COLUMNS["mobifone"]
    arrays = {}
    for name, values in zip(names, cols, strict=True):
        if name == "activated_on":
            arrays[name] = pa.array(rows["activation"].to_numpy().astype(np.int32),
                                    pa.int32()).cast(pa.date32())
        else:
            arrays[name] = pa.array([v if v != "" else None for v in values], pa.string())
    return pa.table(arrays)


# --- The previous run's exports (the history of each number) -------------------------------
_GENUINE_SEARCHED = ("no_id", "invalid_id", "near_miss_cccd", "unknown_cmnd", "namesake_no_id",
                     "namesake_near_miss", "colliding_near_miss")
_INVENTED_SEARCHED = ("fabricated_cccd", "invented_cccd", "invented_namesake_cccd",
                      "invented_near_real_cccd", "invented_no_id")
PREVIOUS_HAD_OWN_CCCD = 0.6  # genuine searched rows whose number carried their CCCD before
PREVIOUS_OTHER_HOLDER = 0.05  # ... whose number was someone else's before (recycled)
PREVIOUS_INVENTED_RECYCLED = 0.1  # invented people on a number a citizen held before


def _previous_rows(rng: np.random.Generator, rows: pd.DataFrame, cz: _Citizens) -> pd.DataFrame:
    """The exports as the previous run received them: the same subscriptions, except that
    most rows whose document now leads nobody carried their holder's own CCCD then (the
    number was verified to them), and some numbers were held by another citizen then (a
    recycled number: its verified holder then is not its holder now)."""
    prev = rows.copy()
    base = rows["scenario"].str.split("/").str[0].to_numpy()
    holder = rows["true_holder"].to_numpy()
    genuine = np.isin(base, _GENUINE_SEARCHED) & (holder >= 0)
    invented = np.isin(base, _INVENTED_SEARCHED)
    u = rng.random(len(rows))
    own = genuine & (u < PREVIOUS_HAD_OWN_CCCD)
    recycled = (genuine & (u >= 1 - PREVIOUS_OTHER_HOLDER)) \
        | (invented & (u < PREVIOUS_INVENTED_RECYCLED))
    id_type, id_number = prev["id_type"].to_numpy().copy(), prev["id_number"].to_numpy().copy()
    id_type[own] = "CCCD"
    id_number[own] = cz.cid[holder[own]]
    others = rng.integers(0, cz.n, len(rows))
    before = others[recycled]
    id_type[recycled] = "CCCD"
    id_number[recycled] = cz.cid[before]
    prev["id_type"], prev["id_number"] = id_type, id_number
    name = prev["name_written"].to_numpy().copy()
    telco = prev["telco"].to_numpy()
    written = cz.full_name[before]
    name[recycled] = np.where(telco[recycled] == "mobifone",
                              [fold(n).upper() for n in written], written)
    prev["name_written"] = name
    dob, year_only = prev["dob"].to_numpy().copy(), prev["dob_year_only"].to_numpy().copy()
    dob[recycled], year_only[recycled] = cz.dob[before], cz.year_only[before]
    prev["dob"], prev["dob_year_only"] = dob, year_only
    gender = prev["gender"].to_numpy().copy()
    gender[recycled] = np.where(cz.female[before], "F", "M")
    prev["gender"] = gender
    return prev


# --- Entry points -------------------------------------------------------------------------
def generate_world(
    out_dir: Path,
    *,
    seed: int = DEFAULT_SEED,
    n_citizens: int = DEFAULT_N_CITIZENS,
    n_subscriptions: int = DEFAULT_N_SUBSCRIPTIONS,
    as_of: date = DEFAULT_AS_OF,
    noise: str = "samples",
    previous: bool = False,
) -> dict:
    """Build the world for ``seed`` and write its five files under ``out_dir``.

    Returns ``{"paths", "citizens", "rows", "rows_per_telco", "scenarios",
    "flags", "statuses"}`` (counts are plain ints; ``scenarios`` counts the
    planted label without the accepted-name-noise suffix). ``previous``: also write
    the exports as the previous run received them (``exports_previous/``, same file
    names; :func:`_previous_rows`), so a run before this one gives each number its
    history. The world itself does not depend on it.
    """
    if noise not in NOISE_LEVELS:
        raise ValueError(f"noise must be one of {NOISE_LEVELS}, not {noise!r}")
    out_dir = Path(out_dir)
    cz = _build_citizens(np.random.default_rng([seed, 1]), n_citizens, as_of)
    rng = np.random.default_rng([seed, 2])
    builder = _Builder(rng, cz, n_subscriptions, as_of, noise)
    builder.plant_all()
    rows = builder.frame()
    _assign_numbers(rng, rows, noise)
    _apply_names(rng, rows, cz, noise)

    # Seeded shuffled order per file; source_row = 1-based data row.
    order_parts, source_row = [], np.zeros(len(rows), dtype=np.int64)
    telco = rows["telco"].to_numpy()
    for t in TELCOS:
        idx = rng.permutation(np.flatnonzero(telco == t))
        source_row[idx] = np.arange(1, len(idx) + 1)
        order_parts.append(idx)
    rows["source_row"] = source_row
    rows = rows.iloc[np.concatenate(order_parts)].reset_index(drop=True)
    truth = _ground_truth(rows, cz, as_of)

    paths = {key: out_dir / rel for key, rel in FILES.items()}
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    _write_parquet(paths["registry"], _registry_table(cz))
    for t in ("viettel", "vinaphone"):
        _write_csv(paths[t], rows[rows["telco"] == t], t)
    _write_parquet(paths["mobifone"], _mobifone_table(rows[rows["telco"] == "mobifone"]))
    if previous:
        prev = _previous_rows(np.random.default_rng([seed, 3]), rows, cz)
        folder = out_dir / PREVIOUS_EXPORTS
        folder.mkdir(parents=True, exist_ok=True)
        for t in ("viettel", "vinaphone"):
            _write_csv(folder / Path(FILES[t]).name, prev[prev["telco"] == t], t)
        _write_parquet(folder / Path(FILES["mobifone"]).name,
                       _mobifone_table(prev[prev["telco"] == "mobifone"]))
        paths["previous_exports"] = folder
    truth = truth.sort_values(["telco", "source_row"], kind="stable").reset_index(drop=True)
    _write_parquet(paths["ground_truth"], pa.Table.from_pandas(
        truth, schema=pa.schema([
            ("telco", pa.string()), ("source_row", pa.int64()), ("scenario", pa.string()),
            ("document_citizen_id", pa.string()), ("true_holder_citizen_id", pa.string()),
            ("expected_status", pa.string()), ("expected_flags", pa.list_(pa.string())),
            ("expected_suggested_citizen_id", pa.string()),
        ]), preserve_index=False).replace_schema_metadata(None))

    flag_counts = pd.Series([f for fl in truth["expected_flags"] for f in fl]).value_counts()
    base_scenario = truth["scenario"].str.split("/name:").str[0]
    return {
        "paths": {k: str(v) for k, v in paths.items()},
        "citizens": int(cz.n),
        "rows": len(truth),
        "rows_per_telco": {t: int((truth["telco"] == t).sum()) for t in TELCOS},
        "scenarios": {str(k): int(v) for k, v in base_scenario.value_counts().sort_index().items()},
        "flags": {f: int(flag_counts.get(f, 0)) for f in FLAG_NAMES},
        "statuses": {str(k): int(v) for k, v in
                     truth["expected_status"].value_counts().sort_index().items()},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data_samples.generator",
        description="Write the seeded sample world (registry, telco exports, ground truth).")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="output folder (default: the data_samples package folder)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--citizens", type=int, default=None,
                        help=f"registry size (default {DEFAULT_N_CITIZENS}, or 0.625 x "
                             "subscriptions when that is larger)")
    parser.add_argument("--subscriptions", type=int, default=DEFAULT_N_SUBSCRIPTIONS)
    parser.add_argument("--as-of", type=date.fromisoformat, default=DEFAULT_AS_OF)
    parser.add_argument("--noise", choices=NOISE_LEVELS, default="samples")
    parser.add_argument("--previous", action="store_true",
                        help="also write the exports as the previous run received them")
    args = parser.parse_args(argv)
    citizens = args.citizens or max(DEFAULT_N_CITIZENS, round(args.subscriptions * 0.625))
    result = generate_world(args.out, seed=args.seed, n_citizens=citizens,
                            n_subscriptions=args.subscriptions, as_of=args.as_of,
                            noise=args.noise, previous=args.previous)
    json.dump(result, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
