"""Daily reconciliation of telco subscriber exports against the citizen registry.

This file is wiring only: every task calls one function of ``pipelines.stages``
with plain strings (config path, run date, telco) and logs the counts it
returns. The rules live in ``pipelines`` and ``matching``, which import and run
without Airflow; the stages pass data to each other through files, XCom only
carries their small summaries.

``pipelines.stages`` is imported inside the tasks, not at the top of the file:
the DAG processor re-parses this file every few seconds and the stages pull in
pandas, pyarrow and rapidfuzz, which would make every parse slow for nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog  # Airflow's own logger; honours [logging] namespace_levels
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import (
    Asset,
    ExceptionRetryPolicy,
    RetryAction,
    RetryRule,
    TriggerRule,
    dag,
    get_current_context,
    task,
    task_group,
)

log = structlog.get_logger("simrecon.dag")

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "simrecon.yaml"

# Every stage is idempotent, so the unexpected (a network share hiccup, a killed
# worker) gets one more try. Errors another try cannot fix fail at once.
# SIMRECON_TASK_RETRIES=0 (set by scripts/airflow_env.sh for the demo and the
# tests) makes one-off runs fail fast instead of waiting for the retry.
RETRIES = int(os.environ.get("SIMRECON_TASK_RETRIES", "1"))
RETRY_DELAY = timedelta(seconds=int(os.environ.get("SIMRECON_RETRY_DELAY_SECONDS", "120")))
# SIMRECON_SCHEDULE=external: no schedule of Airflow's own; an external scheduler
# triggers each run through the REST API (docs/deployment.md, "Scaling out").
SCHEDULE = None if os.environ.get("SIMRECON_SCHEDULE") == "external" else "@daily"
RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception=[
                "pipelines.errors.TelcoInputError",
                "pipelines.errors.RegistryError",
                "pipelines.errors.RunIncompleteError",
                "pipelines.errors.RunNotPlannedError",
                "pipelines.errors.GateFailedError",
                "pipelines.config.ConfigError",
            ],
            action=RetryAction.FAIL,
            reason="bad input or configuration: fix it, then run the date again",
        ),
    ],
)

# The prepared registry snapshot, published by the citizen_registry_refresh DAG
# (dags/citizen_registry_refresh.py declares the same Asset as its outlet). Here it is
# an inlet of gate_registry: lineage in the UI; the stage itself finds the snapshot
# through <prepared dir>/latest.json, so it runs the same without Airflow.
REGISTRY_SNAPSHOT = Asset(name="citizen_registry_prepared",
                          uri="x-simrecon://registry/prepared")

DOC_MD = """
### Subscriber reconciliation

Links every telco's subscriber export to the citizen registry, flags
unregistered, mismatched and junk-SIM subscriptions, and publishes a compliance
report and one correction list per telco to `<output_dir>/<run date>/`.

| task | does | runs |
|---|---|---|
| `plan` | resets `.staging/<run date>/` (run and engineer-only), lists the telcos | once |
| `gate_registry` | picks the prepared registry snapshot, checks it; fails = the run stops | once |
| `ingest` | reads one telco's export, maps its columns | per telco |
| `normalise` | normalises one telco's rows | per telco |
| `gate_export` | validates one telco's normalised export; fails = that telco stops | per telco |
| `partition` | cuts one telco's gated rows into shards by document number | per telco |
| `plan_shards` | fixes the telcos, lists the shards, records dropped decisions | once |
| `match_shard` | links one shard's subscriptions to the same shard of the registry | per shard |
| `collect_searched` | gathers the rows whose document leads nowhere, cut into batches | once |
| `plan_search` | lists the partitions (by birth year) of the registry's search layout | once |
| `route_search_batch` | one batch: near numbers looked up, rows routed by birth year | per batch |
| `search_partition` | the candidates of the rows routed to one partition | per partition |
| `choose_candidates` | the best candidate over all partitions, per shard | once |
| `spanning_flags` | rules across shards (duplicate number, bulk activation) | once |
| `flag_shard` | flags one shard, applies decisions, writes its results | per shard |
| `review_queue` | writes the review queue from every shard's queued rows | once |
| `gate_results` | validates the results, shard by shard; fails = nothing is published | once |
| `lookup_stage` | builds the run's look-up index from the results, pending until published | once |
| `corrections` | writes one telco's delivery (list, workbook, resend), streamed | per telco |
| `gate_corrections` | validates one telco's list; a failing list is withdrawn | per telco |
| `report_sample` | reads the report's sample of flagged rows, beside the lists | once |
| `report` | writes `summary.json` and `report.html` from the shards' aggregates | once |
| `approve` | compliance approves publishing (human-in-the-loop; auto for the demo) | once |
| `publish` | publishes the engineer-only folder, then the run with its manifest; delivers | once |
| `lookup_index` | swaps the pending index in (or builds it), settles verification requests | once |
| `check` | fails the run if any telco could not be processed | once |

`ingest`, `normalise`, `gate_export` and `partition` are mapped over the telcos in
the task group `per_telco` (the map index shows the telco name); unusable rows go
to quarantine, not to failure. `match_shard` and `flag_shard` are mapped over the
shards of the registry snapshot (`prepared_registry.shards`; the map index shows the
shard): each reads only its shard of the registry and of the subscriptions, so a
task's memory is set by a shard, not by the run. `corrections` and
`gate_corrections` are mapped over the telcos. Results do not depend on the number
of shards. Gate results: `gates/*.json` in the run folder.

**One broken telco does not stop the others.** Its `ingest`, `normalise` or
`gate_export` fails, `plan_shards` still runs on the telcos that made it (trigger
rule `all_done_min_one_success`), their results are published, and `check` fails so
the run shows red. Fix the export, then clear the **whole run** (or run the
date again): `plan` rebuilds the staging folder from scratch. Clearing only
the failed telco's tasks after `publish` would publish that telco alone.

* Run date: the run's logical date (`ds`, UTC); a run triggered without a
  logical date uses the day it was triggered.
* Config: `$SIMRECON_CONFIG`, default `config/simrecon.yaml` in the repo.
* Bad input or configuration fails at once; other errors retry once.
* Task logs carry counts only, never citizen data.
"""

# Keys whose text is safe to log (telco names, paths, statuses); any other
# value is logged only as a number or as a count.
_TEXT_KEYS = frozenset({"telco", "telcos", "failed_telcos", "status", "run_dir", "report",
                        "snapshot"})


def _config_path() -> str:
    return os.environ.get("SIMRECON_CONFIG") or str(DEFAULT_CONFIG)


def _run_date() -> str:
    """The run's logical date; for a run without one, the day it was triggered (UTC).

    ``run_after`` is fixed for the whole run, so every task and every retry
    agrees on the date, even past midnight.
    """
    context = get_current_context()
    return context.get("ds") or context["dag_run"].run_after.date().isoformat()


def _summary(result: dict) -> str:
    parts = []
    for key, value in result.items():
        if isinstance(value, bool | int | float) or (key in _TEXT_KEYS and isinstance(value, str)):
            parts.append(f"{key}={value}")
        elif key in _TEXT_KEYS and isinstance(value, list | tuple):
            parts.append(f"{key}={','.join(map(str, value)) or '-'}")
        elif isinstance(value, list | tuple | dict | set):
            parts.append(f"n_{key}={len(value)}")
    return " ".join(parts) or "done"


def _run(label: str, stage: Callable[..., dict], *args: str | int | dict) -> dict:
    """Call ``stage(config_path, run_date, *args)`` and log one line of counts."""
    run_date = _run_date()
    result = stage(_config_path(), run_date, *args)
    log.info("simrecon %s %s: %s", label, run_date, _summary(result))
    return result


def _run_listing(label: str, listed: str, stage: Callable[[str, str], list]) -> list:
    """Call a stage that returns what the next tasks are mapped over; log how many."""
    run_date = _run_date()
    items = stage(_config_path(), run_date)
    log.info("simrecon %s %s: %s=%d", label, run_date, listed, len(items))
    return items


def _show_telco(telco: str) -> None:
    """Name the mapped task instance after its telco (see ``map_index_template``)."""
    get_current_context()["telco"] = telco  # type: ignore[typeddict-unknown-key]


@task
def plan() -> list[str]:
    from pipelines.stages import plan_run

    run_date = _run_date()
    telcos = plan_run(_config_path(), run_date)
    log.info("simrecon plan %s: %s", run_date, _summary({"telcos": telcos}))
    return telcos


@task(map_index_template="{{ telco }}")
def ingest(telco: str) -> dict:
    from pipelines.stages import ingest_telco

    _show_telco(telco)
    return _run(f"ingest[{telco}]", ingest_telco, telco)


@task(map_index_template="{{ telco }}")
def normalise(telco: str) -> dict:
    from pipelines.stages import normalise_telco

    _show_telco(telco)
    return _run(f"normalise[{telco}]", normalise_telco, telco)


@task(map_index_template="{{ telco }}")
def gate_export(telco: str) -> dict:
    from pipelines.stages import gate_export as gate_export_stage

    _show_telco(telco)
    return _run(f"gate_export[{telco}]", gate_export_stage, telco)


@task(map_index_template="{{ telco }}")
def partition(telco: str) -> dict:
    from pipelines.stages import partition_telco

    _show_telco(telco)
    return _run(f"partition[{telco}]", partition_telco, telco)


@task_group(prefix_group_id=False)
def per_telco(telco: str) -> None:
    """One telco's chain. Inside a mapped task group each task of telco i waits only
    for the task before it of the same telco, so a failure stops that telco alone."""
    ingest(telco) >> normalise(telco) >> gate_export(telco) >> partition(telco)


# Chooses the prepared registry snapshot (preparing it first when the configuration
# says so) and checks it. A snapshot that is missing, inconsistent or breaks its
# suite fails here; every telco chain is then upstream_failed and so is everything
# after them: nothing is published.
@task(inlets=[REGISTRY_SNAPSHOT])
def gate_registry() -> dict:
    from pipelines.stages import gate_registry as gate_registry_stage

    return _run("gate_registry", gate_registry_stage)


# Runs once every telco's chain has finished, provided at least one telco made
# it (telcos that failed are left out). If none did, it and everything after it
# are upstream_failed: nothing is published. Returns the shard numbers.
@task(trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS)
def plan_shards() -> list[int]:
    from pipelines.stages import plan_shards as plan_shards_stage

    return _run_listing("plan_shards", "shards", plan_shards_stage)


@task(map_index_template="{{ shard }}")
def match_shard(shard: int) -> dict:
    from pipelines.stages import match_shard as match_shard_stage

    get_current_context()["shard"] = f"{shard:03d}"  # type: ignore[typeddict-unknown-key]
    return _run(f"match_shard[{shard:03d}]", match_shard_stage, shard)


# The candidate search, the longest step after matching, is mapped twice: one task per
# batch of searched rows looks up the numbers one slip away and routes the rows by birth
# year, then one task per partition (by birth year) of the registry's search layout
# scores the rows routed to it, so each task's memory is one batch or one partition,
# and the registry is read once per run.
@task
def collect_searched() -> list[dict]:
    from pipelines.stages import collect_searched as collect_searched_stage

    return _run_listing("collect_searched", "search_batches", collect_searched_stage)


@task
def plan_search() -> list[dict]:
    from pipelines.stages import plan_search as plan_search_stage

    return _run_listing("plan_search", "search_partitions", plan_search_stage)


@task(map_index_template="{{ search_batch }}")
def route_search_batch(search_batch: dict) -> dict:
    from pipelines.stages import route_search_batch as route_search_batch_stage

    label = f"{int(search_batch['batch']):04d}"
    get_current_context()["search_batch"] = label  # type: ignore[typeddict-unknown-key]
    return _run(f"route_search_batch[{label}]", route_search_batch_stage, search_batch)


@task(map_index_template="{{ search_partition }}")
def search_partition(search_task: dict) -> dict:
    from pipelines.stages import search_partition as search_partition_stage

    label = f"{int(search_task['partition']):03d}"
    get_current_context()["search_partition"] = label  # type: ignore[typeddict-unknown-key]
    return _run(f"search_partition[{label}]", search_partition_stage, search_task)


@task
def choose_candidates() -> dict:
    from pipelines.stages import choose_candidates as choose_candidates_stage

    return _run("choose_candidates", choose_candidates_stage)


@task
def spanning_flags() -> dict:
    from pipelines.stages import spanning_flags as spanning_flags_stage

    return _run("spanning_flags", spanning_flags_stage)


@task(map_index_template="{{ shard }}")
def flag_shard(shard: int) -> dict:
    from pipelines.stages import flag_shard as flag_shard_stage

    get_current_context()["shard"] = f"{shard:03d}"  # type: ignore[typeddict-unknown-key]
    return _run(f"flag_shard[{shard:03d}]", flag_shard_stage, shard)


@task
def review_queue() -> dict:
    from pipelines.stages import write_review_queue

    return _run("review_queue", write_review_queue)


@task
def gate_results() -> dict:
    from pipelines.stages import gate_results as gate_results_stage

    return _run("gate_results", gate_results_stage)


# Mapped over the planned telcos; a telco that did not make it through its chain is
# skipped inside (it has no results).
@task(map_index_template="{{ telco }}")
def corrections(telco: str) -> dict:
    from pipelines.stages import write_corrections

    _show_telco(telco)
    return _run(f"corrections[{telco}]", write_corrections, telco)


# Succeeds even when a telco's list failed its suite (the list is withdrawn and
# the telco recorded as failed): the other lists are published, check turns red.
@task(map_index_template="{{ telco }}")
def gate_corrections(telco: str) -> dict:
    from pipelines.stages import gate_corrections as gate_corrections_stage

    _show_telco(telco)
    return _run(f"gate_corrections[{telco}]", gate_corrections_stage, telco)


@task
def report_sample() -> dict:
    from pipelines.stages import gather_report_sample

    return _run("report_sample", gather_report_sample)


@task
def report() -> dict:
    from pipelines.stages import build_report

    return _run("report", build_report)


class PublicationApproval(ApprovalOperator):
    """Compliance signs off before any correction list leaves (Approve / Reject).

    Reject skips ``publish`` (nothing is published or delivered). With
    ``correction_cycle.auto_approve`` in the run configuration, or
    ``SIMRECON_AUTO_APPROVE=1`` (set by scripts/airflow_env.sh for the embedded
    demo and the tests), it approves at once instead of waiting for a person.
    """

    def execute(self, context):  # type: ignore[no-untyped-def, override]
        from pipelines.stages import approve_publication

        auto = os.environ.get("SIMRECON_AUTO_APPROVE", "").lower() in {"1", "true", "yes"}
        if auto or approve_publication(_config_path(), _run_date())["auto"]:
            log.info("simrecon approve %s: auto-approved", _run_date())
            return {"chosen_options": [self.APPROVE], "params_input": {},
                    "responded_at": datetime.now(UTC).isoformat(),
                    "responded_by_user": {"id": "auto-approve", "name": "auto-approve"}}
        return super().execute(context)


def approve() -> PublicationApproval:
    return PublicationApproval(
        task_id="approve",
        subject="simrecon {{ ds }}: approve publishing the correction lists",
        body=("Read `runs/{{ ds }}/report.html` (in the staging folder until published) and "
              "the review queue, then approve to publish and deliver the correction lists, "
              "or reject to publish nothing."),
    )


@task
def publish() -> dict:
    from pipelines.stages import publish_run

    return _run("publish", publish_run)


# Beside the lists and the report: the run's look-up index, built from the gated results
# and left pending (never live before publish; never fails the run, see the stage).
@task
def lookup_stage() -> dict:
    from pipelines.stages import stage_lookup_index

    return _run("lookup_stage", stage_lookup_index)


@task
def lookup_index() -> dict:
    from pipelines.stages import refresh_lookup_index

    return _run("lookup_index", refresh_lookup_index)


# The only leaf, so it decides the run's state: red when a telco failed, even
# though the other telcos' outputs were published.
@task
def check() -> dict:
    from pipelines.stages import check_run

    return _run("check", check_run)


@dag(
    dag_id="subscriber_reconciliation",
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={
        "owner": "simrecon",
        "retries": RETRIES,
        "retry_delay": RETRY_DELAY,
        "retry_policy": RETRY_POLICY,
    },
    tags=["simrecon", "reconciliation", "telco"],
    doc_md=DOC_MD,
)
def subscriber_reconciliation() -> None:
    telcos = plan()
    telco_chains = per_telco.expand(telco=telcos)
    telcos >> gate_registry() >> telco_chains
    shards = plan_shards()
    telco_chains >> shards
    matched = match_shard.expand(shard=shards)
    flagged = flag_shard.expand(shard=shards)
    searched = collect_searched()
    matched >> searched
    partitions = plan_search()
    shards >> partitions
    chosen = choose_candidates()
    routed = route_search_batch.expand(search_batch=searched)
    routed >> search_partition.expand(search_task=partitions) >> chosen
    matched >> spanning_flags() >> flagged
    chosen >> flagged
    gated, queued = gate_results(), review_queue()
    flagged >> [queued, gated]
    lists = corrections.expand(telco=telcos)
    queued >> lists
    checked = gate_corrections.expand(telco=telcos)
    published, staged = publish(), lookup_stage()
    reported = report()
    gated >> lists >> checked >> reported >> approve() >> published
    gated >> report_sample() >> reported  # beside the lists: the report's longest part
    gated >> staged  # beside the lists and the report; swapped in after publish
    [published, staged] >> lookup_index() >> check()


subscriber_reconciliation()
