"""The approval step blocks publication in a real DAG run until someone approves.

With ``SIMRECON_AUTO_APPROVE=0`` the ``approve`` task (``ApprovalOperator``)
parks in Airflow's ``awaiting_input`` state: nothing is published or
delivered while it waits. (The auto-approved path, which publishes, is
``tests/test_dag_run.py::test_daily_run_processes_every_telco``.)
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import REPO, write_config
from .test_dag_run import AIRFLOW_ENV, DAG_ID, _clean_env, airflow_home  # noqa: F401

pytestmark = pytest.mark.slow

WAIT_SECONDS = 240


def _states(home: Path) -> dict[str, str | None]:
    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND task_id IN "
            "('report', 'approve', 'publish', 'check')", (DAG_ID,)).fetchall()
    return dict(rows)


def test_publication_waits_for_approval(airflow_home: Path, tmp_path: Path) -> None:  # noqa: F811
    run_date = "2026-11-27"
    config = write_config(tmp_path)
    env = {**_clean_env(), "SIMRECON_AIRFLOW_HOME": str(airflow_home),
           "SIMRECON_CONFIG": str(config), "SIMRECON_AUTO_APPROVE": "0"}
    process = subprocess.Popen(
        ["bash", "-c", 'source "$0" && exec airflow "$@"', str(AIRFLOW_ENV), "dags", "test",
         DAG_ID, run_date], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        states: dict[str, str | None] = {}
        while time.monotonic() < deadline and process.poll() is None:
            states = _states(airflow_home)
            if states.get("approve") == "awaiting_input":
                break
            time.sleep(2)
        assert states.get("approve") == "awaiting_input", states
        assert states.get("report") == "success"
        time.sleep(5)  # had it not been blocked, publish would have started by now
        states = _states(airflow_home)
        assert states.get("approve") == "awaiting_input"
        assert states.get("publish") in (None, "none", ""), states
        assert not (tmp_path / "runs" / run_date).exists(), "published without approval"
        store = tmp_path / "runs" / "history.sqlite"  # holds at most the review key yet
        if store.exists():
            import sqlite3

            with sqlite3.connect(store) as db:
                recorded = db.execute("SELECT (SELECT count(*) FROM runs) + "
                                      "(SELECT count(*) FROM flags)").fetchone()[0]
            assert recorded == 0, "flags recorded before approval"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
