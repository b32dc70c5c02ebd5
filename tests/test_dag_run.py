"""Real DAG runs through Airflow: `airflow dags test` on a temporary SQLite DB.

Airflow runs in a subprocess configured by scripts/airflow_env.sh, exactly as
scripts/demo.sh runs it; the tests then read the task states and XComs from
the run's SQLite metadata DB and look at the published run folder.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml

from pipelines.results.dataset import RunResults

from .conftest import REPO, same_review_key, write_config

pytestmark = pytest.mark.slow

DAG_ID = "subscriber_reconciliation"
REFRESH_ID = "citizen_registry_refresh"
AIRFLOW_ENV = REPO / "scripts" / "airflow_env.sh"
TELCOS_DIR = REPO / "config" / "telcos"
TELCOS = {"mobifone", "viettel", "vinaphone"}
STAGE_TASKS = ("plan", "gate_registry", "plan_shards", "collect_searched", "plan_search",
               "choose_candidates", "spanning_flags", "review_queue", "gate_results",
               "report_sample", "report", "approve", "publish",
               "lookup_stage", "lookup_index", "check")
TELCO_TASKS = ("ingest", "normalise", "gate_export", "partition")
DELIVERY_TASKS = ("corrections", "gate_corrections")  # mapped over every planned telco
SHARDS = 3  # of the snapshot the refresh DAG prepares for the daily run


def _clean_env() -> dict[str, str]:
    """The caller's environment without any Airflow or pytest settings."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "PYTEST", "SIMRECON", "_AIRFLOW"))
    }


def airflow(home: Path, *args: str, config: Path | None = None) -> subprocess.CompletedProcess:
    env = {**_clean_env(), "SIMRECON_AIRFLOW_HOME": str(home)}
    if config is not None:
        env["SIMRECON_CONFIG"] = str(config)
    return subprocess.run(
        ["bash", "-c", 'source "$0" && exec airflow "$@"', str(AIRFLOW_ENV), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _output(result: subprocess.CompletedProcess) -> str:
    out, err = result.stdout[-6000:], result.stderr[-6000:]
    return f"exit {result.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite metadata DB for every run test of the session."""
    home = tmp_path_factory.mktemp("airflow-home")
    result = airflow(home, "db", "migrate")
    assert result.returncode == 0, _output(result)
    return home


def run_dag(home: Path, config: Path, run_date: str,
            dag_id: str = DAG_ID) -> subprocess.CompletedProcess:
    return airflow(home, "dags", "test", dag_id, run_date, config=config)


def task_states(home: Path, run_date: str, dag_id: str = DAG_ID) -> dict[tuple[str, str], str]:
    """``{(task_id, telco, shard or ""): state}`` for the run with this logical date.

    A mapped per-telco instance is named by the telco at its map index in plan's
    output, a ``match_shard`` instance by its shard number (``000``); an instance
    that never ran has no rendered name; where it did run, the name shown in the UI
    must be that one too.
    """
    telcos = xcom(home, run_date, "plan") if dag_id == DAG_ID else []
    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute(
            """
            SELECT ti.task_id, ti.map_index, ti.rendered_map_index, ti.state
            FROM task_instance ti
            JOIN dag_run dr ON dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id
            WHERE ti.dag_id = ? AND dr.logical_date LIKE ?
            """,
            (dag_id, f"{run_date}%"),
        ).fetchall()
    states = {}
    for task_id, map_index, rendered, state in rows:
        if map_index < 0:
            name = ""
        elif task_id in ("match_shard", "flag_shard"):
            name = f"{map_index:03d}"
        elif task_id == "route_search_batch":  # expanded: collect_searched ran
            name = f"{xcom(home, run_date, 'collect_searched')[map_index]['batch']:04d}"
        elif task_id == "search_partition":  # expanded: plan_search ran
            name = f"{xcom(home, run_date, 'plan_search')[map_index]['partition']:03d}"
        else:
            name = telcos[map_index]
        assert rendered in (None, name or None), (task_id, map_index, rendered)
        states[(task_id, name)] = state
    return states


def dag_run_state(home: Path, run_date: str, dag_id: str = DAG_ID) -> str:
    with sqlite3.connect(home / "airflow.db") as db:
        (state,) = db.execute(
            "SELECT state FROM dag_run WHERE dag_id = ? AND logical_date LIKE ?",
            (dag_id, f"{run_date}%"),
        ).fetchone()
    return state


def xcom(home: Path, run_date: str, task_id: str, dag_id: str = DAG_ID) -> object:
    with sqlite3.connect(home / "airflow.db") as db:
        (value,) = db.execute(
            """
            SELECT x.value FROM xcom x
            JOIN dag_run dr ON dr.dag_id = x.dag_id AND dr.run_id = x.run_id
            WHERE x.dag_id = ? AND dr.logical_date LIKE ? AND x.task_id = ?
              AND x.key = 'return_value' AND x.map_index = -1
            """,
            (dag_id, f"{run_date}%", task_id),
        ).fetchone()
    return json.loads(value)


def asset_events(home: Path) -> list[dict]:
    """The extras of every event of the prepared-registry Asset, oldest first."""
    with sqlite3.connect(home / "airflow.db") as db:
        rows = db.execute(
            """
            SELECT e.extra, e.source_dag_id, e.source_task_id FROM asset_event e
            JOIN asset a ON a.id = e.asset_id
            WHERE a.name = 'citizen_registry_prepared' ORDER BY e.id
            """
        ).fetchall()
    return [{**json.loads(extra), "dag": dag, "task": task} for extra, dag, task in rows]


@pytest.fixture(scope="module")
def refreshed(airflow_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The citizen_registry_refresh DAG run once: a 3-shard snapshot of the sample
    registry, published to <tmp>/registry as the Asset citizen_registry_prepared.
    Returns the folder holding the prepared snapshots."""
    tmp = tmp_path_factory.mktemp("refresh")
    folder = tmp / "registry"
    config = write_config(tmp, prepared_registry={"dir": str(folder), "shards": SHARDS,
                                                  "prepare_in_run": False})
    result = run_dag(airflow_home, config, "2026-11-28", REFRESH_ID)
    assert result.returncode == 0, _output(result)
    return folder


def correction_lists(run_dir: Path) -> dict[str, Path]:
    return {p.stem: p for p in (run_dir / "corrections").glob("*.csv")}


def test_registry_refresh_publishes_the_snapshot_as_an_asset(
        airflow_home: Path, refreshed: Path, tmp_path: Path) -> None:
    run_date = "2026-11-28"
    assert dag_run_state(airflow_home, run_date, REFRESH_ID) == "success"
    states = task_states(airflow_home, run_date, REFRESH_ID)
    assert states == {("prepare", ""): "success", ("gate_registry", ""): "success",
                      ("publish", ""): "success"}
    latest = json.loads((refreshed / "latest.json").read_text())
    published = xcom(airflow_home, run_date, "publish", REFRESH_ID)
    assert published["snapshot"] == latest["snapshot"] and published["changed"] is True
    snapshot = refreshed / latest["path"]
    assert (snapshot / "manifest.json").is_file() and (snapshot / "legacy_index.parquet").is_file()
    assert {p.name for p in snapshot.glob("shard=*")} == {f"shard={k:03d}" for k in range(SHARDS)}
    (event,) = asset_events(airflow_home)
    assert event == {"snapshot": latest["snapshot"], "citizens": 2500, "shards": SHARDS,
                     "source_sha256": latest["source_sha256"],
                     "dag": REFRESH_ID, "task": "publish"}

    # The next day the source has not changed: nothing is prepared, nothing announced.
    config = write_config(tmp_path, prepared_registry={"dir": str(refreshed), "shards": SHARDS,
                                                       "prepare_in_run": False})
    result = run_dag(airflow_home, config, "2026-11-29", REFRESH_ID)
    assert result.returncode == 0, _output(result)
    states = task_states(airflow_home, "2026-11-29", REFRESH_ID)
    assert states[("publish", "")] == "skipped"
    assert xcom(airflow_home, "2026-11-29", "prepare", REFRESH_ID)["reused"] is True
    assert len(asset_events(airflow_home)) == 1
    assert json.loads((refreshed / "latest.json").read_text()) == latest


def test_daily_run_processes_every_telco(airflow_home: Path, refreshed: Path,
                                         tmp_path: Path) -> None:
    """The daily run reads the snapshot the refresh published (3 shards), matches it with
    one mapped task per shard, and publishes exactly what a 1-shard CLI run publishes."""
    from pipelines.stages import run_all

    from .test_shards import differing_outputs

    run_date = "2026-11-28"
    config = same_review_key(write_config(
        tmp_path, prepared_registry={"dir": str(refreshed), "shards": 8,
                                     "prepare_in_run": False}))

    result = run_dag(airflow_home, config, run_date)

    assert result.returncode == 0, _output(result)
    assert dag_run_state(airflow_home, run_date) == "success"
    states = task_states(airflow_home, run_date)
    expected = {(t, "") for t in STAGE_TASKS}
    expected |= {(t, telco) for t in (*TELCO_TASKS, *DELIVERY_TASKS) for telco in TELCOS}
    expected |= {(t, f"{k:03d}") for t in ("match_shard", "flag_shard") for k in range(SHARDS)}
    # The samples' searched rows fit one batch; their registry makes one search partition
    # per shard.
    expected |= {("route_search_batch", "0000")}
    expected |= {("search_partition", f"{k:03d}") for k in range(SHARDS)}
    assert set(states) == expected, \
        "the per-telco tasks run once per telco, the per-shard ones once per shard"
    assert {k: s for k, s in states.items() if s != "success"} == {}
    assert xcom(airflow_home, run_date, "gate_registry")["prepared"] is False
    # The look-up index built beside the lists and the report was swapped in after publish.
    assert xcom(airflow_home, run_date, "lookup_index")["staged"] is True
    assert not (tmp_path / "runs-private" / "registry").exists(), "the run prepared nothing itself"

    cli = tmp_path / "cli"
    cli.mkdir()
    reference = run_all(str(same_review_key(write_config(cli, prepared_registry={"shards": 1}))),
                        run_date)
    assert differing_outputs(Path(reference["run_dir"]), tmp_path / "runs" / run_date) == []

    run_dir = tmp_path / "runs" / run_date
    assert Path(xcom(airflow_home, run_date, "publish")["run_dir"]) == run_dir
    assert RunResults(run_dir).num_rows > 0
    for name in ("report.html", "manifest.json", "gates/registry.json",
                 "gates/results.json", *(f"gates/export.{t}.json" for t in TELCOS)):
        assert (run_dir / name).is_file(), name
    assert set(correction_lists(run_dir)) == TELCOS
    # The one-line summaries reach the console through Airflow's logging.
    assert f"simrecon publish {run_date}" in result.stdout + result.stderr


def _telcos_dir_with_broken_viettel(tmp_path: Path) -> Path:
    """Copies of the bundled mappings; viettel's export lacks its ID-number column."""
    folder = tmp_path / "telcos"
    folder.mkdir()
    for path in sorted(TELCOS_DIR.glob("*.yaml")):
        mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
        source = (path.parent / mapping["source"]).resolve()
        if mapping["telco"] == "viettel":
            delimiter = mapping.get("csv", {}).get("delimiter", ",")
            dropped = mapping["columns"]["id_number"]
            broken = tmp_path / "viettel_missing_id_number.csv"
            with (
                source.open(encoding="utf-8-sig", newline="") as src,
                broken.open("w", encoding="utf-8", newline="") as dst,
            ):
                reader = csv.DictReader(src, delimiter=delimiter)
                kept = [c for c in reader.fieldnames or [] if c != dropped]
                writer = csv.DictWriter(dst, kept, delimiter=delimiter, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(reader)
            source = broken
        mapping["source"] = str(source)
        (folder / path.name).write_text(
            yaml.safe_dump(mapping, allow_unicode=True), encoding="utf-8"
        )
    return folder


def test_broken_telco_fails_the_run_but_others_are_published(
    airflow_home: Path, tmp_path: Path
) -> None:
    """viettel's file is unusable (a column is missing: ingest fails); vinaphone's file
    reads fine but half its rows have no ID number (its export gate fails). mobifone
    goes on and is published; neither broken telco gets a correction list."""
    from .test_gates import half_ids_missing, telcos_dir_with

    run_date = "2026-11-27"
    telcos_dir = _telcos_dir_with_broken_viettel(tmp_path)
    half_ids = telcos_dir_with(tmp_path, "vinaphone", half_ids_missing)
    (telcos_dir / "vinaphone.yaml").write_bytes((half_ids / "vinaphone.yaml").read_bytes())
    config = write_config(tmp_path, telcos_dir=telcos_dir)

    result = run_dag(airflow_home, config, run_date)

    assert result.returncode != 0, _output(result)
    assert dag_run_state(airflow_home, run_date) == "failed"
    states = task_states(airflow_home, run_date)
    assert states[("ingest", "viettel")] == "failed"
    assert states[("normalise", "viettel")] == "upstream_failed"
    assert states[("partition", "viettel")] == "upstream_failed"
    assert states[("gate_export", "viettel")] == "upstream_failed"
    assert states[("ingest", "vinaphone")] == "success"
    assert states[("normalise", "vinaphone")] == "success"
    assert states[("gate_export", "vinaphone")] == "failed"
    assert states[("partition", "vinaphone")] == "upstream_failed"  # never cut
    for task_id in (*TELCO_TASKS, *DELIVERY_TASKS):
        assert states[(task_id, "mobifone")] == "success", task_id
    for telco in ("viettel", "vinaphone"):  # no results: their delivery tasks skip inside
        assert states[("corrections", telco)] == "success"
    for task_id in set(STAGE_TASKS) - {"check"}:
        assert states[(task_id, "")] == "success", task_id
    assert states[("check", "")] == "failed"
    # The default configuration prepares the snapshot in the run: 8 shards.
    for task_id in ("match_shard", "flag_shard"):
        assert {k: s for k, s in states.items() if k[0] == task_id} \
            == {(task_id, f"{k:03d}"): "success" for k in range(8)}

    run_dir = tmp_path / "runs" / run_date
    assert set(correction_lists(run_dir)) == {"mobifone"}
    assert (run_dir / "report.html").is_file()
    assert xcom(airflow_home, run_date, "publish")["failed_telcos"] == ["viettel", "vinaphone"]
    gate = json.loads((run_dir / "gates" / "export.vinaphone.json").read_text())
    assert gate["success"] is False
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "lack an ID number" in summary["failed_telcos"]["vinaphone"]
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "export.vinaphone" in report and "lack an ID number" in report
    # The engineer sees which column is missing, not a bare "task failed".
    viettel = yaml.safe_load((TELCOS_DIR / "viettel.yaml").read_text(encoding="utf-8"))
    assert viettel["columns"]["id_number"] in result.stdout + result.stderr


def test_a_registry_failing_its_gate_stops_the_run(airflow_home: Path, tmp_path: Path) -> None:
    from .conftest import registry_breaking_its_suite

    run_date = "2026-11-26"
    config = write_config(tmp_path, registry=registry_breaking_its_suite(tmp_path))

    result = run_dag(airflow_home, config, run_date)

    assert result.returncode != 0, _output(result)
    states = task_states(airflow_home, run_date)
    assert states[("plan", "")] == "success"
    assert states[("gate_registry", "")] == "failed"
    assert states[("plan_shards", "")] == "upstream_failed"
    assert states[("match_shard", "")] == "upstream_failed"  # never expanded
    assert states[("publish", "")] == "upstream_failed"
    assert not (tmp_path / "runs" / run_date).exists()
    # Prepared in the run, the snapshot broke its suite: discarded, the reason kept.
    assert not list((tmp_path / "runs-private" / "registry").glob("snapshot=*"))
    gate = json.loads(next((tmp_path / "runs-private" / "registry" / "rejected").glob("*.json"))
                      .read_text())
    assert "citizen_id is a 12-digit CCCD" in json.dumps(gate)


def test_review_inbox_records_dropped_decisions(airflow_home: Path, tmp_path: Path) -> None:
    """A filled-in queue dropped in the inbox is recorded by the review_inbox DAG with
    its reviewer; a file with an unknown decision is refused with its reasons."""
    from pipelines.config import load_config
    from pipelines.correction_cycle import review
    from pipelines.stages import store_of

    from .test_review import _decide

    drop = tmp_path / "inbox"
    drop.mkdir()
    config = write_config(tmp_path, correction_cycle={"review_drop_dir": str(drop)})
    _decide(drop, "CONFIRMED_HOLDER", "a" * 64, "le.thu.ha__queue.csv")
    _decide(drop, "MAYBE", "b" * 64, "minh__queue.csv")
    result = run_dag(airflow_home, config, "2026-11-28", "review_inbox")
    assert result.returncode == 0, _output(result)
    assert task_states(airflow_home, "2026-11-28", "review_inbox") == {
        ("import_reviews", ""): "success"}
    assert (drop / "imported" / "le.thu.ha__queue.csv").is_file()
    assert "MAYBE" in (drop / "refused" / "minh__queue.csv.error.txt").read_text()
    decisions = review.latest_decisions(store_of(load_config(config)))
    assert decisions["reviewer"].tolist() == ["le.thu.ha"]
    assert decisions["decision"].tolist() == ["CONFIRMED_HOLDER"]
