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
from airflow.sdk import (
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
RETRY_DELAY = timedelta(minutes=2)
RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception=[
                "pipelines.errors.TelcoInputError",
                "pipelines.errors.RegistryError",
                "pipelines.errors.RunIncompleteError",
                "pipelines.errors.RunNotPlannedError",
                "pipelines.config.ConfigError",
            ],
            action=RetryAction.FAIL,
            reason="bad input or configuration: fix it, then run the date again",
        ),
    ],
)

DOC_MD = """
### Subscriber reconciliation

Links every telco's subscriber export to the citizen registry, flags
unregistered, mismatched and junk-SIM subscriptions, and publishes a compliance
report and one correction list per telco to `<output_dir>/<run date>/`.

| task | does | runs |
|---|---|---|
| `plan` | resets `<output_dir>/.staging/<run date>/`, lists the telcos | once |
| `ingest` | reads one telco's export, maps its columns | per telco |
| `normalise` | normalises one telco's rows | per telco |
| `match` | links every normalised subscription to the registry | once |
| `flag` | applies the flag rules, also those spanning telcos | once |
| `report` | writes `summary.json` and `report.html` | once |
| `publish` | writes correction lists and `manifest.json`, swaps the run folder in | once |
| `check` | fails the run if any telco could not be processed | once |

`ingest` and `normalise` are mapped over the telcos in the task group
`per_telco` (the map index shows the telco name); unusable rows go to
quarantine, not to failure.

**One broken telco does not stop the others.** Its `ingest` (or `normalise`)
fails, `match` still runs on the telcos that made it (trigger rule
`all_done_min_one_success`), their results are published, and `check` fails so
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
_TEXT_KEYS = frozenset({"telco", "telcos", "failed_telcos", "status", "run_dir", "report"})


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


def _run(label: str, stage: Callable[..., dict], *args: str) -> dict:
    """Call ``stage(config_path, run_date, *args)`` and log one line of counts."""
    run_date = _run_date()
    result = stage(_config_path(), run_date, *args)
    log.info("simrecon %s %s: %s", label, run_date, _summary(result))
    return result


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


@task_group(prefix_group_id=False)
def per_telco(telco: str) -> None:
    """One telco's chain. Inside a mapped task group normalise[i] waits only for
    ingest[i], so a failure stops that telco alone."""
    ingest(telco) >> normalise(telco)


# Runs once every telco's chain has finished, provided at least one telco made
# it (the stage skips telcos without normalised output). If none did, it and
# everything after it are upstream_failed: nothing is published.
@task(trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS)
def match() -> dict:
    from pipelines.stages import match_subscriptions

    return _run("match", match_subscriptions)


@task
def flag() -> dict:
    from pipelines.stages import flag_subscriptions

    return _run("flag", flag_subscriptions)


@task
def report() -> dict:
    from pipelines.stages import build_report

    return _run("report", build_report)


@task
def publish() -> dict:
    from pipelines.stages import publish_run

    return _run("publish", publish_run)


# The only leaf, so it decides the run's state: red when a telco failed, even
# though the other telcos' outputs were published.
@task
def check() -> dict:
    from pipelines.stages import check_run

    return _run("check", check_run)


@dag(
    dag_id="subscriber_reconciliation",
    schedule="@daily",
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
    telco_chains = per_telco.expand(telco=plan())
    telco_chains >> match() >> flag() >> report() >> publish() >> check()


subscriber_reconciliation()
