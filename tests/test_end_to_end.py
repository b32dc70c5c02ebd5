"""A full run on the bundled sample world, scored against its ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from matching.flags import FLAGS
from pipelines.cli import main
from pipelines.results.dataset import RunResults
from pipelines.stages import run_all

from .conftest import REPO

RUN_DATE = "2026-11-28"
MIN_PRECISION = 0.95
MIN_RECALL = 0.95


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from .conftest import write_config

    tmp = tmp_path_factory.mktemp("e2e")
    config = write_config(tmp)
    outcome = run_all(str(config), RUN_DATE)
    return Path(outcome["run_dir"]), outcome


def _joined(run_dir: Path):
    results = RunResults(run_dir).read().to_pandas()
    truth = pq.read_table(REPO / "data_samples" / "ground_truth.parquet").to_pandas()
    joined = truth.merge(results, on=["telco", "source_row"], how="left", indicator=True)
    return results, truth, joined


def test_every_row_is_accounted_for(sample_run: tuple[Path, dict]) -> None:
    run_dir, _ = sample_run
    results, truth, joined = _joined(run_dir)
    private = run_dir.parent.with_name("runs-private") / run_dir.name  # engineer-only
    quarantine = pq.read_table(private / "quarantine").to_pandas() \
        if (private / "quarantine").exists() else None
    quarantined = 0 if quarantine is None else len(quarantine)
    assert len(results) + quarantined == len(truth)
    missing = joined[joined["_merge"] == "left_only"]
    assert len(missing) == quarantined, "a row is missing from results without being quarantined"
    summary = json.loads((run_dir / "summary.json").read_text())
    for telco, stats in summary["telcos"].items():
        assert stats["rows_conserved"], telco


def test_per_flag_precision_and_recall(sample_run: tuple[Path, dict]) -> None:
    run_dir, _ = sample_run
    _, _, joined = _joined(run_dir)
    joined = joined[joined["_merge"] == "both"]
    lines, failures = [], []
    for flag in FLAGS:
        expected = joined["expected_flags"].map(lambda fs, f=flag: f in list(fs))
        found = joined["flags"].map(lambda fs, f=flag: f in list(fs))
        tp = int((expected & found).sum())
        fp = int((~expected & found).sum())
        fn = int((expected & ~found).sum())
        if tp + fp + fn == 0:
            continue
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        lines.append(f"{flag:22s} planted={tp + fn:4d} found={tp + fp:4d} "
                     f"precision={precision:.3f} recall={recall:.3f}")
        if flag != "NEEDS_REVIEW" and (precision < MIN_PRECISION or recall < MIN_RECALL):
            failures.append(lines[-1])
    print("\nper-flag accuracy on the bundled samples:\n" + "\n".join(lines))
    assert not failures, "\n".join(failures)


def test_status_accuracy(sample_run: tuple[Path, dict]) -> None:
    run_dir, _ = sample_run
    _, _, joined = _joined(run_dir)
    joined = joined[joined["_merge"] == "both"]
    agree = (joined["status"] == joined["expected_status"]).mean()
    confusion = joined.groupby(["expected_status", "status"]).size()
    print(f"\nstatus agreement {agree:.4f}\n{confusion}")
    assert agree >= 0.98


def test_suggestions_name_the_right_citizen(sample_run: tuple[Path, dict]) -> None:
    run_dir, _ = sample_run
    _, _, joined = _joined(run_dir)
    planted = joined[joined["expected_suggested_citizen_id"].notna()]
    assert len(planted) > 0
    right = (planted["suggested_citizen_id"] == planted["expected_suggested_citizen_id"]).mean()
    suggested = joined[joined["suggested_citizen_id"].notna()]
    wrong = (suggested["suggested_citizen_id"] != suggested["expected_suggested_citizen_id"]).sum()
    print(f"\nsuggestions: right in {right:.3f} of planted rows, {wrong} wrong")
    assert right >= 0.95
    assert wrong == 0


def test_outputs_exist_with_manifest(sample_run: tuple[Path, dict]) -> None:
    run_dir, outcome = sample_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    listed = {f["path"] for f in manifest["files"]}
    assert any(path.startswith("results/shard=") for path in listed)
    for required in ("summary.json", "report.html",
                     "corrections/viettel.csv", "corrections/vinaphone.csv",
                     "corrections/mobifone.csv"):
        assert required in listed
    from pipelines.storage.files import sha256_of

    for entry in manifest["files"]:
        assert sha256_of(run_dir / entry["path"]) == entry["sha256"]
    # Engineer-only outputs (raw export rows) are in the private folder, not published,
    # with their own manifest, which the published one vouches for.
    assert not any(p.startswith(("normalised/", "quarantine/")) for p in listed)
    private = run_dir.parent.with_name("runs-private") / run_dir.name
    assert sha256_of(private / "manifest.json") == manifest["engineering_manifest_sha256"]
    engineering = json.loads((private / "manifest.json").read_text())
    assert "normalised/viettel.parquet" in {f["path"] for f in engineering["files"]}
    for entry in engineering["files"]:
        assert sha256_of(private / entry["path"]) == entry["sha256"]
    assert not (run_dir / "ingested").exists() and not (run_dir / "work").exists()
    assert outcome["failed_telcos"] == []


def test_summary_records_each_exports_encoding(sample_run: tuple[Path, dict]) -> None:
    """Engineers see which encoding each export was read in (declared or detected)."""
    run_dir, _ = sample_run
    telcos = json.loads((run_dir / "summary.json").read_text())["telcos"]
    assert {t: s["encoding"] for t, s in telcos.items()} == {
        "viettel": "utf-8", "vinaphone": "utf-8", "mobifone": "parquet"}


def test_correction_lists_hold_only_own_rows_and_no_registry_data(
        sample_run: tuple[Path, dict]) -> None:
    import pyarrow.csv as pa_csv

    run_dir, _ = sample_run
    registry = pq.read_table(REPO / "data_samples" / "registry" / "citizens.parquet")
    registry_names = set(registry["full_name"].to_pylist())
    for path in sorted((run_dir / "corrections").glob("*.csv")):
        raw = path.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf"), "Excel needs the UTF-8 BOM"
        table = pa_csv.read_csv(path)
        assert table.num_rows > 0
        assert set(table["telco"].to_pylist()) == {path.stem}
        forbidden = {"full_name", "date_of_birth", "matched_citizen_id", "suggested_citizen_id",
                     "holder_date_of_birth"}
        assert not forbidden & set(table.column_names)
        text = raw.decode("utf-8-sig")
        assert not any(name in text for name in registry_names if len(name) > 8)
        assert pc.all(pc.greater(pc.utf8_length(table["reason_vi"]), 0)).as_py()


def test_rerun_replaces_the_run_folder_with_identical_results(tmp_path: Path) -> None:
    from .conftest import write_config

    config = write_config(tmp_path)
    first = run_all(str(config), RUN_DATE)
    first_manifest = json.loads((Path(first["run_dir"]) / "manifest.json").read_text())
    second = run_all(str(config), RUN_DATE)
    second_manifest = json.loads((Path(second["run_dir"]) / "manifest.json").read_text())
    digests = {f["path"]: f["sha256"] for f in first_manifest["files"]
               if f["path"] != "report.html"}
    assert digests == {f["path"]: f["sha256"] for f in second_manifest["files"]
                       if f["path"] in digests}
    assert not list((tmp_path / "runs").glob(".replaced-*"))
    assert not (tmp_path / "runs" / ".staging" / RUN_DATE).exists()


def test_cli_run_prints_where_outputs_are(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from .conftest import write_config

    config = write_config(tmp_path)
    assert main(["run", "--config", str(config), "--run-date", RUN_DATE]) == 0
    out = capsys.readouterr().out
    assert "report.html" in out and "corrections" in out


def test_a_stage_after_publish_refuses_instead_of_publishing_a_partial_run(
        tmp_path: Path) -> None:
    from pipelines.errors import RunNotPlannedError
    from pipelines.stages import ingest_telco, match_subscriptions, publish_run

    from .conftest import write_config

    config = write_config(tmp_path)
    run_all(str(config), RUN_DATE)
    before = (tmp_path / "runs" / RUN_DATE / "manifest.json").read_bytes()
    for stage, args in ((ingest_telco, ("viettel",)), (match_subscriptions, ()),
                        (publish_run, ())):
        with pytest.raises(RunNotPlannedError, match="rerun the whole date"):
            stage(str(config), RUN_DATE, *args)
    assert (tmp_path / "runs" / RUN_DATE / "manifest.json").read_bytes() == before


def test_publish_retry_after_the_swap_only_finishes_clean_up(tmp_path: Path) -> None:
    from pipelines import stages
    from pipelines.storage.paths import RunPaths

    from .conftest import write_config

    config = write_config(tmp_path)
    for stage in ("plan_run", "gate_registry"):
        getattr(stages, stage)(str(config), RUN_DATE)
    for telco in ("mobifone", "viettel", "vinaphone"):
        stages.ingest_telco(str(config), RUN_DATE, telco)
        stages.normalise_telco(str(config), RUN_DATE, telco)
        stages.gate_export(str(config), RUN_DATE, telco)
        stages.partition_telco(str(config), RUN_DATE, telco)
    for stage in ("match_subscriptions", "flag_subscriptions", "gate_results",
                  "write_corrections", "gate_corrections", "build_report"):
        getattr(stages, stage)(str(config), RUN_DATE)
    paths = RunPaths(tmp_path / "runs", RUN_DATE)
    plan = paths.plan.read_bytes()
    first = stages.publish_run(str(config), RUN_DATE)
    # Simulate a crash between the swap and the clean-up, then the retry.
    paths.plan.parent.mkdir(parents=True, exist_ok=True)
    paths.plan.write_bytes(plan)
    again = stages.publish_run(str(config), RUN_DATE)
    assert again == first and len(again["correction_lists"]) == 3
    assert not paths.work.exists()


def test_installed_command_runs_from_any_folder(tmp_path: Path) -> None:
    """The `simrecon` console script, run outside the repository (no source tree on
    sys.path), finds every package it needs: the installed distribution is complete."""
    import os
    import subprocess
    import sys

    from .conftest import write_config

    config = write_config(tmp_path)
    script = Path(sys.executable).with_name("simrecon")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(script), "run", "--config", str(config), "--run-date", RUN_DATE],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert RunResults(tmp_path / "runs" / RUN_DATE).num_rows > 0
    # The log a data engineer reads: the stages' progress, not Great Expectations'
    # start-up chatter (hundreds of INFO lines before it was quietened).
    assert "stage publish done" in done.stderr
    assert "great_expectations" not in done.stderr, done.stderr[:2000]


def test_a_registry_staged_by_the_run_that_fails_its_gate_stops_it(tmp_path: Path) -> None:
    """``simrecon run`` stages a snapshot it prepares itself in its own process, then
    gates it in a worker: a registry breaking the suite stops the run there, the staged
    snapshot discarded (no staging folder left) and the reason kept, nothing published."""
    from pipelines.errors import RegistryError

    from .conftest import registry_breaking_its_suite, write_config

    config = write_config(tmp_path, registry=registry_breaking_its_suite(tmp_path))

    with pytest.raises(RegistryError, match="12-digit"):
        run_all(str(config), RUN_DATE, workers=2)

    folder = tmp_path / "runs-private" / "registry"
    assert not list(folder.glob("snapshot=*"))
    assert not any((folder / ".staging").iterdir())
    gate = json.loads(next((folder / "rejected").glob("*.json")).read_text())
    assert "citizen_id is a 12-digit CCCD" in json.dumps(gate)
    assert not (tmp_path / "runs" / RUN_DATE).exists()


def test_a_run_hashes_the_raw_registry_once_when_its_snapshot_exists(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The snapshot ``simrecon run`` found while staging is the one its registry gate
    uses: the raw registry file is hashed once per run, not once per step."""
    from pipelines.registry import snapshot as registry_snapshot

    from .conftest import write_config

    config = write_config(tmp_path)
    run_all(str(config), RUN_DATE)  # prepares the snapshot
    hashed = []
    digest = registry_snapshot.source_digest
    monkeypatch.setattr(registry_snapshot, "source_digest",
                        lambda source: hashed.append(source) or digest(source))
    outcome = run_all(str(config), RUN_DATE)
    assert outcome["failed_telcos"] == [] and len(hashed) == 1
