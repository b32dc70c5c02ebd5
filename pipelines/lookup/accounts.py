"""Agency accounts: hashed passwords, lockout, sessions, scope.

Passwords are hashed with Argon2id (``argon2-cffi``: the winner of the Password Hashing
Competition, memory-hard, with its parameters in the hash so they can be raised later;
a hash made with weaker parameters is replaced at the next login). After
``max_failed_logins`` wrong passwords in a row an account is locked for
``lockout_minutes`` (the right password does not open it meanwhile). A login opens a
session of ``session_minutes``: a random token, of which only the SHA-256 is stored, so
a look-up does not pay the password hash and a copy of the database opens no session.

The scope says which subscriptions an account may see: provinces (``*`` or old
province codes; a 2025 unit name given when the account is made stands for its old
provinces) and telcos (``*`` or names). See pipelines/lookup/records.py for what a
subscription's province is.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from pipelines.lookup.service_store import ACCOUNTS, SESSIONS
from pipelines.reporting import provinces as province_table

ALL = "*"
_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("no such account")
MIN_PASSWORD = 12
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


class AccountError(ValueError):
    """An account cannot be created or changed as asked."""


class LoginRefused(PermissionError):
    """Wrong name or password, or a locked or disabled account; ``reason`` for the audit."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Account:
    name: str
    agency: str
    role: str
    provinces: frozenset[str] | None  # None = all
    telcos: frozenset[str] | None  # None = all

    def covers(self, record: dict) -> bool:
        """Whether a subscription (an index record) is inside this account's scope."""
        if self.telcos is not None and record["telco"] not in self.telcos:
            return False
        return self.provinces is None or record["province"] in self.provinces

    def covers_telco(self, telco: str) -> bool:
        return self.telcos is None or telco in self.telcos


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _scope(text: str) -> frozenset[str] | None:
    return None if text == ALL else frozenset(p for p in text.split(",") if p)


def _account(row) -> Account:  # type: ignore[no-untyped-def]
    return Account(row.name, row.agency, row.role, _scope(row.provinces), _scope(row.telcos))


def province_codes(names: list[str], provinces_file: str | None = None) -> str:
    """A province scope from old codes (``079``), old names or 2025 unit names; ``*`` for
    all."""
    if names == [ALL] or not names:
        if not names:
            raise AccountError("give the provinces (codes or names) or * for all")
        return ALL
    table = province_table.mapping(provinces_file)
    codes, old, units = (table[c].to_pylist() for c in ("old_code", "old_name", "unit"))

    def fold(text: str) -> str:
        return unicodedata.normalize("NFC", text).strip().casefold()

    chosen: set[str] = set()
    for name in names:
        wanted = fold(name)
        found = {c for c, o, u in zip(codes, old, units, strict=True)
                 if wanted in (c, fold(o), fold(u))}
        if not found:
            raise AccountError(f"unknown province {name!r}: an old code (079), an old "
                               "province or a 2025 unit (pipelines/data/provinces_2025.csv)")
        chosen |= found
    return ",".join(sorted(chosen))


def create_account(db: Engine, name: str, agency: str, role: str, provinces: str,
                   telcos: str, password: str) -> Account:
    """A new account (``provinces``/``telcos``: ``*`` or comma-separated)."""
    if not _NAME.match(name):
        raise AccountError("account name: 2-64 lower-case letters, digits, '.', '_' or '-'")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password: at least {MIN_PASSWORD} characters")
    if not agency.strip():
        raise AccountError("agency: required (who the account belongs to)")
    now = _iso(_now())
    try:
        with db.begin() as conn:
            conn.execute(insert(ACCOUNTS).values(
                name=name, agency=agency.strip(), role=role, provinces=provinces, telcos=telcos,
                password_hash=_HASHER.hash(password), failed_logins=0, locked_until=None,
                disabled=False, created_at=now, password_changed_at=now))
    except IntegrityError as exc:
        raise AccountError(f"account {name!r} exists already") from exc
    return Account(name, agency.strip(), role, _scope(provinces), _scope(telcos))


def set_password(db: Engine, name: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password: at least {MIN_PASSWORD} characters")
    _change(db, name, password_hash=_HASHER.hash(password), failed_logins=0,
            locked_until=None, password_changed_at=_iso(_now()))


def unlock(db: Engine, name: str) -> None:
    _change(db, name, failed_logins=0, locked_until=None)


def disable(db: Engine, name: str) -> None:
    _change(db, name, disabled=True)
    with db.begin() as conn:
        conn.execute(delete(SESSIONS).where(SESSIONS.c.account == name))


def _change(db: Engine, name: str, **values: object) -> None:
    with db.begin() as conn:
        if conn.execute(update(ACCOUNTS).where(ACCOUNTS.c.name == name)
                        .values(**values)).rowcount != 1:
            raise AccountError(f"no account {name!r}")


def authenticate(db: Engine, name: str, password: str, *, max_failed: int,
                 lockout_minutes: int, now: datetime | None = None) -> Account:
    """The account, or ``LoginRefused``. A wrong password counts towards the lockout."""
    now = now or _now()
    with db.connect() as conn:
        row = conn.execute(select(ACCOUNTS).where(ACCOUNTS.c.name == name)).first()
    if row is None:
        _verify(_DUMMY_HASH, password)  # the same time as for a real account
        raise LoginRefused("UNKNOWN_ACCOUNT", "wrong account name or password")
    if row.disabled:
        raise LoginRefused("DISABLED", "this account is disabled")
    if row.locked_until and row.locked_until > _iso(now):
        raise LoginRefused("LOCKED", f"this account is locked until {row.locked_until} after "
                           f"{max_failed} wrong passwords")
    if not _verify(row.password_hash, password):
        until = None
        with db.begin() as conn:  # committed before the refusal is raised
            conn.execute(update(ACCOUNTS).where(ACCOUNTS.c.name == name)
                         .values(failed_logins=ACCOUNTS.c.failed_logins + 1))
            failed = conn.execute(select(ACCOUNTS.c.failed_logins)
                                  .where(ACCOUNTS.c.name == name)).scalar_one()
            if failed >= max_failed:
                until = _iso(now + timedelta(minutes=lockout_minutes))
                conn.execute(update(ACCOUNTS).where(ACCOUNTS.c.name == name)
                             .values(locked_until=until, failed_logins=0))
        if until is not None:
            raise LoginRefused("LOCKED_NOW", f"wrong password; the account is now locked "
                               f"until {until}")
        raise LoginRefused("WRONG_PASSWORD", "wrong account name or password")
    values: dict[str, object] = {"failed_logins": 0, "locked_until": None}
    if _HASHER.check_needs_rehash(row.password_hash):
        values["password_hash"] = _HASHER.hash(password)
    with db.begin() as conn:
        conn.execute(update(ACCOUNTS).where(ACCOUNTS.c.name == name).values(**values))
    return _account(row)


def _verify(hashed: str, password: str) -> bool:
    try:
        return _HASHER.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def open_session(db: Engine, account: Account, minutes: int) -> tuple[str, str]:
    """A new session: (token, expiry)."""
    token = secrets.token_urlsafe(32)
    now = _now()
    expires = _iso(now + timedelta(minutes=minutes))
    with db.begin() as conn:
        conn.execute(delete(SESSIONS).where(SESSIONS.c.expires_at <= _iso(now)))
        conn.execute(insert(SESSIONS).values(token_hash=_token_hash(token), account=account.name,
                                             created_at=_iso(now), expires_at=expires))
    return token, expires


def session_account(db: Engine, token: str) -> Account | None:
    """The account of a live session (not expired, account not disabled), else None."""
    if not token or len(token) > 100:
        return None
    with db.connect() as conn:
        row = conn.execute(
            select(ACCOUNTS).join(SESSIONS, SESSIONS.c.account == ACCOUNTS.c.name)
            .where(SESSIONS.c.token_hash == _token_hash(token),
                   SESSIONS.c.expires_at > _iso(_now()), ACCOUNTS.c.disabled.is_(False))
        ).first()
    return _account(row) if row is not None else None


def close_session(db: Engine, token: str) -> None:
    with db.begin() as conn:
        conn.execute(delete(SESSIONS).where(SESSIONS.c.token_hash == _token_hash(token)))


def form_token(token: str) -> str:
    """The anti-forgery value a page's forms carry for the session ``token``."""
    return hashlib.sha256(f"form:{token}".encode()).hexdigest()[:32]
