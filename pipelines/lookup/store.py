"""Where the look-up index and the service's state live: databases named by a URL.

Like the history store (``pipelines/correction_cycle/history.py``), a setting is empty
(the embedded default: an SQLite file under ``<output_dir>/lookup/``, outside every run
folder), a file path, ``sqlite:///…`` or ``postgresql://user@host/db`` (password from
``PGPASSWORD``/``.pgpass``). Embedded files are owner-only (0600, folder 0700).

The **index** is built whole into new tables and swapped in atomically, so a reader
sees the previous index or the new one, never a part: on SQLite a new file renamed over
the old (a reader that opened the old file finishes on it; every look-up opens the
current file), on PostgreSQL ``…__next`` tables renamed in one transaction. A build may
also be left *pending* (``IndexWriter.stage``: a ``<name>.<run date>.pending.sqlite`` file
beside the index, or the committed ``…__next`` tables) and swapped in later
(``swap_pending``), once its run is published. Bulk
loading uses what each database is fast at: ``executemany`` inside one transaction on
sqlite3, ``COPY`` on PostgreSQL. Tables: ``lookup_numbers`` and ``lookup_documents``
(``bucket`` → packed records, pipelines/lookup/records.py) and ``lookup_meta``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import NullPool

from pipelines.correction_cycle.history import StoreError, store_url

if TYPE_CHECKING:
    from pipelines.config import RunConfig

Store = str | Path
NUMBERS, DOCUMENTS, META = "lookup_numbers", "lookup_documents", "lookup_meta"
INDEX_TABLES = (NUMBERS, DOCUMENTS, META)
_NEXT = "__next"


def configured(setting: str, base_dir: Path, output_path: Path, name: str) -> Store:
    """The store a ``lookup.*_store`` setting names: empty = ``<output>/lookup/<name>``; a
    relative path or ``sqlite:///relative`` resolves against the configuration's folder."""
    if not setting:
        return Path(output_path) / "lookup" / name
    if "://" not in setting:
        return (Path(base_dir) / setting).resolve()
    url = url_of(setting)
    file = sqlite_file(url)
    if file is not None and not file.is_absolute():
        return (Path(base_dir) / file).resolve()
    return setting


def url_of(store: Store) -> URL:
    try:
        return store_url(store)
    except StoreError as exc:
        raise StoreError(str(exc).replace("history store", "look-up store")) from exc


def sqlite_file(store: Store | URL) -> Path | None:
    url = store if isinstance(store, URL) else url_of(store)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def describe(store: Store) -> str:
    return url_of(store).render_as_string(hide_password=True)


def secure_file(path: Path) -> None:
    """Owner-only: the folder 0700, the file 0600 (an embedded store holds citizen data)."""
    with contextlib.suppress(OSError):
        path.parent.chmod(0o700)
    if path.exists():
        path.chmod(0o600)


def _prepare_folder(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        path.parent.chmod(0o700)


@lru_cache(maxsize=32)
def _engine(url_text: str, pooled: bool) -> Engine:
    url = make_url(url_text)
    file = sqlite_file(url)
    try:
        if file is not None:
            _prepare_folder(file)
            return create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})
        if pooled:
            return create_engine(url, pool_size=8, max_overflow=24, pool_pre_ping=True)
        return create_engine(url, poolclass=NullPool)
    except ModuleNotFoundError as exc:
        raise StoreError(f"look-up store {url.render_as_string()}: driver not installed "
                         f"({exc}); pip install 'simrecon[postgres]'") from exc


def engine(store: Store, *, pooled: bool = False) -> Engine:
    """An engine for ``store`` (SQLite: a connection per use; PostgreSQL: pooled when asked,
    for the service)."""
    return _engine(url_of(store).render_as_string(hide_password=False), pooled)


# --- the index: build into new tables, swap ---------------------------------------------


PAGE_SIZE = 16384  # bytes, of a SQLite index file (set before its first table)


class IndexWriter:
    """New index tables being filled; ``publish`` swaps them in, ``abort`` drops them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.file = sqlite_file(store)
        if self.file is not None:
            _prepare_folder(self.file)
            self._tmp = self.file.with_name(f".{self.file.name}.{uuid.uuid4().hex}.building")
            self._db = sqlite3.connect(self._tmp, isolation_level=None)
            # A bucket's row is ~2.5 KB: one per 4 KB page left ~40% of every page empty;
            # 16 KB pages hold six, the file is ~40% smaller and written with ~40% less CPU.
            for pragma in (f"page_size={PAGE_SIZE}", "journal_mode=OFF", "synchronous=OFF",
                           "cache_size=-65536", "temp_store=FILE"):
                self._db.execute(f"PRAGMA {pragma}")
            self._db.execute("BEGIN")
            self._suffix = ""
        else:
            self._raw = engine(store).raw_connection()
            self._db = self._raw.driver_connection
            self._suffix = _NEXT
            for table in INDEX_TABLES:
                self._db.execute(f"DROP TABLE IF EXISTS {table}{_NEXT}")
        for table in (NUMBERS, DOCUMENTS):
            name = f"{table}{self._suffix}"
            self._db.execute(f"CREATE TABLE {name} (bucket BIGINT NOT NULL, records TEXT NOT NULL,"
                             f" CONSTRAINT {name}_pkey PRIMARY KEY (bucket))")
        name = f"{META}{self._suffix}"
        self._db.execute(f"CREATE TABLE {name} (name TEXT NOT NULL, value TEXT NOT NULL, "
                         f"CONSTRAINT {name}_pkey PRIMARY KEY (name))")

    def insert(self, table: str, rows: Iterable[tuple[int, str]]) -> None:
        """Rows ``(bucket, records)``, best in ascending bucket order (appends)."""
        name = f"{table}{self._suffix}"
        if self.file is not None:
            self._db.executemany(f"INSERT INTO {name} VALUES (?, ?)", rows)
            return
        with self._db.cursor() as cursor, \
                cursor.copy(f"COPY {name} (bucket, records) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def publish(self, meta: dict[str, str]) -> None:
        """Swap the new tables in."""
        self.insert_meta(meta)
        if self.file is not None:
            self._commit_file(self.file)
            return
        with self._db.transaction():
            _rename_next(self._db)
        self._db.commit()
        self._raw.close()

    def stage(self, meta: dict[str, str], run_date: str) -> None:
        """Keep the new tables as the pending build of run ``run_date``, for ``swap_pending``
        once the run is published (SQLite: ``pending_file``; PostgreSQL: the ``…__next``
        tables, committed: their meta, inserted last, marks them complete)."""
        self.insert_meta(meta)
        if self.file is not None:
            self._commit_file(pending_file(self.file, run_date))
            return
        self._db.commit()
        self._raw.close()

    def _commit_file(self, target: Path) -> None:
        """SQLite: commit, flush to disk, rename the file to ``target`` (owner-only)."""
        self._db.execute("COMMIT")
        self._db.close()
        os.chmod(self._tmp, 0o600)
        fd = os.open(self._tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self._tmp, target)
        secure_file(target)

    def insert_meta(self, meta: dict[str, str]) -> None:
        name = f"{META}{self._suffix}"
        rows = [(k, str(v)) for k, v in meta.items()]
        if self.file is not None:
            self._db.executemany(f"INSERT INTO {name} VALUES (?, ?)", rows)
        else:
            with self._db.cursor() as cursor:
                cursor.executemany(f"INSERT INTO {name} VALUES (%s, %s)", rows)

    def abort(self) -> None:
        if self.file is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._tmp.unlink(missing_ok=True)
            return
        with contextlib.suppress(Exception):
            self._db.rollback()
            for table in INDEX_TABLES:
                self._db.execute(f"DROP TABLE IF EXISTS {table}{_NEXT}")
            self._db.commit()
        self._raw.close()


def _rename_next(db) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL, inside a transaction: the ``…__next`` tables become the index."""
    for table in INDEX_TABLES:
        db.execute(f"DROP TABLE IF EXISTS {table}")
        db.execute(f"ALTER TABLE {table}{_NEXT} RENAME TO {table}")
        db.execute(f"ALTER INDEX {table}{_NEXT}_pkey RENAME TO {table}_pkey")


# --- the index: a pending build (built before its run is published, swapped in after) ----


def pending_file(index_file: Path, run_date: str) -> Path:
    """SQLite: where the build staged for run ``run_date`` waits, beside the index file."""
    return index_file.with_name(f"{index_file.stem}.{run_date}.pending{index_file.suffix}")


def _pending_files(index_file: Path) -> list[Path]:
    return sorted(index_file.parent.glob(f"{index_file.stem}.*.pending{index_file.suffix}"))


def pending_meta(store: Store, run_date: str) -> dict[str, str] | None:
    """The meta of the pending build of run ``run_date`` (SQLite), or of the one pending
    build (PostgreSQL: check its ``run_date``); None when there is none (or it is
    unreadable: a build that never finished)."""
    file = sqlite_file(store)
    if file is not None:
        path = pending_file(file, run_date)
        if not path.is_file():
            return None
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
                return dict(db.execute(f"SELECT name, value FROM {META}").fetchall())
        except sqlite3.Error:
            return None
    with engine(store).connect() as conn:
        exists = conn.exec_driver_sql("SELECT to_regclass(%s)", (f"{META}{_NEXT}",)).scalar()
        if exists is None:
            return None
        rows = conn.exec_driver_sql(f"SELECT name, value FROM {META}{_NEXT}").fetchall()
    return {name: value for name, value in rows}


def swap_pending(store: Store, run_date: str) -> None:
    """Make the pending build of run ``run_date`` the index, atomically (the caller holds
    ``build_lock`` and checked ``pending_meta``)."""
    file = sqlite_file(store)
    if file is not None:
        os.replace(pending_file(file, run_date), file)
        secure_file(file)
        return
    raw = engine(store).raw_connection()
    try:
        db = raw.driver_connection
        with db.transaction():
            _rename_next(db)
        db.commit()
    finally:
        raw.close()


def drop_pending(store: Store) -> int:
    """Remove every pending build (the caller holds ``build_lock``). Returns how many."""
    file = sqlite_file(store)
    if file is not None:
        found = _pending_files(file)
        for path in found:
            path.unlink(missing_ok=True)
        return len(found)
    with engine(store).begin() as conn:
        found = conn.exec_driver_sql("SELECT to_regclass(%s)", (f"{META}{_NEXT}",)).scalar()
        for table in INDEX_TABLES:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}{_NEXT}")
    return int(found is not None)


@contextlib.contextmanager
def build_lock(store: Store, work_dir: Path) -> Iterator[None]:
    """One index build at a time per store (a file lock; on PostgreSQL an advisory lock,
    so builds on two hosts do not interleave)."""
    import fcntl

    work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(work_dir / "build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        if sqlite_file(store) is not None:
            yield
            return
        with engine(store).connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(hashtext('simrecon.lookup.index'))"))
            try:
                yield
            finally:
                conn.execute(text(
                    "SELECT pg_advisory_unlock(hashtext('simrecon.lookup.index'))"))
                conn.commit()


# --- the index: read ------------------------------------------------------------------------


class IndexUnavailableError(RuntimeError):
    """No index has been built yet (no published run indexed)."""


class IndexChangedError(IndexUnavailableError):
    """The index was swapped between two reads of one look-up (retry it)."""


class IndexReader:
    """Reads the current index: its meta, one bucket (a look-up), or a range (a build).

    On SQLite each use opens the current file read-only, so a swapped-in index is seen
    at the next look-up; on PostgreSQL a pooled connection reads the current tables.
    A look-up reads the bucket and the index generation in one statement and retries
    when the index changed since its meta was read, so it never mixes two builds.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.file = sqlite_file(store)
        self._meta: dict[str, str] | None = None
        self._lock = threading.Lock()
        self._local = threading.local()

    # SQLite: one read-only connection per thread, reopened when the file was swapped.
    def _sqlite(self) -> sqlite3.Connection:
        assert self.file is not None
        try:
            inode = os.stat(self.file).st_ino
        except FileNotFoundError as exc:
            raise IndexUnavailableError("the look-up index has not been built yet") from exc
        held = getattr(self._local, "held", None)
        if held is None or held[0] != inode:
            if held is not None:
                held[1].close()
            db = sqlite3.connect(f"file:{self.file}?mode=ro", uri=True,
                                 check_same_thread=False)
            self._local.held = held = (inode, db)
        return held[1]

    def _query(self, sql: str, params: tuple) -> list[tuple]:
        if self.file is not None:
            try:
                return self._sqlite().execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    raise IndexUnavailableError("the look-up index is incomplete") from exc
                raise
        sql = sql.replace("?", "%s")
        with engine(self.store, pooled=True).connect() as conn:
            try:
                return [tuple(r) for r in conn.exec_driver_sql(sql, params).fetchall()]
            except Exception as exc:
                if "does not exist" in str(exc):
                    raise IndexUnavailableError(
                        "the look-up index has not been built yet") from exc
                raise

    def meta(self, refresh: bool = False) -> dict[str, str]:
        with self._lock:
            if self._meta is None or refresh:
                self._meta = dict(self._query(f"SELECT name, value FROM {META}", ()))
            return self._meta

    def exists(self) -> bool:
        try:
            self.meta(refresh=True)
        except IndexUnavailableError:
            return False
        return True

    def buckets(self, table: str, key_hashes: list[int],
                meta: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
        """(meta, the packed entries of the buckets the ``key_hashes`` fall in) of one index
        generation: the generation is read in the same statement as the buckets, and the
        read is retried when the index was swapped since its meta was read."""
        for _ in range(3):
            current = meta or self.meta()
            bits = int(current["bits"])
            wanted = sorted({h >> (64 - bits) if bits else 0 for h in key_hashes})
            marks = ", ".join("?" * len(wanted))
            rows = self._query(
                f"SELECT m.value, t.records FROM {META} m LEFT JOIN {table} t "
                f"ON t.bucket IN ({marks}) WHERE m.name = 'generation'", tuple(wanted))
            if rows and all(r[0] == current["generation"] for r in rows):
                return current, [r[1] for r in rows if r[1]]
            if meta is not None:
                raise IndexChangedError("the look-up index was replaced during the look-up")
            self.meta(refresh=True)
        raise IndexChangedError("the look-up index kept changing during the look-up")

    def bucket_range(self, table: str, low: int, high: int, chunk: int = 4096) -> Iterator[str]:
        """The packed records of buckets ``low`` to ``high`` (inclusive), in order."""
        start = low
        while start <= high:
            rows = self._query(f"SELECT bucket, records FROM {table} WHERE bucket >= ? AND "
                               f"bucket <= ? ORDER BY bucket LIMIT {chunk}", (start, high))
            if not rows:
                return
            for _, records in rows:
                yield records
            start = rows[-1][0] + 1

    def close(self) -> None:
        held = getattr(self._local, "held", None)
        if held is not None:
            held[1].close()
            self._local.held = None


def service_store_of(config: RunConfig) -> Store:
    """The look-up service's store (accounts, requests, audit) a configuration names.
    Here, not in ``service``: the run's stages that only read it (its verification
    requests, the report's section) need not import the service (its accounts module
    hashes a dummy password with Argon2 on import, ~0.3 CPU s)."""
    return configured(config.lookup.service_store, config.base_dir, config.output_path,
                      "service.sqlite")


def index_store_of(config: RunConfig) -> Store:
    """The look-up index's store a configuration names."""
    return configured(config.lookup.index_store, config.base_dir, config.output_path,
                      "index.sqlite")
