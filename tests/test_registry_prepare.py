"""Prepared registry snapshots (issue 4, item 1): layout, manifest, atomic publication,
reuse, the gate, the run's cheap check, and the CLI. The refresh DAG itself runs in
tests/test_dag_run.py."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from matching.model import name_frequencies
from pipelines import stages
from pipelines.cli import main
from pipelines.errors import RegistryError
from pipelines.reconcile import sharding
from pipelines.registry import snapshot as registry_snapshot
from pipelines.registry.search_index import find_numbers, number_bucket
from pipelines.registry.source import load_registry
from pipelines.storage.files import sha256_of

from .conftest import REPO, write_config

SOURCE = REPO / "data_samples" / "registry" / "citizens.parquet"
AS_OF = date(2026, 11, 28)
RUN_DATE = "2026-11-28"


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> registry_snapshot.Snapshot:
    folder = tmp_path_factory.mktemp("registry")
    prepared, fresh = registry_snapshot.prepare(SOURCE, folder, 4, as_of=AS_OF)
    assert fresh
    return prepared


def test_layout_and_manifest(snapshot: registry_snapshot.Snapshot) -> None:
    folder = snapshot.path
    assert folder.name == f"snapshot={sha256_of(SOURCE)[:16]}-004"
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    # The samples' few thousand citizens: one birth-year partition of the search per shard.
    assert names == ["gate.json", "legacy_index.parquet", "manifest.json",
                     "search/numbers.parquet",
                     *(f"search/part={p:03d}/{name}.parquet" for p in range(4)
                       for name in ("blocks", "citizens", "names")),
                     *(f"shard={k:03d}/part.parquet" for k in range(4))]
    assert manifest_search(snapshot) == {"partitions": 4, "present": [0, 1, 2, 3]}
    manifest = snapshot.manifest
    assert manifest["format"] == registry_snapshot.PREPARED_FORMAT
    assert manifest["hash"] == sharding.HASH_NAME
    assert manifest["shards"] == 4 and manifest["as_of"] == AS_OF.isoformat()
    assert manifest["source"]["sha256"] == sha256_of(SOURCE)
    assert manifest["gate"]["success"] is True
    for entry in manifest["files"]:
        path = folder / entry["path"]
        assert sha256_of(path) == entry["sha256"]
        assert pq.ParquetFile(path).metadata.num_rows == entry["rows"]
    raw = pq.read_table(SOURCE)
    assert manifest["citizens"] == raw.num_rows
    assert sum(f["rows"] for f in manifest["files"]
               if f["path"].endswith("/part.parquet")) == raw.num_rows
    latest = json.loads((folder.parent / "latest.json").read_text())
    assert latest["snapshot"] == snapshot.id and latest["path"] == folder.name


def manifest_search(snapshot: registry_snapshot.Snapshot) -> dict:
    return snapshot.manifest["search"]


def test_the_search_layout_holds_every_citizen_by_birth_year(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The candidate search's layout: every citizen once, in the partition of its birth
    year (year % partitions; no date of birth: partition 0), in registry order with the
    shards' columns; each partition's index is the one its citizens give; the numbers
    file leads each CCCD and CMND to its (first) citizen."""
    from pipelines.registry import build
    from pipelines.registry.search_index import index_of

    monkeypatch.setattr(build, "BUCKET_ROWS", 700)
    snapshot, _ = registry_snapshot.prepare(SOURCE, tmp_path, 2, as_of=AS_OF)
    partitions = snapshot.search_partitions
    whole = pa.concat_tables(pq.read_table(snapshot.shard_path(k)) for k in range(2)) \
        .sort_by("registry_row")
    assert partitions == -(-whole.num_rows // 700) > 1
    parts = {p: pq.read_table(snapshot.search_citizens(p)) for p in snapshot.search_present}
    assert sum(t.num_rows for t in parts.values()) == whole.num_rows
    for p, table in parts.items():
        assert table.column_names == list(registry_snapshot.SEARCH_COLUMNS)
        rows = np.asarray(table["registry_row"])
        assert (np.diff(rows) > 0).all()
        years = pc.fill_null(pc.year(table["date_of_birth"]), 0).to_numpy()
        assert (years % partitions == p).all()
        mine = whole.take(pa.array(rows)).select(list(registry_snapshot.SEARCH_COLUMNS))
        assert mine.to_pandas().equals(table.to_pandas())  # NaN frequencies equal too
        stored, made = snapshot.search_index(p), index_of(table)
        assert np.array_equal(stored.block_keys, made.block_keys)
        assert np.array_equal(stored.block_citizens, made.block_citizens)
        for part in ("given", "surname", "canonical"):
            assert stored.dictionaries[part].equals(made.dictionaries[part].cast(pa.string()))
    numbers = pq.read_table(snapshot.search_numbers)
    cccd = numbers.filter(pc.equal(numbers["width"], 12))
    assert cccd.num_rows == whole.num_rows
    for entry in cccd.slice(0, 50).to_pylist():
        citizen = parts[entry["partition"]].slice(entry["position"], 1).to_pylist()[0]
        assert int(citizen["citizen_id"]) == entry["value"]
    legacy = numbers.filter(pc.equal(numbers["width"], 9))
    assert 0 < legacy.num_rows <= whole["legacy_id"].length() - whole["legacy_id"].null_count
    for entry in legacy.slice(0, 50).to_pylist():
        citizen = parts[entry["partition"]].slice(entry["position"], 1).to_pylist()[0]
        first = whole.filter(pc.equal(whole["legacy_id"], citizen["legacy_id"]))
        assert int(citizen["legacy_id"]) == entry["value"]
        assert citizen["registry_row"] == first["registry_row"][0].as_py()
    # Each row group: the numbers of one bucket, sorted by (width, value), each once.
    file = pq.ParquetFile(snapshot.search_numbers)
    assert file.num_row_groups > 1
    for g in range(file.num_row_groups):
        group = file.read_row_group(g)
        value = np.asarray(group["value"], np.int64)
        assert len(set(number_bucket(value).tolist())) == 1
        key = list(zip(group["width"].to_pylist(), value.tolist(), strict=True))
        assert key == sorted(set(key))


def test_find_numbers_finds_exactly_the_registry_numbers_wanted(
        snapshot: registry_snapshot.Snapshot) -> None:
    """Every wanted value (duplicates too) that is a registry number of its width, with
    where its holder is; nothing else (the other width's numbers, invented ones)."""
    numbers = pq.read_table(snapshot.search_numbers)
    held = {(w, v): (p, q) for w, v, p, q in zip(*(numbers[c].to_pylist() for c in (
        "width", "value", "partition", "position")), strict=True)}
    rng = np.random.default_rng(5)
    cccd = np.asarray(numbers.filter(pc.equal(numbers["width"], 12))["value"], np.int64)
    cmnd = np.asarray(numbers.filter(pc.equal(numbers["width"], 9))["value"], np.int64)
    wanted_12 = np.concatenate([rng.choice(cccd, 300), cccd[:5], cmnd[:20],
                                rng.integers(0, 10**12, 300)])
    wanted_9 = np.concatenate([rng.choice(cmnd, 50), cccd[:20] % 10**9,
                               rng.integers(0, 10**9, 100)])
    wanted = []
    for width, values, offset in ((12, wanted_12, 0), (9, wanted_9, 10_000)):
        order = np.argsort(values, kind="stable")
        wanted.append((width, offset + order, values[order]))
    found = find_numbers(snapshot.search_numbers, wanted)
    got = sorted(zip(found.at.tolist(), found.partition.tolist(), found.position.tolist(),
                     strict=True))
    expected = sorted((offset + i, *held[(width, int(v))])
                      for width, values, offset in ((12, wanted_12, 0), (9, wanted_9, 10_000))
                      for i, v in enumerate(values) if (width, int(v)) in held)
    assert len(expected) >= 355  # the registry numbers drawn
    assert got == expected


def test_every_citizen_is_in_the_shard_of_its_id_with_registry_wide_columns(
        snapshot: registry_snapshot.Snapshot) -> None:
    whole = load_registry(SOURCE)
    parts = []
    for k in range(snapshot.shards):
        part = pq.read_table(snapshot.shard_path(k))
        assert part.schema.equals(registry_snapshot.SHARD_SCHEMA)
        assert set(sharding.shard_of(part["citizen_id"], snapshot.shards).tolist()) <= {k}
        rows = part["registry_row"].to_numpy()
        assert (np.diff(rows) > 0).all(), "a shard keeps the source's order"
        parts.append(part)
    prepared = pa.concat_tables(parts).sort_by("registry_row")
    for column in ("citizen_id", "legacy_id", "full_name", "date_of_birth", "gender"):
        assert prepared[column].equals(whole[column]), column
    # Name frequencies over the whole registry, not over a shard.
    _, tf = name_frequencies(whole["full_name"].combine_chunks())
    assert np.allclose(prepared["name_frequency"].to_numpy(), tf, equal_nan=True)
    assert np.array_equal(prepared["name_frequency"].to_numpy(), tf, equal_nan=True)


def test_legacy_index_names_the_first_holder_and_counts_the_holders(
        snapshot: registry_snapshot.Snapshot) -> None:
    whole = load_registry(SOURCE)
    index = pq.read_table(snapshot.legacy_index_path)
    assert index.schema.equals(registry_snapshot.LEGACY_SCHEMA)
    legacy = whole["legacy_id"].to_pylist()
    assert index.num_rows == len({v for v in legacy if v})
    assert index["legacy_id"].to_pylist() == sorted(index["legacy_id"].to_pylist())
    shared = index.filter(pc.greater(index["citizens"], 1))
    assert shared.num_rows == snapshot.manifest["shared_legacy_ids"] > 0
    ids = whole["citizen_id"].to_pylist()
    for number, first, citizens, shard in zip(*(shared[c].to_pylist() for c in (
            "legacy_id", "citizen_id", "citizens", "shard")), strict=True):
        holders = [ids[i] for i, v in enumerate(legacy) if v == number]
        assert first == holders[0] and citizens == len(holders)
        assert shard == sharding.shard_of(pa.array([first]), snapshot.shards)[0]


def test_the_same_source_and_shard_count_is_prepared_once(
        snapshot: registry_snapshot.Snapshot) -> None:
    before = sha256_of(snapshot.path / "manifest.json")
    again, fresh = registry_snapshot.prepare(SOURCE, snapshot.path.parent, 4, as_of=AS_OF)
    assert not fresh and again.path == snapshot.path
    assert sha256_of(snapshot.path / "manifest.json") == before


def test_a_registry_breaking_its_suite_is_never_published(tmp_path: Path) -> None:
    folder = tmp_path / "registry"
    good, _ = registry_snapshot.prepare(SOURCE, folder, 2, as_of=AS_OF)
    raw = pq.read_table(SOURCE)
    births = raw["date_of_birth"].to_pylist()
    births[3] = "2030-01-01"
    broken = tmp_path / "citizens.parquet"
    pq.write_table(raw.set_column(raw.schema.get_field_index("date_of_birth"),
                                  "date_of_birth", pa.array(births, pa.string())), broken)
    with pytest.raises(registry_snapshot.RegistryGateFailed,
                       match="no date of birth after the run date") as failed:
        registry_snapshot.prepare(broken, folder, 2, as_of=AS_OF)
    assert failed.value.result["success"] is False
    # The previous snapshot stays the latest; nothing half-written is left to read.
    assert registry_snapshot.latest(folder).path == good.path
    assert [p.name for p in folder.glob("snapshot=*")] == [good.path.name]
    assert not list((folder / ".staging").iterdir())
    rejected_id = registry_snapshot.snapshot_id(sha256_of(broken), 2)
    rejected = json.loads((folder / "rejected" / f"{rejected_id}.gate.json").read_text())
    assert rejected["success"] is False


def test_the_runs_check_catches_a_damaged_or_foreign_snapshot(
        snapshot: registry_snapshot.Snapshot, tmp_path: Path) -> None:
    import shutil

    assert registry_snapshot.check(snapshot, AS_OF)["success"]
    # A run dated before the youngest citizen's birth cannot use this snapshot.
    too_early = registry_snapshot.check(snapshot, date(2020, 1, 1))
    assert [f["expectation"] for f in too_early["failed"]] == ["no_birth_after_run_date"]

    copy = tmp_path / snapshot.path.name
    shutil.copytree(snapshot.path, copy)
    damaged = registry_snapshot.open_snapshot(copy)
    part = copy / "shard=001" / "part.parquet"
    pq.write_table(pq.read_table(part).slice(1), part)  # a citizen lost
    failed = {f["expectation"] for f in registry_snapshot.check(damaged, AS_OF)["failed"]}
    assert "files_as_listed" in failed
    with pytest.raises(RegistryError, match="sha256"):
        damaged.verify("shard=001/part.parquet")
    # Hashed once per process, but a file changed since (same size) is hashed again.
    numbers = damaged.verify("search/numbers.parquet")
    data = bytearray(numbers.read_bytes())
    data[len(data) // 2] ^= 0xFF
    numbers.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match="sha256"):
        damaged.verify("search/numbers.parquet")

    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["hash"] = "another-hash"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RegistryError, match="prepare the snapshot again"):
        registry_snapshot.open_snapshot(copy)


def test_a_run_without_a_prepared_snapshot_says_how_to_make_one(tmp_path: Path) -> None:
    config = str(write_config(tmp_path, prepared_registry={"prepare_in_run": False}))
    stages.plan_run(config, RUN_DATE)
    with pytest.raises(RegistryError, match="simrecon registry prepare"):
        stages.gate_registry(config, RUN_DATE)


def test_cli_prepares_then_the_run_uses_the_latest_snapshot(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`simrecon registry prepare` publishes the snapshot; a run with prepare_in_run off
    takes the latest one, with its shard count (the setting applies when preparing)."""
    prepared = write_config(tmp_path, prepared_registry={"shards": 2, "prepare_in_run": False})
    assert main(["registry", "prepare", "--config", str(prepared), "--as-of", RUN_DATE]) == 0
    assert "prepared now" in capsys.readouterr().out
    assert main(["registry", "prepare", "--config", str(prepared), "--as-of", RUN_DATE]) == 0
    out = capsys.readouterr().out
    assert "reused" in out and "unchanged" in out

    # The same folders, another shard count in the settings: the snapshot's count wins.
    other = tmp_path / "other"
    other.mkdir()
    config = str(write_config(other, output_dir=str(tmp_path / "runs"),
                              prepared_registry={"shards": 5, "prepare_in_run": False}))
    stages.plan_run(config, RUN_DATE)
    outcome = stages.gate_registry(config, RUN_DATE)
    assert outcome["shards"] == 2 and outcome["prepared"] is False

    broken = tmp_path / "broken.parquet"
    pq.write_table(pq.read_table(SOURCE).drop_columns(["gender"]), broken)
    config_broken = tmp_path / "broken"
    config_broken.mkdir()
    assert main(["registry", "prepare", "--config",
                 str(write_config(config_broken, registry=broken)), "--as-of", RUN_DATE]) == 2
    assert "missing column" in capsys.readouterr().err


def test_batches_and_buckets_do_not_change_the_files(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The streamed preparation (pipelines/registry/build.py) in tiny batches and many
    birth-year buckets writes the same bytes as in one batch and one bucket (the whole
    registry at once), and leaves no spill file behind. (The candidate search's layout
    is partitioned by those buckets: checked above.)"""
    from pipelines.registry import build

    def files(folder: Path, batch: int, bucket: int) -> dict[str, str]:
        monkeypatch.setattr(build, "BATCH_ROWS", batch)
        monkeypatch.setattr(build, "BUCKET_ROWS", bucket)
        staging = registry_snapshot.stage(SOURCE, folder, 3, sha256_of(SOURCE))
        assert [p.name for p in (folder / ".staging").iterdir()] == [staging.name]
        return {str(p.relative_to(staging)): sha256_of(p) for p in staging.rglob("*.parquet")
                if not str(p.relative_to(staging)).startswith("search/")}

    whole = files(tmp_path / "whole", 1 << 30, 1 << 30)
    assert len(whole) == 4  # 3 shards, legacy
    assert files(tmp_path / "streamed", 97, 61) == whole


def test_a_duplicate_citizen_id_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    raw = pq.read_table(SOURCE)
    ids = raw["citizen_id"].to_pylist()
    ids[-1] = ids[0]
    broken = tmp_path / "citizens.parquet"
    pq.write_table(raw.set_column(raw.schema.get_field_index("citizen_id"), "citizen_id",
                                  pa.array(ids, raw.schema.field("citizen_id").type)), broken)
    folder = tmp_path / "registry"
    with pytest.raises(RegistryError, match="citizen_id is not unique"):
        registry_snapshot.prepare(broken, folder, 2, as_of=AS_OF)
    assert not list((folder / ".staging").iterdir())
