"""The audit log: append-only, every entry chained to the one before by its hash.

Every request to the service, and every refusal, is one entry (ETSI TS 102 657 asks
the same of a retained-data handover): who (account, agency, role, client address),
when (UTC), what was asked (the kind and the number or document), why (case reference
and legal basis), the outcome, how many subscriptions were returned and a SHA-256
digest of exactly what was returned, never a copy of it.

Each entry holds ``seq`` (1, 2, …), ``prev_hash`` (the previous entry's hash; 64 zeros
for the first) and ``hash`` = SHA-256 of the entry's canonical JSON (sorted keys, no
spaces, UTF-8) without ``hash``. ``verify`` recomputes the chain and names the first
entry that was edited (its hash no longer matches), removed (a gap in ``seq``, or a
``prev_hash`` that is not its predecessor's hash) or cut off at the end (the head, kept
in its own table by every append, is not reached).

Concurrent requests never fork the chain: appends are serialised by the database (the
first statement of an append locks the head row; on PostgreSQL across hosts too), and
within one process a writer thread commits every entry waiting at that moment in one
transaction (group commit: one disk flush for many requests). An answer is sent only
after its entry is committed.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, text, update
from sqlalchemy.engine import Connection, Engine

from pipelines.lookup.service_store import AUDIT, AUDIT_HEAD, GENESIS

FIELDS = ("seq", "at", "account", "agency", "role", "action", "query_kind", "query",
          "case_reference", "legal_basis", "outcome", "detail", "result_count",
          "result_digest", "client", "prev_hash")
EXPORT_FIELDS = (*FIELDS, "hash")


def digest(value: object) -> str:
    """SHA-256 of ``value``'s canonical JSON: what a returned answer is recorded as."""
    return hashlib.sha256(canonical(value)).hexdigest()


def canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode("utf-8")


def entry_hash(entry: dict) -> str:
    return hashlib.sha256(canonical({k: entry[k] for k in FIELDS})).hexdigest()


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _lock_head(conn: Connection) -> tuple[int, str]:
    # A write first: SQLite takes its write lock, PostgreSQL the row lock, so no other
    # append (another thread or process) reads the same head until this one commits.
    conn.execute(update(AUDIT_HEAD).where(AUDIT_HEAD.c.id == 1)
                 .values(seq=AUDIT_HEAD.c.seq))
    seq, head = conn.execute(select(AUDIT_HEAD.c.seq, AUDIT_HEAD.c.hash)
                             .where(AUDIT_HEAD.c.id == 1)).one()
    return int(seq), str(head)


def append_entries(db: Engine, entries: list[dict]) -> list[dict]:
    """Chain and commit ``entries`` (each with every field but seq, prev_hash and hash)
    in one transaction; the committed entries, in order."""
    with db.begin() as conn:
        seq, head = _lock_head(conn)
        chained = []
        for entry in entries:
            seq += 1
            row = {**{k: entry.get(k, "") for k in FIELDS}, "seq": seq, "prev_hash": head}
            row["result_count"] = int(row["result_count"] or 0)
            row["hash"] = head = entry_hash(row)
            chained.append(row)
        conn.execute(AUDIT.insert(), chained)
        conn.execute(update(AUDIT_HEAD).where(AUDIT_HEAD.c.id == 1).values(seq=seq, hash=head))
    return chained


class AuditLog:
    """Appends entries through one writer thread that commits whatever is waiting in one
    transaction; ``record`` returns when its entry is committed."""

    def __init__(self, db: Engine, max_batch: int = 256) -> None:
        self.db = db
        self._queue: queue.Queue[tuple[dict, Future] | None] = queue.Queue()
        self._max_batch = max_batch
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def record(self, entry: dict, timeout: float = 30.0) -> dict:
        future: Future = Future()
        self._queue.put((entry, future))
        return future.result(timeout=timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.append(more)
            try:
                chained = append_entries(self.db, [e for e, _ in batch])
            except Exception as exc:  # every waiting request fails: no answer unaudited
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), row in zip(batch, chained, strict=True):
                future.set_result(row)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)


# --- verification and export --------------------------------------------------------------


@dataclass
class Verdict:
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    first_broken: int | None = None
    problem: str = ""


def _rows(db: Engine, where: str = "", params: dict | None = None,
          chunk: int = 10_000) -> Iterator[dict]:
    last = 0
    while True:
        with db.connect() as conn:
            rows = conn.execute(text(
                f"SELECT {', '.join(EXPORT_FIELDS)} FROM lookup_audit WHERE seq > :last "
                f"{where} ORDER BY seq LIMIT {chunk}"), {"last": last, **(params or {})}
            ).mappings().all()
        if not rows:
            return
        for row in rows:
            yield dict(row)
        last = rows[-1]["seq"]


def verify(db: Engine) -> Verdict:
    """Walk the whole chain; the first entry that is not what the chain says, if any."""
    with db.connect() as conn:
        head_seq, head_hash = conn.execute(select(AUDIT_HEAD.c.seq, AUDIT_HEAD.c.hash)
                                           .where(AUDIT_HEAD.c.id == 1)).one()
    expected_seq, previous, count = 1, GENESIS, 0
    for row in _rows(db):
        count += 1
        seq = int(row["seq"])
        if seq != expected_seq:
            return Verdict(False, count, head_seq, head_hash, expected_seq,
                           f"entry {expected_seq} is missing (deleted): the log goes from "
                           f"{expected_seq - 1} to {seq}")
        if row["prev_hash"] != previous:
            return Verdict(False, count, head_seq, head_hash, seq,
                           f"entry {seq} does not follow entry {seq - 1} (prev_hash differs): "
                           "an entry before it was replaced")
        if entry_hash(row) != row["hash"]:
            return Verdict(False, count, head_seq, head_hash, seq,
                           f"entry {seq} was edited: its content no longer matches its hash")
        previous, expected_seq = row["hash"], seq + 1
    last = expected_seq - 1
    if last != head_seq or previous != head_hash:
        missing = last + 1 if last < head_seq else head_seq + 1
        return Verdict(False, count, head_seq, head_hash, missing,
                       f"the log ends at entry {last} but its head is entry {head_seq}: "
                       f"entries from {missing} on were removed" if last < head_seq else
                       f"the head (entry {head_seq}) does not match the log's last entry")
    return Verdict(True, count, head_seq, head_hash)


def export(db: Engine, start: str | None = None, end: str | None = None,
           account: str | None = None) -> Iterator[dict]:
    """Entries with ``start <= at < end`` (ISO dates or times, UTC) of ``account`` (all when
    None), in order, each with its hash so that oversight can check the chain."""
    clauses, params = [], {}
    if start:
        clauses.append("AND at >= :start")
        params["start"] = start
    if end:
        clauses.append("AND at < :end")
        params["end"] = end
    if account:
        clauses.append("AND account = :account")
        params["account"] = account
    yield from _rows(db, " ".join(clauses), params)
