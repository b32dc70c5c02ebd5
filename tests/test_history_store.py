"""The history store is a URL: an SQLite file by default, PostgreSQL as the production option.

The same scenario (streaks, resolution, re-recording a date, the trend, review
decisions) runs on an SQLite path, an ``sqlite:///`` URL and a real PostgreSQL
server (a throwaway cluster this module starts: tests/servers.py); a two-day
pipeline run then keeps its history in PostgreSQL.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from pipelines.config import ConfigError, load_config
from pipelines.correction_cycle import history, review
from pipelines.stages import run_all, store_of

from .conftest import write_config
from .servers import new_database, postgres_cluster


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[str]:
    with postgres_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite-path", "sqlite-url", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> history.Store:
    if request.param == "sqlite-path":
        return tmp_path / "h.sqlite"
    if request.param == "sqlite-url":
        return f"sqlite:///{tmp_path / 'h.sqlite'}"
    server = request.getfixturevalue("postgres_server")
    return new_database(server, f"h_{uuid.uuid4().hex[:12]}")


def _keys(*triples: tuple[str, str, str]) -> pd.DataFrame:
    frame = pd.DataFrame(triples, columns=history.KEY)
    frame["row"] = range(len(frame))
    return frame


def _record(store: history.Store, run_date: str, keys: pd.DataFrame, telcos: list[str]) -> None:
    history.record(store, run_date, keys, telcos, recorded_at=f"{run_date}T00:00:00")


def test_flag_history_on_each_backend(store: history.Store) -> None:
    x, y = ("a", "0911111111", "NO_ID"), ("a", "0922222222", "DOB_MISMATCH")
    z = ("b", "", "INVALID_MSISDN")  # a number that was not valid is keyed by "" here
    out, resolved = history.classify(store, "2026-01-01", _keys(x, y, z), ["a", "b"])
    assert set(out["tracking"]) == {"new"} and resolved.empty
    _record(store, "2026-01-01", _keys(x, y, z), ["a", "b"])
    _record(store, "2026-01-02", _keys(x), ["a"])  # b failed on day 2: not recorded
    out, resolved = history.classify(store, "2026-01-03", _keys(x, z), ["a", "b"])
    by_number = out.set_index("msisdn")
    assert by_number.loc["0911111111", "tracking"] == "persisting"
    assert by_number.loc["0911111111", "runs"] == 3
    assert str(by_number.loc["0911111111", "first_seen"]) == "2026-01-01"
    assert by_number.loc["", "tracking"] == "persisting"  # b's latest run is day 1
    assert resolved.empty
    out, resolved = history.classify(store, "2026-01-03", _keys(y), ["a"])
    assert resolved[history.KEY].values.tolist() == [list(x)]
    # Re-recording a date replaces it, and the trend counts keys per run.
    _record(store, "2026-01-02", _keys(x, y), ["a"])
    _record(store, "2026-01-02", _keys(x, y), ["a"])
    trend = history.trend(store, ["a"])
    assert trend[["run_date", "flags"]].values.tolist() == [["2026-01-01", 2],
                                                            ["2026-01-02", 2]]


def test_review_decisions_on_each_backend(store: history.Store, tmp_path: Path) -> None:
    queue = tmp_path / "queue.csv"
    columns = list(review.IMPORT_REQUIRED)
    rows = [["a", "0911111111", "0911111111", "0" * 64, "not_holder", "first"],
            ["a", "0922222222", "0922222222", "1" * 64, "", ""]]
    pd.DataFrame(rows, columns=columns).to_csv(queue, index=False)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    assert review.import_decisions(queue, "le.thu.ha", store, now=when)["imported"] == 1
    rows[0][4:] = ["confirmed_holder", "second thoughts"]
    pd.DataFrame(rows, columns=columns).to_csv(queue, index=False)
    review.import_decisions(queue, "le.thu.ha", store, now=when)  # same second: order decides
    latest = review.latest_decisions(store)
    assert latest[["msisdn", "decision", "comment"]].values.tolist() == [
        ["0911111111", "CONFIRMED_HOLDER", "second thoughts"]]
    with history.engine(store).connect() as conn:  # nothing overwritten
        assert conn.execute(sa.select(sa.func.count()).select_from(history.DECISIONS)) \
            .scalar_one() == 2


def test_sqlite_store_of_earlier_version_is_migrated(tmp_path: Path) -> None:
    """A store written by the sqlite3 code kept rowid order only: it is rebuilt with ids."""
    path = tmp_path / "history.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE decisions (telco TEXT NOT NULL, msisdn TEXT NOT NULL,
              row_hash TEXT NOT NULL, decision TEXT NOT NULL, comment TEXT NOT NULL,
              reviewer TEXT NOT NULL, decided_at TEXT NOT NULL, source_file TEXT NOT NULL);
            CREATE INDEX decisions_by_key ON decisions (telco, msisdn, row_hash);
            CREATE TABLE runs (run_date TEXT NOT NULL, telco TEXT NOT NULL,
              recorded_at TEXT NOT NULL, PRIMARY KEY (run_date, telco));
            CREATE TABLE flags (run_date TEXT NOT NULL, telco TEXT NOT NULL,
              msisdn TEXT NOT NULL, flag TEXT NOT NULL,
              PRIMARY KEY (telco, msisdn, flag, run_date));""")
        for decision in ("NOT_HOLDER", "CONFIRMED_HOLDER"):
            db.execute("INSERT INTO decisions VALUES ('a','0911111111',?,?,'','r','t','f')",
                       ("0" * 64, decision))
        db.execute("INSERT INTO runs VALUES ('2026-01-01','a','t')")
        db.execute("INSERT INTO flags VALUES ('2026-01-01','a','0911111111','NO_ID')")
    latest = review.latest_decisions(path)
    assert latest["decision"].tolist() == ["CONFIRMED_HOLDER"]
    out, _ = history.classify(path, "2026-01-02", _keys(("a", "0911111111", "NO_ID")), ["a"])
    assert out["tracking"].tolist() == ["persisting"]


def test_store_settings(tmp_path: Path) -> None:
    base = tmp_path / "conf"
    assert history.configured_store("", base, tmp_path / "runs") == \
        tmp_path / "runs" / "history.sqlite"
    assert history.configured_store("h/x.sqlite", base, tmp_path) == base / "h" / "x.sqlite"
    assert history.configured_store("sqlite:///rel.db", base, tmp_path) == base / "rel.db"
    url = "postgresql://simrecon@db.example:5432/simrecon"
    assert history.configured_store(url, base, tmp_path) == url
    assert history.store_url(url).drivername == "postgresql+psycopg"
    with pytest.raises(history.StoreError, match="only SQLite and PostgreSQL"):
        history.store_url("mysql://u@h/db")
    with pytest.raises(history.StoreError, match="no password"):
        history.store_url("postgresql://u:secret@h/db")
    config = write_config(tmp_path, correction_cycle={
        "history_store": "postgresql://simrecon:hunter2@db.example/simrecon"})
    with pytest.raises(ConfigError, match="no password") as refused:
        load_config(config)
    assert "hunter2" not in str(refused.value)


@pytest.mark.slow
def test_pipeline_keeps_its_history_in_postgres(postgres_server: str, tmp_path: Path) -> None:
    url = new_database(postgres_server, "pipeline")
    config = write_config(tmp_path, correction_cycle={"history_store": url})
    assert store_of(load_config(config)) == url
    day1 = Path(run_all(str(config), "2026-11-28")["run_dir"])
    day2 = Path(run_all(str(config), "2026-11-29")["run_dir"])
    assert not (tmp_path / "runs" / "history.sqlite").exists()
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT run_date, telco FROM runs ORDER BY 1, 2")).all()
        flags = conn.execute(sa.text("SELECT COUNT(*) FROM flags")).scalar_one()
    engine.dispose()
    assert [r for r, _ in runs] == ["2026-11-28"] * 3 + ["2026-11-29"] * 3
    listed1 = pd.read_csv(day1 / "corrections" / "viettel.csv", dtype=str, encoding="utf-8-sig")
    listed2 = pd.read_csv(day2 / "corrections" / "viettel.csv", dtype=str, encoding="utf-8-sig")
    assert set(listed1["flag_status"]) == {"new"}
    # The same exports on day 2: every flag persists, in its second run since day 1.
    assert set(listed2["flag_status"]) == {"persisting"}
    assert set(listed2["flagged_runs"]) == {"2"} and set(listed2["first_seen"]) == {"2026-11-28"}
    assert flags > 0
