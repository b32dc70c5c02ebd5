"""Suite for the prepared citizen registry (``pipelines.registry.source.load_registry``).

Validated shard by shard on the facts of every citizen
(``pipelines.quality.facts.registry_facts``), merged: a citizen id lies in one shard,
so uniqueness within each shard is uniqueness in the registry.
"""

from __future__ import annotations

import great_expectations as gx

from expectations import E, new_suite


def registry_suite() -> gx.ExpectationSuite:
    return new_suite("registry_prepared", [
        E.ExpectTableRowCountToBeBetween(min_value=1, description="the registry is not empty"),
        E.ExpectColumnValuesToNotBeNull(column="citizen_id",
                                        description="every citizen has a citizen_id"),
        E.ExpectColumnValuesToBeUnique(column="citizen_id_value",
                                       description="citizen_id is unique"),
        E.ExpectColumnValuesToBeInSet(column="citizen_id", value_set=[0],
                                      description="citizen_id is a 12-digit CCCD"),
        E.ExpectColumnValuesToBeInSet(column="legacy_id", value_set=[0],
                                      description="legacy_id, when present, has 9 digits"),
        E.ExpectColumnValuesToBeInSet(column="gender", value_set=[0],
                                      description="gender is M or F"),
        E.ExpectColumnValuesToNotBeNull(column="date_of_birth",
                                        description="every citizen has a date of birth"),
        E.ExpectColumnValuesToBeInSet(column="date_of_birth", value_set=[0],
                                      description="no date of birth after the run date"),
    ])
