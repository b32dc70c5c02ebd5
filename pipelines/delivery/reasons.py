"""Reason-code descriptions (Vietnamese and English) for telco-facing outputs."""

from __future__ import annotations

from functools import cache
from importlib import resources

import pyarrow as pa
import yaml


@cache
def reason_descriptions() -> dict[str, dict[str, str]]:
    text = resources.files("pipelines").joinpath("data/reason_codes.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def reason_table() -> pa.Table:
    """Every reason code with its descriptions: the ``reason_codes`` sheet of a telco's
    workbook and of the report's."""
    descriptions = reason_descriptions()
    codes = sorted(descriptions)
    return pa.table({"reason_code": codes, "vi": [descriptions[c]["vi"] for c in codes],
                     "en": [descriptions[c]["en"] for c in codes]})
