"""Who may ask what, and what they get: the look-up service without HTTP.

Every call is audited (pipelines/lookup/audit.py), answered or refused:

* a look-up is one number or one document number, with a case reference and a legal
  basis (required; ``legal_bases`` may restrict the basis to a list);
* per account at most ``lookups_per_minute`` look-ups and requests in any 60 seconds;
* subscriptions outside the account's scope (provinces, telcos) are never shown; when
  every subscription found is outside it, the look-up is refused;
* a role sees its ``fields`` only, ID numbers masked unless ``unmask_ids``.

A verification request may be raised when the data cannot answer: the number is not in
the index, or its subscription at that telco is not verified (pipelines/lookup/requests.py).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

from matching.ids import mask_id
from pipelines.config import RunConfig, load_config
from pipelines.lookup import accounts, audit, index, keys, service_store
from pipelines.lookup import requests as verification
from pipelines.lookup.accounts import Account, LoginRefused
from pipelines.lookup.settings import ID_FIELDS, ServeSettings
from pipelines.lookup.store import (
    IndexReader,
    IndexUnavailableError,
    configured,
    service_store_of,
)
from pipelines.reporting import provinces

log = logging.getLogger("simrecon.lookup")

KINDS = ("number", "document")
SESSION_RECHECK = 5.0  # seconds


class Refused(Exception):
    """A request refused; ``status`` is the HTTP status, ``outcome`` what the audit says."""

    def __init__(self, status: int, outcome: str, message: str, audit_seq: int = 0) -> None:
        super().__init__(message)
        self.status, self.outcome, self.message, self.audit_seq = (status, outcome, message,
                                                                   audit_seq)


@dataclass
class Reason:
    case_reference: str
    legal_basis: str


@dataclass
class Answer:
    kind: str
    query: str
    index_run: str
    subscriptions: list[dict]
    withheld: bool
    requests: list[dict] = field(default_factory=list)
    can_request: list[str] = field(default_factory=list)  # telcos a request may be raised at
    audit_seq: int = 0

    def to_json(self) -> dict:
        return {"query": {"kind": self.kind, "value": self.query},
                "index_run": self.index_run, "subscriptions": self.subscriptions,
                "outside_scope_withheld": self.withheld, "requests": self.requests,
                "verification_request_possible": self.can_request,
                "audit_entry": self.audit_seq}


class RateLimiter:
    """At most ``limit`` events per account in any 60 seconds (a sliding window, in this
    process: ``simrecon serve`` runs one process)."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._events: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque)
        self._lock = threading.Lock()

    def allow(self, account: str) -> bool:
        now = time.monotonic()
        with self._lock:
            events = self._events[account]
            while events and events[0] <= now - self.window:
                events.popleft()
            if len(events) >= self.limit:
                return False
            events.append(now)
            return True


def public_request(row: dict) -> dict:
    """A verification request as the requesting agency sees it."""
    return {"request_id": row["id"], "telco": row["telco"], "msisdn": row["msisdn"],
            "reason_code": row["reason_code"], "status": row["status"],
            "requested_at": row["raised_at"], "deadline": row["deadline"],
            "case_reference": row["case_reference"], "closed_run": row["closed_run"],
            "escalated_run": row["escalated_run"]}


class LookupService:
    def __init__(self, settings: ServeSettings, config: RunConfig | None = None) -> None:
        self.settings = settings
        self.config = config or load_config(settings.run_config_path)
        lookup = self.config.lookup
        self.index = IndexReader(configured(lookup.index_store, self.config.base_dir,
                                            self.config.output_path, "index.sqlite"))
        self.db = service_store.engine(service_store_of(self.config))
        self.audit = audit.AuditLog(self.db)
        self.limiter = RateLimiter(settings.lookups_per_minute)
        table = provinces.mapping(self.config.resolve(self.config.report.provinces_file)
                                  if self.config.report.provinces_file else None)
        self._province_names = dict(zip(table["old_code"].to_pylist(),
                                        table["old_name"].to_pylist(), strict=True))
        self.telcos = [m.telco for m in self.config.telcos()]
        self._sessions: dict[str, tuple[Account, float]] = {}
        self._asked: set[str] = set()
        self._asked_until = 0.0

    def close(self) -> None:
        self.audit.close()
        self.index.close()

    # --- audit -----------------------------------------------------------------------

    def _record(self, who: Account | None, action: str, outcome: str, *, client: str,
                account_name: str = "", kind: str = "", query: str = "",
                reason: Reason | None = None, detail: str = "",
                result: object = None, count: int = 0) -> int:
        entry = {
            "at": audit.now_utc(), "account": who.name if who else account_name,
            "agency": who.agency if who else "", "role": who.role if who else "",
            "action": action, "query_kind": kind, "query": query[:64],
            "case_reference": reason.case_reference if reason else "",
            "legal_basis": reason.legal_basis if reason else "", "outcome": outcome,
            "detail": detail[:500], "result_count": count,
            "result_digest": audit.digest(result) if result is not None else "",
            "client": client[:64],
        }
        return int(self.audit.record(entry)["seq"])

    def _refuse(self, status: int, outcome: str, message: str, who: Account | None,
                action: str, client: str, **details: object) -> Refused:
        seq = self._record(who, action, outcome, client=client, detail=message,
                           **details)  # type: ignore[arg-type]
        return Refused(status, outcome, message, seq)

    # --- sessions --------------------------------------------------------------------

    def login(self, name: str, password: str, client: str) -> tuple[str, str, Account]:
        """(token, expiry, account), or ``Refused`` (401; 423 when locked)."""
        name = (name or "").strip().lower()[:64]
        try:
            account = accounts.authenticate(
                self.db, name, password or "", max_failed=self.settings.max_failed_logins,
                lockout_minutes=self.settings.lockout_minutes)
        except LoginRefused as refused:
            status = 423 if refused.reason.startswith("LOCKED") else 401
            raise self._refuse(status, f"LOGIN_{refused.reason}", str(refused), None, "login",
                               client, account_name=name) from None
        token, expires = accounts.open_session(self.db, account, self.settings.session_minutes)
        self._record(account, "login", "LOGIN_OK", client=client)
        return token, expires, account

    def session(self, token: str) -> Account | None:
        """The session's account; a live session is re-read from the store at most every
        ``SESSION_RECHECK`` seconds (a disabled account or a logout elsewhere takes effect
        within that), so a look-up does not pay a database round trip for it."""
        now = time.monotonic()
        held = self._sessions.get(token)
        if held is not None and held[1] > now:
            return held[0]
        account = accounts.session_account(self.db, token)
        if account is None:
            self._sessions.pop(token, None)
            return None
        if len(self._sessions) > 10_000:
            self._sessions.clear()
        self._sessions[token] = (account, now + SESSION_RECHECK)
        return account

    def logout(self, account: Account, token: str, client: str) -> None:
        accounts.close_session(self.db, token)
        self._sessions.pop(token, None)
        self._record(account, "logout", "LOGOUT", client=client)

    # --- checks ----------------------------------------------------------------------

    def _reason(self, who: Account, action: str, client: str, kind: str, query: str,
                case_reference: str | None, legal_basis: str | None) -> Reason:
        case = " ".join((case_reference or "").split())
        basis = " ".join((legal_basis or "").split())
        limit = self.settings.max_reason_chars
        problem = ""
        if not case or not basis:
            problem = "every request needs its reason: a case reference and a legal basis"
        elif len(case) > 100 or len(basis) > limit:
            problem = f"case reference at most 100 characters, legal basis at most {limit}"
        elif self.settings.legal_bases and basis not in self.settings.legal_bases:
            problem = "the legal basis must be one of: " + "; ".join(self.settings.legal_bases)
        if problem:
            raise self._refuse(400, "REFUSED_NO_REASON", problem, who, action, client,
                               kind=kind, query=query,
                               reason=Reason(case[:100], basis[:limit]))
        return Reason(case, basis)

    def _limit(self, who: Account, action: str, client: str, kind: str, query: str,
               reason: Reason) -> None:
        if not self.limiter.allow(who.name):
            raise self._refuse(429, "REFUSED_RATE_LIMIT",
                               f"more than {self.settings.lookups_per_minute} requests in a "
                               "minute: wait and try again", who, action, client, kind=kind,
                               query=query, reason=reason)

    def _role(self, who: Account):  # type: ignore[no-untyped-def]
        role = self.settings.roles.get(who.role)
        if role is None:
            raise Refused(403, "REFUSED_ROLE", f"role {who.role!r} is not configured")
        return role

    # --- look-ups ----------------------------------------------------------------------

    def lookup(self, who: Account, kind: str, value: str, case_reference: str | None,
               legal_basis: str | None, client: str) -> Answer:
        action = f"lookup_{kind}" if kind in KINDS else "lookup"
        raw = (value or "").strip()[:40]
        reason = self._reason(who, action, client, kind, raw, case_reference, legal_basis)
        self._limit(who, action, client, kind, raw, reason)
        try:
            if kind not in KINDS:
                raise keys.QueryError("ask for one number or one document number")
            query = keys.normalise_number(raw) if kind == "number" \
                else keys.normalise_document(raw)
        except keys.QueryError as exc:
            raise self._refuse(400, "REFUSED_QUERY", str(exc), who, action, client, kind=kind,
                               query=raw, reason=reason) from None
        try:
            meta, found = (index.find_number(self.index, query) if kind == "number"
                           else index.find_document(self.index, query))
        except IndexUnavailableError as exc:
            raise self._refuse(503, "INDEX_UNAVAILABLE", str(exc), who, action, client,
                               kind=kind, query=query, reason=reason) from None
        visible = [r for r in found if who.covers(r)]
        withheld = len(visible) < len(found)
        if withheld and not visible:
            raise self._refuse(403, "REFUSED_SCOPE", "outside your scope (provinces or "
                               "telcos of your account)", who, action, client, kind=kind,
                               query=query, reason=reason)
        shown = self._shape(who, visible)
        answer = Answer(kind, query, meta.get("run_date", ""), shown, withheld)
        if kind == "number":
            answer.requests = [public_request(r) for r in self._requests_for(query)
                               if r["agency"] == who.agency]
            answer.can_request = self._requestable(who, query, visible, found)
        outcome = "ANSWERED" if shown else "NOT_FOUND"
        answer.audit_seq = self._record(
            who, action, outcome, client=client, kind=kind, query=query, reason=reason,
            detail="some subscriptions outside the scope were withheld" if withheld else "",
            result=shown, count=len(shown))
        return answer

    def _requests_for(self, number: str) -> list[dict]:
        """The requests about ``number``; which numbers have any is re-read at most every
        ``SESSION_RECHECK`` seconds, so most look-ups skip the query."""
        now = time.monotonic()
        if self._asked_until <= now:
            self._asked = verification.numbers_asked(self.db)
            self._asked_until = now + SESSION_RECHECK
        if number not in self._asked:
            return []
        return verification.requests_for_number(self.db, number)

    def _requestable(self, who: Account, number: str, visible: list[dict],
                     found: list[dict]) -> list[str]:
        if not self._role(who).may_request_verification:
            return []
        if not found:
            return [t for t in self.telcos if who.covers_telco(t)]
        return sorted({r["telco"] for r in visible if r["status"] != "VERIFIED"})

    def _shape(self, who: Account, rows: list[dict]) -> list[dict]:
        """The role's fields of each record, ID numbers masked unless the role may see
        them; the date of birth to its precision; the province's name."""
        role = self._role(who)
        out = []
        for row in rows:
            shown = {**row, "flags": [f for f in row["flags"].split("|") if f],
                     "province_name": self._province_names.get(row["province"], "")
                     if row["province"] else ""}
            if row["dob_precision"] == "year":
                shown["date_of_birth"] = row["date_of_birth"][:4]
            if not role.unmask_ids:
                for name in ID_FIELDS:
                    if shown[name]:
                        shown[name] = mask_id(pa.array([shown[name]]))[0].as_py()
            out.append({name: shown[name] if name == "flags" else (shown[name] or None)
                        for name in role.fields})
        return out

    # --- verification requests -------------------------------------------------------

    def raise_request(self, who: Account, number: str, telco: str | None,
                      case_reference: str | None, legal_basis: str | None,
                      client: str) -> tuple[dict, bool]:
        action = "raise_request"
        raw = (number or "").strip()[:40]
        reason = self._reason(who, action, client, "number", raw, case_reference, legal_basis)
        self._limit(who, action, client, "number", raw, reason)

        def refuse(status: int, outcome: str, message: str, query: str) -> Refused:
            return self._refuse(status, outcome, message, who, action, client, kind="number",
                                query=query, reason=reason)

        if not self._role(who).may_request_verification:
            raise refuse(403, "REFUSED_ROLE", "your role may not raise verification requests",
                         raw)
        try:
            query = keys.normalise_number(raw)
        except keys.QueryError as exc:
            raise refuse(400, "REFUSED_QUERY", str(exc), raw) from None
        try:
            _, found = index.find_number(self.index, query)
        except IndexUnavailableError as exc:
            raise refuse(503, "INDEX_UNAVAILABLE", str(exc), query) from None
        visible = [r for r in found if who.covers(r)]
        if found and not visible:
            raise refuse(403, "REFUSED_SCOPE", "outside your scope (provinces or telcos of "
                         "your account)", query)
        allowed = self._requestable(who, query, visible, found)
        telco = (telco or "").strip() or (allowed[0] if len(allowed) == 1 else "")
        if telco not in allowed:
            message = ("the data answers this number: its subscription is verified"
                       if found and not allowed else
                       f"name the telco to ask (one of: {', '.join(allowed)})")
            raise refuse(400, "REFUSED_REQUEST", message, query)
        code = verification.NOT_VERIFIED if any(r["telco"] == telco for r in found) \
            else verification.UNKNOWN_NUMBER
        row, new = verification.raise_request(
            self.db, telco=telco, msisdn=query, reason_code=code, account=who.name,
            agency=who.agency, case_reference=reason.case_reference,
            legal_basis=reason.legal_basis, policy=self.config.correction_cycle.deadlines)
        shown = public_request(row)
        self._asked.add(query)
        self._record(who, action, "REQUEST_RAISED" if new else "REQUEST_ALREADY_OPEN",
                     client=client, kind="number", query=query, reason=reason,
                     detail=f"request {row['id']} to {telco}, deadline {row['deadline']}",
                     result=shown, count=1)
        return shown, new

    def request_status(self, who: Account, request_id: int, client: str) -> dict:
        row = verification.get_request(self.db, request_id)
        if row is None or row["agency"] != who.agency:
            raise self._refuse(404, "REFUSED_NOT_FOUND", "no such request of your agency", who,
                               "request_status", client, kind="request", query=str(request_id))
        shown = public_request(row)
        self._record(who, "request_status", "ANSWERED", client=client, kind="request",
                     query=str(request_id), result=shown, count=1)
        return shown

    def health(self) -> dict:
        try:
            meta = self.index.meta(refresh=True)
        except IndexUnavailableError:
            return {"status": "no index", "index_run": None}
        return {"status": "ok", "index_run": meta.get("run_date"),
                "checked_at": datetime.now(UTC).isoformat(timespec="seconds")}


