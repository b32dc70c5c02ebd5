"""Every result row carries its explanation; the report draws it for sampled rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.reporting.report import explanation
from pipelines.results.dataset import RunResults
from pipelines.stages import run_all

from .conftest import REPO, write_config

RUN_DATE = "2026-11-28"
WEIGHTS = ("id_weight", "name_weight", "dob_weight", "gender_weight")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("explain")
    return Path(run_all(str(write_config(tmp)), RUN_DATE)["run_dir"])


@pytest.fixture(scope="module")
def results(run: Path):  # type: ignore[no-untyped-def]
    return RunResults(run).read().to_pandas()


def test_linked_rows_carry_weights_that_add_up(results) -> None:  # type: ignore[no-untyped-def]
    linked = results[results["matched_citizen_id"].notna()]
    assert len(linked) > 3000
    assert linked[[*WEIGHTS, "match_weight", "match_probability"]].notna().all().all()
    total = linked[list(WEIGHTS)].sum(axis=1)
    assert np.allclose(total, linked["match_weight"])
    assert np.allclose(linked["match_probability"], 1 / (1 + 2.0 ** -linked["match_weight"]))
    assert set(linked["match_band"].dropna()) == {"VERIFY", "REVIEW", "MISMATCH"}
    # No band only for a CMND shared by several citizens: that goes to review.
    shared = linked[linked["match_band"].isna()]
    assert (shared["status"] == "REVIEW").all() and (shared["id_type"] == "CMND").all()
    assert results["model_version"].nunique() == 1


def test_status_follows_the_bands(results) -> None:  # type: ignore[no-untyped-def]
    verified = results[results["status"] == "VERIFIED"]
    assert (verified["match_band"] == "VERIFY").all()
    assert verified["holder_citizen_id"].eq(verified["matched_citizen_id"]).all()
    rejected = results[results["match_band"] == "MISMATCH"]
    assert (rejected["status"] == "MISMATCH").all()
    reasons = {"NAME_MISMATCH", "DOB_MISMATCH", "GENDER_MISMATCH"}
    assert rejected["flags"].map(lambda f: bool(reasons & set(f))).all()
    review = results[results["status"] == "REVIEW"]
    assert review["flags"].map(lambda f: "NEEDS_REVIEW" in f).all()


def test_unlinked_rows_have_no_holder(results) -> None:  # type: ignore[no-untyped-def]
    unlinked = results[results["matched_citizen_id"].isna()]
    assert unlinked["holder_citizen_id"].isna().all()
    assert unlinked["match_band"].isna().all()


def test_report_shows_waterfalls_without_full_ids(run: Path) -> None:
    html = (run / "report.html").read_text(encoding="utf-8")
    assert html.count('class="waterfall"') >= 10
    assert "Match weight of the document" in html and "probability" in html
    registry = pq.read_table(REPO / "data_samples" / "registry" / "citizens.parquet")
    ids = set(registry["citizen_id"].to_pylist())
    assert not any(i in html for i in ids)


def test_explanation_of_one_row() -> None:
    row = {"matched_citizen_id": "x", "id_level": 3, "name_level": 7, "dob_level": 1,
           "gender_level": 2, "id_weight": 5.8, "name_weight": 9.0, "dob_weight": -8.5,
           "gender_weight": 1.0, "match_weight": 7.3, "match_probability": 0.9937,
           "match_band": "REVIEW", "name_frequency": 0.001, "model_version": "v"}
    out = explanation(row)
    assert out is not None
    assert [s["field"] for s in out["steps"]] == ["ID number", "Name", "Date of birth", "Gender"]
    assert out["steps"][2]["weight"] == "-8.5" and not out["steps"][2]["positive"]
    assert "1 in 1,000" in out["steps"][1]["level"]
    assert min(s["offset"] for s in out["steps"]) >= 0
    assert explanation({"match_weight": None}) is None


def test_a_searched_row_is_explained_with_the_number_it_carries() -> None:
    """A row whose document leads nobody is explained by its best candidate: the prior
    that one citizen is the holder, the number carried against the candidate's, the
    fields, the number's history; the probability is over the row's candidates."""
    row = {"matched_citizen_id": None, "id_level": 1, "doc_level": 10, "name_level": 8,
           "dob_level": 8, "gender_level": 2, "history_level": 0, "others_level": 1,
           "id_weight": -21.8, "doc_weight": 19.5, "name_weight": 9.0, "dob_weight": 15.0,
           "gender_weight": 1.0, "history_weight": 0.0, "others_weight": 0.1,
           "match_weight": 22.8, "match_probability": 0.9999998,
           "candidate_probability": 0.99991, "match_band": None, "model_version": "v"}
    out = explanation(row)
    assert out is not None and out["of"] == "best search candidate"
    fields = [s["field"] for s in out["steps"]]
    assert fields == ["Prior (one citizen)", "Number carried", "Name", "Date of birth",
                      "Gender", "Number's history", "Same number elsewhere"]
    assert out["steps"][1]["level"] == "the citizen's number with one digit different"
    assert out["probability"] == "0.999910"


def test_searched_rows_in_the_run_carry_weights_that_add_up(results) -> None:  # type: ignore[no-untyped-def]
    searched = results[results["matched_citizen_id"].isna() & results["match_weight"].notna()]
    assert len(searched) > 50
    parts = [*WEIGHTS, "doc_weight", "history_weight", "others_weight"]
    assert searched[parts].notna().all().all()
    assert np.allclose(searched[parts].sum(axis=1), searched["match_weight"])
    assert searched["candidate_probability"].between(0, 1).all()
