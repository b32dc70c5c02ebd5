"""Run-over-run tracking of flags: is a flag new, persisting, or resolved since the last run?

Each flag a telco is asked to act on is keyed ``(telco, msisdn, flag)``; a
number the telco sent that is not a valid number is keyed by the number as
sent. The store holds only these keys and run dates (and, for the review
queue, reviewers' decisions: ``pipelines/correction_cycle/review.py``), never names, dates of
birth or IDs.

The store is a database named by a URL (``correction_cycle.history_store``),
reached through SQLAlchemy Core, so the same code runs on:

* **SQLite** (the default): one embedded file next to the runs,
  ``<output_dir>/history.sqlite``, so a lone machine needs no server; a file
  path or a ``sqlite:///…`` URL;
* **PostgreSQL** (the production option): ``postgresql://user@host:port/db``
  (driver psycopg 3, ``simrecon[postgres]``); the password comes from the
  environment (``PGPASSWORD``) or a ``.pgpass`` file, never from the URL.

Tables are created when missing (``runs``, ``flags``, ``decisions``). Every
write is one transaction; connections are not pooled (``NullPool``), so a
forked Airflow task never inherits an open connection.

A run is recorded when it is published (``record``), so an unpublished or
repeated run date never counts twice: recording a date replaces that date.
Classification compares with the telco's latest run *before* the run date, whose
keys carry their streak (``runs``, ``first_seen``), so it reads one run's keys:

* ``new``: not in the telco's latest earlier run;
* ``persisting``: in it; ``runs`` counts the unbroken streak of runs
  (this one included) and ``first_seen`` is the streak's first run date;
* ``resolved``: in the telco's latest earlier run but not in this one.

A telco that failed this run is neither classified nor recorded, so its flags
are not all "resolved" because its export was unreadable.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable
from functools import lru_cache
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import (
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    and_,
    create_engine,
    delete,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.pool import NullPool

from matching.flags import FLAGS as MATCH_FLAGS
from pipelines.correction_cycle import compact_keys
from pipelines.storage.modes import make_dirs, owner_only

NEW, PERSISTING, RESOLVED = "new", "persisting", "resolved"
KEY = ["telco", "msisdn", "flag"]

Store = str | Path  # a file path (SQLite) or a database URL

METADATA = MetaData()
RUNS = Table(
    "runs", METADATA,
    Column("run_date", String, nullable=False), Column("telco", String, nullable=False),
    Column("recorded_at", String, nullable=False),
    PrimaryKeyConstraint("run_date", "telco"))
FLAGS = Table(
    "flags", METADATA,
    Column("run_date", String, nullable=False), Column("telco", String, nullable=False),
    Column("msisdn", String, nullable=False), Column("flag", String, nullable=False),
    # The key's unbroken streak of runs up to this one, and the streak's first run date:
    # the next run reads them from this run alone (null in stores written before).
    Column("runs", Integer, nullable=True), Column("first_seen", String, nullable=True),
    PrimaryKeyConstraint("telco", "msisdn", "flag", "run_date"),
    Index("flags_by_run", "telco", "run_date"))
# Reviewers' decisions (pipelines/correction_cycle/review.py): only ever appended; ``id``
# keeps their order.
DECISIONS = Table(
    "decisions", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("telco", String, nullable=False), Column("msisdn", String, nullable=False),
    Column("row_hash", String, nullable=False), Column("decision", String, nullable=False),
    Column("comment", String, nullable=False), Column("reviewer", String, nullable=False),
    Column("decided_at", String, nullable=False), Column("source_file", String, nullable=False),
    Index("decisions_by_key", "telco", "msisdn", "row_hash"))
# Per-deployment secrets (``name`` -> hex ``value``), created on first use: the key of the
# review queue's ``row_hash`` (pipelines/correction_cycle/review.py). Kept in the store so
# every worker of a cluster, and every later run, hashes with the same key.
SECRETS = Table(
    "secrets", METADATA,
    Column("name", String, primary_key=True), Column("value", String, nullable=False),
    Column("created_at", String, nullable=False))
_DECISION_FIELDS = [c.name for c in DECISIONS.columns if c.name != "id"]
INSERT_BATCH = 50_000
# Page cache (KiB) of a SQLite connection that loads a run's flags: 2.5M flags at 10M
# subscriptions load in about half the time of SQLite's default 2 MB cache.
BULK_CACHE_KIB = 262_144


class StoreError(ValueError):
    """The history store setting is not a usable database URL."""


def store_path(output_dir: Path) -> Path:
    """The embedded store of a deployment: next to its run folders."""
    return Path(output_dir) / "history.sqlite"


def configured_store(setting: str, base_dir: Path, output_dir: Path) -> Store:
    """The store a run configuration names: empty = ``<output_dir>/history.sqlite``; a
    path (relative to the configuration's folder) = an SQLite file; else a database URL
    (``sqlite:///relative.db`` also resolves against the configuration's folder)."""
    if not setting:
        return store_path(output_dir)
    if "://" not in setting:
        return (Path(base_dir) / setting).resolve()
    url = store_url(setting)
    file = _sqlite_file(url)
    if file is not None and not file.is_absolute():
        return (Path(base_dir) / file).resolve()
    return setting


def store_url(store: Store) -> URL:
    """The SQLAlchemy URL of ``store``: a path is an SQLite file; ``postgresql://``
    uses psycopg 3 (``postgresql+psycopg``) unless another driver is named."""
    text = str(store)
    if isinstance(store, Path) or "://" not in text:
        return URL.create("sqlite", database=str(Path(text).resolve()))
    try:
        url = make_url(text)
    except ArgumentError as exc:
        raise StoreError(f"history store {text!r} is not a database URL: {exc}") from exc
    if url.password is not None:
        raise StoreError("no password in the history store URL: use PGPASSWORD or .pgpass")
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(f"history store {url.render_as_string()}: only SQLite and "
                         "PostgreSQL are supported")
    return url


def _sqlite_file(url: URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def exists(store: Store) -> bool:
    """False only for an SQLite file not created yet (nothing recorded there)."""
    file = _sqlite_file(store_url(store))
    return file is None or file.exists()


_ready: set[str] = set()
_ready_lock = threading.Lock()


@lru_cache(maxsize=64)
def _engine(url_text: str) -> Engine:
    url = make_url(url_text)
    file = _sqlite_file(url)
    if file is not None:
        make_dirs(file.parent)
        return create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})
    try:
        return create_engine(url, poolclass=NullPool)
    except ModuleNotFoundError as exc:
        raise StoreError(f"history store {url.render_as_string()}: driver not installed "
                         f"({exc}); pip install 'simrecon[postgres]'") from exc


def engine(store: Store) -> Engine:
    """An engine for ``store`` whose tables exist (created on first use)."""
    url = store_url(store)
    key = url.render_as_string(hide_password=False)
    db = _engine(key)
    file = _sqlite_file(url)
    if key not in _ready or (file is not None and not file.exists()):
        try:
            _create_tables(db)
        except OperationalError as exc:
            # Another process (a parallel shard task) created them at the same moment.
            if "already exists" not in str(exc):
                raise
            _create_tables(db)
        _ready.add(key)
        if file is not None:  # decisions and the review key: owner-only (storage/modes.py)
            for path in (file, *file.parent.glob(f"{file.name}-*")):  # and its -wal, -shm
                with contextlib.suppress(FileNotFoundError):  # a journal just removed
                    owner_only(path)
    return db


def _create_tables(db: Engine) -> None:
    with _ready_lock, db.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Workers on several machines create the tables at once (shared_work): two
            # concurrent CREATE TABLEs collide in PostgreSQL's catalogue, so one at a time
            # (released at commit).
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('simrecon.history'))"))
        _migrate_legacy_decisions(conn)
        METADATA.create_all(conn, checkfirst=True)
        _add_streak_columns(conn)


def _migrate_legacy_decisions(conn: Connection) -> None:
    """An SQLite store written before the SQLAlchemy store had ``decisions`` without
    ``id``: rebuild it in insertion (rowid) order so the latest decision still wins."""
    if conn.dialect.name != "sqlite" or not inspect(conn).has_table("decisions"):
        return
    if "id" in {c["name"] for c in inspect(conn).get_columns("decisions")}:
        return
    fields = ", ".join(_DECISION_FIELDS)
    conn.exec_driver_sql("ALTER TABLE decisions RENAME TO decisions_legacy")
    conn.exec_driver_sql("DROP INDEX IF EXISTS decisions_by_key")
    DECISIONS.create(conn)
    conn.exec_driver_sql(f"INSERT INTO decisions ({fields}) SELECT {fields} "
                         "FROM decisions_legacy ORDER BY rowid")
    conn.exec_driver_sql("DROP TABLE decisions_legacy")


def _add_streak_columns(conn: Connection) -> None:
    """A store written before flags kept their streak gets the two (nullable) columns;
    its rows are read with the streak computed from every earlier run instead."""
    present = {c["name"] for c in inspect(conn).get_columns("flags")}
    for name, kind in (("runs", "INTEGER"), ("first_seen", "VARCHAR")):
        if name not in present:
            conn.exec_driver_sql(f"ALTER TABLE flags ADD COLUMN {name} {kind}")


def insert_rows(conn: Connection, table: Table, rows: Iterable[dict]) -> None:
    """Insert ``rows`` in batches (executemany; the transaction is the caller's), so a
    national run's millions of keys never sit in memory as dicts all at once."""
    rows = iter(rows)
    while batch := list(islice(rows, INSERT_BATCH)):
        conn.execute(insert(table), batch)


def _earlier(conn: Connection, run_date: str, telco: str) -> pd.DataFrame:
    """``telco``'s runs before ``run_date``, with ``rank`` 0 = the latest."""
    runs = pd.read_sql(
        select(RUNS.c.telco, RUNS.c.run_date)
        .where(RUNS.c.run_date < run_date, RUNS.c.telco == telco), conn)
    runs = runs.sort_values("run_date", ascending=False, ignore_index=True)
    runs["rank"] = range(len(runs))
    return runs


def _legacy_streaks(conn: Connection, runs: pd.DataFrame, telco: str) -> pd.DataFrame:
    """Per key of ``telco``'s latest earlier run, its unbroken streak over ``runs``."""
    seen = pd.read_sql(
        select(FLAGS.c.telco, FLAGS.c.msisdn, FLAGS.c.flag, FLAGS.c.run_date)
        .where(FLAGS.c.telco == telco), conn).merge(runs, on=["telco", "run_date"])
    seen = seen.sort_values([*KEY, "rank"])
    seen["position"] = seen.groupby(KEY).cumcount()
    streak = seen[seen["rank"] == seen["position"]]
    return streak.groupby(KEY).agg(streak=("rank", "size"),
                                   first_seen=("run_date", "min")).reset_index()


PREVIOUS_SCHEMA = pa.schema([("msisdn", pa.string()), ("flag", pa.string()),
                             ("runs", pa.int64()), ("first_seen", pa.string())])
READ_BATCH = 100_000


def previous_keys(store: Store, run_date: str, telco: str) -> pa.Table:
    """The keys of ``telco``'s latest run before ``run_date`` with their streak
    (``PREVIOUS_SCHEMA``; empty if none), as Arrow: read ``READ_BATCH`` rows at a time,
    so a national telco's millions of keys never sit in memory as Python objects. Rows
    recorded before the store kept streaks get theirs computed from every earlier run."""
    if not exists(store):
        return PREVIOUS_SCHEMA.empty_table()
    with engine(store).connect() as conn:
        runs = _earlier(conn, run_date, telco)
        if runs.empty:
            return PREVIOUS_SCHEMA.empty_table()
        latest = runs.loc[runs["rank"] == 0, "run_date"].iloc[0]
        query = (select(FLAGS.c.msisdn, FLAGS.c.flag, FLAGS.c.runs, FLAGS.c.first_seen)
                 .where(FLAGS.c.telco == telco, FLAGS.c.run_date == latest))
        result = conn.execution_options(yield_per=READ_BATCH).execute(query)
        parts = [pa.table([pa.array(column, field.type) for column, field
                           in zip(zip(*rows, strict=True), PREVIOUS_SCHEMA, strict=True)],
                          schema=PREVIOUS_SCHEMA) for rows in result.partitions()]
        keys = pa.concat_tables(parts).combine_chunks() if parts else \
            PREVIOUS_SCHEMA.empty_table()
        legacy = keys["runs"].null_count
        if legacy:
            keys = _fill_legacy(conn, runs, telco, keys)
    return keys


def _fill_legacy(conn: Connection, runs: pd.DataFrame, telco: str,
                 keys: pa.Table) -> pa.Table:
    """``keys`` with the streak of its rows recorded without one (old stores only)."""
    legacy = keys.filter(pc.is_null(keys["runs"]))
    frame = legacy.select(["msisdn", "flag"]).to_pandas().assign(telco=telco)
    filled = frame.merge(_legacy_streaks(conn, runs, telco), on=KEY, how="left")
    legacy = pa.table({"msisdn": legacy["msisdn"], "flag": legacy["flag"],
                       "runs": pa.array(filled["streak"].to_numpy(dtype="int64"), pa.int64()),
                       "first_seen": pa.array(filled["first_seen"].tolist(), pa.string())},
                      schema=PREVIOUS_SCHEMA)
    return pa.concat_tables([keys.filter(pc.is_valid(keys["runs"])), legacy]).combine_chunks()


def classify(store: Store, run_date: str, keys: pd.DataFrame,
             telcos: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(``keys`` with ``tracking``, ``runs``, ``first_seen``; resolved keys of ``telcos``).

    ``compact_keys.classify`` against ``previous_keys``, one telco at a time: the rules
    are stated once, there; this only carries pandas keys (``record``'s, the tests') to
    its compact form and back. Keys of a telco not in ``telcos`` are new."""
    persisting = np.zeros(len(keys), dtype=bool)
    runs = np.ones(len(keys), dtype=np.int64)
    first_seen = np.full(len(keys), np.datetime64(run_date, "D"))
    codes = pd.Index(MATCH_FLAGS).get_indexer(keys["flag"])
    numbers = keys["msisdn"].to_numpy(dtype=object)
    resolved = []
    for telco in dict.fromkeys(telcos):
        at = np.flatnonzero((keys["telco"] == telco).to_numpy())
        if (codes[at] < 0).any():
            raise ValueError(f"{telco}: a flag not in matching.flags.FLAGS: "
                             f"{sorted(set(keys['flag'].to_numpy()[at][codes[at] < 0]))}")
        mine = compact_keys.TelcoKeys(telco, pa.array(numbers[at], pa.string()),
                                      np.arange(len(at)), codes[at].astype(np.int8))
        classes, gone = compact_keys.classify(mine, previous_keys(store, run_date, telco),
                                              run_date)
        persisting[at], runs[at], first_seen[at] = \
            classes.persisting, classes.runs, classes.first_seen
        resolved.append(gone)
    out = keys.copy()
    out["tracking"] = np.where(persisting, PERSISTING, NEW)
    out["runs"], out["first_seen"] = runs, first_seen.astype(object)  # datetime.date
    gone = pa.concat_tables(resolved) if resolved else \
        compact_keys.RESOLVED_SCHEMA.empty_table()
    return out, gone.sort_by([(c, "ascending") for c in KEY]).to_pandas()


def record(store: Store, run_date: str, keys: pd.DataFrame, telcos: list[str],
           recorded_at: str) -> int:
    """Store this run's keys for ``telcos`` (replacing an earlier recording of the date),
    with their streak (``runs``, ``first_seen``: classified here if ``keys`` lack them)."""
    mine = keys[keys["telco"].isin(telcos)]
    if "runs" not in mine.columns or "first_seen" not in mine.columns:
        mine, _ = classify(store, run_date, mine, telcos)
    return record_batches(store, run_date, telcos, [mine], recorded_at)


def record_batches(store: Store, run_date: str, telcos: list[str],
                   batches: Iterable[pd.DataFrame | pa.Table], recorded_at: str) -> int:
    """``record`` for keys already classified, arriving in batches (a national run's keys
    never sit in memory at once); one transaction. Batches may be Arrow tables (the
    publish step's: ``first_seen`` a date) and are best sorted by ``KEY``, so the
    table's primary-key index is appended to instead of updated at random places."""
    done = 0
    with engine(store).begin() as conn:
        if conn.dialect.name == "sqlite":
            # SQLite's default page cache (2 MB) is far smaller than the flags' primary-key
            # index at national scale: each insert then re-reads its pages from the file.
            # This connection only (NullPool: it closes with the transaction).
            conn.exec_driver_sql(f"PRAGMA cache_size=-{BULK_CACHE_KIB}")
        for telco in telcos:
            conn.execute(delete(FLAGS).where(FLAGS.c.run_date == run_date,
                                             FLAGS.c.telco == telco))
            conn.execute(delete(RUNS).where(RUNS.c.run_date == run_date, RUNS.c.telco == telco))
            conn.execute(insert(RUNS), {"run_date": run_date, "telco": telco,
                                        "recorded_at": recorded_at})
        for batch in batches:
            if isinstance(batch, pd.DataFrame):
                mine = batch[batch["telco"].isin(telcos)].drop_duplicates(KEY)
                first = pd.to_datetime(mine["first_seen"]).dt.strftime("%Y-%m-%d")
                batch = pa.table({
                    "telco": pa.array(mine["telco"].tolist(), pa.string()),
                    "msisdn": pa.array(mine["msisdn"].tolist(), pa.string()),
                    "flag": pa.array(mine["flag"].tolist(), pa.string()),
                    "runs": pa.array(mine["runs"].to_numpy(dtype="int64"), pa.int64()),
                    "first_seen": pa.array(first.tolist(), pa.string())})
            else:
                batch = batch.filter(pc.is_in(batch["telco"], value_set=pa.array(telcos)))
            columns = [pa.array([run_date] * batch.num_rows, pa.string()),
                       *(batch[c] for c in ("telco", "msisdn", "flag", "runs")),
                       batch["first_seen"].cast(pa.string())]
            _bulk_insert(conn, FLAGS, _FLAG_COLUMNS, [c.to_pylist() for c in columns])
            done += batch.num_rows
    return done


_FLAG_COLUMNS = ("run_date", "telco", "msisdn", "flag", "runs", "first_seen")


def _bulk_insert(conn: Connection, table: Table, names: tuple[str, ...],
                 columns: list[list]) -> None:
    """Rows given column-wise (``columns``, one list per name) into ``table`` in the caller's
    transaction, the way each database loads fastest: ``executemany`` of plain tuples on
    SQLite (SQLAlchemy's per-row parameter handling cost more than the insert), ``COPY``
    on PostgreSQL."""
    rows = zip(*columns, strict=True)
    listed = ", ".join(names)
    raw = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        with raw.cursor() as cursor, \
                cursor.copy(f"COPY {table.name} ({listed}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    marks = ", ".join("?" * len(names))
    cursor = raw.cursor()
    try:
        while batch := list(islice(rows, INSERT_BATCH)):
            cursor.executemany(f"INSERT INTO {table.name} ({listed}) VALUES ({marks})", batch)
    finally:
        cursor.close()


def trend(store: Store, telcos: list[str] | None = None) -> pd.DataFrame:
    """Flag-key counts per telco per recorded run (for the report's trend)."""
    if not exists(store):
        return pd.DataFrame(columns=["telco", "run_date", "flags"])
    joined = RUNS.outerjoin(FLAGS, and_(FLAGS.c.telco == RUNS.c.telco,
                                        FLAGS.c.run_date == RUNS.c.run_date))
    query = (select(RUNS.c.telco, RUNS.c.run_date, func.count(FLAGS.c.flag).label("flags"))
             .select_from(joined).group_by(RUNS.c.telco, RUNS.c.run_date)
             .order_by(RUNS.c.telco, RUNS.c.run_date))
    with engine(store).connect() as conn:
        frame = pd.read_sql(query, conn)
    return frame if telcos is None else frame[frame["telco"].isin(telcos)]
