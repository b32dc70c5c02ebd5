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


@pytest.fixture
def sample_config(tmp_path: Path) -> Path:
    return write_config(tmp_path)
