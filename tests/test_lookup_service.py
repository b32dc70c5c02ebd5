"""The look-up service driven for real (issue 13, "Done when"): ``simrecon serve`` started
by the test on loopback (and always stopped), spoken to over HTTP, on the published runs
of the bundled samples.

Day 1 is run and indexed; officers log in and look numbers and documents up, are
refused outside their scope, without a reason, after too many wrong passwords and over
the rate limit; an investigator raises verification requests; the telco then fixes one
record; day 2 delivers the requests beside the correction list and, once indexed,
closes the one it verified; day 3, past the deadline, shows the other in the report and
escalates it. The page itself is driven in headless Chromium (screenshot kept in
``tests/artifacts/``). Every answer and refusal must be in the audit log, whose chain
``simrecon audit verify`` checks.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pyarrow.compute as pc
import pytest
import yaml

from pipelines.cli import main
from pipelines.lookup import audit, service_store
from pipelines.results.dataset import RunResults
from pipelines.stages import run_all

from .browser import artifacts_dir, browse
from .conftest import REPO, write_config
from .servers import free_port

PASSWORD = "correct horse battery staple"
DAY1 = "2026-11-28"
DAY2 = "2026-11-29"
LATE = (date.today() + timedelta(days=30)).isoformat()  # past every request's deadline
REASON = {"case_reference": "VV-2026/113-PC02", "legal_basis": "Luật An ninh mạng 2018, Điều 26"}
RATE = 40


def _world(tmp: Path) -> tuple[Path, Path]:
    """Copies of the telco mappings; viettel reads an editable copy of its export."""
    folder = tmp / "telcos"
    folder.mkdir()
    export = tmp / "viettel.csv"
    for path in sorted((REPO / "config" / "telcos").glob("*.yaml")):
        mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
        source = (path.parent / mapping["source"]).resolve()
        if mapping["telco"] == "viettel":
            shutil.copyfile(source, export)
            source = export
        mapping["source"] = str(source)
        (folder / path.name).write_text(yaml.safe_dump(mapping, allow_unicode=True),
                                        encoding="utf-8")
    return folder, export


def _edit_export(export: Path, edits: dict[int, dict[str, str]]) -> None:
    with export.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    for source_row, fields in edits.items():
        for column, value in fields.items():
            rows[source_row][header.index(column)] = value
    with export.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)


@contextlib.contextmanager
def serving(settings: Path) -> Iterator[str]:
    """``simrecon serve`` in a process of its own on a free loopback port; always stopped."""
    port = free_port()
    log = settings.with_suffix(".log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "serve", "--settings", str(settings),
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise AssertionError("simrecon serve exited: "
                                     + settings.with_suffix(".log").read_text())
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError("simrecon serve did not start in time")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _add_account(settings: Path, name: str, role: str, provinces: str, telcos: str,
                 monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["lookup", "account", "add", name, "--agency", f"agency of {name}",
                 "--role", role, "--provinces", provinces, "--telcos", telcos,
                 "--settings", str(settings), "--password-stdin"]) == 0


class Officer:
    """An HTTP client logged in as one account."""

    def __init__(self, url: str, account: str) -> None:
        self.url = url
        response = httpx.post(f"{url}/api/login", json={"account": account,
                                                        "password": PASSWORD})
        assert response.status_code == 200, response.text
        self.token = response.json()["token"]

    def post(self, path: str, body: dict) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body,
                          headers={"Authorization": f"Bearer {self.token}"})

    def number(self, value: str, **reason: str) -> httpx.Response:
        return self.post("/api/lookup", {"kind": "number", "value": value,
                                         **(reason if reason else REASON)})

    def document(self, value: str) -> httpx.Response:
        return self.post("/api/lookup", {"kind": "document", "value": value, **REASON})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Day 1 run and indexed; the service's settings and accounts."""
    tmp = tmp_path_factory.mktemp("lookup")
    telcos, export = _world(tmp)
    config = write_config(tmp, telcos_dir=telcos,
                          lookup={"public_url": "http://127.0.0.1:9"})
    run_all(str(config), DAY1)
    settings = tmp / "lookup.yaml"
    settings.write_text(yaml.safe_dump({
        "run_config": str(config), "max_failed_logins": 3, "lockout_minutes": 30,
        "lookups_per_minute": RATE}), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        _add_account(settings, "an.nguyen", "investigator", "*", "*", patch)
        _add_account(settings, "binh.tran", "investigator", "079", "viettel", patch)
        _add_account(settings, "ha.le", "compliance", "*", "*", patch)
        _add_account(settings, "burst", "investigator", "*", "*", patch)
        _add_account(settings, "guess.me", "investigator", "*", "*", patch)
    results = RunResults(tmp / "runs" / DAY1).read()
    return {"tmp": tmp, "config": config, "settings": settings, "export": export,
            "results": results}


@pytest.fixture(scope="module")
def server(world: dict) -> Iterator[str]:
    with serving(world["settings"]) as url:
        yield url


def _outcomes(world: dict, account: str) -> list[str]:
    db = service_store.engine(world["tmp"] / "runs" / "lookup" / "service.sqlite")
    return [e["outcome"] for e in audit.export(db, account=account)]


def _rows(results, condition) -> list[dict]:  # type: ignore[no-untyped-def]
    return results.filter(condition).to_pylist()


def test_lookup_by_number_and_document(world: dict, server: str) -> None:
    results = world["results"]
    verified = _rows(results, pc.and_(pc.equal(results["status"], "VERIFIED"),
                                      pc.equal(results["id_type"], "CCCD")))[0]
    officer = Officer(server, "an.nguyen")
    # Asked the way a victim writes it down: +84, spaces.
    spoken = f"+84 {verified['msisdn'][1:4]} {verified['msisdn'][4:]}"
    answer = officer.number(spoken)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["query"] == {"kind": "number", "value": verified["msisdn"]}
    assert body["index_run"] == DAY1
    (found,) = [s for s in body["subscriptions"] if s["telco"] == verified["telco"]]
    assert found["status"] == "VERIFIED"
    assert found["id_number"] == verified["id_number"]  # an investigator sees it in full
    assert found["full_name"] == verified["full_name"]
    assert found["citizen_id"] == verified["holder_citizen_id"]
    assert found["date_of_birth"] == verified["date_of_birth"].isoformat()
    assert found["province"] == verified["holder_citizen_id"][:3]
    assert found["first_run"] == found["last_run"] == DAY1
    assert body["verification_request_possible"] == []  # the data answers
    # By document: every subscription of the citizen, across telcos, as in the results.
    expected = {(r["telco"], r["msisdn"]) for r in _rows(results, pc.or_(
        pc.equal(results["id_number"], verified["id_number"]),
        pc.and_(pc.equal(results["status"], "VERIFIED"),
                pc.equal(results["holder_citizen_id"], verified["id_number"]))))}
    answer = officer.document(verified["id_number"])
    assert answer.status_code == 200, answer.text
    got = {(s["telco"], s["msisdn"]) for s in answer.json()["subscriptions"]}
    assert got == expected and len(got) >= 1
    # A compliance account sees masked numbers and no name.
    masked = Officer(server, "ha.le").number(verified["msisdn"]).json()["subscriptions"][0]
    assert "full_name" not in masked and "date_of_birth" not in masked
    assert masked["id_number"] != verified["id_number"] and "*" in masked["id_number"]
    assert masked["id_number"][-3:] == verified["id_number"][-3:]
    assert set(masked["id_number"][:-3]) == {"*"}


def test_no_wildcards_and_no_login_no_answer(world: dict, server: str) -> None:
    officer = Officer(server, "an.nguyen")
    for value in ("09*", "0906%", "090617734_", "0906177345,0906177346", ""):
        response = officer.number(value)
        assert response.status_code in (400, 422), value
    assert officer.post("/api/lookup", {"kind": "name", "value": "NGUYEN VAN AN",
                                        **REASON}).status_code == 400
    anonymous = httpx.post(f"{server}/api/lookup", json={"kind": "number",
                                                         "value": "0906177345", **REASON})
    assert anonymous.status_code == 401
    assert "subscriptions" not in anonymous.json()


def test_outside_the_scope_is_refused(world: dict, server: str) -> None:
    results = world["results"]
    verified = pc.equal(results["status"], "VERIFIED")
    outside = _rows(results, pc.and_(verified, pc.and_(
        pc.not_equal(results["telco"], "viettel"),
        pc.not_equal(pc.utf8_slice_codeunits(results["holder_citizen_id"], 0, 3), "079"))))[0]
    inside = _rows(results, pc.and_(verified, pc.and_(
        pc.equal(results["telco"], "viettel"),
        pc.equal(pc.utf8_slice_codeunits(results["holder_citizen_id"], 0, 3), "079"))))[0]
    officer = Officer(server, "binh.tran")  # TP.HCM (079) at viettel only
    refused = officer.number(outside["msisdn"])
    assert refused.status_code == 403
    assert refused.json()["outcome"] == "REFUSED_SCOPE"
    assert outside["id_number"] not in refused.text and outside["full_name"] not in refused.text
    assert officer.document(outside["id_number"]).status_code == 403
    allowed = officer.number(inside["msisdn"])
    assert allowed.status_code == 200
    assert {s["telco"] for s in allowed.json()["subscriptions"]} == {"viettel"}
    assert _outcomes(world, "binh.tran")[-3:] == ["REFUSED_SCOPE", "REFUSED_SCOPE", "ANSWERED"]


def test_a_request_without_its_reason_is_refused(world: dict, server: str) -> None:
    officer = Officer(server, "an.nguyen")
    number = world["results"]["msisdn"][0].as_py()
    for reason in ({}, {"case_reference": "VV-1"}, {"legal_basis": "Điều 26"},
                   {"case_reference": "  ", "legal_basis": "Điều 26"}):
        response = officer.post("/api/lookup", {"kind": "number", "value": number, **reason})
        assert response.status_code == 400, reason
        assert response.json()["outcome"] == "REFUSED_NO_REASON"
        assert "subscriptions" not in response.json()


def test_lockout_after_repeated_wrong_passwords(world: dict, server: str) -> None:
    def login(password: str) -> httpx.Response:
        return httpx.post(f"{server}/api/login", json={"account": "guess.me",
                                                       "password": password})

    assert login("wrong one").status_code == 401
    assert login("wrong two").status_code == 401
    third = login("wrong three")
    assert third.status_code == 423 and "locked" in third.json()["error"]
    # Locked: even the right password does not open it now.
    assert login(PASSWORD).status_code == 423
    assert main(["lookup", "account", "unlock", "guess.me",
                 "--settings", str(world["settings"])]) == 0
    assert login(PASSWORD).status_code == 200
    assert _outcomes(world, "guess.me") == [
        "LOGIN_WRONG_PASSWORD", "LOGIN_WRONG_PASSWORD", "LOGIN_LOCKED_NOW", "LOGIN_LOCKED",
        "LOGIN_OK"]


def test_rate_limit_per_account(world: dict, server: str) -> None:
    burst = Officer(server, "burst")
    number = world["results"]["msisdn"][0].as_py()
    codes = [burst.number(number).status_code for _ in range(RATE + 3)]
    assert codes[:RATE] == [200] * RATE
    assert set(codes[RATE:]) == {429}
    assert _outcomes(world, "burst")[-3:] == ["REFUSED_RATE_LIMIT"] * 3
    # Another account is not slowed down by this one.
    assert Officer(server, "an.nguyen").number(number).status_code == 200


def test_the_page_in_a_browser(world: dict, server: str) -> None:
    """The report links to the page with the number in the fragment; the page asks for a
    login and a reason, then answers; nothing is loaded from anywhere else."""
    results = world["results"]
    row = _rows(results, pc.equal(results["status"], "VERIFIED"))[3]
    shot = artifacts_dir() / "lookup_page.png"
    report = browse(f"{server}/#number={row['msisdn']}", [
        ("login_page", "document.getElementById('login-form') !== null", False),
        ("login", f"""(() => {{
            document.getElementById('account').value = 'an.nguyen';
            document.getElementById('password').value = {json.dumps(PASSWORD)};
            document.getElementById('login-form').submit(); return true; }})()""", True),
        ("prefilled", "document.getElementById('value').value", False),
        ("submit", f"""(() => {{
            document.getElementById('case_reference').value = {json.dumps(
                REASON['case_reference'])};
            document.getElementById('legal_basis').value = {json.dumps(REASON['legal_basis'])};
            document.getElementById('lookup-form').submit(); return true; }})()""", True),
        ("answer", "Array.from(document.querySelectorAll('#answer table.subscription td'))"
                   ".map(td => td.textContent.trim())", False),
        ("status", "document.querySelector('#answer .f-status').textContent.trim()", False),
    ], screenshot=shot)
    assert report.errors == []
    assert report.values["login_page"] is True
    assert report.values["prefilled"] == row["msisdn"]
    assert row["msisdn"] in report.values["answer"]
    assert row["full_name"] in report.values["answer"]
    assert report.values["status"] == "VERIFIED"
    assert all(u.startswith(server) for u in report.requests), report.requests
    assert shot.stat().st_size > 10_000
    # The report's flagged numbers link to the page, the number in the fragment only.
    html = (world["tmp"] / "runs" / DAY1 / "report.html").read_text(encoding="utf-8")
    assert re.search(r'href="http://127\.0\.0\.1:9/#number=0[0-9]{9}"', html)


def test_verification_requests_are_delivered_closed_and_escalated(world: dict,
                                                                  server: str) -> None:
    results = world["results"]
    viettel = pc.equal(results["telco"], "viettel")
    typo = _rows(results, pc.and_(viettel, pc.and_(pc.is_valid(results["suggested_citizen_id"]),
                                                   pc.is_valid(results["msisdn"]))))
    assert typo, "the sample world plants near-miss IDs at viettel"
    fixed, stays = typo[0], _rows(results, pc.and_(viettel, pc.and_(
        pc.equal(results["status"], "UNREGISTERED"), pc.is_null(
            results["suggested_citizen_id"]))))[0]
    officer = Officer(server, "an.nguyen")
    # The data cannot answer these: not verified.
    answer = officer.number(fixed["msisdn"]).json()
    assert answer["verification_request_possible"] == ["viettel"]
    raised = officer.post("/api/requests", {"number": fixed["msisdn"], **REASON})
    assert raised.status_code == 201, raised.text
    first = raised.json()
    assert first["status"] == "OPEN" and first["reason_code"] == "NOT_VERIFIED"
    assert first["deadline"] == (date.today() + timedelta(days=7)).isoformat()
    again = officer.post("/api/requests", {"number": fixed["msisdn"], **REASON})
    assert again.status_code == 200 and again.json()["request_id"] == first["request_id"]
    second = officer.post("/api/requests", {"number": stays["msisdn"], **REASON}).json()
    # An unknown number: the officer names the telco; a verified one cannot be asked.
    unknown = "0399999999"
    assert officer.number(unknown).json()["subscriptions"] == []
    assert officer.post("/api/requests", {"number": unknown, **REASON}).status_code == 400
    third = officer.post("/api/requests", {"number": unknown, "telco": "mobifone", **REASON})
    assert third.status_code == 201 and third.json()["reason_code"] == "UNKNOWN_NUMBER"
    verified = _rows(results, pc.equal(results["status"], "VERIFIED"))[0]["msisdn"]
    assert officer.post("/api/requests", {"number": verified, **REASON}).json()["outcome"] \
        == "REFUSED_REQUEST"
    # Another agency cannot read these requests.
    other = httpx.get(f"{server}/api/requests/{first['request_id']}",
                      headers={"Authorization": f"Bearer {Officer(server, 'ha.le').token}"})
    assert other.status_code == 404

    # The telco fixes the document of one of them; day 2 delivers both open requests
    # beside the correction list, then closes the one it verified.
    _edit_export(world["export"], {fixed["source_row"]: {
        "SO_GIAY_TO": fixed["suggested_citizen_id"]}})
    day2 = Path(run_all(str(world["config"]), DAY2)["run_dir"])
    delivered = day2 / "corrections" / "requests" / "viettel.csv"
    with delivered.open(encoding="utf-8-sig") as handle:
        listed = list(csv.DictReader(handle))
    assert {r["msisdn"] for r in listed} == {fixed["msisdn"], stays["msisdn"]}
    assert set(listed[0]) == {"request_id", "telco", "msisdn", "reason_code", "reason_vi",
                              "reason_en", "requested_on", "deadline", "status"}
    assert REASON["case_reference"] not in delivered.read_text(encoding="utf-8-sig")
    manifest = json.loads((day2 / "corrections" / "viettel.manifest.json").read_text())
    assert "requests/viettel.csv" in {f["path"] for f in manifest["files"]}
    mobifone = json.loads((day2 / "corrections" / "mobifone.manifest.json").read_text())
    assert "requests/mobifone.csv" in {f["path"] for f in mobifone["files"]}

    def status(request_id: int) -> dict:
        response = httpx.get(f"{server}/api/requests/{request_id}",
                             headers={"Authorization": f"Bearer {officer.token}"})
        assert response.status_code == 200
        return response.json()

    assert status(first["request_id"])["status"] == "CLOSED_VERIFIED"
    assert status(first["request_id"])["closed_run"] == DAY2
    assert status(second["request_id"])["status"] == "OPEN"
    now = officer.number(fixed["msisdn"]).json()
    assert now["index_run"] == DAY2
    assert [s["status"] for s in now["subscriptions"]] == ["VERIFIED"]
    assert now["subscriptions"][0]["first_run"] == DAY1  # kept across the refresh
    assert now["subscriptions"][0]["last_run"] == DAY2

    # Past the deadline: the report shows the unanswered request, the refresh escalates it.
    late = Path(run_all(str(world["config"]), LATE)["run_dir"])
    html = (late / "report.html").read_text(encoding="utf-8")
    section = html[html.index('id="lookup-escalated"'):html.index('id="quarantine-section"')]
    assert stays["msisdn"] in section and fixed["msisdn"] not in section
    assert status(second["request_id"])["status"] == "ESCALATED"
    assert status(second["request_id"])["escalated_run"] == LATE
    assert (late / "corrections" / "requests" / "viettel.csv").exists()  # still owed


def test_every_answer_and_refusal_is_audited(world: dict, server: str) -> None:
    officer = Officer(server, "an.nguyen")
    number = world["results"]["msisdn"][1].as_py()
    answer = officer.number(number).json()
    refused = officer.post("/api/lookup", {"kind": "number", "value": number})
    db = service_store.engine(world["tmp"] / "runs" / "lookup" / "service.sqlite")
    entries = {e["seq"]: e for e in audit.export(db, account="an.nguyen")}
    mine = entries[answer["audit_entry"]]
    assert mine["query"] == number and mine["outcome"] == "ANSWERED"
    assert mine["case_reference"] == REASON["case_reference"]
    assert mine["legal_basis"] == REASON["legal_basis"]
    assert mine["result_digest"] == audit.digest(answer["subscriptions"])
    assert mine["result_count"] == len(answer["subscriptions"])
    assert answer["subscriptions"][0]["id_number"] not in json.dumps(mine)  # a digest only
    assert entries[refused.json()["audit_entry"]]["outcome"] == "REFUSED_NO_REASON"
    assert main(["audit", "verify", "--settings", str(world["settings"])]) == 0
