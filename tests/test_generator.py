"""The seeded sample-world generator (data_samples/generator.py).

Besides layout and determinism checks, the ground truth is re-derived here
from the *written files* with a small independent reader (own number
canonicaliser, own ID rules), so a row whose file content does not carry
the scenario the truth claims is caught. Only NAME_MISMATCH comes from the
generator's knowledge (whose name was written); it is checked separately
with a tolerant name key.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import unicodedata
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

from data_samples import generator as gen

ROOT = Path(__file__).resolve().parents[1]
TELCO_YAML = ROOT / "config" / "telcos"
AS_OF = gen.DEFAULT_AS_OF

# Domain doc (/work/shared/domain/vietnam.md) §1 and §2, typed in independently.
PROVINCE_CODES = {
    "001", "002", "004", "006", "008", "010", "011", "012", "014", "015", "017", "019", "020",
    "022", "024", "025", "026", "027", "030", "031", "033", "034", "035", "036", "037", "038",
    "040", "042", "044", "045", "046", "048", "049", "051", "052", "054", "056", "058", "060",
    "062", "064", "066", "067", "068", "070", "072", "074", "075", "077", "079", "080", "082",
    "083", "084", "086", "087", "089", "091", "092", "093", "094", "095", "096",
}
MOBILE_PREFIXES = {
    "Viettel": {"086", "096", "097", "098", *(f"03{d}" for d in range(2, 10))},
    "VinaPhone": {"088", "091", "094", "081", "082", "083", "084", "085"},
    "MobiFone": {"089", "090", "093", "070", "076", "077", "078", "079"},
    "Vietnamobile": {"092", "052", "056", "058"},
    "Gmobile": {"099", "059"},
    "Itelecom": {"087"},
}
ALL_MOBILE = set().union(*MOBILE_PREFIXES.values())
OLD_TO_NEW = {
    "0120": "070", "0121": "079", "0122": "077", "0126": "076", "0128": "078",
    "0123": "083", "0124": "084", "0125": "085", "0127": "081", "0129": "082",
    "0162": "032", "0163": "033", "0164": "034", "0165": "035", "0166": "036",
    "0167": "037", "0168": "038", "0169": "039", "0186": "056", "0188": "058", "0199": "059",
}
FILES = {
    "viettel": "exports/viettel_subscribers.csv",
    "vinaphone": "exports/vinaphone_subscribers.csv",
    "mobifone": "exports/mobifone_subscribers.parquet",
}
ALL_FILES = ("registry/citizens.parquet", *FILES.values(), "ground_truth.parquet")


@pytest.fixture(scope="module")
def default_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("default_world")
    return out, gen.generate_world(out)


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("small_world")
    return out, gen.generate_world(out, seed=7, n_citizens=900, n_subscriptions=1500)


@pytest.fixture(scope="module")
def benchmark_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("benchmark_world")
    return out, gen.generate_world(out, seed=11, n_citizens=1500, n_subscriptions=2500,
                                   noise="benchmark")


# --- independent reader ------------------------------------------------------------------
def _mapping(telco: str) -> dict:
    return yaml.safe_load((TELCO_YAML / f"{telco}.yaml").read_text(encoding="utf-8"))


def _key(value: str) -> str:
    return unicodedata.normalize("NFC", value).strip().casefold()


def read_export(world: Path, telco: str) -> pd.DataFrame:
    """The export as canonical fields, using only the YAML mapping."""
    mapping = _mapping(telco)
    path = world / FILES[telco]
    if mapping["format"] == "csv":
        raw = pd.read_csv(path, sep=mapping["csv"]["delimiter"], dtype=str,
                          keep_default_na=False, encoding=mapping["csv"]["encoding"])
    else:
        raw = pq.read_table(path).to_pandas()
        for column in raw.columns:
            if column == mapping["columns"]["activation_date"]:
                raw[column] = [d.isoformat() for d in raw[column]]
            else:
                raw[column] = raw[column].astype(object).where(raw[column].notna(), "")
    out = pd.DataFrame({field: raw[column].astype(str).to_numpy()
                        for field, column in mapping["columns"].items()})
    for field, vocabulary in mapping["vocabularies"].items():
        lookup = {_key(k): v for k, v in vocabulary.items()}
        out[field] = [lookup[_key(v)] if v.strip() else "" for v in out[field]]
    out["full_name"] = [unicodedata.normalize("NFC", v) for v in out["full_name"]]

    def parse(value: str, formats: list[str]) -> tuple[date, bool]:
        for fmt in formats:
            try:
                return datetime.strptime(value, fmt).date(), fmt == "%Y"
            except ValueError:
                continue
        raise AssertionError(f"{telco}: date {value!r} in no format of {formats}")

    dob = [parse(v, mapping["date_formats"]["date_of_birth"]) for v in out["date_of_birth"]]
    out["dob"] = [d for d, _ in dob]
    out["dob_year_only"] = [y for _, y in dob]
    out["activation"] = [parse(v, mapping["date_formats"]["activation_date"])[0]
                         for v in out["activation_date"]]
    out["msisdn_canonical"] = [canonical_msisdn(v) for v in out["msisdn"]]
    out["telco"] = telco
    out["source_row"] = np.arange(1, len(out) + 1)
    return out


def canonical_msisdn(raw: str) -> str | None:
    s = re.sub(r"[\s.\-]", "", raw)
    if s.startswith("+84"):
        s = "0" + s[3:]
    elif s.startswith("84") and len(s) in (11, 12):
        s = "0" + s[2:]
    if not re.fullmatch(r"0\d+", s):
        return None
    if len(s) == 11 and s[:4] in OLD_TO_NEW:
        s = OLD_TO_NEW[s[:4]] + s[4:]
    return s if len(s) == 10 and s[:3] in ALL_MOBILE else None


def fold(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("Đ", "D").replace("đ", "d")
    return "".join(c for c in unicodedata.normalize("NFD", text)
                   if not unicodedata.combining(c)).lower()


def name_tokens(name: str, drop_classic: bool) -> Counter:
    """Tolerant key: folded, i/y merged, Huỳnh=Hoàng, Võ=Vũ, any order (Văn/Thị dropped)."""
    tokens = [{"huinh": "hoang", "vo": "vu"}.get(t, t)
              for t in fold(name).replace("y", "i").split()]
    return Counter(t for t in tokens if not (drop_classic and t in ("van", "thi")))


def same_person_name(a: str, b: str) -> bool:
    for drop in (False, True):  # "Vân" (given) also folds to "van"
        ta, tb = name_tokens(a, drop), name_tokens(b, drop)
        only_a, only_b = list((ta - tb).elements()), list((tb - ta).elements())
        if not only_a and not only_b:
            return True
        if len(only_a) == len(only_b) == 1 and Levenshtein.distance(only_a[0], only_b[0]) <= 1:
            return True
    return False


def load(world: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rows = pd.concat([read_export(world, t) for t in FILES], ignore_index=True)
    truth = pd.read_parquet(world / "ground_truth.parquet")
    registry = pd.read_parquet(world / "registry/citizens.parquet")
    merged = rows.merge(truth, on=["telco", "source_row"], how="outer", validate="1:1",
                        indicator=True)
    assert (merged["_merge"] == "both").all()
    return merged, truth, registry


def rederive_flags(rows: pd.DataFrame, registry: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every flag but NAME_MISMATCH, from file content and registry only."""
    number = rows["id_number"].str.strip()
    id_type = rows["id_type"]
    empty = number == ""
    passport = id_type == "PASSPORT"
    twelve = number.str.fullmatch(r"\d{12}")
    year = pd.Series(0, index=rows.index)
    year[twelve] = [1900 + int(s[3]) // 2 * 100 + int(s[4:6]) for s in number[twelve]]
    wf = ((id_type == "CCCD") & twelve & (year <= AS_OF.year)) | (
        (id_type == "CMND") & number.str.fullmatch(r"\d{9}|\d{12}")) | (
        passport & number.str.fullmatch(r"[A-Z]{1,2}\d{7,8}"))
    by_cid = {c: i for i, c in enumerate(registry["citizen_id"])}
    legacy = registry["legacy_id"].dropna()
    legacy_n = legacy.value_counts()
    by_legacy = {v: i for i, v in legacy.items() if legacy_n[v] == 1}
    doc = np.array([
        by_cid.get(n, -1) if t == "CCCD" and w else by_legacy.get(n, -1) if t == "CMND" and w
        else -1 for t, n, w in zip(id_type, number, wf, strict=True)])
    ambiguous = (id_type == "CMND") & wf & number.map(legacy_n).fillna(0).gt(1)
    linked = doc >= 0
    reg = registry.iloc[np.where(linked, doc, 0)].reset_index(drop=True)
    reg_year_only = reg["date_of_birth"].str.len() == 4
    reg_dob = [date(int(s), 1, 1) if len(s) == 4 else date.fromisoformat(s)
               for s in reg["date_of_birth"]]
    dob_agree = np.array([
        (a.year == b.year) if (ya or yb) else a == b
        for a, ya, b, yb in zip(rows["dob"], rows["dob_year_only"], reg_dob, reg_year_only,
                                strict=True)])
    death = reg["date_of_death"]
    deceased = linked & np.array([d is not None and not pd.isna(d) and a > d
                                  for a, d in zip(rows["activation"], death, strict=True)])
    birth = [r if link else (date(d.year, 1, 1) if yo else d) for r, link, d, yo in
             zip(reg_dob, linked, rows["dob"], rows["dob_year_only"], strict=True)]
    age = np.array([a.year - b.year - ((a.month, a.day) < (b.month, b.day))
                    for a, b in zip(rows["activation"], birth, strict=True)])

    active = (rows["line_status"] == "ACTIVE").to_numpy()
    holder = pd.Series(np.where(linked, "C:" + reg["citizen_id"], id_type + ":" + number))
    holder = holder.where(linked | wf.to_numpy())
    per_holder = holder.where(active).map(holder.where(active).value_counts()).fillna(0)

    day = pd.DataFrame({"pos": rows["point_of_sale"], "day": rows["activation"],
                        "doc": number.replace("", np.nan)})
    grouped = day.groupby(["pos", "day"])["doc"]
    counted = rows["msisdn_canonical"].notna() & (rows["line_status"] != "CANCELLED")
    numbers = rows["msisdn_canonical"].where(counted)
    not_found = ((id_type == "CCCD") | (id_type == "CMND")) & wf & ~linked & ~ambiguous
    mismatch = linked & ~dob_agree
    gender = linked & (rows["gender"] != "") & (rows["gender"] != reg["gender"])
    return {
        "NO_ID": (empty & ~passport).to_numpy(),
        "INVALID_ID": (~empty & ~passport & ~wf).to_numpy(),
        "ID_NOT_FOUND": not_found.to_numpy(),
        "LEGACY_ID": ((id_type == "CMND") & ~empty).to_numpy(),
        "DOB_MISMATCH": mismatch,
        "GENDER_MISMATCH": gender.to_numpy(),
        "DECEASED_HOLDER": deceased,
        "UNDERAGE_HOLDER": age < 14,
        "EXCESS_SUBSCRIPTIONS": active & (per_holder.to_numpy() > 9),
        "BULK_ACTIVATION": ((grouped.transform("size") >= 20)
                            & (grouped.transform("nunique") <= 3)).to_numpy(),
        "DUPLICATE_MSISDN": (counted & numbers.map(numbers.value_counts()).gt(1)).to_numpy(),
        "INVALID_MSISDN": rows["msisdn_canonical"].isna().to_numpy(),
        "_linked": linked,
        "_ambiguous": ambiguous.to_numpy(),
        "_doc": np.where(linked, reg["citizen_id"], None),
    }


# --- determinism ----------------------------------------------------------------------
def test_same_seed_gives_byte_identical_files(small_world: tuple[Path, dict],
                                              tmp_path: Path) -> None:
    world, result = small_world
    again = gen.generate_world(tmp_path, seed=7, n_citizens=900, n_subscriptions=1500)
    assert again["flags"] == result["flags"]
    for rel in ALL_FILES:
        assert (world / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_another_seed_gives_another_world(small_world: tuple[Path, dict],
                                          tmp_path: Path) -> None:
    world, _ = small_world
    gen.generate_world(tmp_path, seed=8, n_citizens=900, n_subscriptions=1500)
    for rel in ALL_FILES:
        assert (world / rel).read_bytes() != (tmp_path / rel).read_bytes(), rel


def test_identical_across_processes(small_world: tuple[Path, dict], tmp_path: Path) -> None:
    """A fresh interpreter (other hash seed) writes the same bytes."""
    world, _ = small_world
    code = ("import sys; from pathlib import Path; from data_samples.generator import "
            "generate_world; generate_world(Path(sys.argv[1]), seed=7, n_citizens=900, "
            "n_subscriptions=1500)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONHASHSEED": "12345"})
    for rel in ALL_FILES:
        assert (world / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_committed_samples_are_up_to_date(default_world: tuple[Path, dict]) -> None:
    committed = ROOT / "data_samples"
    if not (committed / "ground_truth.parquet").exists():
        pytest.skip("samples not generated yet")
    world, _ = default_world
    for rel in ALL_FILES:
        assert (committed / rel).read_bytes() == (world / rel).read_bytes(), (
            f"{rel} differs: rerun `python -m data_samples.generator --out data_samples`")


def test_generator_does_not_use_the_code_under_test() -> None:
    source = (ROOT / "data_samples" / "generator.py").read_text(encoding="utf-8")
    assert not re.search(r"^\s*(from|import)\s+(matching|pipelines)\b", source, re.M)
    code = ("import sys, data_samples.generator; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('matching', 'pipelines')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                         capture_output=True, text=True).stdout.strip()
    assert out == "[]"


# --- registry -----------------------------------------------------------------------------
def test_registry_schema_and_cccd_structure(default_world: tuple[Path, dict]) -> None:
    world, _ = default_world
    table = pq.read_table(world / "registry/citizens.parquet")
    assert table.column_names == ["citizen_id", "legacy_id", "full_name", "date_of_birth",
                                  "gender", "date_of_death"]
    assert table.schema.field("date_of_death").type == pa.date32()
    reg = table.to_pandas()
    assert reg["citizen_id"].is_unique
    assert reg["citizen_id"].str.fullmatch(r"\d{12}").all()
    assert set(reg["citizen_id"].str[:3]) <= PROVINCE_CODES
    year = reg["date_of_birth"].str[:4].astype(int)
    century_sex = reg["citizen_id"].str[3].astype(int)
    expected = (year // 100 - 19) * 2 + (reg["gender"] == "F").astype(int)
    assert (century_sex == expected).all()
    assert (reg["citizen_id"].str[4:6].astype(int) == year % 100).all()
    assert reg["date_of_birth"].str.fullmatch(r"\d{4}(-\d{2}-\d{2})?").all()
    year_only = (reg["date_of_birth"].str.len() == 4).mean()
    assert 0.005 < year_only < 0.04
    assert set(reg["gender"]) == {"M", "F"}
    assert all(unicodedata.is_normalized("NFC", n) for n in reg["full_name"])
    assert (reg["full_name"] == reg["full_name"].str.title()).mean() > 0.99
    deceased = reg["date_of_death"].notna()
    assert 0.003 < deceased.mean() < 0.05
    dob = pd.to_datetime(reg["date_of_birth"], format="mixed").dt.date
    assert (reg.loc[deceased, "date_of_death"] > dob[deceased]).all()


def test_legacy_ids_and_the_planted_collision(default_world: tuple[Path, dict]) -> None:
    world, _ = default_world
    reg = pd.read_parquet(world / "registry/citizens.parquet")
    year = reg["date_of_birth"].str[:4].astype(int)
    has = reg["legacy_id"].notna()
    assert reg.loc[has, "legacy_id"].str.fullmatch(r"\d{9}").all()
    assert (year[has] < 2000).all()
    assert 0.5 < has[year < 2000].mean() < 0.7
    shared = reg[has & reg["legacy_id"].duplicated(keep=False)]
    assert len(shared) >= 4
    assert (shared.groupby("legacy_id").size() == 2).all()
    assert shared["legacy_id"].astype(int).between(271450001, 271500000).all()
    assert set(shared["citizen_id"].str[:3]) <= {"075", "077"}  # Đồng Nai / Bà Rịa–Vũng Tàu
    others = reg.loc[has & ~reg["legacy_id"].duplicated(keep=False), "legacy_id"].astype(int)
    assert not others.between(271450001, 271500000).any()


def test_common_name_collisions_are_planted(default_world: tuple[Path, dict]) -> None:
    world, _ = default_world
    reg = pd.read_parquet(world / "registry/citizens.parquet")
    groups = reg.groupby(["full_name", "date_of_birth"])["citizen_id"].nunique()
    assert (groups >= 2).sum() >= 4


def test_surname_shares_follow_the_domain_doc() -> None:
    reg = gen.build_registry(20_000, seed=3).to_pandas()
    first = reg["full_name"].str.split().str[0]
    share = first.value_counts(normalize=True)

    def s(*names: str) -> float:
        return float(sum(share.get(n, 0.0) for n in names))

    assert abs(s("Nguyễn") - 0.384) < 0.02
    assert abs(s("Trần") - 0.11) < 0.012
    assert abs(s("Lê") - 0.095) < 0.012
    assert abs(s("Phạm") - 0.071) < 0.01
    assert abs(s("Hoàng", "Huỳnh") - 0.051) < 0.008
    assert abs(s("Phan") - 0.045) < 0.008
    assert abs(s("Vũ", "Võ") - 0.039) < 0.007
    assert s("Hoàng") > 0.01 and s("Huỳnh") > 0.01  # both regional spellings
    top14 = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng",
             "Bùi", "Đỗ", "Hồ", "Ngô", "Dương", "Lý"]
    assert 0.86 < s(*top14) < 0.93
    words = reg["full_name"].str.split()
    middle = words.str[1:-1]
    male = reg["gender"] == "M"
    assert not middle[male].map(lambda m: "Thị" in m).any()
    assert not middle[~male].map(lambda m: "Văn" in m).any()
    assert 0.25 < middle[male].map(lambda m: "Văn" in m).mean() < 0.6
    assert reg["full_name"].str.split().str[-1][male].nunique() >= 50
    assert reg["full_name"].str.split().str[-1][~male].nunique() >= 50


# --- layouts ----------------------------------------------------------------------------
@pytest.mark.parametrize("telco", list(FILES))
def test_layout_matches_yaml_mapping(default_world: tuple[Path, dict], telco: str) -> None:
    world, _ = default_world
    mapping = _mapping(telco)
    path = world / FILES[telco]
    assert path.suffix == f".{mapping['format']}"
    assert mapping["source"].split("#")[0].strip().endswith(f"data_samples/{FILES[telco]}")
    assert gen.LAYOUT_COLUMNS[telco] == tuple(mapping["columns"].values())
    if mapping["format"] == "csv":
        header = path.read_text(encoding="utf-8").split("\n", 1)[0]
        assert header.split(mapping["csv"]["delimiter"]) == list(mapping["columns"].values())
    else:
        schema = pq.read_schema(path)
        assert schema.names == list(mapping["columns"].values())
        assert schema.field(mapping["columns"]["activation_date"]).type == pa.date32()
    for field, vocabulary in gen.LAYOUT_VOCAB[telco].items():
        assert sorted(vocabulary.values()) == sorted(mapping["vocabularies"][field])
    rows = read_export(world, telco)  # raises on an unknown code or date format
    assert len(rows) > 0


def test_viettel_layout(default_world: tuple[Path, dict]) -> None:
    world, _ = default_world
    rows = pd.read_csv(world / FILES["viettel"], dtype=str, keep_default_na=False)
    numbers = rows["SO_THUE_BAO"]
    assert numbers.str.fullmatch(r"0\d{9}").mean() > 0.99
    assert rows["NGAY_KICH_HOAT"].str.fullmatch(r"\d{2}/\d{2}/\d{4}").all()
    assert rows["NGAY_SINH"].str.fullmatch(r"\d{2}/\d{2}/\d{4}|\d{4}").all()
    names = rows["HO_TEN"]
    assert (names == names.str.upper()).mean() > 0.2
    assert (names == names.str.title()).mean() > 0.5
    assert names.map(lambda n: unicodedata.is_normalized("NFC", n)).mean() > 0.95
    assert set(rows["LOAI_GIAY_TO"]) >= {"CCCD", "CMND", "HO_CHIEU"}


def test_vinaphone_layout_is_nfd_with_legacy_numbers(default_world: tuple[Path, dict]) -> None:
    world, _ = default_world
    data = (world / FILES["vinaphone"]).read_bytes()
    text = data.decode("utf-8")
    assert unicodedata.is_normalized("NFD", text)
    assert unicodedata.normalize("NFC", text).encode("utf-8") != data  # really decomposed
    assert "Nguye\u0302\u0303n" in text and "Nguyễn" not in text
    rows = pd.read_csv(world / FILES["vinaphone"], sep=";", dtype=str, keep_default_na=False)
    numbers = rows["so_thue_bao"]
    legacy = numbers.str.fullmatch(r"841\d{9}")
    assert 0.03 < legacy.mean() < 0.07
    assert all("0" + n[2:5] in OLD_TO_NEW for n in numbers[legacy])
    assert (numbers.str.fullmatch(r"84\d{9}") | legacy).mean() > 0.98
    assert rows["ngay_kich_hoat"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    year_only = rows["ngay_sinh"].str.fullmatch(r"\d{4}")
    assert 0.02 < year_only.mean() < 0.1


def test_mobifone_layout_is_upper_ascii(default_world: tuple[Path, dict]) -> None:
    world, _ = default_world
    table = pq.read_table(world / FILES["mobifone"])
    assert all(table.schema.field(c).type == pa.string() for c in table.column_names
               if c != "activated_on")
    rows = table.to_pandas()
    assert rows["subscriber_name"].str.fullmatch(r"[A-Z ]+").all()
    assert not rows["subscriber_name"].str.contains("Đ").any()
    assert rows["msisdn"].str.fullmatch(r"\+84\d{9}").mean() > 0.98
    assert rows["birth_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}|\d{4}").all()


def test_dates_and_shares_are_realistic(default_world: tuple[Path, dict]) -> None:
    world, _ = default_world
    merged, _, _ = load(world)
    last = date.fromordinal(AS_OF.toordinal() - 30)
    assert merged["activation"].between(date(2015, 1, 1), last).all()
    share = merged["telco"].value_counts(normalize=True)
    assert abs(share["viettel"] - 0.45) < 0.04
    assert abs(share["vinaphone"] - 0.30) < 0.04
    assert abs(share["mobifone"] - 0.25) < 0.04
    assert 0.8 < (merged["subscription_type"] == "PREPAID").mean() < 0.9
    assert 0.8 < (merged["line_status"] == "ACTIVE").mean() < 0.95
    valid = merged[merged["msisdn_canonical"].notna()]
    own = {"viettel": "Viettel", "vinaphone": "VinaPhone", "mobifone": "MobiFone"}
    home = [n[:3] in MOBILE_PREFIXES[own[t]] for t, n in
            zip(valid["telco"], valid["msisdn_canonical"], strict=True)]
    assert 0.85 < np.mean(home) < 0.95  # ~10% ported numbers
    # Every number the truth calls valid is a mobile number for libphonenumber too.
    for n in valid["msisdn_canonical"]:
        parsed = phonenumbers.parse(n, "VN")
        assert phonenumbers.is_valid_number(parsed), n
        assert phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.MOBILE, n
    per_day = merged.groupby(["point_of_sale", "activation"]).size()
    assert (per_day <= 2).mean() > 0.99


# --- ground truth ---------------------------------------------------------------------------
def test_truth_covers_every_row_once(default_world: tuple[Path, dict]) -> None:
    world, result = default_world
    truth = pd.read_parquet(world / "ground_truth.parquet")
    assert list(truth.columns) == ["telco", "source_row", "scenario", "document_citizen_id",
                                   "true_holder_citizen_id", "expected_status",
                                   "expected_flags", "expected_suggested_citizen_id"]
    assert pq.read_schema(world / "ground_truth.parquet").field(
        "expected_flags").type == pa.list_(pa.string())
    for telco in FILES:
        n = len(read_export(world, telco))
        rows = truth.loc[truth["telco"] == telco, "source_row"]
        assert sorted(rows) == list(range(1, n + 1))
    assert len(truth) == result["rows"] == 4000
    assert set(truth["expected_status"]) == {"VERIFIED", "MISMATCH", "UNREGISTERED", "REVIEW",
                                             "FOREIGN_DOCUMENT"}
    assert all(list(f) == sorted(f) for f in truth["expected_flags"])
    assert list(gen.FLAG_NAMES) == sorted(gen.FLAG_NAMES)


def test_every_flag_is_planted_often_enough(default_world: tuple[Path, dict]) -> None:
    _, result = default_world
    for flag, count in result["flags"].items():
        assert count >= 15, (flag, count)
    statuses = result["statuses"]
    assert min(statuses.values()) >= 15
    assert 0.75 < statuses["VERIFIED"] / result["rows"] < 0.97


@pytest.mark.parametrize("world_name", ["default_world", "benchmark_world"])
def test_truth_matches_the_written_files(request: pytest.FixtureRequest,
                                         world_name: str) -> None:
    world, _ = request.getfixturevalue(world_name)
    merged, _, registry = load(world)
    derived = rederive_flags(merged, registry)
    expected = merged["expected_flags"].map(set)
    for flag, mask in derived.items():
        if flag.startswith("_"):
            continue
        truth_mask = expected.map(lambda f, flag=flag: flag in f).to_numpy()
        diff = np.flatnonzero(truth_mask != mask)
        assert len(diff) == 0, (flag, merged.iloc[diff[:5]][["telco", "source_row",
                                                              "scenario"]].to_dict("records"))
    doc = pd.Series(derived["_doc"]).where(derived["_linked"], None)
    assert (doc.fillna("") == merged["document_citizen_id"].fillna("")).all()
    review = merged["expected_status"] == "REVIEW"
    assert (review == (derived["_ambiguous"] | (
        expected.map(lambda f: "GENDER_MISMATCH" in f) & (merged["expected_status"]
                                                          != "MISMATCH")))).all()


@pytest.mark.parametrize("world_name", ["default_world", "benchmark_world"])
def test_names_agree_or_clearly_differ(request: pytest.FixtureRequest, world_name: str) -> None:
    world, _ = request.getfixturevalue(world_name)
    merged, _, registry = load(world)
    names = registry.set_index("citizen_id")["full_name"]
    linked = merged[merged["document_citizen_id"].notna()]
    registry_name = linked["document_citizen_id"].map(names)
    mismatch = linked["expected_flags"].map(lambda f: "NAME_MISMATCH" in f)
    for written, reg, mm in zip(linked["full_name"], registry_name, mismatch, strict=True):
        if mm:
            assert not same_person_name(written, reg), (written, reg)
            assert fuzz.token_set_ratio(fold(written), fold(reg)) < 75, (written, reg)
        else:
            assert same_person_name(written, reg), (written, reg)
    # The wrong-person rows name a registry citizen who is not the document's.
    wrong = merged[merged["scenario"].str.startswith("wrong_person")]
    assert (wrong["true_holder_citizen_id"] != wrong["document_citizen_id"]).all()
    assert wrong["true_holder_citizen_id"].notna().all()


def test_accepted_name_noise_is_present(default_world: tuple[Path, dict]) -> None:
    world, _ = default_world
    truth = pd.read_parquet(world / "ground_truth.parquet")
    noise = truth["scenario"].str.extract(r"/name:(\w+)$")[0].value_counts()
    for kind in ("no_diacritics", "upper", "nfd", "extra_spaces", "drop_van_thi",
                 "order_swap", "surname_variant", "typo", "tone_placement"):
        assert noise.get(kind, 0) >= 20, (kind, noise.get(kind, 0))
    assert noise.sum() / len(truth) < 0.3


def test_scenarios_land_where_planted(default_world: tuple[Path, dict]) -> None:
    world, _ = default_world
    merged, _, registry = load(world)
    flags = merged["expected_flags"].map(set)
    scenario = merged["scenario"].str.split("/name:").str[0]

    def rows(prefix: str) -> pd.DataFrame:
        return merged[scenario.str.startswith(prefix)]

    # Near misses: one edit from the genuine holder's CCCD, who is suggested.
    near = rows("near_miss_cccd")
    assert len(near) >= 15
    assert (near["expected_suggested_citizen_id"] == near["true_holder_citizen_id"]).all()
    for written, real in zip(near["id_number"], near["true_holder_citizen_id"], strict=True):
        diff = [i for i in range(12) if written[i] != real[i]]
        swap = len(diff) == 2 and diff[1] == diff[0] + 1 and written[diff[0]] == real[diff[1]]
        assert len(diff) == 1 or swap
    suggested = merged["expected_suggested_citizen_id"].notna()
    assert (suggested == scenario.eq("near_miss_cccd")).all()
    # Passports: their own status, no identity flags.
    passport = merged["id_type"] == "PASSPORT"
    assert (merged.loc[passport, "expected_status"] == "FOREIGN_DOCUMENT").all()
    identity = {"NO_ID", "INVALID_ID", "ID_NOT_FOUND", "NAME_MISMATCH", "DOB_MISMATCH",
                "GENDER_MISMATCH", "LEGACY_ID"}
    assert not flags[passport].map(lambda f: bool(f & identity)).any()
    # Excess: planted holders over the cap, at-limit holders exactly at it, nobody else.
    excess = merged[flags.map(lambda f: "EXCESS_SUBSCRIPTIONS" in f)]
    assert scenario[excess.index].map(
        lambda s: s in ("excess_holder", "dealer_day_below_min") or s.startswith("bulk/")).all()
    at_limit = rows("at_limit_holder")
    active = at_limit[at_limit["line_status"] == "ACTIVE"]
    assert (active.groupby("true_holder_citizen_id").size() == 9).all()
    # Bulk: exactly the planted dealer-days; the busy legitimate ones are not flagged.
    bulk = merged[flags.map(lambda f: "BULK_ACTIVATION" in f)]
    assert scenario[bulk.index].str.startswith("bulk/").all()
    assert len(bulk.groupby(["point_of_sale", "activation"])) == 3
    busy = rows("busy_dealer_day")
    assert len(busy) == 50 and busy["id_number"].nunique() == 50
    assert not flags[busy.index].map(lambda f: "BULK_ACTIVATION" in f).any()
    # Duplicates: only the planted pairs; a number cancelled at one telco is not one.
    dup = merged[flags.map(lambda f: "DUPLICATE_MSISDN" in f)]
    assert (scenario[dup.index] == "duplicate_msisdn").all()
    assert dup["telco"].nunique() >= 2
    ported = rows("ported_cancelled")
    assert ported.groupby("msisdn_canonical")["telco"].nunique().eq(2).all()
    # Deceased: activation after the registry's date of death.
    deceased = merged[flags.map(lambda f: "DECEASED_HOLDER" in f)]
    assert len(deceased) >= 15
    # Ambiguous CMND rows go to review and carry LEGACY_ID.
    amb = rows("ambiguous_cmnd")
    assert (amb["expected_status"] == "REVIEW").all()
    assert amb["document_citizen_id"].isna().all()
    assert amb["id_number"].isin(registry["legacy_id"][registry["legacy_id"].duplicated()]).all()


# --- API and CLI ------------------------------------------------------------------------------
def test_result_dict_and_cli(tmp_path: Path) -> None:
    result = gen.generate_world(tmp_path / "api", seed=5, n_citizens=600, n_subscriptions=1000)
    assert set(result) >= {"paths", "rows", "scenarios", "flags", "statuses"}
    assert result["rows"] == 1000 == sum(result["scenarios"].values())
    assert all(Path(p).exists() for p in result["paths"].values())
    assert gen.main(["--out", str(tmp_path / "cli"), "--seed", "5", "--citizens", "600",
                     "--subscriptions", "1000"]) == 0
    for rel in ALL_FILES:
        assert (tmp_path / "api" / rel).read_bytes() == (tmp_path / "cli" / rel).read_bytes()


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="noise"):
        gen.generate_world(tmp_path, noise="loud")
    with pytest.raises(ValueError, match="n_citizens"):
        gen.generate_world(tmp_path, n_citizens=300, n_subscriptions=20_000)


@pytest.mark.slow
def test_100k_subscriptions_in_reasonable_time(tmp_path: Path) -> None:
    start = time.perf_counter()
    result = gen.generate_world(tmp_path, n_citizens=62_500, n_subscriptions=100_000)
    elapsed = time.perf_counter() - start
    assert result["rows"] == 100_000
    assert elapsed < 30, f"{elapsed:.1f} s"
