"""What the run's outputs take from the look-up service: each telco's verification
requests (delivered beside its correction list) and the report's section.

Called from ``pipelines/stages/outputs.py``: ``telco_request_files`` where a telco's
delivery files are written (before its delivery manifest, which lists what it returns),
``report_section`` where the report is built. Both only read the service store; a
deployment that never ran the service has no store file and gets nothing.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.config import RunConfig
from pipelines.lookup import requests, service_store
from pipelines.lookup.store import service_store_of, sqlite_file


def _db(config: RunConfig):  # type: ignore[no-untyped-def]
    store = service_store_of(config)
    file = sqlite_file(store)
    if file is not None and not file.exists():
        return None
    return service_store.engine(store)


def telco_request_files(config: RunConfig, telco: str, corrections_dir: Path) -> list[Path]:
    """``[corrections/requests/<telco>.csv]`` when the telco has standing verification
    requests (columns ``requests.REQUEST_COLUMNS``, docs/data-contracts.md), else ``[]``."""
    db = _db(config)
    if db is None:
        return []
    written = requests.write_telco_requests(db, telco, corrections_dir)
    return [written] if written is not None else []


def report_section(config: RunConfig, run_date: str) -> dict:
    """The report's look-up block: ``public_url`` (flagged numbers link to the look-up
    page when set) and ``overdue``, the requests escalated or past their deadline."""
    db = _db(config)
    return {"public_url": config.lookup.public_url,
            "overdue": requests.overdue(db, run_date) if db is not None else []}
