"""Which match model file a run uses (``matching.model_file``), loaded once per file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from matching.model import MatchModel
from pipelines.config import MatchingSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_FILE = REPO_ROOT / "models" / "fellegi-sunter-v1.json"


def model_path(settings: MatchingSettings) -> Path:
    """The configured model file; relative paths resolve against the repository root."""
    if not settings.model_file:
        return DEFAULT_MODEL_FILE
    path = Path(settings.model_file)
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> MatchModel:
    return MatchModel.load(path)


def load_model(settings: MatchingSettings) -> MatchModel:
    path = model_path(settings)
    if not path.exists():
        raise ValueError(f"{path}: match model file not found (matching.model_file)")
    return _load(str(path), path.stat().st_mtime)
