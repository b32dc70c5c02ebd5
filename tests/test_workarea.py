"""Work areas in shared object storage (``shared_work``, issue 12 item 1).

Every stage runs in its own fresh local folder holding only what it downloaded from
the bucket (moto's S3 server on loopback), so no stage needs a file another left on a
local disk: the situation of Celery workers on several machines. Here, fast, the work
area's rules (a mapped task's scope, uploads in write order, deletions, a plan starting
empty) and a registry refresh through it; tests/test_cluster.py runs both DAGs so on a
real two-worker cluster and compares the outputs with the CLI's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.config import ConfigError, load_config
from pipelines.stages import refresh_registry
from pipelines.storage import workarea

from .conftest import REPO, write_config
from .servers import s3_bucket

RUN_DATE = "2026-11-28"
NEXT_DATE = "2026-11-29"
BUCKET = "simrecon-shared"


@pytest.fixture(scope="module")
def shared() -> Iterator[object]:
    """A bucket with the sample registry, and an s3fs client of it."""
    registry = REPO / "data_samples" / "registry" / "citizens.parquet"
    with s3_bucket(BUCKET, {"registry/citizens.parquet": registry}) as fs:
        yield fs


def _shared_config(folder: Path, name: str, **extra: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(
        folder, registry=f"s3://{BUCKET}/registry/citizens.parquet",  # type: ignore[arg-type]
        output_dir=f"s3://{BUCKET}/{name}", work_dir=str(folder / "scratch"),
        shared_work=True,
        # Never connected to here; every worker records into one database (cluster test).
        correction_cycle={"history_store": "postgresql://simrecon@127.0.0.1:9/none"},
        **extra)


def _objects(fs: object, prefix: str) -> dict[str, bytes]:
    fs.invalidate_cache()  # type: ignore[attr-defined]
    return {p[len(prefix) + 1:]: fs.cat_file(p)  # type: ignore[attr-defined]
            for p in fs.find(prefix)}  # type: ignore[attr-defined]


def _written_at(prefix: str) -> dict[str, object]:
    """Server-side write time of every object under ``prefix`` (moto, in this process)."""
    from moto.backends import get_backend

    keys = get_backend("s3")["123456789012"]["global"].buckets[BUCKET].keys
    return {k[len(prefix) + 1:]: keys[k].last_modified for k in keys
            if k.startswith(prefix + "/")}


@workarea.in_work_area("shard", item="shard")
def _shard_stage(config_path: str, run_date: str, shard: int) -> list[str]:
    """A stand-in for ``flag_shard``: what it saw, and what it wrote, removed, changed."""
    root = workarea.active_root()
    assert root is not None
    work = root / ".work" / run_date
    seen = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    (work / "plan.json").write_text('{"changed": true}', encoding="utf-8")
    (work / "matched" / f"{shard:03d}.arrow").unlink()
    (work / "flagged").mkdir(parents=True)
    for name in ("a.parquet", "b.parquet", "_done.json"):  # the marker last
        (work / "flagged" / name).write_text(name, encoding="utf-8")
        time.sleep(0.01)
    (root / run_date).mkdir()
    (root / run_date / "stray.txt").write_text("published runs are publish_folder's", "utf-8")
    return seen


@workarea.in_work_area("fresh")
def _plan_stage(config_path: str, run_date: str) -> None:
    assert not any(workarea.active_root().rglob("*"))  # type: ignore[union-attr]


def test_a_stage_sees_its_scope_and_its_writes_land_marker_last(shared, tmp_path: Path) -> None:
    fs = shared
    config = str(_shared_config(tmp_path, "area"))
    root = f"{BUCKET}/area"
    work = f".work/{RUN_DATE}"
    for key in (f"{work}/plan.json", f"{work}/matched/001.arrow",
                f"{work}/matched/002.arrow", f"{work}/ingested/viettel.parquet",
                f".staging/{RUN_DATE}/results/shard=002/part-0.parquet",
                f".staging/{NEXT_DATE}/other-date.json"):
        fs.pipe_file(f"{root}/{key}", b"x")

    seen = _shard_stage(config, RUN_DATE, 2)
    assert seen == [f".staging/{RUN_DATE}/results/shard=002/part-0.parquet",
                    f"{work}/matched/002.arrow", f"{work}/plan.json"]
    after = _objects(fs, root)
    assert after[f"{work}/plan.json"] == b'{"changed": true}'
    assert f"{work}/matched/002.arrow" not in after  # removed by the stage
    assert f"{work}/matched/001.arrow" in after  # another shard's: untouched
    assert f"{RUN_DATE}/stray.txt" not in after
    times = _written_at(f"area/{work}/flagged")
    assert times["_done.json"] >= max(times["a.parquet"], times["b.parquet"])
    assert not list((tmp_path / "scratch").iterdir())  # the work area is gone

    _plan_stage(config, RUN_DATE)  # a new plan: the date's working state starts empty
    left = _objects(fs, root)
    assert not [k for k in left if k.startswith((f".work/{RUN_DATE}/",
                                                 f".staging/{RUN_DATE}/"))]
    assert f".staging/{NEXT_DATE}/other-date.json" in left


def test_registry_refresh_in_shared_storage(shared, tmp_path: Path) -> None:
    fs = shared
    config = _shared_config(tmp_path, "refresh",
                            prepared_registry={"prepare_in_run": False, "shards": 3})
    published = refresh_registry(str(config), RUN_DATE)
    assert published["changed"] and published["shards"] == 3
    keys = set(_objects(fs, f"{BUCKET}/refresh/.registry"))
    assert "latest.json" in keys and not [k for k in keys if k.startswith(".staging/")]
    assert f"snapshot={published['snapshot']}/manifest.json" in keys
    again = refresh_registry(str(config), RUN_DATE)
    assert not again["changed"] and not again["prepared"]


def test_a_mapped_task_downloads_only_its_own_files() -> None:
    wanted = workarea._wanted
    d = RUN_DATE
    assert wanted(f".work/{d}/matched/003.arrow", "shard", "3")
    assert not wanted(f".work/{d}/matched/004.arrow", "shard", "3")
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
    assert not wanted(f".work/{d}/matched/000.arrow", "telco", "viettel")
    assert wanted(f".work/{d}/matched/000.arrow", "run", None)


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
