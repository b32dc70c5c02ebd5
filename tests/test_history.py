"""Flag history: new / persisting (runs, first seen) / resolved, and recording is idempotent."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from pipelines.correction_cycle import history


def _keys(*triples: tuple[str, str, str]) -> pd.DataFrame:
    frame = pd.DataFrame(triples, columns=history.KEY)
    frame["row"] = range(len(frame))
    return frame


def _record(store: Path, run_date: str, keys: pd.DataFrame, telcos: list[str]) -> None:
    history.record(store, run_date, keys, telcos, recorded_at=f"{run_date}T00:00:00")


def test_first_run_is_all_new(tmp_path: Path) -> None:
    store = tmp_path / "h.sqlite"
    keys = _keys(("a", "0911111111", "NO_ID"))
    out, resolved = history.classify(store, "2026-01-01", keys, ["a"])
    assert out["tracking"].tolist() == ["new"] and out["runs"].tolist() == [1]
    assert out["first_seen"].tolist() == [date(2026, 1, 1)]
    assert resolved.empty


def test_streaks_resolution_and_reappearance(tmp_path: Path) -> None:
    store = tmp_path / "h.sqlite"
    x, y = ("a", "0911111111", "NO_ID"), ("a", "0922222222", "DOB_MISMATCH")
    _record(store, "2026-01-01", _keys(x, y), ["a"])
    _record(store, "2026-01-02", _keys(x), ["a"])
    out, resolved = history.classify(store, "2026-01-03", _keys(x, y), ["a"])
    by_number = out.set_index("msisdn")
    assert by_number.loc["0911111111", "tracking"] == "persisting"
    assert by_number.loc["0911111111", "runs"] == 3
    assert by_number.loc["0911111111", "first_seen"] == date(2026, 1, 1)
    # y was resolved on day 2 and is back: new again, its streak restarts.
    assert by_number.loc["0922222222", "tracking"] == "new"
    assert by_number.loc["0922222222", "runs"] == 1
    assert resolved.empty
    out, resolved = history.classify(store, "2026-01-03", _keys(y), ["a"])
    assert resolved[history.KEY].values.tolist() == [list(x)]
    assert resolved["first_seen"].tolist() == ["2026-01-01"]


def test_rerecording_a_date_replaces_it(tmp_path: Path) -> None:
    store = tmp_path / "h.sqlite"
    x = ("a", "0911111111", "NO_ID")
    _record(store, "2026-01-01", _keys(x), ["a"])
    _record(store, "2026-01-01", _keys(), ["a"])
    out, _ = history.classify(store, "2026-01-02", _keys(x), ["a"])
    assert out["tracking"].tolist() == ["new"]
    assert history.trend(store)["flags"].tolist() == [0]


def test_a_failed_telco_resolves_nothing(tmp_path: Path) -> None:
    store = tmp_path / "h.sqlite"
    x, z = ("a", "0911111111", "NO_ID"), ("b", "0933333333", "NO_ID")
    _record(store, "2026-01-01", _keys(x, z), ["a", "b"])
    # Day 2: telco b failed, so it is neither classified nor recorded.
    _, resolved = history.classify(store, "2026-01-02", _keys(x), ["a"])
    assert resolved.empty
    _record(store, "2026-01-02", _keys(x), ["a"])
    out, _ = history.classify(store, "2026-01-03", _keys(x, z), ["a", "b"])
    by_telco = out.set_index("telco")
    assert by_telco.loc["b", "tracking"] == "persisting"  # b's last run was day 1
    assert by_telco.loc["a", "runs"] == 3


def test_earlier_date_rerun_ignores_later_runs(tmp_path: Path) -> None:
    store = tmp_path / "h.sqlite"
    x = ("a", "0911111111", "NO_ID")
    _record(store, "2026-01-05", _keys(x), ["a"])
    out, resolved = history.classify(store, "2026-01-03", _keys(), ["a"])
    assert out.empty and resolved.empty


def test_classify_keeps_the_order_and_index_of_mixed_telcos(tmp_path: Path) -> None:
    """Classified one telco at a time (compact_keys), the rows come back where they were."""
    store = tmp_path / "h.sqlite"
    x, z = ("a", "0911111111", "NO_ID"), ("b", "0933333333", "NO_ID")
    _record(store, "2026-01-01", _keys(x, z), ["a", "b"])
    keys = _keys(z, ("a", "0944444444", "NO_ID"), x, z).set_axis([40, 30, 20, 10])
    out, resolved = history.classify(store, "2026-01-02", keys, ["a"])
    assert out.index.tolist() == [40, 30, 20, 10]
    # b is not classified this run: its key is new even though day 1 had it.
    assert out["tracking"].tolist() == ["new", "new", "persisting", "new"]
    assert out["runs"].tolist() == [1, 1, 2, 1] and resolved.empty
    out, resolved = history.classify(store, "2026-01-02", keys.iloc[:2], ["b", "a"])
    assert out["tracking"].tolist() == ["persisting", "new"]
    assert resolved[history.KEY].values.tolist() == [list(x)]


def test_classify_refuses_a_flag_it_cannot_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="OLD_FLAG"):
        history.classify(tmp_path / "h.sqlite", "2026-01-01",
                         _keys(("a", "0911111111", "OLD_FLAG")), ["a"])
