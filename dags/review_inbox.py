"""Review inbox: records reviewers' decisions as soon as a filled-in queue lands.

Wiring only: the task calls ``pipelines.stages.import_review_inbox``. Compliance
staff drop a filled-in ``review/queue.xlsx`` (or ``.csv``) named
``<reviewer>__<anything>.xlsx`` into ``correction_cycle.review_drop_dir``; every
15 minutes this DAG validates and records each file's decisions (reviewer, UTC
time, file) in the history store and moves the file to ``imported/``, or to
``refused/`` with ``<name>.error.txt`` saying why. The next reconciliation run
applies recorded decisions (docs/data-contracts.md, "Review queue").
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from airflow.sdk import dag, task

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "config" / "simrecon.yaml"


def _config_path() -> str:
    return os.environ.get("SIMRECON_CONFIG") or str(DEFAULT_CONFIG)


@dag(
    dag_id="review_inbox",
    schedule="*/15 * * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    tags=["simrecon", "compliance"],
    doc_md=__doc__,
    default_args={"retries": 0},
)
def review_inbox() -> None:
    @task
    def import_reviews() -> dict:
        from pipelines.stages import import_review_inbox

        return import_review_inbox(_config_path())

    import_reviews()


review_inbox()
