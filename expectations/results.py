"""Suites for the results dataset: one row per usable subscription, a known status each.

``results`` validates each shard's facts (``pipelines.quality.facts.results_facts``),
merged over the shards; ``results_count`` checks the run's total on one row of counts.
"""

from __future__ import annotations

import great_expectations as gx

from expectations import E, new_suite
from pipelines.schema import STATUSES


def results_suite() -> gx.ExpectationSuite:
    """Per shard: (telco, source_row) unique, known status, gated telcos, CCCD links."""
    return new_suite("results", [
        E.ExpectColumnValuesToBeUnique(
            column="row_key", description="(telco, source_row) is unique"),
        E.ExpectColumnValuesToNotBeNull(column="status", description="every row has a status"),
        E.ExpectColumnValuesToBeInSet(column="status", value_set=[0],
                                      description=f"status is one of {', '.join(STATUSES)}"),
        E.ExpectColumnValuesToBeInSet(column="telco", value_set=[0],
                                      description="only telcos that passed their gates"),
        E.ExpectColumnValuesToBeInSet(column="matched_citizen_id", value_set=[0],
                                      description="a linked citizen id is a 12-digit CCCD"),
    ])


def results_count_suite(*, expected_rows: int) -> gx.ExpectationSuite:
    """``expected_rows``: normalised rows of the telcos that passed their gates."""
    return new_suite("results_count", [
        E.ExpectColumnMaxToBeBetween(
            column="rows", min_value=expected_rows, max_value=expected_rows,
            description="one row per normalised subscription (none lost, none counted twice)"),
    ])
