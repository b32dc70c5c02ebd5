"""Storage through URLs: a run reads its inputs from S3 and publishes to S3 (issue 4 item 4).

A local S3-compatible server (moto's, on 127.0.0.1, started here) holds the
bundled sample registry and exports. A run whose configuration names only
``s3://`` URLs (registry, every export, ``output_dir``, the telcos' delivery)
must publish exactly what a run over the local files publishes, with the
``_SUCCESS`` marker written after every other object of the run.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.config import ConfigError, load_config, load_telco_mapping
from pipelines.errors import TelcoInputError
from pipelines.intake import ingest
from pipelines.stages import run_all
from pipelines.storage import objectstore

from .conftest import REPO, same_review_key, write_config
from .servers import s3_bucket

RUN_DATE = "2026-11-28"
BUCKET = "simrecon-test"


@pytest.fixture(scope="module")
def s3() -> Iterator:
    """The server, a bucket holding the samples, and an s3fs client of it."""
    files = {"registry/citizens.parquet": REPO / "data_samples" / "registry" / "citizens.parquet"}
    for path in sorted((REPO / "config" / "telcos").glob("*.yaml")):
        source = load_telco_mapping(path).source_path()
        files[f"exports/{source.name}"] = source
    with s3_bucket(BUCKET, files) as fs:
        yield fs


def _s3_telcos(folder: Path) -> Path:
    """The bundled mappings, each reading its export from the bucket."""
    folder.mkdir(parents=True)
    for path in sorted((REPO / "config" / "telcos").glob("*.yaml")):
        mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
        mapping["source"] = f"s3://{BUCKET}/exports/{Path(mapping['source']).name}"
        (folder / path.name).write_text(yaml.safe_dump(mapping, allow_unicode=True),
                                        encoding="utf-8")
    return folder


def _last_modified(bucket: str) -> dict[str, object]:
    """Server-side write time of every object (moto's backend, in this process)."""
    from moto.backends import get_backend

    keys = get_backend("s3")["123456789012"]["global"].buckets[bucket].keys
    return {name: keys[name].last_modified for name in keys}


@pytest.mark.slow
def test_run_through_s3_publishes_what_a_local_run_does(
        s3, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "local").mkdir()
    local = Path(run_all(str(same_review_key(write_config(tmp_path / "local"))),
                         RUN_DATE)["run_dir"])

    config = write_config(
        tmp_path / "s3", telcos_dir=_s3_telcos(tmp_path / "s3" / "telcos"),
        registry=f"s3://{BUCKET}/registry/citizens.parquet",  # type: ignore[arg-type]
        output_dir=f"s3://{BUCKET}/runs/", work_dir=str(tmp_path / "s3" / "work"),
        correction_cycle={"delivery": {"default": {"kind": "object",
                                                   "path": f"s3://{BUCKET}/outbox"}}})
    with caplog.at_level("INFO", logger="simrecon.lookup"):
        outcome = run_all(str(same_review_key(config)), RUN_DATE)
    assert outcome["failed_telcos"] == []
    # The look-up index built from the staged results (in the bucket) was swapped in.
    assert "pending build swapped in" in caplog.text
    assert [p for p in s3.find(f"{BUCKET}/runs/lookup") if "pending" in p] == []
    prefix = f"{BUCKET}/runs/{RUN_DATE}"
    published = {p[len(prefix) + 1:] for p in s3.find(prefix)}
    listed = {e["path"] for e in json.loads((local / "manifest.json").read_text())["files"]}
    assert published == listed | {"manifest.json", "_SUCCESS"}

    # Same outputs as the local run, byte for byte: results, every correction file, the
    # gates, the review queue (the report and summary carry their generation time).
    results = [p for p in sorted(listed) if p.startswith("results/")]
    assert results and all(p.endswith("/part-0.parquet") for p in results)
    compared = [p for p in sorted(listed) if p.startswith((
        "results", "corrections/", "gates/", "review/"))]
    # Engineer-only outputs (raw export rows) stay in the local private folder.
    assert not [p for p in published if p.startswith(("quarantine/", "normalised/"))]
    assert any(p.endswith("viettel.csv") for p in compared)
    for name in compared:
        assert s3.cat_file(f"{prefix}/{name}") == (local / name).read_bytes(), name
    summary = json.loads(s3.cat_file(f"{prefix}/summary.json"))
    assert summary["telcos"] == json.loads((local / "summary.json").read_text())["telcos"]

    # The marker is written last and names the manifest it vouches for.
    written = {k.removeprefix(f"runs/{RUN_DATE}/"): t for k, t in _last_modified(BUCKET).items()
               if k.startswith(f"runs/{RUN_DATE}/")}
    marker_time = written.pop("_SUCCESS")
    assert all(marker_time > t for t in written.values())
    manifest_time = written.pop("manifest.json")
    assert all(manifest_time > t for t in written.values())
    marker = json.loads(s3.cat_file(f"{prefix}/_SUCCESS"))
    assert marker["manifest_sha256"] == hashlib.sha256(
        s3.cat_file(f"{prefix}/manifest.json")).hexdigest()
    assert objectstore.published_runs(f"s3://{BUCKET}/runs") == [RUN_DATE]

    # Object-storage delivery: each telco's files, its manifest last.
    outbox = {k: t for k, t in _last_modified(BUCKET).items() if k.startswith("outbox/")}
    for telco in ("mobifone", "viettel", "vinaphone"):
        manifest_key = f"outbox/{RUN_DATE}/{telco}.manifest.json"
        delivered = json.loads(s3.cat_file(f"{BUCKET}/{manifest_key}"))
        for entry in delivered["files"]:
            data = s3.cat_file(f"{BUCKET}/outbox/{RUN_DATE}/{entry['path']}")
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
            assert data == (local / "corrections" / entry["path"]).read_bytes()
            assert outbox[manifest_key] > outbox[f"outbox/{RUN_DATE}/{entry['path']}"]

    # The working state stayed on local disk; nothing of it reached the bucket.
    work = tmp_path / "s3" / "work"
    assert (work / RUN_DATE / "manifest.json").exists() and (work / "history.sqlite").exists()
    assert not any("/." in p for p in s3.find(f"{BUCKET}/runs"))


def test_republishing_a_date_replaces_it_marker_last(s3, tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "corrections").mkdir(parents=True)
    (run / "corrections" / "a.csv").write_text("new\n", encoding="utf-8")
    (run / ".hidden.tmp").write_text("never published", encoding="utf-8")
    (run / "manifest.json").write_text("{}\n", encoding="utf-8")
    url = f"s3://{BUCKET}/republish/{RUN_DATE}"
    s3.pipe_file(f"{BUCKET}/republish/{RUN_DATE}/stale.csv", b"from an earlier publication")
    s3.pipe_file(f"{BUCKET}/republish/{RUN_DATE}/_SUCCESS", b"old marker")
    objectstore.publish_folder(run, url)
    s3.invalidate_cache()
    names = sorted(p.rsplit(f"{RUN_DATE}/", 1)[1] for p in s3.find(f"{BUCKET}/republish"))
    assert names == ["_SUCCESS", "corrections/a.csv", "manifest.json"]
    assert json.loads(s3.cat_file(f"{BUCKET}/republish/{RUN_DATE}/_SUCCESS"))["files"] == 2
    (run / "manifest.json").unlink()
    with pytest.raises(objectstore.StorageError, match="not a complete run folder"):
        objectstore.publish_folder(run, url)


def test_inputs_behind_urls(s3, tmp_path: Path) -> None:
    folder = _s3_telcos(tmp_path / "telcos")
    mapping = load_telco_mapping(folder / "mobifone.yaml")  # Parquet, read in place
    source = mapping.source_path()
    assert isinstance(source, objectstore.RemoteFile) and source.exists()
    assert source.stat().st_size == s3.info(source.url.removeprefix("s3://"))["size"]
    rows = ingest.ingest(mapping).rows
    assert rows.num_rows > 0 and set(rows["source_file"].to_pylist()) == {source.name}
    missing = mapping.model_copy(update={"source": f"s3://{BUCKET}/exports/none.csv",
                                         "format": "csv"})
    with pytest.raises(TelcoInputError, match="export file not found"):
        ingest.ingest(missing)
    assert pq.read_table(io.BytesIO(source.read_bytes())).num_rows == rows.num_rows


def test_url_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="set work_dir"):
        load_config(write_config(tmp_path, output_dir="s3://bucket/runs"))
    with pytest.raises(ConfigError, match="only used when output_dir is a URL"):
        load_config(write_config(tmp_path, work_dir="work"))
    config = load_config(write_config(tmp_path, output_dir="file:///srv/simrecon/runs"))
    assert config.output_path == Path("/srv/simrecon/runs") and config.publish_url is None
    config = load_config(write_config(tmp_path, output_dir="s3://bucket/runs/",
                                      work_dir="work"))
    assert config.publish_url == "s3://bucket/runs" and config.output_path == tmp_path / "work"
    assert not objectstore.is_url("C:\\data\\runs") and objectstore.is_url("gs://b/k")
    with pytest.raises(objectstore.StorageError, match="no password in the URL") as refused:
        objectstore.filesystem("sftp://user:hunter2@example.invalid/x")
    assert "hunter2" not in str(refused.value)
    with pytest.raises(objectstore.StorageError, match="nosuchfs"):
        objectstore.filesystem("nosuchfs://bucket/key")
