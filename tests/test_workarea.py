"""Work areas in shared object storage (``shared_work``, issue 12 item 1).

Every stage runs in its own fresh local folder holding only what it downloaded from
the bucket (moto's S3 server on loopback), so a run that succeeds here needs no file
one stage left on local disk for another: exactly the situation of two Celery workers
on two machines. Its outputs must equal those of the embedded (local files) run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.config import ConfigError, load_config
from pipelines.stages import refresh_registry, run_all
from pipelines.storage import workarea

from .conftest import REPO, write_config
from .servers import moto_s3, new_database, postgres_cluster

RUN_DATE = "2026-11-28"
NEXT_DATE = "2026-11-29"
BUCKET = "simrecon-shared"
# Files of a run that carry the time they were made (compared apart from that).
TIMED = ("summary.json", "report.html", "report.xlsx", "manifest.json")


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[object, str]]:
    """A bucket with the sample registry, an s3fs client, and a PostgreSQL server."""
    import s3fs

    with pytest.MonkeyPatch.context() as patch, moto_s3(patch), postgres_cluster() as pg:
        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir(BUCKET)
        fs.put_file(str(REPO / "data_samples" / "registry" / "citizens.parquet"),
                    f"{BUCKET}/registry/citizens.parquet")
        yield fs, pg
        s3fs.S3FileSystem.clear_instance_cache()


def _shared_config(folder: Path, pg: str, name: str, **extra: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(
        folder, registry=f"s3://{BUCKET}/registry/citizens.parquet",  # type: ignore[arg-type]
        output_dir=f"s3://{BUCKET}/{name}", work_dir=str(folder / "scratch"),
        shared_work=True, correction_cycle={"history_store": new_database(pg, name)}, **extra)


def _published(fs: object, prefix: str) -> dict[str, bytes]:
    fs.invalidate_cache()  # type: ignore[attr-defined]
    return {p[len(prefix) + 1:]: fs.cat_file(p)  # type: ignore[attr-defined]
            for p in fs.find(prefix)}  # type: ignore[attr-defined]


@pytest.mark.slow
def test_run_in_shared_work_areas_equals_local_run(shared, tmp_path: Path) -> None:
    fs, pg = shared
    (tmp_path / "local").mkdir()
    local_config = write_config(tmp_path / "local")
    local = Path(run_all(str(local_config), RUN_DATE)["run_dir"])
    config = _shared_config(tmp_path / "shared", pg, "runs")

    outcome = run_all(str(config), RUN_DATE, workers=2)
    assert outcome["failed_telcos"] == []
    published = _published(fs, f"{BUCKET}/runs/{RUN_DATE}")
    listed = {e["path"] for e in json.loads(published["manifest.json"])["files"]}
    assert set(published) == listed | {"manifest.json", "_SUCCESS"}
    expected = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert listed | {"manifest.json"} == expected
    for name in sorted(listed - set(TIMED)):
        assert published[name] == (local / name).read_bytes(), name
    assert json.loads(published["summary.json"])["telcos"] == \
        json.loads((local / "summary.json").read_text())["telcos"]

    # The run's working state is gone from the bucket; the prepared registry stays there;
    # nothing was left on the scratch disk.
    keys = set(_published(fs, f"{BUCKET}/runs"))
    assert not [k for k in keys if k.startswith((".staging/", ".work/"))]
    assert [k for k in keys if k.startswith(".registry/snapshot=") and k.endswith("/manifest.json")]
    assert not list((tmp_path / "shared" / "scratch").iterdir())

    # A second date reads the first one's summary from the bucket (drift, trend).
    run_all(str(config), NEXT_DATE, workers=1)
    run_all(str(local_config), NEXT_DATE, workers=1)
    second = json.loads(_published(fs, f"{BUCKET}/runs/{NEXT_DATE}")["summary.json"])
    local_second = json.loads((local.parent / NEXT_DATE / "summary.json").read_text())
    assert second["tracking"] == local_second["tracking"]
    gate = json.loads(_published(fs, f"{BUCKET}/runs/{NEXT_DATE}")["gates/export.viettel.json"])
    assert gate["previous_run"] == RUN_DATE


def test_registry_refresh_in_shared_storage_then_run_uses_it(shared, tmp_path: Path) -> None:
    fs, pg = shared
    config = _shared_config(tmp_path, pg, "refresh",
                            prepared_registry={"prepare_in_run": False, "shards": 3})
    published = refresh_registry(str(config), RUN_DATE)
    assert published["changed"] and published["shards"] == 3
    keys = set(_published(fs, f"{BUCKET}/refresh/.registry"))
    assert "latest.json" in keys and not [k for k in keys if k.startswith(".staging/")]
    assert f"snapshot={published['snapshot']}/manifest.json" in keys
    again = refresh_registry(str(config), RUN_DATE)
    assert not again["changed"] and not again["prepared"]


def test_a_mapped_task_downloads_only_its_own_files() -> None:
    wanted = workarea._wanted
    d = RUN_DATE
    assert wanted(f".work/{d}/matched/003.parquet", "shard", "3")
    assert not wanted(f".work/{d}/matched/004.parquet", "shard", "3")
    assert wanted(f".work/{d}/shards/viettel/003.parquet", "shard", "3")
    assert not wanted(f".work/{d}/shards/viettel/001.parquet", "shard", "3")
    assert wanted(f".staging/{d}/results/shard=003/part-0.parquet", "shard", "3")
    assert not wanted(f".staging/{d}/results/shard=000/part-0.parquet", "shard", "3")
    assert not wanted(f".work/{d}/ingested/viettel.parquet", "shard", "3")
    assert wanted(f".work/{d}/aggregates/003/counts.json", "shard", "3")
    assert wanted(f".work/{d}/plan.json", "shard", "3")
    assert wanted(f".work/{d}/ingested/viettel.parquet", "telco", "viettel")
    assert not wanted(f".work/{d}/ingested/mobifone.parquet", "telco", "viettel")
    assert not wanted(f".staging/{d}/normalised/mobifone.parquet", "telco", "viettel")
    assert wanted(f".work/{d}/shards/viettel/_partitioned.json", "telco", "viettel")
    assert not wanted(f".work/{d}/matched/000.parquet", "telco", "viettel")
    assert wanted(f".work/{d}/matched/000.parquet", "run", None)


def test_shared_work_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="output_dir in object storage"):
        load_config(write_config(tmp_path, shared_work=True))
    with pytest.raises(ConfigError, match="PostgreSQL URL"):
        load_config(write_config(tmp_path, shared_work=True, output_dir="s3://b/runs"))
    with pytest.raises(ConfigError, match=r"leave prepared_registry\.dir empty"):
        load_config(write_config(tmp_path, shared_work=True, output_dir="s3://b/runs",
                                 prepared_registry={"dir": "reg"},
                                 correction_cycle={"history_store": "postgresql://h/db"}))
    config = load_config(write_config(tmp_path, shared_work=True, output_dir="s3://b/runs",
                                      correction_cycle={"history_store": "postgresql://h/db"}))
    assert config.shared_work and config.publish_url == "s3://b/runs"
