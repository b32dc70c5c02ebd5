"""The name a task instance records as its ``hostname`` (Airflow's ``[core]
hostname_callable``).

Two Celery workers on one machine (the local cluster) would both record the machine's
name; ``SIMRECON_WORKER_NAME``, set per worker, tells them apart. Unset (one worker per
machine, a Kubernetes pod), it is the machine's fully qualified name, as Airflow's own.
"""

from __future__ import annotations

import os
import socket


def worker_name() -> str:
    return os.environ.get("SIMRECON_WORKER_NAME") or socket.getfqdn()
