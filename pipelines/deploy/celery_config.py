"""Celery settings of simrecon's Airflow: Airflow's own defaults, and on a worker the
stages imported once, before Celery forks.

Each task runs in a process forked from the worker (Airflow 3's supervisor), which
otherwise imports pandas, pyarrow and Great Expectations again for every task: seconds
of every gate task. With ``SIMRECON_PRELOAD_STAGES=1`` in a worker's environment
(``[celery] celery_config_options = pipelines.deploy.celery_config.CELERY_CONFIG``),
they are imported here and every task inherits them, as the CLI's worker processes do
(``pipelines/stages/run.py``, the fork server's preload).
"""

from __future__ import annotations

import os

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

CELERY_CONFIG = dict(DEFAULT_CELERY_CONFIG)

if os.environ.get("SIMRECON_PRELOAD_STAGES") == "1":
    import expectations  # noqa: F401
    import pipelines.stages

    pipelines.stages.load_all()
