"""Suite for the prepared citizen registry (``pipelines.registry.load_registry``)."""

from __future__ import annotations

from datetime import date

import great_expectations as gx
import pandas as pd

from expectations import E, new_suite
from pipelines.schema import GENDERS


def registry_suite(*, run_date: date) -> gx.ExpectationSuite:
    return new_suite("registry_prepared", [
        E.ExpectTableRowCountToBeBetween(min_value=1, description="the registry is not empty"),
        E.ExpectColumnValuesToNotBeNull(column="citizen_id",
                                        description="every citizen has a citizen_id"),
        E.ExpectColumnValuesToBeUnique(column="citizen_id", description="citizen_id is unique"),
        E.ExpectColumnValuesToMatchRegex(column="citizen_id", regex=r"^[0-9]{12}$",
                                         description="citizen_id is a 12-digit CCCD"),
        E.ExpectColumnValuesToMatchRegex(column="legacy_id", regex=r"^[0-9]{9}$",
                                         description="legacy_id, when present, has 9 digits"),
        E.ExpectColumnValuesToBeInSet(column="gender", value_set=list(GENDERS),
                                      description="gender is M or F"),
        E.ExpectColumnValuesToNotBeNull(column="date_of_birth",
                                        description="every citizen has a date of birth"),
        E.ExpectColumnValuesToBeBetween(column="date_of_birth", max_value=pd.Timestamp(run_date),
                                        description="no date of birth after the run date"),
    ])
