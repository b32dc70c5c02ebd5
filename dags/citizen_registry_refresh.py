"""Citizen registry refresh: prepare a registry snapshot once, publish it as an Asset.

Wiring only, like ``subscriber_reconciliation``: each task calls one function of
``pipelines.stages`` with plain strings. The raw snapshot named by ``registry``
in the run configuration is read, validated and normalised, cut into
``prepared_registry.shards`` hash partitions by citizen ID (plus a legacy-ID
index), checked by the ``registry_prepared`` suite, and published to
``prepared_registry.dir`` (default ``<private_dir>/registry``) as
``snapshot=<id>/`` with ``latest.json`` pointing at it. The reconciliation then
reads that prepared snapshot instead of normalising the registry every day.

``publish`` updates the Asset ``citizen_registry_prepared`` (the event's extra
names the snapshot) only when the latest snapshot changed: a day on which the
source did not change prepares nothing and announces nothing (``publish`` is
skipped).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from airflow.sdk import (
    Asset,
    ExceptionRetryPolicy,
    RetryAction,
    RetryRule,
    dag,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowSkipException

log = structlog.get_logger("simrecon.dag")

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "simrecon.yaml"

# The same Asset is an inlet of subscriber_reconciliation's gate_registry.
REGISTRY_SNAPSHOT = Asset(name="citizen_registry_prepared",
                          uri="x-simrecon://registry/prepared")

RETRIES = int(os.environ.get("SIMRECON_TASK_RETRIES", "1"))
RETRY_DELAY = timedelta(seconds=int(os.environ.get("SIMRECON_RETRY_DELAY_SECONDS", "120")))
# SIMRECON_SCHEDULE=external: triggered through the REST API only (see the other DAG).
SCHEDULE = None if os.environ.get("SIMRECON_SCHEDULE") == "external" else "0 21 * * *"
RETRY_POLICY = ExceptionRetryPolicy(
    rules=[
        RetryRule(
            exception=["pipelines.errors.RegistryError", "pipelines.config.ConfigError"],
            action=RetryAction.FAIL,
            reason="bad registry snapshot or configuration: fix it, then run again",
        ),
    ],
)

DOC_MD = """
### Citizen registry refresh

Prepares the citizen registry snapshot once for every reconciliation run.

| task | does |
|---|---|
| `prepare` | validates, normalises and shards the raw snapshot (staging folder) |
| `gate_registry` | GX suite `registry_prepared`; fails = the snapshot is discarded |
| `publish` | puts it in place, `latest.json`, Asset event; skipped if unchanged |

`prepare` does nothing when the snapshot of that source with that shard count is
already published; a failed gate leaves the previous snapshot the latest.

* Config: `$SIMRECON_CONFIG`, default `config/simrecon.yaml` in the repo.
* As-of date (no birth after it): the run's logical date (`ds`, UTC).
* Layout and manifest: docs/data-contracts.md, "Prepared registry snapshot".
"""


def _config_path() -> str:
    return os.environ.get("SIMRECON_CONFIG") or str(DEFAULT_CONFIG)


def _as_of() -> str:
    context = get_current_context()
    return context.get("ds") or context["dag_run"].run_after.date().isoformat()


def _counts(label: str, result: dict) -> dict:
    shown = {k: v for k, v in result.items()
             if isinstance(v, bool | int) or k in ("snapshot", "shards")}
    log.info("simrecon registry %s %s: %s", label, _as_of(),
             " ".join(f"{k}={v}" for k, v in shown.items()))
    return result


@task
def prepare() -> dict:
    from pipelines.stages import prepare_registry

    return _counts("prepare", prepare_registry(_config_path(), _as_of()))


@task
def gate_registry(prepared: dict) -> dict:
    from pipelines.stages import gate_prepared_registry

    return _counts("gate", gate_prepared_registry(_config_path(), _as_of(),
                                                  prepared["staging"]))


@task(outlets=[REGISTRY_SNAPSHOT])
def publish(prepared: dict) -> dict:
    from pipelines.stages import publish_registry

    result = _counts("publish", publish_registry(_config_path(), _as_of(),
                                                 prepared["snapshot"], prepared["staging"]))
    if not result["changed"]:
        raise AirflowSkipException(f"snapshot {result['snapshot']} already is the latest")
    get_current_context()["outlet_events"][REGISTRY_SNAPSHOT].extra = {
        key: result[key] for key in ("snapshot", "citizens", "shards", "source_sha256")}
    return result


@dag(
    dag_id="citizen_registry_refresh",
    # 21:00 UTC = 04:00 in Vietnam, before the reconciliation's 07:00 (00:00 UTC) run.
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
    tags=["simrecon", "registry"],
    doc_md=DOC_MD,
)
def citizen_registry_refresh() -> None:
    prepared = prepare()
    gate_registry(prepared) >> publish(prepared)


citizen_registry_refresh()
