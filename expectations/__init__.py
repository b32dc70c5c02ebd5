"""Great Expectations (GX 1.x) suites: the data contracts as executable gates.

One module per boundary, each with functions that build an
``ExpectationSuite`` from the contracts in ``pipelines.schema`` /
``docs/data-contracts.md`` and the thresholds in the run configuration
(``gates:``, ``pipelines.config.GateSettings``). The suites are code, so they
are versioned and reviewed with the pipeline; ``pipelines.quality.gates`` runs them.

* ``telco_export``: ``telco_export_ingested`` (one telco's export after column
  mapping), ``telco_export_normalised`` (after normalisation),
  ``row_conservation`` (its row accounting);
* ``registry``: ``registry_prepared`` (the prepared citizen registry);
* ``results``: ``results`` (``results.parquet``);
* ``corrections``: ``correction_list`` (one telco's ``corrections/<telco>.csv``).

The full list of expectations and thresholds: docs/data-contracts.md, "Gates".

Every expectation carries a ``description``: the sentence the report shows
when it fails.
"""

from __future__ import annotations

from expectations import lazy_dependencies

lazy_dependencies.install()  # before GX's first import: see that module

import great_expectations as gx  # noqa: E402

E = gx.expectations


def new_suite(name: str, expectations: list) -> gx.ExpectationSuite:
    """A suite not bound to any stored context (``pipelines.quality.gates`` validates it
    in memory)."""
    return gx.ExpectationSuite(name=name, expectations=list(expectations))
