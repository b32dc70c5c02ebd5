"""The service's own database: accounts, sessions, the audit log, verification requests.

Never rebuilt (unlike the index). Embedded default: ``<output_dir>/lookup/service.sqlite``
(owner-only, WAL, ``synchronous=FULL`` so an audit entry that was acknowledged survives
a power cut); PostgreSQL through a URL (``lookup.service_store``). Tables are created
when missing. The audit table refuses ``UPDATE`` and ``DELETE`` by trigger (on both
databases); its hash chain (pipelines/lookup/audit.py) detects what a trigger cannot
stop, such as an edit of the file itself.
"""

from __future__ import annotations

import threading
import time
from functools import lru_cache

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    insert,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError

from pipelines.correction_cycle.history import StoreError
from pipelines.lookup.store import Store, _prepare_folder, secure_file, sqlite_file, url_of

METADATA = MetaData()
ACCOUNTS = Table(
    "lookup_accounts", METADATA,
    Column("name", String, primary_key=True),
    Column("agency", String, nullable=False),
    Column("role", String, nullable=False),
    Column("provinces", String, nullable=False),  # "*" or comma-separated old codes
    Column("telcos", String, nullable=False),  # "*" or comma-separated telco names
    Column("password_hash", String, nullable=False),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", String),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", String, nullable=False),
    Column("password_changed_at", String, nullable=False))
SESSIONS = Table(
    "lookup_sessions", METADATA,
    Column("token_hash", String, primary_key=True),
    Column("account", String, nullable=False),
    Column("created_at", String, nullable=False),
    Column("expires_at", String, nullable=False),
    Index("lookup_sessions_by_expiry", "expires_at"))
AUDIT = Table(
    "lookup_audit", METADATA,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", String, nullable=False),
    Column("account", String, nullable=False),
    Column("agency", String, nullable=False),
    Column("role", String, nullable=False),
    Column("action", String, nullable=False),
    Column("query_kind", String, nullable=False),
    Column("query", String, nullable=False),
    Column("case_reference", String, nullable=False),
    Column("legal_basis", String, nullable=False),
    Column("outcome", String, nullable=False),
    Column("detail", String, nullable=False),
    Column("result_count", Integer, nullable=False),
    Column("result_digest", String, nullable=False),
    Column("client", String, nullable=False),
    Column("prev_hash", String, nullable=False),
    Column("hash", String, nullable=False),
    Index("lookup_audit_by_account", "account", "at"),
    Index("lookup_audit_by_time", "at"))
# The chain's head, updated in the transaction of every append: a deleted last entry
# (which breaks no link) still shows as a head the log does not reach.
AUDIT_HEAD = Table(
    "lookup_audit_head", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String, nullable=False))
REQUESTS = Table(
    "lookup_requests", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("telco", String, nullable=False),
    Column("msisdn", String, nullable=False),
    Column("reason_code", String, nullable=False),
    Column("account", String, nullable=False),
    Column("agency", String, nullable=False),
    Column("case_reference", String, nullable=False),
    Column("legal_basis", String, nullable=False),
    Column("raised_at", String, nullable=False),
    Column("deadline", String, nullable=False),
    Column("status", String, nullable=False),
    Column("escalated_run", String),
    Column("closed_run", String),
    Column("updated_at", String, nullable=False),
    Index("lookup_requests_by_telco", "telco", "status"),
    Index("lookup_requests_by_number", "msisdn"))

GENESIS = "0" * 64

_SQLITE_GUARDS = (
    "CREATE TRIGGER IF NOT EXISTS lookup_audit_no_update BEFORE UPDATE ON lookup_audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS lookup_audit_no_delete BEFORE DELETE ON lookup_audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
)
_POSTGRES_GUARDS = (
    "CREATE OR REPLACE FUNCTION lookup_audit_append_only() RETURNS trigger AS $$ BEGIN "
    "RAISE EXCEPTION 'the audit log is append-only'; END $$ LANGUAGE plpgsql",
    "DROP TRIGGER IF EXISTS lookup_audit_no_change ON lookup_audit",
    "CREATE TRIGGER lookup_audit_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON lookup_audit "
    "FOR EACH STATEMENT EXECUTE FUNCTION lookup_audit_append_only()",
)
_ready: set[str] = set()
_ready_lock = threading.Lock()


@lru_cache(maxsize=16)
def _engine(url_text: str) -> Engine:
    url = make_url(url_text)
    file = sqlite_file(url)
    try:
        if file is None:
            return create_engine(url, pool_size=8, max_overflow=24, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise StoreError(f"look-up store {url.render_as_string()}: driver not installed "
                         f"({exc}); pip install 'simrecon[postgres]'") from exc
    _prepare_folder(file)
    db = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                       pool_size=8, max_overflow=24)

    @event.listens_for(db, "connect")
    def _pragmas(connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    return db


def engine(store: Store) -> Engine:
    """A pooled engine for the service store, its tables created on first use."""
    url = url_of(store)
    key = url.render_as_string(hide_password=False)
    db = _engine(key)
    file = sqlite_file(url)
    if key not in _ready or (file is not None and not file.exists()):
        with _ready_lock:
            try:
                _create(db, file)
            except OperationalError:  # another process created them at the same moment
                time.sleep(0.5)
                _create(db, file)
        if file is not None:
            secure_file(file)
            for side in (file.with_name(file.name + "-wal"), file.with_name(file.name + "-shm")):
                secure_file(side)
        _ready.add(key)
    return db


def _create(db: Engine, file) -> None:  # type: ignore[no-untyped-def]
    with db.begin() as conn:
        METADATA.create_all(conn, checkfirst=True)
        for statement in (_SQLITE_GUARDS if file is not None else _POSTGRES_GUARDS):
            conn.exec_driver_sql(statement)
        if conn.execute(select(AUDIT_HEAD.c.id)).first() is None:
            try:
                with conn.begin_nested():
                    conn.execute(insert(AUDIT_HEAD).values(id=1, seq=0, hash=GENESIS))
            except IntegrityError:
                pass  # another process created it first
