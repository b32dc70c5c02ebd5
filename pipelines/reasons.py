"""Reason-code descriptions (Vietnamese and English) for telco-facing outputs."""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml


@cache
def reason_descriptions() -> dict[str, dict[str, str]]:
    text = resources.files("pipelines").joinpath("data/reason_codes.yaml").read_text("utf-8")
    return yaml.safe_load(text)
