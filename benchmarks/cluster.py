"""The scale benchmark's world through the two-worker Celery cluster (issue 12).

    .venv/bin/python -m benchmarks.cluster --subscriptions 1000000 --shards 8

Brings the local cluster up (``pipelines/deploy/local_cluster.py``) with the world of
``benchmarks/scale.py`` (generated and cached under benchmarks/out/ if missing) in its
S3 server, triggers the registry refresh and then the reconciliation through the REST
API, and prints their wall times (trigger to finished), the tasks' summed run time per
worker, and the load average before and after; then brings the cluster down. Compare
with ``python -m benchmarks.scale`` on the same world and shard count (one process).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.scale import machine, world
from pipelines.deploy.local_cluster import Cluster


def _loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as f:
        return " ".join(f.read().split()[:3])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--run-date", default="2026-11-28")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    folder = world(args.subscriptions, args.subscriptions, args.seed)
    figures: dict = {"subscriptions": args.subscriptions, "shards": args.shards,
                     **machine()}
    root = Path(tempfile.mkdtemp(prefix="simrecon-bench-cluster-"))
    cluster = Cluster(root, world=str(folder), shards=args.shards)
    try:
        start = time.perf_counter()
        cluster.up()
        figures["cluster_up_s"] = round(time.perf_counter() - start, 1)
        for dag_id in ("citizen_registry_refresh", "subscriber_reconciliation"):
            figures[f"loadavg_before_{dag_id}"] = _loadavg()
            start = time.perf_counter()
            run_id = cluster.trigger(dag_id, args.run_date)
            state = cluster.wait_run(dag_id, run_id, timeout=7200)
            figures[f"{dag_id}_s"] = round(time.perf_counter() - start, 1)
            figures[f"{dag_id}_state"] = state
            per_worker: dict[str, float] = {}
            for ti in cluster.task_instances(dag_id, run_id):
                host = ti["hostname"] or "-"
                per_worker[host] = round(per_worker.get(host, 0.0) + (ti["duration"] or 0), 1)
            figures[f"{dag_id}_task_seconds_by_worker"] = per_worker
            figures[f"loadavg_after_{dag_id}"] = _loadavg()
    finally:
        cluster.down()
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0 if figures.get("subscriber_reconciliation_state") == "success" else 1


if __name__ == "__main__":
    raise SystemExit(main())
