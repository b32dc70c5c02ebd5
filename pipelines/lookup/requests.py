"""Verification requests: when the data cannot answer, the telco is asked to.

An officer raises one when the number is not in the index (``UNKNOWN_NUMBER``) or its
subscription at that telco is not verified (``NOT_VERIFIED``). It is stored with the
telco, the number, the requesting account and agency, the case reference and legal
basis, and a deadline: the day it was raised plus
``correction_cycle.deadlines.verification_request_days``. One open request per
(telco, number): asking again returns the open one.

Life cycle (docs/lookup.md): ``OPEN`` → listed in the telco's next delivery
(``corrections/requests/<telco>.csv``, ``telco_requests``) and every one after while it
stands; at each index refresh after a published run, ``CLOSED_VERIFIED`` when that run
verified the number at that telco, else ``ESCALATED`` once the run date is past the
deadline (still listed, and shown in the report until a run verifies the number, when
it is closed too). A telco's list carries no case reference, agency or account: only
the number, what is asked, and by when.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.engine import Engine

from pipelines.correction_cycle.deadlines import DeadlinePolicy
from pipelines.lookup.service_store import REQUESTS
from pipelines.storage.files import write_csv

OPEN, ESCALATED, CLOSED_VERIFIED = "OPEN", "ESCALATED", "CLOSED_VERIFIED"
STANDING = (OPEN, ESCALATED)
UNKNOWN_NUMBER, NOT_VERIFIED = "UNKNOWN_NUMBER", "NOT_VERIFIED"
REASON_TEXT = {
    UNKNOWN_NUMBER: {"vi": "Số thuê bao không có trong dữ liệu đối soát: xác minh chủ thuê bao",
                     "en": "Number not in the reconciled data: verify its holder"},
    NOT_VERIFIED: {"vi": "Thông tin chủ thuê bao chưa được xác thực: xác minh chủ thuê bao",
                   "en": "Holder not verified: verify the subscriber's identity"},
}
# corrections/requests/<telco>.csv (docs/data-contracts.md).
REQUEST_COLUMNS = ("request_id", "telco", "msisdn", "reason_code", "reason_vi", "reason_en",
                   "requested_on", "deadline", "status")
_SCHEMA = pa.schema([("request_id", pa.int64()), ("telco", pa.string()),
                     ("msisdn", pa.string()), ("reason_code", pa.string()),
                     ("reason_vi", pa.string()), ("reason_en", pa.string()),
                     ("requested_on", pa.date32()), ("deadline", pa.date32()),
                     ("status", pa.string())])


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def deadline_for(raised: date, policy: DeadlinePolicy) -> date:
    return raised + timedelta(days=policy.verification_request_days)


def raise_request(db: Engine, *, telco: str, msisdn: str, reason_code: str, account: str,
                  agency: str, case_reference: str, legal_basis: str,
                  policy: DeadlinePolicy, today: date | None = None) -> tuple[dict, bool]:
    """(the request, whether it is new): the standing request for (telco, number) if there
    is one, else a new ``OPEN`` one."""
    with db.begin() as conn:
        standing = conn.execute(select(REQUESTS).where(
            REQUESTS.c.telco == telco, REQUESTS.c.msisdn == msisdn,
            REQUESTS.c.status.in_(STANDING)).order_by(REQUESTS.c.id)).first()
        if standing is not None:
            return dict(standing._mapping), False
        raised = today or datetime.now(UTC).date()
        now = _now()
        new_id = conn.execute(insert(REQUESTS).values(
            telco=telco, msisdn=msisdn, reason_code=reason_code, account=account, agency=agency,
            case_reference=case_reference, legal_basis=legal_basis, raised_at=now,
            deadline=deadline_for(raised, policy).isoformat(), status=OPEN, updated_at=now)
        ).inserted_primary_key[0]
        row = conn.execute(select(REQUESTS).where(REQUESTS.c.id == new_id)).one()
    return dict(row._mapping), True


def get_request(db: Engine, request_id: int) -> dict | None:
    with db.connect() as conn:
        row = conn.execute(select(REQUESTS).where(REQUESTS.c.id == request_id)).first()
    return dict(row._mapping) if row is not None else None


def requests_for_number(db: Engine, msisdn: str) -> list[dict]:
    with db.connect() as conn:
        rows = conn.execute(select(REQUESTS).where(REQUESTS.c.msisdn == msisdn)
                            .order_by(REQUESTS.c.id)).all()
    return [dict(r._mapping) for r in rows]


def numbers_asked(db: Engine) -> set[str]:
    """Every number a request was ever raised about."""
    with db.connect() as conn:
        return set(conn.execute(select(REQUESTS.c.msisdn).distinct()).scalars())


def standing_requests(db: Engine, telco: str | None = None) -> list[dict]:
    condition = REQUESTS.c.status.in_(STANDING)
    if telco is not None:
        condition = and_(condition, REQUESTS.c.telco == telco)
    with db.connect() as conn:
        rows = conn.execute(select(REQUESTS).where(condition).order_by(REQUESTS.c.id)).all()
    return [dict(r._mapping) for r in rows]


def telco_requests(db: Engine, telco: str) -> pa.Table:
    """The telco's standing requests for its delivery, in ``REQUEST_COLUMNS`` (no case
    reference, agency or account)."""
    rows = standing_requests(db, telco)
    return pa.table({
        "request_id": [r["id"] for r in rows],
        "telco": [r["telco"] for r in rows],
        "msisdn": [r["msisdn"] for r in rows],
        "reason_code": [r["reason_code"] for r in rows],
        "reason_vi": [REASON_TEXT[r["reason_code"]]["vi"] for r in rows],
        "reason_en": [REASON_TEXT[r["reason_code"]]["en"] for r in rows],
        "requested_on": [date.fromisoformat(r["raised_at"][:10]) for r in rows],
        "deadline": [date.fromisoformat(r["deadline"]) for r in rows],
        "status": [r["status"] for r in rows],
    }, schema=_SCHEMA)


def write_telco_requests(db: Engine, telco: str, corrections_dir: Path) -> Path | None:
    """``corrections_dir/requests/<telco>.csv`` when the telco has standing requests (the
    caller lists it in the telco's delivery manifest); None when it has none."""
    table = telco_requests(db, telco)
    if table.num_rows == 0:
        return None
    return write_csv(table, Path(corrections_dir) / "requests" / f"{telco}.csv")


def settle(db: Engine, run_date: str, verified) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """After the index of ``run_date`` is in place: close the standing requests whose
    number that run verified at that telco (``verified(telco, msisdn) -> bool``), escalate
    the open ones past their deadline."""
    counts = {CLOSED_VERIFIED: 0, ESCALATED: 0}
    now = _now()
    for request in standing_requests(db):
        if verified(request["telco"], request["msisdn"]):
            status, values = CLOSED_VERIFIED, {"closed_run": run_date}
        elif request["status"] == OPEN and run_date > request["deadline"]:
            status, values = ESCALATED, {"escalated_run": run_date}
        else:
            continue
        with db.begin() as conn:
            conn.execute(update(REQUESTS).where(REQUESTS.c.id == request["id"])
                         .values(status=status, updated_at=now, **values))
        counts[status] += 1
    return counts


def overdue(db: Engine, run_date: str) -> list[dict]:
    """Requests escalated, or open past their deadline on ``run_date``: the report's list
    (number, telco, dates, no case data)."""
    with db.connect() as conn:
        rows = conn.execute(select(REQUESTS).where(or_(
            REQUESTS.c.status == ESCALATED,
            and_(REQUESTS.c.status == OPEN, REQUESTS.c.deadline < run_date)))
            .order_by(REQUESTS.c.deadline, REQUESTS.c.id)).all()
    out = []
    for r in rows:
        late = (date.fromisoformat(run_date) - date.fromisoformat(r.deadline)).days
        out.append({"request_id": r.id, "telco": r.telco, "msisdn": r.msisdn,
                    "reason_code": r.reason_code, "requested_on": r.raised_at[:10],
                    "deadline": r.deadline, "days_late": late, "status": r.status})
    return out
