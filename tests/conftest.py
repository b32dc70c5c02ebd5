"""Shared fixtures: a run configuration pointing at the bundled samples, output in tmp."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def write_config(tmp_path: Path, *, telcos_dir: Path | None = None,
                 registry: Path | None = None, **extra: object) -> Path:
    """A run config in ``tmp_path`` whose outputs go to ``tmp_path/runs``."""
    config = {
        "registry": str(registry or REPO / "data_samples" / "registry" / "citizens.parquet"),
        "telcos_dir": str(telcos_dir or REPO / "config" / "telcos"),
        "output_dir": str(tmp_path / "runs"),
        **extra,
    }
    path = tmp_path / "simrecon.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def registry_breaking_its_suite(tmp_path: Path) -> Path:
    """The bundled registry with one citizen_id that is not a 12-digit CCCD: it loads,
    but breaks the ``registry_prepared`` suite."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    registry = pq.read_table(REPO / "data_samples" / "registry" / "citizens.parquet")
    ids = registry["citizen_id"].to_pylist()
    ids[6] = "12345"
    broken = tmp_path / "citizens.parquet"
    pq.write_table(registry.set_column(0, "citizen_id", pa.array(ids, pa.string())), broken)
    return broken


TEST_REVIEW_KEY = bytes(range(32))


def same_review_key(config: Path) -> Path:
    """Give the deployment of ``config`` the tests' review key, so that two deployments'
    outputs (whose review ``row_hash`` is keyed per deployment) can be compared byte for
    byte. Returns ``config``."""
    from pipelines.config import load_config
    from pipelines.correction_cycle import review
    from pipelines.stages.common import store_of

    review.install_key(store_of(load_config(config)), TEST_REVIEW_KEY)
    return config


@pytest.fixture
def sample_config(tmp_path: Path) -> Path:
    return write_config(tmp_path)


def run_until_flagged(config: str, run_date: str,
                      telcos: tuple[str, ...] = ("mobifone", "viettel", "vinaphone")) -> None:
    """The run's stages one by one, in this process, up to the results (flagged, not yet
    gated): for tests that step in between stages."""
    from pipelines import stages

    stages.plan_run(config, run_date)
    stages.gate_registry(config, run_date)
    for telco in telcos:
        stages.ingest_telco(config, run_date, telco)
        stages.normalise_telco(config, run_date, telco)
        stages.gate_export(config, run_date, telco)
        stages.partition_telco(config, run_date, telco)
    stages.match_subscriptions(config, run_date)
    stages.flag_subscriptions(config, run_date)
