"""The Fellegi–Sunter model: comparison levels, weights, term frequency, the model file."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching.candidates import LinkMethod, link_by_document
from matching.compare import DobLevel, GenderLevel, compare_dates_of_birth, compare_genders
from matching.documents import DOC_SLIP_LEVELS, DocLevel
from matching.model import (
    IdLevel,
    MatchModel,
    estimate_lambda,
    level_distribution,
    name_frequencies,
    neutral_model,
)
from matching.names import NameLevel, compare_names
from pipelines.config import MatchingSettings
from pipelines.reconcile.model_file import DEFAULT_MODEL_FILE, load_model

# --- every comparison level, with Vietnamese examples ------------------------------------
NAME_CASES = [
    ("Nguyễn Văn An", "nguyễn  văn an", NameLevel.EXACT),
    ("Nguyễn Văn An", "NGUYEN VAN AN", NameLevel.FOLDED),
    ("Nguyễn Thị Hòa", "Nguyễn Thị Hoà", NameLevel.FOLDED),  # tone placement
    ("Lý Thị Mai", "Lí Thị Mai", NameLevel.FOLDED),  # i/y
    ("Trần Minh Đức", "Minh Đức Trần", NameLevel.REORDERED),  # family name last
    ("Phạm Văn Hùng", "Phạm Hùng", NameLevel.DROPPED_MIDDLE),
    ("Huỳnh Thị Lan", "Hoàng Thị Lan", NameLevel.SURNAME_VARIANT),
    ("Võ Văn Kiệt", "Vũ Văn Kiệt", NameLevel.SURNAME_VARIANT),
    ("Lê Thị Thanh Hương", "Lê Thị Thanh Huong", NameLevel.FOLDED),
    ("Lê Thị Thanh Hương", "Lê Thị Thanh Hưng", NameLevel.ONE_TYPO),
    ("Nguyễn Thị Minh Anh", "Nguyễn Minh Anh Thư", NameLevel.PARTIAL),
    ("Nguyễn Văn An", "Trần Thị Bích Ngọc", NameLevel.DIFFERENT),
    ("Nguyễn Văn An", None, NameLevel.MISSING),
]


@pytest.mark.parametrize(("left", "right", "level"), NAME_CASES)
def test_name_levels(left: str, right: str | None, level: NameLevel) -> None:
    assert compare_names([left], [right]).level[0] == level


def _dates(*values: str | None) -> tuple[pa.Array, pa.Array]:
    parsed, precision = [], []
    for v in values:
        if v is None:
            parsed.append(None)
            precision.append(None)
        elif len(v) == 4:
            parsed.append(date(int(v), 1, 1))
            precision.append("year")
        else:
            parsed.append(date.fromisoformat(v))
            precision.append("day")
    return pa.array(parsed, pa.date32()), pa.array(precision, pa.string())


DOB_CASES = [
    ("1984-03-07", "1984-03-07", DobLevel.EXACT),
    ("1984", "1984-03-07", DobLevel.SAME_YEAR_ONE_SIDE_YEAR_ONLY),
    ("1984-07-03", "1984-03-07", DobLevel.DAY_MONTH_SWAPPED),
    ("1985-03-07", "1984-03-07", DobLevel.ONE_DIGIT_OFF),
    ("1990-11-20", "1984-03-07", DobLevel.DIFFERENT),
    (None, "1984-03-07", DobLevel.MISSING),
]


@pytest.mark.parametrize(("left", "right", "level"), DOB_CASES)
def test_dob_levels(left: str | None, right: str, level: DobLevel) -> None:
    ld, lp = _dates(left)
    rd, rp = _dates(right)
    assert compare_dates_of_birth(ld, lp, rd, rp)[0] == level


@pytest.mark.parametrize(("left", "right", "level"), [
    ("F", "F", GenderLevel.EQUAL), ("M", "F", GenderLevel.DIFFERENT),
    (None, "F", GenderLevel.MISSING)])
def test_gender_levels(left: str | None, right: str, level: GenderLevel) -> None:
    assert compare_genders(pa.array([left], pa.string()), pa.array([right]))[0] == level


def test_id_levels_exact_and_legacy() -> None:
    links = link_by_document(
        pa.array(["CCCD", "CMND", "CCCD"]), pa.array(["087084000999", "271234567", "001"]),
        pa.array([True, True, False]),
        pa.array(["087084000999", "079190000123"]), pa.array([None, "271234567"]))
    assert links.method.tolist() == [LinkMethod.CCCD, LinkMethod.LEGACY_CMND, None]
    assert [int(x) for x in (IdLevel.EXACT, IdLevel.LEGACY_CMND, IdLevel.ONE_EDIT,
                             IdLevel.NONE)] == [3, 2, 1, 0]


# --- weights -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model() -> MatchModel:
    return load_model(MatchingSettings())


def test_default_model_file_loads_with_a_version(model: MatchModel) -> None:
    assert DEFAULT_MODEL_FILE.exists()
    assert model.version
    assert model.metadata.get("method")


def test_weights_follow_the_strength_of_the_levels(model: MatchModel) -> None:
    name = model.level_weights("name")
    assert name[NameLevel.EXACT] > name[NameLevel.ONE_TYPO] > 0 > name[NameLevel.DIFFERENT]
    dob = model.level_weights("dob")
    assert dob[DobLevel.EXACT] > dob[DobLevel.SAME_YEAR_ONE_SIDE_YEAR_ONLY] > 0
    assert dob[DobLevel.DIFFERENT] < 0
    gender = model.level_weights("gender")
    assert gender[GenderLevel.EQUAL] > 0 > gender[GenderLevel.DIFFERENT]
    for table, missing in ((name, NameLevel.MISSING), (dob, DobLevel.MISSING),
                           (gender, GenderLevel.MISSING)):
        assert table[missing] == 0  # a missing value is no evidence either way
    ids = model.id_weights()
    assert ids[IdLevel.EXACT] > 0 and ids[IdLevel.LEGACY_CMND] > 0
    doc = model.search.level_weights("document")
    # A slip of the citizen's own number is for them; a far, well-formed number against.
    assert min(doc[lv] for lv in DOC_SLIP_LEVELS) > 0
    assert max(doc[DocLevel.SAME_PROVINCE_AND_BIRTH], doc[DocLevel.SAME_BIRTH_OTHER_PROVINCE],
               doc[DocLevel.OTHER_BIRTH]) < -10
    assert doc[DocLevel.MISSING] == 0
    # The search prior: one citizen among N, so it falls as the registry grows.
    small, large = model.search.prior_weights(100_000), model.search.prior_weights(10_000_000)
    assert (large < small).all() and np.allclose(small - large, np.log2(100))


def test_common_name_agreeing_weighs_less_than_a_rare_one(model: MatchModel) -> None:
    registry = pa.array(["Nguyễn Văn An"] * 300 + ["Nguyễn An"] * 100
                        + ["Khổng Minh Triết"] + [f"Trần Thị Hoa {i}" for i in range(599)])
    keys, tf = name_frequencies(registry)
    common, rare = tf[0], tf[400]
    assert keys[0].as_py() == keys[300].as_py() == "an nguyen"  # Văn dropped: one name
    assert common == pytest.approx(0.4) and rare == pytest.approx(1 / 1000)
    levels = np.array([NameLevel.EXACT, NameLevel.EXACT])
    weights = model.name_weights(levels, np.array([common, rare]))
    assert weights[0] < weights[1]
    scores = model.score(id_level=np.array([3, 3]), name_level=levels,
                         dob_level=np.array([DobLevel.EXACT] * 2),
                         gender_level=np.array([GenderLevel.EQUAL] * 2),
                         name_tf=np.array([common, rare]))
    assert scores.match_weight[0] < scores.match_weight[1]
    # Below the equal-key levels there is no term frequency: a typo weighs the same.
    typo = model.name_weights(np.array([NameLevel.ONE_TYPO] * 2), np.array([common, rare]))
    assert typo[0] == typo[1]


def test_score_adds_the_weights_and_gives_a_probability(model: MatchModel) -> None:
    s = model.score(id_level=np.array([3, 3]), name_level=np.array([8, 1]),
                    dob_level=np.array([DobLevel.EXACT, DobLevel.DIFFERENT]),
                    gender_level=np.array([2, 2]))
    total = s.id_weight + s.name_weight + s.dob_weight + s.gender_weight
    assert np.allclose(total, s.match_weight)
    assert np.allclose(s.match_probability, 1 / (1 + 2.0 ** -s.match_weight))
    assert s.match_probability[0] > 0.999 > 0.01 > s.match_probability[1]


def test_model_file_round_trip(tmp_path: Path, model: MatchModel) -> None:
    path = tmp_path / "m.json"
    model.save(path)
    again = MatchModel.load(path)
    assert again.to_dict() == model.to_dict()
    with pytest.raises(ValueError, match="not found"):
        MatchModel.load(tmp_path / "missing.json")


def test_a_model_lacking_a_level_is_refused() -> None:
    flat = neutral_model()
    m = {f: dict(v) for f, v in flat.m.items()}
    del m["name"]["ONE_TYPO"]
    with pytest.raises(ValueError, match="ONE_TYPO"):
        MatchModel(version="x", m=m, u=flat.u, id_prior=flat.id_prior)


# --- estimation ----------------------------------------------------------------------------
def test_level_distribution_is_smoothed_and_sums_to_one() -> None:
    dist = level_distribution(np.array([DobLevel.EXACT] * 3 + [DobLevel.DIFFERENT]), DobLevel)
    assert sum(dist.values()) == pytest.approx(1.0)
    assert dist["DAY_MONTH_SWAPPED"] > 0 and "MISSING" not in dist


def test_em_recovers_the_share_of_matches() -> None:
    rng = np.random.default_rng(0)
    # Log-likelihood ratios of 900 matches (+12 bits) and 100 non-matches (-15 bits).
    w = np.concatenate([rng.normal(12, 1, 900), rng.normal(-15, 1, 100)])
    assert estimate_lambda(w) == pytest.approx(0.9, abs=0.01)


def test_estimate_on_the_samples(tmp_path: Path) -> None:
    from pipelines.reconcile.estimate import estimate_from_config

    from .conftest import write_config

    out = tmp_path / "models" / "test.json"
    model = estimate_from_config(str(write_config(tmp_path)), date(2026, 11, 28), out,
                                 version="test-1", random_pairs=20_000)
    assert MatchModel.load(out).version == "test-1"
    assert model.level_weights("name")[NameLevel.EXACT] > 0
    assert 0.9 < model.id_prior["EXACT"] < 1
    assert model.metadata["linked_pairs_for_m"] > 3000


# --- the search model (issue 15) -----------------------------------------------------------
def test_a_rows_candidates_compete() -> None:
    """Two equally good candidates share the probability; a lone candidate's probability
    is its odds over one plus its odds (nobody in the registry is the other outcome)."""
    from matching.model import row_probability

    top = np.array([[10.0, 10.0, np.nan], [10.0, np.nan, np.nan], [0.0, np.nan, np.nan]])
    p = row_probability(top[:, 0], top)
    assert p[0] == pytest.approx(2**10 / (1 + 2 * 2**10))
    assert p[1] == pytest.approx(2**10 / (1 + 2**10))
    assert p[2] == pytest.approx(0.5)


def test_birth_date_agreement_counts_pairs_of_different_citizens() -> None:
    from matching.model import birth_date_agreement

    days = [date(1990, 1, 1 + i % 28) for i in range(1400)]  # 28 dates, 50 citizens each
    dates = pa.array(days, pa.date32())
    agreement = birth_date_agreement(dates, pa.array(["day"] * 1400))
    assert agreement is not None
    assert agreement.same_date == pytest.approx(28 * 50 * 49 / (1400 * 1399))
    assert agreement.same_year == pytest.approx(1.0)
    assert birth_date_agreement(dates.slice(0, 100), pa.array(["day"] * 100)) is None


def test_em_of_the_search_model_recovers_a_known_world() -> None:
    """Synthetic searched rows: 60 % have their holder among their candidates (a slip
    of the number, +20 bits of name and date), the others only unrelated candidates
    (another number, name and date by chance). EM with the field weights fixed finds the
    share and puts a slip of the number far above a far number."""
    from matching.model import estimate_search_model, neutral_search_model

    rng = np.random.default_rng(3)
    n, citizens = 4000, 100_000
    holder_in = rng.random(n) < 0.6
    rows, field, doc = [], [], []
    for r in range(n):
        if holder_in[r]:
            rows.append(r)
            field.append(rng.normal(20, 2))
            doc.append(int(rng.choice([DocLevel.ONE_SUBSTITUTION, DocLevel.TRANSPOSITION])))
        for _ in range(rng.integers(1, 4)):
            rows.append(r)
            field.append(rng.normal(-5, 3))
            doc.append(int(rng.choice([DocLevel.SAME_BIRTH_OTHER_PROVINCE,
                                       DocLevel.OTHER_BIRTH])))
    kind = np.full(n, 2, dtype=np.int64)  # CCCD_NOT_FOUND
    model, counts = estimate_search_model(
        row=np.array(rows), kind=kind, others=np.full(n, 1), field_weight=np.array(field),
        doc_level=np.array(doc), history_level=np.zeros(len(rows), np.int64),
        citizens=citizens, start=neutral_search_model())
    assert model.holder_in_registry["CCCD_NOT_FOUND"] == pytest.approx(0.6, abs=0.02)
    weights = model.level_weights("document")
    assert weights[DocLevel.ONE_SUBSTITUTION] > 10 > -10 > weights[DocLevel.OTHER_BIRTH]
    assert counts["iterations"] < 500


def test_a_model_of_the_first_format_is_refused(tmp_path: Path) -> None:
    import json

    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format": "simrecon-fellegi-sunter/1", "version": "x"}))
    with pytest.raises(ValueError, match="re-estimate"):
        MatchModel.load(path)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.text("abn", min_size=1, max_size=5), st.integers(1, 4)),
                min_size=2, max_size=30, unique_by=lambda pair: pair[0]))
def test_typo_shares_count_the_citizens_one_edit_away_under_another_name(
        keyed: list[tuple[str, int]]) -> None:
    """typo_shares against every pair compared: the citizens whose key is one edit
    (substitution, insertion, deletion) from a key, their canonical key different (here
    a key's canonical key is itself less its last letter, so some neighbours share it),
    plus half a neighbour, over the registry's size."""
    from rapidfuzz.distance import Levenshtein

    from matching.model import typo_shares

    keys = [k for k, _ in keyed]
    counts = np.array([c for _, c in keyed], np.float64)
    canonical = [k[:-1] or k for k in keys]
    citizens = int(counts.sum()) + 3
    expected = np.array([
        sum(counts[j] for j in range(len(keys))
            if canonical[j] != canonical[i] and Levenshtein.distance(keys[i], keys[j]) <= 1)
        for i in range(len(keys))])
    shares = typo_shares(pa.array(keys), pa.array(canonical), counts, citizens)
    np.testing.assert_allclose(shares, (expected + 0.5) / citizens)
