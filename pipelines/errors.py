"""Errors a stage raises on purpose, each with a message a data engineer can act on."""

from __future__ import annotations


class TelcoInputError(Exception):
    """One telco's export cannot be used; the message names file, line or column.

    Only that telco stops: the other telcos of the run go on.
    """

    def __init__(self, telco: str, source: str, problem: str) -> None:
        self.telco = telco
        self.source = source
        self.problem = problem
        super().__init__(f"telco {telco}: {source}: {problem}")

    def __reduce__(self):  # type: ignore[no-untyped-def]
        """Picklable with its fields, so it crosses from a worker process intact."""
        return type(self), (self.telco, self.source, self.problem)


class RegistryError(Exception):
    """The citizen registry snapshot cannot be used; the whole run stops."""


class RunIncompleteError(Exception):
    """A run finished but some telcos could not be processed."""


class RunNotPlannedError(Exception):
    """A stage was started for a run date that has no plan (never planned or already
    published); running it would publish a partial run."""


class GateFailedError(Exception):
    """A data-quality gate on the run's own outputs failed (results, correction
    lists): publishing would spread a defect, so the run stops."""
