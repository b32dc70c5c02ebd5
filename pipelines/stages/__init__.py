"""Stage entry points with plain string arguments, for Airflow tasks and the CLI.

Each function is one stage of a run for one run date. They communicate only
through files in the run's staging folder, so any of them can be retried on
its own; each returns a small JSON-able summary (fit for XCom). Logs carry
counts only, never citizen data.
"""

from pipelines.stages.common import store_of
from pipelines.stages.intake import gate_export, ingest_telco, normalise_telco, partition_telco
from pipelines.stages.lookup import refresh_lookup_index
from pipelines.stages.outputs import (
    approve_publication,
    build_report,
    check_run,
    gate_corrections,
    publish_run,
    write_corrections,
)
from pipelines.stages.reconcile import (
    choose_candidates,
    collect_searched,
    flag_shard,
    flag_subscriptions,
    gate_results,
    match_shard,
    match_subscriptions,
    plan_shards,
    search_candidates,
    search_registry_shard,
    spanning_flags,
    write_review_queue,
)
from pipelines.stages.registry import (
    gate_prepared_registry,
    gate_registry,
    prepare_registry,
    publish_registry,
    refresh_registry,
)
from pipelines.stages.review import import_review_inbox
from pipelines.stages.run import plan_run, run_all

__all__ = [
    "approve_publication",
    "build_report",
    "check_run",
    "choose_candidates",
    "collect_searched",
    "flag_shard",
    "flag_subscriptions",
    "gate_corrections",
    "gate_export",
    "gate_prepared_registry",
    "gate_registry",
    "gate_results",
    "import_review_inbox",
    "ingest_telco",
    "match_shard",
    "match_subscriptions",
    "normalise_telco",
    "partition_telco",
    "plan_run",
    "plan_shards",
    "prepare_registry",
    "publish_registry",
    "publish_run",
    "refresh_lookup_index",
    "refresh_registry",
    "run_all",
    "search_candidates",
    "search_registry_shard",
    "spanning_flags",
    "store_of",
    "write_corrections",
    "write_review_queue",
]
