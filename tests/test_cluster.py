"""The DAGs on a real distributed Airflow (issue 12): the Celery executor, two workers,
PostgreSQL, Redis and an S3 server, all on loopback (``pipelines/deploy/local_cluster.py``,
the same code as ``scripts/cluster.sh``), always brought down.

One run of each DAG, triggered through the REST API as an external scheduler would. While
the run's ``match_shard`` tasks run, one worker is killed (SIGKILL to its process group,
the task with it): the run must still succeed, on the other worker, and publish exactly
what the single-process CLI publishes from the same inputs (nothing lost, nothing twice).
The mapped tasks before the kill ran on both workers (task instances' hostnames). A
published run's report is rendered again from the bucket; then, the worker started again,
the next date runs and keeps the first run's flags as persisting, as the CLI does.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.deploy.local_cluster import BUCKET, WORKERS, Cluster
from pipelines.reporting.copies import render_copy
from pipelines.stages import run_all

from .conftest import same_review_key, write_config

RUN_DATE = "2026-11-28"
NEXT_DATE = "2026-11-29"
DAG = "subscriber_reconciliation"
# Files that carry the time they were made (compared apart from it).
TIMED = {"summary.json", "report.html", "report.xlsx", "manifest.json"}

pytestmark = pytest.mark.slow


def _need(binary: str, package: str) -> None:
    found = shutil.which(binary) or list(Path("/usr/lib/postgresql").glob(f"*/bin/{binary}"))
    if found:
        return
    message = f"{binary} not installed (scripts/test.sh installs Debian's {package})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    _need("initdb", "postgresql")
    _need("redis-server", "redis-server")
    started = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield started.up()
    finally:
        started.down()
        assert not any(_alive(pid) for pid in started.pids.values())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _bucket(cluster: Cluster):  # type: ignore[no-untyped-def]
    import s3fs

    return s3fs.S3FileSystem(key="simrecon", secret="simrecon-local",
                             endpoint_url=cluster.s3_url, skip_instance_cache=True)


def _kill_a_worker_during_matching(cluster: Cluster, run_id: str) -> tuple[str, int, float]:
    """Wait for a running match_shard task, then SIGKILL its worker. (name, map index, when)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        for ti in cluster.task_instances(DAG, run_id):
            if ti["task_id"] == "match_shard" and ti["state"] == "running" \
                    and ti["hostname"] in WORKERS:
                cluster.kill_worker(ti["hostname"])  # at once: a shard's match takes seconds
                return ti["hostname"], ti["map_index"], time.time()
        assert cluster.run_state(DAG, run_id) in ("queued", "running")
        time.sleep(0.5)
    raise AssertionError("no match_shard task ever ran")


def test_run_on_two_workers_survives_a_killed_worker(cluster: Cluster, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # The reference: the single-process CLI over the same sample inputs, same shard count.
    (tmp_path / "cli").mkdir()
    # Both deployments share one review key (the queue's row_hash is keyed per deployment).
    same_review_key(cluster.config_path)
    reference = Path(run_all(str(same_review_key(write_config(
        tmp_path / "cli", prepared_registry={"shards": 4}))), RUN_DATE)["run_dir"])

    refresh = cluster.trigger("citizen_registry_refresh", RUN_DATE)
    assert cluster.wait_run("citizen_registry_refresh", refresh) == "success"
    run_id = cluster.trigger(DAG, RUN_DATE)
    killed, shard, killed_at = _kill_a_worker_during_matching(cluster, run_id)
    survivor = next(w for w in WORKERS if w != killed)
    assert cluster.wait_run(DAG, run_id, timeout=900) == "success"
    assert cluster.workers_online() == {survivor}

    tis = cluster.task_instances(DAG, run_id)
    assert all(ti["state"] == "success" for ti in tis), \
        [(ti["task_id"], ti["map_index"], ti["state"]) for ti in tis]
    # Mapped tasks ran on both workers (first tries, before the kill).
    mapped_hosts = {t["hostname"] for ti in tis if ti["map_index"] >= 0
                    for t in cluster.tries(DAG, run_id, ti["task_id"], ti["map_index"])}
    assert mapped_hosts == set(WORKERS)
    match_hosts = {t["hostname"] for ti in tis if ti["task_id"] == "match_shard"
                   for t in cluster.tries(DAG, run_id, "match_shard", ti["map_index"])}
    assert match_hosts == set(WORKERS)
    # The killed task's try failed with its worker; another try finished on the survivor.
    tries = cluster.tries(DAG, run_id, "match_shard", shard)
    assert tries[0]["hostname"] == killed and tries[0]["state"] != "success", tries
    assert len(tries) >= 2
    assert tries[-1]["state"] == "success" and tries[-1]["hostname"] == survivor
    # Everything that started after the kill ran on the survivor.
    late = [ti for ti in tis if ti["start_date"] and
            _epoch(ti["start_date"]) > killed_at + 1]
    assert late and {ti["hostname"] for ti in late} == {survivor}

    # The published run equals the CLI's (apart from the files that carry a time).
    fs = _bucket(cluster)
    prefix = f"{BUCKET}/runs/{RUN_DATE}"
    published = {p[len(prefix) + 1:] for p in fs.find(prefix)}
    expected = {p.relative_to(reference).as_posix() for p in reference.rglob("*")
                if p.is_file()}
    assert published == expected | {"_SUCCESS"}
    for name in sorted(expected - TIMED):
        assert fs.cat_file(f"{prefix}/{name}") == (reference / name).read_bytes(), name
    summary = json.loads(fs.cat_file(f"{prefix}/summary.json"))
    local = json.loads((reference / "summary.json").read_text(encoding="utf-8"))
    for key in ("telcos", "subscriptions", "tracking"):
        assert summary[key] == local[key], key
    # No working state left behind in the bucket, nor on the workers' disks.
    assert not [p for p in fs.find(f"{BUCKET}/runs") if "/.staging/" in p or "/.work/" in p]
    # (only the killed task's own work area may remain: its worker died with it)
    assert len(list((cluster.root / "scratch").glob("simrecon-work-*"))) <= 1

    # A published run's report rendered again from the bucket (simrecon report render).
    for name, value in cluster.env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    html, xlsx = render_copy(str(cluster.config_path), RUN_DATE, tmp_path / "copy.html")
    assert html.stat().st_size > 10_000 and xlsx.is_file()

    # The next day, with the worker back: the flags of the first run persist (the history
    # store in PostgreSQL, the previous summary from the bucket), as in the CLI.
    cluster.start_worker(killed)
    deadline = time.monotonic() + 180
    while cluster.workers_online() != set(WORKERS) and time.monotonic() < deadline:
        time.sleep(1)
    next_run = cluster.trigger(DAG, NEXT_DATE)
    later = Path(run_all(str(tmp_path / "cli" / "simrecon.yaml"), NEXT_DATE)["run_dir"])
    assert cluster.wait_run(DAG, next_run, timeout=900) == "success"
    prefix = f"{BUCKET}/runs/{NEXT_DATE}"
    fs.invalidate_cache()
    summary = json.loads(fs.cat_file(f"{prefix}/summary.json"))
    local = json.loads((later / "summary.json").read_text(encoding="utf-8"))
    assert summary["tracking"] == local["tracking"]
    assert any(t["persisting"] for t in summary["tracking"]["by_telco"].values())
    for path in sorted((later / "corrections").rglob("*.csv")):
        name = path.relative_to(later).as_posix()
        assert fs.cat_file(f"{prefix}/{name}") == path.read_bytes(), name


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
