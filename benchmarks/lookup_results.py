"""A synthetic run's results for the look-up benchmark, generated vectorised.

``write_results(run_dir, n)`` writes ``n`` subscriptions in the ``RunResults`` layout
(``results/shard=NNN/part-0.parquet``) with the real results schema (``RESULTS_SCHEMA``;
tests/test_lookup_index.py checks it against a real run's), in seconds per million rows
and bounded memory (one shard at a time): unique numbers, CCCDs over the 63 province
codes (about 1.3 subscriptions per citizen, across telcos), some CMNDs and passports,
names from common Vietnamese name parts, and statuses and flags in plausible shares.
It is not a world to match (benchmarks/world.py is); it is a results dataset to index.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.results.dataset import part_path

RESULTS_SCHEMA = pa.schema([
    ("telco", pa.string()), ("source_file", pa.string()), ("source_row", pa.int64()),
    ("msisdn", pa.string()), ("msisdn_raw", pa.string()), ("id_type", pa.string()),
    ("id_number", pa.string()), ("full_name", pa.string()),
    ("date_of_birth", pa.date32()), ("dob_precision", pa.string()), ("gender", pa.string()),
    ("activation_date", pa.date32()), ("subscription_type", pa.string()),
    ("line_status", pa.string()), ("point_of_sale", pa.string()), ("status", pa.string()),
    ("flags", pa.list_(pa.string())), ("matched_citizen_id", pa.string()),
    ("suggested_citizen_id", pa.string()), ("link_method", pa.string()),
    ("name_level", pa.int8()), ("name_score", pa.float64()), ("dob_level", pa.int8()),
    ("gender_level", pa.int8()), ("id_level", pa.int8()), ("doc_level", pa.int8()),
    ("history_level", pa.int8()), ("others_level", pa.int8()), ("name_frequency", pa.float64()),
    ("id_weight", pa.float64()), ("doc_weight", pa.float64()), ("name_weight", pa.float64()),
    ("dob_weight", pa.float64()), ("gender_weight", pa.float64()),
    ("history_weight", pa.float64()), ("others_weight", pa.float64()),
    ("match_weight", pa.float64()), ("match_probability", pa.float64()),
    ("match_band", pa.string()), ("holder_citizen_id", pa.string()),
    ("candidate_citizen_id", pa.string()), ("candidate_probability", pa.float64()),
    ("candidate_margin_bits", pa.float64()), ("candidate_count", pa.int32()),
    ("model_version", pa.string()), ("row_hash", pa.string()),
    ("review_decision", pa.string()), ("review_reviewer", pa.string()),
    ("review_decided_at", pa.string()),
])

# The 63 old province codes (Circular 07/2016), as three-digit strings.
PROVINCES = tuple(f"{c:03d}" for c in (
    1, 2, 4, 6, 8, 10, 11, 12, 14, 15, 17, 19, 20, 22, 24, 25, 26, 27, 30, 31, 33, 34, 35, 36,
    37, 38, 40, 42, 44, 45, 46, 48, 49, 51, 52, 54, 56, 58, 60, 62, 64, 66, 67, 68, 70, 72, 74,
    75, 77, 79, 80, 82, 83, 84, 86, 87, 89, 91, 92, 93, 94, 95, 96))
TELCOS = ("viettel", "vinaphone", "mobifone")
MOBILE_PREFIXES = ("086", "096", "097", "098", "032", "033", "034", "035", "036", "037", "038",
                   "039", "088", "091", "094", "081", "082", "083", "084", "085", "089", "090",
                   "093", "070", "076", "077", "078", "079")
SURNAMES = ("NGUYEN", "TRAN", "LE", "PHAM", "HUYNH", "HOANG", "PHAN", "VU", "VO", "DANG", "BUI",
            "DO", "HO", "NGO")
MIDDLES = ("VAN", "THI", "HUU", "DUC", "MINH", "NGOC", "THANH", "QUOC", "KIM")
GIVEN = ("AN", "BINH", "CUONG", "DUNG", "GIANG", "HA", "HAI", "HANH", "HOA", "HUNG", "HUONG",
         "KHANH", "LAN", "LINH", "LONG", "MAI", "NAM", "NGA", "PHUONG", "QUAN", "SON", "TAN",
         "THAO", "TRANG", "TUAN", "VINH", "YEN")
STATUSES = (("VERIFIED", 0.93), ("MISMATCH", 0.025), ("UNREGISTERED", 0.03),
            ("REVIEW", 0.01), ("FOREIGN_DOCUMENT", 0.005))
FLAG_SETS = {"VERIFIED": ([], ["LEGACY_ID"], ["EXCESS_SUBSCRIPTIONS"]),
             "MISMATCH": (["NAME_MISMATCH"], ["DOB_MISMATCH"], ["NAME_MISMATCH", "DOB_MISMATCH"]),
             "UNREGISTERED": (["ID_NOT_FOUND"], ["INVALID_ID"], ["NO_ID"]),
             "REVIEW": (["NEEDS_REVIEW"], ["GENDER_MISMATCH", "NEEDS_REVIEW"]),
             "FOREIGN_DOCUMENT": ([],)}


def _pick(rng: np.random.Generator, values: tuple, n: int) -> pa.Array:
    return pc.take(pa.array(values, pa.string()), pa.array(rng.integers(0, len(values), n)))


def _digits(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pc.cast(pa.array(values), pa.string()), width, "0")


def shard_table(rng: np.random.Generator, rows: np.ndarray, n_total: int) -> pa.Table:
    """The results rows ``rows`` (global row numbers) of an ``n_total``-row run."""
    n = len(rows)
    telco_code = rng.integers(0, len(TELCOS), n)
    telco = pc.take(pa.array(TELCOS), pa.array(telco_code))
    # Unique numbers on current mobile prefixes: a bijection of the row number onto
    # prefixes x 10**7 (the multiplier is coprime to it).
    space = len(MOBILE_PREFIXES) * 10**7
    slot = (rows * 7_919_317 + 12_345) % space
    msisdn = pc.binary_join_element_wise(
        pc.take(pa.array(MOBILE_PREFIXES), pa.array(slot // 10**7)),
        _digits(slot % 10**7, 7), "")
    # Citizens: ~1.3 subscriptions each; the CCCD is derived from the citizen number.
    citizen = rng.integers(0, max(1, int(n_total / 1.3)), n)
    province = pc.take(pa.array(PROVINCES), pa.array(citizen % len(PROVINCES)))
    year = 1950 + citizen % 55
    female = (citizen // 7) % 2
    century = np.where(year >= 2000, 2, 0) + female
    cccd = pc.binary_join_element_wise(
        province, _digits(century, 1), _digits(year % 100, 2), _digits(citizen % 10**6, 6), "")
    kind = rng.random(n)
    id_type = pa.array(np.where(kind < 0.93, "CCCD", np.where(kind < 0.995, "CMND",
                                                                 "PASSPORT")), pa.string())
    cmnd = _digits((citizen * 31 + 7) % 10**9, 9)
    passport = pc.binary_join_element_wise("C", _digits(citizen % 10**7, 7), "")
    id_number = pc.if_else(pc.equal(id_type, "CCCD"), cccd,
                           pc.if_else(pc.equal(id_type, "CMND"), cmnd, passport))
    name = pc.binary_join_element_wise(_pick(rng, SURNAMES, n), _pick(rng, MIDDLES, n),
                                       _pick(rng, GIVEN, n), " ")
    dob = pa.array((np.array(year - 1970, dtype="datetime64[Y]").astype("datetime64[D]")
                    + rng.integers(0, 365, n)).astype("datetime64[D]"), pa.date32())
    status_draw = rng.random(n)
    bounds = np.cumsum([p for _, p in STATUSES])
    status_code = np.searchsorted(bounds, status_draw * bounds[-1])
    status = pc.take(pa.array([s for s, _ in STATUSES]), pa.array(status_code))
    flag_lists, flag_code = [], np.zeros(n, dtype=np.int64)
    for code, (name_, _) in enumerate(STATUSES):
        where = status_code == code
        options = FLAG_SETS[name_]
        flag_code[where] = len(flag_lists) + rng.integers(0, len(options), int(where.sum()))
        flag_lists.extend(options)
    flags = pc.take(pa.array(flag_lists, pa.list_(pa.string())), pa.array(flag_code))
    verified = pc.equal(status, "VERIFIED")
    none = pa.nulls(n, pa.string())
    holder = pc.if_else(verified, cccd, none)
    weights = rng.normal(20, 5, n)
    return pa.table({
        "telco": telco,
        "source_file": pc.binary_join_element_wise(telco, "_subscribers.csv", ""),
        "source_row": pa.array(rows + 1, pa.int64()),
        "msisdn": msisdn, "msisdn_raw": pc.binary_join_element_wise("+84", pc.utf8_slice_codeunits(
            msisdn, 1), ""),
        "id_type": id_type, "id_number": id_number, "full_name": name,
        "date_of_birth": dob, "dob_precision": pa.repeat(pa.scalar("day"), n),
        "gender": pa.array(np.where(female == 1, "F", "M"), pa.string()),
        "activation_date": pa.array(np.datetime64("2015-01-01")
                                    + rng.integers(0, 4000, n).astype("timedelta64[D]"),
                                    pa.date32()),
        "subscription_type": pa.repeat(pa.scalar("PREPAID"), n),
        "line_status": pa.repeat(pa.scalar("ACTIVE"), n),
        "point_of_sale": pc.binary_join_element_wise("POS-", _digits(rng.integers(0, 9999, n), 4),
                                                     ""),
        "status": status, "flags": flags, "matched_citizen_id": holder,
        "suggested_citizen_id": none, "link_method": pc.if_else(verified, "CCCD", none),
        "name_level": pa.array(np.full(n, 7, np.int8)),
        "name_score": pa.array(np.full(n, 100.0)),
        "dob_level": pa.array(np.full(n, 5, np.int8)),
        "gender_level": pa.array(np.full(n, 2, np.int8)),
        "id_level": pa.array(np.full(n, 3, np.int8)),
        # The search's own evidence: only on rows explained by a search candidate.
        **{c: pa.nulls(n, pa.int8()) for c in ("doc_level", "history_level", "others_level")},
        **{c: pa.nulls(n, pa.float64())
           for c in ("doc_weight", "history_weight", "others_weight")},
        "name_frequency": pa.array(np.full(n, 0.0004)),
        "id_weight": pa.array(np.full(n, 5.8)), "name_weight": pa.array(weights / 3),
        "dob_weight": pa.array(weights / 2), "gender_weight": pa.array(np.full(n, 1.0)),
        "match_weight": pa.array(weights), "match_probability": pa.array(np.full(n, 0.9999)),
        "match_band": pc.if_else(verified, "VERIFY", "MISMATCH"),
        "holder_citizen_id": holder, "candidate_citizen_id": none,
        "candidate_probability": pa.nulls(n, pa.float64()),
        "candidate_margin_bits": pa.nulls(n, pa.float64()),
        "candidate_count": pa.array(np.zeros(n, np.int32)),
        "model_version": pa.repeat(pa.scalar("fs-2026.11-1"), n),
        "row_hash": _digits(rows * 2_654_435_761 % 10**18, 64),
        "review_decision": none, "review_reviewer": none, "review_decided_at": none,
    }, schema=RESULTS_SCHEMA)


def write_results(run_dir, n: int, shards: int = 16, seed: int = 20261128) -> None:  # type: ignore[no-untyped-def]
    """``n`` subscriptions in ``shards`` parts under ``run_dir/results/``."""
    rng = np.random.default_rng(seed)
    bounds = np.linspace(0, n, shards + 1).astype(np.int64)
    for shard in range(shards):
        rows = np.arange(bounds[shard], bounds[shard + 1], dtype=np.int64)
        table = shard_table(rng, rows, n).sort_by([("telco", "ascending"),
                                                   ("source_row", "ascending")])
        path = part_path(run_dir, shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, compression="zstd")
