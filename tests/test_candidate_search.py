"""Candidate search when the document does not lead to the holder (NO_ID, INVALID_ID,
ID_NOT_FOUND): blocking keys, the model's score, and "only when clearly best"."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from matching.candidates import blocking_keys, plan_candidates, registry_parts, repaired_number
from pipelines.config import FlagSettings, MatchingSettings
from pipelines.intake.normalise import NORMALISED_SCHEMA
from pipelines.reconcile.flag import flag
from pipelines.reconcile.match import match
from pipelines.reconcile.search import _cccd_year_sex

REGISTRY = [
    # citizen_id, legacy_id, name, dob, gender
    ("079084000123", None, "Nguyễn Văn Bình", "1984-05-06", "M"),
    ("001190004567", "012345678", "Trần Thị Hồng Nhung", "1990-02-14", "F"),
    ("048075001111", None, "Lê Văn Tám", "1975-09-30", "M"),
    # Two different citizens with the same name and date of birth.
    ("031188002222", None, "Phạm Thị Lan", "1988-12-01", "F"),
    ("036188003333", None, "Phạm Thị Lan", "1988-12-01", "F"),
    ("092301004444", None, "Huỳnh Ngọc Hân", "2001-07-21", "F"),
]


def _registry() -> pa.Table:
    return pa.table({
        "citizen_id": [r[0] for r in REGISTRY],
        "legacy_id": pa.array([r[1] for r in REGISTRY], pa.string()),
        "full_name": [r[2] for r in REGISTRY],
        "date_of_birth": pa.array([date.fromisoformat(r[3]) for r in REGISTRY], pa.date32()),
        "dob_precision": ["day"] * len(REGISTRY),
        "gender": [r[4] for r in REGISTRY],
        "date_of_death": pa.nulls(len(REGISTRY), pa.date32()),
    })


def _subscriptions(rows: list[dict]) -> pa.Table:
    base = {"telco": "viettel", "source_file": "x.csv", "msisdn": "0912345678",
            "msisdn_raw": "0912345678", "msisdn_issue": None, "msisdn_legacy_converted": False,
            "id_issue": None, "activation_date": date(2024, 1, 2),
            "subscription_type": "PREPAID", "line_status": "ACTIVE", "point_of_sale": "VT-1",
            "dob_precision": "day", "id_type": "CCCD", "id_valid": True}
    out = []
    for i, row in enumerate(rows):
        record = {**base, "source_row": i + 1, **row}
        if isinstance(record["date_of_birth"], str):
            record["date_of_birth"] = date.fromisoformat(record["date_of_birth"])
        record["msisdn"] = f"09123456{i:02d}"
        out.append(record)
    return pa.Table.from_pylist(out, schema=NORMALISED_SCHEMA)


@pytest.fixture(scope="module")
def results() -> pa.Table:
    subs = _subscriptions([
        # 0 NO_ID, holder findable by DOB + name (written without diacritics)
        {"full_name": "NGUYEN VAN BINH", "date_of_birth": "1984-05-06", "gender": "M",
         "id_type": None, "id_number": None, "id_valid": None},
        # 1 mistyped CCCD: two adjacent digits swapped
        {"full_name": "Trần Thị Hồng Nhung", "date_of_birth": "1990-02-14", "gender": "F",
         "id_number": "001190005467"},
        # 2 INVALID: a letter O for a zero; name order swapped
        {"full_name": "Văn Tám Lê", "date_of_birth": "1975-09-30", "gender": "M",
         "id_number": "O48075001111", "id_valid": False},
        # 3 NO_ID for one of two identical-name, identical-DOB citizens: not clear
        {"full_name": "Phạm Thị Lan", "date_of_birth": "1988-12-01", "gender": "F",
         "id_type": None, "id_number": None, "id_valid": None},
        # 4 nobody: made-up person with a made-up CCCD
        {"full_name": "Đỗ Quang Vinh", "date_of_birth": "1979-04-04", "gender": "M",
         "id_number": "040079987654"},
        # 5 malformed CCCD (11 digits that are not a lost zero) of a real citizen with a
        #   year-only DOB: found through the century/sex and year digits + given name
        {"full_name": "Huỳnh Ngọc Hân", "date_of_birth": "2001-01-01", "gender": "F",
         "dob_precision": "year", "id_number": "09230100444", "id_valid": False},
    ])
    matched = match(subs, _registry(), MatchingSettings())
    return flag(matched, FlagSettings())


def test_no_id_finds_the_holder_but_stays_unregistered(results: pa.Table) -> None:
    row = results.slice(0, 1).to_pylist()[0]
    assert row["candidate_citizen_id"] == "079084000123"
    assert row["suggested_citizen_id"] is None  # no number to correct
    assert row["status"] == "UNREGISTERED" and "NO_ID" in row["flags"]
    assert row["holder_citizen_id"] is None and row["matched_citizen_id"] is None


def test_mistyped_cccd_is_suggested(results: pa.Table) -> None:
    row = results.slice(1, 1).to_pylist()[0]
    assert row["suggested_citizen_id"] == "001190004567"
    assert row["candidate_citizen_id"] == "001190004567"
    assert row["id_level"] == 1  # ONE_EDIT
    assert row["status"] == "UNREGISTERED" and "ID_NOT_FOUND" in row["flags"]


def test_lookalike_letters_lead_to_a_candidate_not_a_suggestion(results: pa.Table) -> None:
    row = results.slice(2, 1).to_pylist()[0]
    assert row["candidate_citizen_id"] == "048075001111"
    assert row["suggested_citizen_id"] is None
    assert "INVALID_ID" in row["flags"]


def test_two_equally_good_candidates_give_none(results: pa.Table) -> None:
    row = results.slice(3, 1).to_pylist()[0]
    assert row["candidate_count"] == 2
    assert row["candidate_citizen_id"] is None
    assert row["candidate_margin_bits"] == pytest.approx(0.0)


def test_nobody_is_suggested_for_a_made_up_person(results: pa.Table) -> None:
    row = results.slice(4, 1).to_pylist()[0]
    assert row["candidate_citizen_id"] is None and row["suggested_citizen_id"] is None


def test_malformed_cccd_digits_block_by_birth_year_and_sex(results: pa.Table) -> None:

    # A typo in the family name, a year-only birth date, 11 digits: only the century/sex
    # and year digits of the number (2001, female) plus the given name reach her.
    number = pa.array(["09230100444"])
    year, sex = _cccd_year_sex(number)
    assert year.to_pylist() == [2001] and sex.to_pylist() == ["F"]
    registry = _registry()
    pairs = plan_candidates(
        full_name=pa.array(["Huỳnk Ngọc Hân"]), date_of_birth=pa.array([date(2001, 1, 1)]),
        dob_precision=pa.array(["year"]), id_number=number, id_birth_year=year, id_sex=sex,
        registry_blocking=_keys(registry), registry_citizen_id=registry["citizen_id"],
        near_miss=np.array([False])).all_pairs()
    assert pairs.citizen.tolist() == [5] and pairs.id_level.tolist() == [0]
    row = results.slice(5, 1).to_pylist()[0]
    assert row["status"] == "UNREGISTERED" and row["candidate_count"] >= 1


def _keys(registry: pa.Table):  # type: ignore[no-untyped-def]
    return registry_parts(registry["full_name"], registry["date_of_birth"],
                          registry["dob_precision"], registry["gender"])


def test_never_verified_without_a_document_link(results: pa.Table) -> None:
    assert "VERIFIED" not in results["status"].to_pylist()


def test_blocking_keys_families() -> None:
    keys = blocking_keys(pa.array(["Nguyễn Văn Bình"]), pa.array([date(1984, 5, 6)]),
                         pa.array(["day"]), pa.array([1984], pa.int32()), pa.array(["M"]))
    assert set(keys["key"].to_pylist()) == {
        "dg|1984-05-06|binh", "ds|1984-05-06|nguyen", "dc|1984-05-06|binh nguyen",
        "yc|1984|binh nguyen", "ysg|1984|M|binh"}
    year_only = blocking_keys(pa.array(["Lê Tám"]), pa.array([date(1975, 1, 1)]),
                              pa.array(["year"]), pa.nulls(1, pa.int32()), pa.nulls(1, pa.string()))
    assert year_only["key"].to_pylist() == ["yc|1975|le tam"]  # no day-precision keys


def test_large_blocks_are_skipped() -> None:
    registry = pa.table({"citizen": np.arange(5, dtype=np.int64),
                         "key": ["dg|1990-01-01|an"] * 5})
    common = dict(full_name=pa.array(["Nguyễn An"]), date_of_birth=pa.array([date(1990, 1, 1)]),
                  dob_precision=pa.array(["day"]), id_number=pa.nulls(1, pa.string()),
                  id_birth_year=pa.nulls(1, pa.int32()), id_sex=pa.nulls(1, pa.string()),
                  registry_blocking=registry, registry_citizen_id=pa.array(["x"]),
                  near_miss=np.array([False]))
    assert len(plan_candidates(**common, max_block=5).all_pairs().row) == 5
    assert len(plan_candidates(**common, max_block=4).all_pairs().row) == 0


def test_repaired_number() -> None:
    assert repaired_number(pa.array(["O79O84OOO1I3", None])).to_pylist() == \
        ["079084000113", None]
    assert pc.all(pc.is_valid(repaired_number(pa.array(["123"])))).as_py()


def test_integer_keys_find_the_pairs_the_string_keys_find() -> None:
    """The registry's blocking parts (integer keys) and the string keys of
    ``blocking_keys`` propose exactly the same pairs, large blocks skipped alike."""

    rng = np.random.default_rng(5)
    names = ["Nguyễn Văn An", "NGUYEN VAN AN", "Trần Thị Bích", "Huỳnh Mai", "Hoàng Thị Mai",
             "Lê Tám", "An Nguyễn", "Võ Văn Kiệt", None]
    days = [date(1980, 1, 2), date(1980, 2, 1), date(1990, 5, 6), date(2001, 1, 1), None]

    def column(values: list, k: int) -> list:
        return [values[i] for i in rng.integers(0, len(values), k)]

    k_reg, k_sub = 400, 120
    dob = pa.array(column(days, k_reg), pa.date32())
    registry = pa.table({
        "citizen_id": [f"0790{i:08d}" for i in range(k_reg)],
        "full_name": pa.array(column(names, k_reg), pa.string()),
        "date_of_birth": dob, "dob_precision": column(["day", "day", "year", None], k_reg),
        "gender": pa.array(column(["M", "F", None], k_reg), pa.string()),
    })
    numbers = pa.array(column(["079180001234", "07918000123X", "001301", None, "abc"], k_sub),
                       pa.string())
    year, sex = _cccd_year_sex(numbers)
    common = dict(full_name=pa.array(column(names, k_sub), pa.string()),
                  date_of_birth=pa.array(column(days, k_sub), pa.date32()),
                  dob_precision=pa.array(column(["day", "year", None], k_sub), pa.string()),
                  id_number=numbers, id_birth_year=year, id_sex=sex,
                  registry_citizen_id=registry["citizen_id"], near_miss=np.zeros(k_sub, bool))
    strings = blocking_keys(registry["full_name"], registry["date_of_birth"],
                            registry["dob_precision"], pc.year(registry["date_of_birth"]),
                            registry["gender"]).rename_columns(["citizen", "key"])
    for max_block in (200, 15, 1):
        by_string = plan_candidates(**common, registry_blocking=strings,
                                    max_block=max_block).all_pairs()
        by_integer = plan_candidates(**common, registry_blocking=_keys(registry),
                                     max_block=max_block).all_pairs()
        assert len(by_string.row) > 0 or max_block == 1
        for field in ("row", "citizen", "id_level"):
            assert getattr(by_string, field).tolist() == getattr(by_integer, field).tolist()


def test_the_search_in_chunks_finds_what_it_finds_at_once(monkeypatch: pytest.MonkeyPatch,
                                                          results: pa.Table) -> None:
    """Rows are searched a bounded number of candidate pairs at a time: a chunk of one
    row each changes nothing."""
    import pipelines.reconcile.search as match_module

    monkeypatch.setattr(match_module, "SEARCH_CHUNK_PAIRS", 1)
    rows = [{"full_name": "NGUYEN VAN BINH", "date_of_birth": "1984-05-06", "gender": "M",
             "id_type": None, "id_number": None, "id_valid": None},
            {"full_name": "Trần Thị Hồng Nhung", "date_of_birth": "1990-02-14", "gender": "F",
             "id_number": "001190005467"},
            {"full_name": "Phạm Thị Lan", "date_of_birth": "1988-12-01", "gender": "F",
             "id_type": None, "id_number": None, "id_valid": None}]
    chunked = match(_subscriptions(rows), _registry(), MatchingSettings())
    monkeypatch.setattr(match_module, "SEARCH_CHUNK_PAIRS", 10**9)
    whole = match(_subscriptions(rows), _registry(), MatchingSettings())
    assert chunked.to_pylist() == whole.to_pylist()
    assert chunked["candidate_count"].to_pylist() == [1, 1, 2]


# --- the evidence of issue 15: the number carried, competing candidates, history -------------
def _one(rows: list[dict], **kwargs: object) -> list[dict]:
    return match(_subscriptions(rows), _registry(), MatchingSettings(), **kwargs).to_pylist()


def test_an_invented_person_with_a_citizens_name_and_birthday_gets_no_candidate() -> None:
    """Same name, date of birth and sex as Lê Văn Tám, but a well-formed CCCD of another
    province with another serial: the number is strong evidence against him."""
    from matching.documents import DocLevel

    invented, slip = _one([
        {"full_name": "Lê Văn Tám", "date_of_birth": "1975-09-30", "gender": "M",
         "id_number": "001075123456"},
        {"full_name": "Lê Văn Tám", "date_of_birth": "1975-09-30", "gender": "M",
         "id_number": "048075001112"},  # one digit off his own
    ])
    assert invented["doc_level"] == DocLevel.SAME_BIRTH_OTHER_PROVINCE
    assert invented["doc_weight"] < -10
    assert invented["candidate_citizen_id"] is None and invented["candidate_probability"] < 0.05
    assert slip["doc_level"] == DocLevel.ONE_SUBSTITUTION and slip["doc_weight"] > 0
    assert slip["candidate_citizen_id"] == slip["suggested_citizen_id"] == "048075001111"


def test_the_number_tells_two_namesakes_born_the_same_day_apart() -> None:
    """Two citizens named Phạm Thị Lan born 1988-12-01: without a number they tie (each
    about one half); a CCCD one digit off one of theirs picks her."""
    tie, picked = _one([
        {"full_name": "Phạm Thị Lan", "date_of_birth": "1988-12-01", "gender": "F",
         "id_type": None, "id_number": None, "id_valid": None},
        {"full_name": "Phạm Thị Lan", "date_of_birth": "1988-12-01", "gender": "F",
         "id_number": "036188003334"},
    ])
    assert tie["candidate_count"] == 2 and tie["candidate_citizen_id"] is None
    assert tie["candidate_probability"] < 0.5
    assert picked["candidate_citizen_id"] == "036188003333"
    assert picked["suggested_citizen_id"] == "036188003333"
    assert picked["candidate_probability"] > 0.999 and picked["candidate_margin_bits"] > 10


def test_the_weights_of_a_searched_row_add_up() -> None:
    row = _one([{"full_name": "NGUYEN VAN BINH", "date_of_birth": "1984-05-06", "gender": "M",
                 "id_type": None, "id_number": None, "id_valid": None}])[0]
    parts = ("id_weight", "doc_weight", "name_weight", "dob_weight", "gender_weight",
             "history_weight", "others_weight")
    assert sum(row[p] for p in parts) == pytest.approx(row["match_weight"])
    assert row["id_weight"] < 0  # the prior that one given citizen is the holder


def test_the_previous_holder_of_the_number_is_a_candidate() -> None:
    """A row without a document whose name is too far off for any blocking key: the
    number's verified holder in the previous run is still compared (history level)."""
    from matching.model import HistoryLevel

    rows = [{"full_name": "Lê Văn Tám", "date_of_birth": "1975-09-30", "gender": "M",
             "id_type": None, "id_number": None, "id_valid": None},
            {"full_name": "Trần Hồng", "date_of_birth": "1991-03-02", "gender": "F",
             "id_type": None, "id_number": None, "id_valid": None}]
    before = pa.array(["079084000123", "001190004567"])
    first, second = _one(rows, previous_holder=before)
    assert first["history_level"] == HistoryLevel.OTHER_HOLDER  # found by name, not him
    assert second["candidate_count"] == 1
    assert second["history_level"] == HistoryLevel.SAME_HOLDER
    without = _one(rows)
    assert without[1]["candidate_count"] == 0


def test_the_same_unfound_number_under_other_names() -> None:
    from matching.model import OthersLevel
    from pipelines.reconcile.search import others_levels

    levels = others_levels(pa.array(["CCCD", "CCCD", "CCCD", "CCCD", "CMND", None]),
                           pa.array(["040079987654", "040079987654", "001190000001",
                                     "001190000001", "040079987654", None]),
                           pa.array(["Đỗ Quang Vinh", "Lê Thị Hoa", "Trần An", "TRAN AN",
                                     "Đỗ Quang Vinh", "Ai Đó"]))
    assert levels.tolist() == [OthersLevel.OTHER_NAMES, OthersLevel.OTHER_NAMES,
                               OthersLevel.SAME_NAME, OthersLevel.SAME_NAME,
                               OthersLevel.ALONE, OthersLevel.MISSING]


def test_slip_variants_of_malformed_numbers_reach_the_citizen() -> None:
    """A CCCD with a digit too many, or one missing, is looked up with one digit dropped or
    added (not through its name: here the name is far off)."""
    pairs = plan_candidates(
        full_name=pa.array(["X Y", "X Y"]),
        date_of_birth=pa.array([date(1990, 1, 1)] * 2), dob_precision=pa.array(["day"] * 2),
        id_number=pa.array(["0011900045678", "00119004567"]),
        id_birth_year=pa.nulls(2, pa.int32()), id_sex=pa.nulls(2, pa.string()),
        registry_blocking=_keys(_registry()), registry_citizen_id=_registry()["citizen_id"],
        near_miss=np.array([True, True])).all_pairs()
    assert pairs.row.tolist() == [0, 1] and pairs.citizen.tolist() == [1, 1]
    assert pairs.id_level.tolist() == [1, 1]  # ONE_EDIT: reached through the number


def test_previous_holders_come_from_the_latest_run_before(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The verified holder of each number in the latest published run before this one;
    a number held by two different citizens then is no evidence (null)."""
    import json

    import pyarrow.parquet as pq

    from pipelines.reconcile.search import previous_holders

    def publish(day: str, msisdn: list, holder: list) -> None:
        folder = tmp_path / day
        folder.mkdir()
        pq.write_table(pa.table({"msisdn": msisdn, "holder_citizen_id": holder,
                                 "telco": ["t"] * len(msisdn),
                                 "source_row": list(range(1, len(msisdn) + 1))}),
                       folder / "results.parquet")
        (folder / "manifest.json").write_text(json.dumps({"files": []}))

    publish("2026-09-28", ["0901", "0902"], ["OLD1", "OLD2"])
    publish("2026-10-28", ["0901", "0902", "0902", "0903", "0904"],
            ["C1", "C2", "C3", None, "C4"])
    publish("2026-11-28", ["0901"], ["LATER"])  # the run itself, or later: never read
    got = previous_holders(tmp_path, "2026-11-28",
                           pa.array(["0901", "0902", "0903", "0905", None, "0901"]))
    assert got.to_pylist() == ["C1", None, None, None, None, "C1"]
    assert previous_holders(tmp_path, "2026-09-01", pa.array(["0901"])).to_pylist() == [None]


def test_a_run_reads_each_numbers_history_from_the_run_before(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A small world with the exports of the day before: that run verifies the holders
    of numbers whose document now leads nobody, and today's search finds them again
    through that history (the number's previous holder, level SAME_HOLDER)."""
    from benchmarks.accuracy import write_world_config
    from data_samples.generator import PREVIOUS_EXPORTS, generate_world
    from matching.model import HistoryLevel
    from pipelines.results.dataset import RunResults
    from pipelines.stages import run_all

    world = tmp_path / "world"
    generate_world(world, n_subscriptions=6000, n_citizens=4000, noise="benchmark",
                   previous=True)
    before = write_world_config(world, tmp_path, exports=PREVIOUS_EXPORTS,
                                name="previous.yaml")
    run_all(str(before), "2026-11-27")
    today = RunResults(run_all(str(write_world_config(world, tmp_path)), "2026-11-28")
                       ["run_dir"]).read()
    searched = today.filter(pc.is_null(today["matched_citizen_id"]))
    history = searched["history_level"].to_pylist()
    assert history.count(HistoryLevel.SAME_HOLDER) > 20
    assert HistoryLevel.OTHER_HOLDER in history
    same = searched.filter(pc.equal(searched["history_level"], HistoryLevel.SAME_HOLDER))
    assert pc.min(same["history_weight"]).as_py() > 10


def test_ranking_orders_as_lexsort_does() -> None:
    """search._ranked (two stable integer sorts) orders entries exactly as
    np.lexsort((registry_row, -weight, row)): best first within a row, equal weights by
    the earlier citizen, including ties, negative weights and infinities."""
    from pipelines.reconcile.search import _ranked

    rng = np.random.default_rng(20261204)
    n = 50_000
    row = rng.integers(0, 3_000, n)
    weight = np.round(rng.normal(0, 8, n), 1)  # many equal weights within a row
    weight[rng.integers(0, n, 50)] = -np.inf
    weight[rng.integers(0, n, 50)] = np.inf
    registry_row = rng.permutation(n)
    order, rank = _ranked(row, weight, registry_row)
    assert np.array_equal(order, np.lexsort((registry_row, -weight, row)))
    rows = row[order]
    expected = np.zeros(n, dtype=np.int64)
    for i in range(1, n):
        expected[i] = expected[i - 1] + 1 if rows[i] == rows[i - 1] else 0
    assert np.array_equal(rank, expected)
    # A shard's pairs come sorted by row and citizen, with citizens in registry order:
    # the order is the same without the sort by registry row.
    by_pair = np.lexsort((registry_row, row))
    presorted = _ranked(row[by_pair], weight[by_pair], registry_row[by_pair], True)
    assert np.array_equal(by_pair[presorted[0]], order)
    assert np.array_equal(presorted[1], rank)
    empty_order, empty_rank = _ranked(np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64))
    assert len(empty_order) == len(empty_rank) == 0


def test_block_sizes_read_off_the_index_equal_those_counted() -> None:
    """The snapshot takes each citizen's block sizes from the sorted index it writes
    anyway (``index_block_sizes``): the same as counting the keys afresh, namesakes
    (a block of two), year-only births (no day keys: size 0) and a missing sex included."""
    from matching.candidates import index_block_sizes, registry_block_sizes, registry_index

    registry = pa.concat_tables([_registry(), pa.table({
        "citizen_id": ["040190005555", "040190006666"], "legacy_id": pa.nulls(2, pa.string()),
        "full_name": ["Phạm Thị Lan", "Đỗ Văn Hùng"],
        "date_of_birth": pa.array([date(1988, 1, 1), date(1990, 3, 3)], pa.date32()),
        "dob_precision": ["year", "day"], "gender": pa.array(["F", None], pa.string()),
        "date_of_death": pa.nulls(2, pa.date32())})])
    parts = _keys(registry)
    index = registry_index(parts, registry["citizen_id"].combine_chunks())
    counted = registry_block_sizes(parts)
    read = index_block_sizes(index.block_keys, index.block_citizens, registry.num_rows)
    assert read.dtype == counted.dtype and read.tolist() == counted.tolist()
    # the namesakes share a day block (2) and, with the year-only one, a year block (3)
    assert {2, 3} <= set(counted[3].tolist()) and counted[6].min() == 0
