"""Run-over-run tracking of flags: is a flag new, persisting, or resolved since the last run?

Each flag a telco is asked to act on is keyed ``(telco, msisdn, flag)``; a
number the telco sent that is not a valid number is keyed by the number as
sent. The store is one embedded SQLite file next to the runs
(``<output_dir>/history.sqlite``), so a lone machine needs no server; it only
ever holds these keys and run dates, never names, dates of birth or IDs.

A run is recorded when it is published (``record``), so an unpublished or
repeated run date never counts twice: recording a date replaces that date.
Classification compares with the telco's runs *before* the run date:

* ``new``: not in the telco's latest earlier run;
* ``persisting``: in it; ``runs`` counts the unbroken streak of runs
  (this one included) and ``first_seen`` is the streak's first run date;
* ``resolved``: in the telco's latest earlier run but not in this one.

A telco that failed this run is neither classified nor recorded, so its flags
are not all "resolved" because its export was unreadable.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

NEW, PERSISTING, RESOLVED = "new", "persisting", "resolved"
KEY = ["telco", "msisdn", "flag"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_date TEXT NOT NULL, telco TEXT NOT NULL, recorded_at TEXT NOT NULL,
    PRIMARY KEY (run_date, telco));
CREATE TABLE IF NOT EXISTS flags (
    run_date TEXT NOT NULL, telco TEXT NOT NULL, msisdn TEXT NOT NULL, flag TEXT NOT NULL,
    PRIMARY KEY (telco, msisdn, flag, run_date));
CREATE INDEX IF NOT EXISTS flags_by_run ON flags (telco, run_date);
"""


def store_path(output_dir: Path) -> Path:
    """The embedded store of a deployment: next to its run folders."""
    return Path(output_dir) / "history.sqlite"


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30)
    db.executescript(_SCHEMA)
    return db


def flag_keys(rows: pa.Table, flag_lists: pa.Array | pa.ChunkedArray) -> pd.DataFrame:
    """One ``(telco, msisdn, flag, row)`` per flag of each row (``row`` = index in ``rows``)."""
    flags = flag_lists.combine_chunks() if isinstance(flag_lists, pa.ChunkedArray) \
        else flag_lists
    if len(flags) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in KEY}).assign(row=0).iloc[:0]
    parents = pc.list_parent_indices(flags)
    number = pc.coalesce(rows["msisdn"], rows["msisdn_raw"], pa.scalar("", pa.string()))
    return pd.DataFrame({
        "telco": pc.take(rows["telco"], parents).to_numpy(zero_copy_only=False),
        "msisdn": pc.take(number, parents).to_numpy(zero_copy_only=False),
        "flag": pc.list_flatten(flags).to_numpy(zero_copy_only=False),
        "row": parents.to_numpy(zero_copy_only=False),
    })


def _earlier(db: sqlite3.Connection, run_date: str, telcos: list[str]) -> pd.DataFrame:
    """Earlier runs per telco with ``rank`` 0 = the latest before ``run_date``."""
    marks = ",".join("?" * len(telcos))
    runs = pd.read_sql_query(
        f"SELECT telco, run_date FROM runs WHERE run_date < ? AND telco IN ({marks})",
        db, params=[run_date, *telcos])
    runs = runs.sort_values(["telco", "run_date"], ascending=[True, False])
    runs["rank"] = runs.groupby("telco").cumcount()
    return runs


def classify(path: Path, run_date: str, keys: pd.DataFrame,
             telcos: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(``keys`` with ``tracking``, ``runs``, ``first_seen``; resolved keys of ``telcos``)."""
    out = keys.copy()
    out["tracking"], out["runs"], out["first_seen"] = NEW, 1, date.fromisoformat(run_date)
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in [*KEY, "first_seen"]})
    if not telcos or not Path(path).exists():
        return out, empty
    with closing(_connect(Path(path))) as db:
        runs = _earlier(db, run_date, telcos)
        if runs.empty:
            return out, empty
        marks = ",".join("?" * len(telcos))
        seen = pd.read_sql_query(
            f"SELECT telco, msisdn, flag, run_date FROM flags "
            f"WHERE run_date < ? AND telco IN ({marks})", db, params=[run_date, *telcos])
    seen = seen.merge(runs, on=["telco", "run_date"])
    if seen.empty:
        return out, empty
    seen = seen.sort_values([*KEY, "rank"])
    seen["position"] = seen.groupby(KEY).cumcount()
    streak = seen[seen["rank"] == seen["position"]]
    per_key = streak.groupby(KEY).agg(streak=("rank", "size"), first_seen=("run_date", "min"))
    per_key = per_key.reset_index()
    merged = out.drop(columns=["first_seen"]).merge(per_key, on=KEY, how="left")
    persisting = merged["streak"].notna()
    merged.loc[persisting, "tracking"] = PERSISTING
    merged.loc[persisting, "runs"] = merged.loc[persisting, "streak"].astype(int) + 1
    merged["first_seen"] = pd.to_datetime(merged["first_seen"].fillna(run_date)).dt.date
    merged = merged.drop(columns=["streak"])
    merged.index = out.index
    latest = seen[seen["rank"] == 0][KEY]
    current = set(map(tuple, keys[KEY].itertuples(index=False)))
    gone = latest[np.array([k not in current for k in latest.itertuples(index=False, name=None)],
                           dtype=bool)]
    resolved = gone.merge(per_key[[*KEY, "first_seen"]], on=KEY, how="left")
    return merged, resolved.sort_values(KEY).reset_index(drop=True)


def record(path: Path, run_date: str, keys: pd.DataFrame, telcos: list[str],
           recorded_at: str) -> int:
    """Store this run's keys for ``telcos`` (replacing an earlier recording of the date)."""
    with closing(_connect(Path(path))) as db, db:
        for telco in telcos:
            db.execute("DELETE FROM flags WHERE run_date = ? AND telco = ?", (run_date, telco))
            db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?)",
                       (run_date, telco, recorded_at))
        mine = keys[keys["telco"].isin(telcos)][KEY].drop_duplicates()
        db.executemany("INSERT OR IGNORE INTO flags VALUES (?, ?, ?, ?)",
                       ((run_date, t, m, f) for t, m, f in mine.itertuples(index=False)))
    return len(mine)


def trend(path: Path, telcos: list[str] | None = None) -> pd.DataFrame:
    """Flag-key counts per telco per recorded run (for the report's trend)."""
    if not Path(path).exists():
        return pd.DataFrame(columns=["telco", "run_date", "flags"])
    with closing(_connect(Path(path))) as db:
        frame = pd.read_sql_query(
            "SELECT r.telco, r.run_date, COUNT(f.flag) AS flags FROM runs r "
            "LEFT JOIN flags f ON f.telco = r.telco AND f.run_date = r.run_date "
            "GROUP BY r.telco, r.run_date ORDER BY r.telco, r.run_date", db)
    return frame if telcos is None else frame[frame["telco"].isin(telcos)]
