"""Crash safety: ``simrecon run`` killed mid-stage (SIGKILL, a real process) and run again
produces exactly the outputs of an uninterrupted run.

The world is generated (200k subscriptions) so that stages take long enough to be
killed inside one. Checked after each kill: nothing of the interrupted run is
visible in ``runs/<date>`` nor in the engineer-only ``runs-private/<date>`` (absent
on a first run, the previous complete run intact otherwise) and every leftover is
inside ``.staging/`` or ``.work/``. Checked after each re-run: every published file's
sha256 (both folders) equals the clean run's (except ``report.html``, which carries
its generation time, and ``manifest.json``, which carries the publish time and config
path); no row is missing or counted twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.results.dataset import RunResults

from .conftest import REPO, same_review_key, write_config

pytestmark = pytest.mark.slow

RUN_DATE = "2026-11-28"
N_SUBSCRIPTIONS = 200_000
N_CITIZENS = 120_000
TIMESTAMPED = {"report.html", "manifest.json"}


@pytest.fixture(scope="module")
def big_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    """A generated world and mappings pointing at it: (telcos_dir, registry, rows)."""
    from data_samples.generator import generate_world

    root = tmp_path_factory.mktemp("big-world")
    world = generate_world(root / "world", n_citizens=N_CITIZENS,
                           n_subscriptions=N_SUBSCRIPTIONS)
    telcos = root / "telcos"
    telcos.mkdir()
    for path in sorted((REPO / "config" / "telcos").glob("*.yaml")):
        mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
        mapping["source"] = str(world["paths"][mapping["telco"]])
        (telcos / path.name).write_text(yaml.safe_dump(mapping, allow_unicode=True),
                                        encoding="utf-8")
    return telcos, Path(world["paths"]["registry"]), int(world["rows"])


def _cli(config: Path) -> list[str]:
    return [sys.executable, "-m", "pipelines.cli", "run", "--config", str(config),
            "--run-date", RUN_DATE]


def _run(config: Path) -> None:
    result = subprocess.run(_cli(config), cwd=REPO, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (its worker processes and their fork server)."""
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as f:
                    children = [int(c) for c in f.read().split()]
                found.update(children)
                todo.extend(children)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as status:
                if "\nState:\tZ" not in status.read():
                    alive.add(pid)
        except FileNotFoundError:
            continue
    return alive


def _private(output: Path) -> Path:
    """The engineer-only folder beside ``output`` (``private_dir``'s default)."""
    return output.with_name(f"{output.name}-private")


def _run_and_kill(config: Path, output: Path, marker: str) -> float:
    """Start the CLI, SIGKILL it as soon as ``marker`` (relative to a staging folder:
    the run's or its engineer-only one's) exists, i.e. while the next stage is
    running; return when it was killed. Its worker processes must end with it: none
    may go on writing into the folders the next run rebuilds."""
    stagings = [folder / ".staging" / RUN_DATE for folder in (output, _private(output))]
    start = time.monotonic()
    process = subprocess.Popen(_cli(config), cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        while not any(list(staging.glob(marker)) for staging in stagings):
            assert process.poll() is None, f"the run ended before {marker} appeared"
            assert time.monotonic() - start < 300, f"{marker} never appeared"
            time.sleep(0.02)
        workers = _descendants(process.pid)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
        deadline = time.monotonic() + 20
        while _alive(workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(workers), "worker processes outlived the killed run"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return time.monotonic() - start


def _digests(run_dir: Path) -> dict[str, str]:
    """Every published file's sha256 (the engineer-only ones prefixed ``private:``), the
    engineer-only manifest checked against the sha256 the run's manifest vouches for."""
    from pipelines.storage.files import sha256_of

    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    found = {f["path"]: f["sha256"] for f in manifest["files"] if f["path"] not in TIMESTAMPED}
    private = _private(run_dir.parent) / run_dir.name
    assert manifest["engineering_manifest_sha256"] == sha256_of(private / "manifest.json")
    engineering = json.loads((private / "manifest.json").read_text(encoding="utf-8"))
    found |= {f"private:{f['path']}": f["sha256"] for f in engineering["files"]}
    return found


def _visible_outside_working_folders(output: Path, run_dir: Path) -> list[str]:
    """Files a reader could see in ``runs/<date>`` or ``runs-private/<date>`` that do
    not belong to a complete run, and temporary files anywhere outside the working
    folders. (Stores that live beside the run folders on purpose, such as the flag
    history and the registry snapshots, are not a run's files.)"""
    private = _private(output)
    return _stray(output, run_dir) + [f"private:{p}" for p in
                                      _stray(private, private / run_dir.name)]


def _stray(output: Path, run_dir: Path) -> list[str]:
    complete = set()
    if (run_dir / "manifest.json").exists():
        complete = {f["path"] for f in json.loads(
            (run_dir / "manifest.json").read_text(encoding="utf-8"))["files"]}
        complete.add("manifest.json")
    stray: list[str] = []
    if not output.exists():
        return stray
    for path in output.rglob("*"):
        relative = path.relative_to(output)
        # Working folders (the run's and the registry snapshot's) are cleared by the
        # next run; nothing in them is read as output.
        if not path.is_file() or {".staging", ".work"} & set(relative.parts):
            continue
        # The deployment's flag-history/review store lives next to the runs, not in one.
        if relative.parts[0].startswith("history.sqlite"):
            continue
        if relative.parts[0] == RUN_DATE:
            if "/".join(relative.parts[1:]) not in complete:
                stray.append(relative.as_posix())
        elif path.name.endswith(".tmp") or path.name.startswith(".replaced-"):
            stray.append(relative.as_posix())
    return stray


def _check_rows(run_dir: Path, rows_in_world: int) -> None:
    results = RunResults(run_dir).read(columns=["telco", "source_row"])
    private = _private(run_dir.parent) / run_dir.name
    normalised = sum(pq.ParquetFile(p).metadata.num_rows
                     for p in (private / "normalised").glob("*.parquet"))
    quarantine = sum(pq.ParquetFile(p).metadata.num_rows
                     for p in (private / "quarantine").glob("*.parquet"))
    assert results.num_rows == normalised
    assert results.num_rows + quarantine == rows_in_world
    keys = pc.binary_join_element_wise(results["telco"],
                                       pc.cast(results["source_row"], "string"), ":")
    assert pc.count_distinct(keys).as_py() == results.num_rows, "a row is counted twice"
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["failed_telcos"] == {}
    assert all(t["rows_conserved"] for t in summary["telcos"].values())


def test_a_killed_run_rerun_equals_a_clean_run(big_world: tuple[Path, Path, int],
                                               tmp_path: Path) -> None:
    telcos, registry, rows_in_world = big_world
    (tmp_path / "clean").mkdir()
    _run(same_review_key(write_config(tmp_path / "clean", telcos_dir=telcos,
                                      registry=registry)))
    clean = _digests(tmp_path / "clean" / "runs" / RUN_DATE)
    assert any(p.startswith("gates/") for p in clean)
    _check_rows(tmp_path / "clean" / "runs" / RUN_DATE, rows_in_world)

    (tmp_path / "crash").mkdir()
    config = same_review_key(write_config(tmp_path / "crash", telcos_dir=telcos,
                                          registry=registry))
    output = tmp_path / "crash" / "runs"
    run_dir = output / RUN_DATE

    # 1. Killed during the per-telco stages of a first run: nothing is visible.
    _run_and_kill(config, output, "normalised/*.parquet")
    assert not run_dir.exists()
    assert _visible_outside_working_folders(output, run_dir) == []
    _run(config)
    assert _digests(run_dir) == clean
    _check_rows(run_dir, rows_in_world)

    # 2. Killed late in a re-run (results written, lists being gated): the previous
    #    complete run stays in place, untouched, then the re-run replaces it.
    before = (run_dir / "manifest.json").read_bytes()
    _run_and_kill(config, output, "gates/results.json")
    assert (run_dir / "manifest.json").read_bytes() == before
    assert _visible_outside_working_folders(output, run_dir) == []
    from pipelines.storage.files import sha256_of

    private = _private(output) / RUN_DATE
    for path, digest in _digests(run_dir).items():
        file = private / path.removeprefix("private:") if path.startswith("private:") \
            else run_dir / path
        assert sha256_of(file) == digest, path
    _run(config)
    assert _digests(run_dir) == clean
    _check_rows(run_dir, rows_in_world)
    assert not (output / ".staging" / RUN_DATE).exists()
    assert not (_private(output) / ".staging" / RUN_DATE).exists()
    assert not (output / ".work" / RUN_DATE).exists()
    assert not list(output.glob(".replaced-*"))
