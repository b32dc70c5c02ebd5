"""Stage entry points with plain string arguments, for Airflow tasks and the CLI.

Each function is one stage of a run for one run date. They communicate only
through files in the run's staging folder, so any of them can be retried on
its own; each returns a small JSON-able summary (fit for XCom). Logs carry
counts only, never citizen data.

The stage functions are imported when first used (``__getattr__``): a task or a
command loads only its own stage's module and what that needs, not every stage's
libraries (``simrecon registry prepare`` never imports the history store or the
report). ``load_all`` imports them all (a worker that preloads).
"""

from __future__ import annotations

import importlib
from typing import Any

# Each stage function and the module of pipelines.stages that defines it.
_MODULE_OF = {
    "approve_publication": "outputs",
    "build_report": "outputs",
    "check_run": "outputs",
    "choose_candidates": "reconcile",
    "collect_searched": "reconcile",
    "flag_shard": "reconcile",
    "flag_subscriptions": "reconcile",
    "gate_corrections": "outputs",
    "gather_report_sample": "outputs",
    "gate_export": "intake",
    "gate_prepared_registry": "registry",
    "gate_registry": "registry",
    "gate_results": "reconcile",
    "import_review_inbox": "review",
    "ingest_telco": "intake",
    "match_shard": "reconcile",
    "match_subscriptions": "reconcile",
    "normalise_telco": "intake",
    "partition_telco": "intake",
    "plan_run": "run",
    "plan_search": "reconcile",
    "plan_shards": "reconcile",
    "prepare_registry": "registry",
    "publish_registry": "registry",
    "publish_run": "outputs",
    "refresh_lookup_index": "lookup",
    "refresh_registry": "registry",
    "route_search_batch": "reconcile",
    "run_all": "run",
    "search_candidates": "reconcile",
    "search_partition": "reconcile",
    "spanning_flags": "reconcile",
    "stage_lookup_index": "lookup",
    "store_of": "common",
    "write_corrections": "outputs",
    "write_review_queue": "reconcile",
}

__all__ = sorted(_MODULE_OF)
# Every module that defines a stage, importable by name (a fork server's preload list).
STAGE_MODULES = [f"pipelines.stages.{module}" for module in sorted(set(_MODULE_OF.values()))]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def load_all() -> None:
    """Import every stage module now (a worker that preloads them before forking)."""
    for name in __all__:
        __getattr__(name)
