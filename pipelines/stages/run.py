"""A whole run without Airflow (``simrecon run``), and its first step, the plan.

The CLI runs the same stages as the DAG in the same order; stages that the DAG maps
(per telco, per shard) run side by side in up to ``workers`` processes of this
machine, each stage in a process that holds only its own telco's or shard's data, so
the run's memory is set by the largest shard, not by the run. ``workers=1`` runs
everything in this process. (Spreading a run over machines is Airflow's job: the
Celery or Kubernetes executor, docs/deployment.md.)
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any

from pipelines.correction_cycle import review
from pipelines.errors import TelcoInputError
from pipelines.stages.common import context, log, store_of
from pipelines.stages.intake import gate_export, ingest_telco, normalise_telco, partition_telco
from pipelines.stages.lookup import refresh_lookup_index
from pipelines.stages.outputs import (
    approve_publication,
    build_report,
    gate_corrections,
    publish_run,
    write_corrections,
)
from pipelines.stages.reconcile import (
    choose_candidates,
    collect_searched,
    flag_shard,
    gate_results,
    match_shard,
    plan_shards,
    search_registry_shard,
    spanning_flags,
    write_review_queue,
)
from pipelines.stages.registry import gate_registry
from pipelines.storage.files import reset_dir, write_json
from pipelines.storage.workarea import in_work_area


@in_work_area("fresh")
def plan_run(config_path: str, run_date: str) -> list[str]:
    """Reset the staging folder for ``run_date``; return the telco names to process."""
    config, paths = context(config_path, run_date)
    telcos = [m.telco for m in config.telcos()]
    reset_dir(paths.staging)
    reset_dir(paths.work)
    reset_dir(paths.engineering_staging)
    # The review key exists before the shard tasks hash in parallel (one creates it).
    review.review_key(store_of(config))
    write_json({"run_date": run_date, "telcos": telcos,
                "started_at": datetime.now(UTC).isoformat(timespec="seconds")}, paths.plan)
    log.info("plan %s: telcos %s, staging %s", run_date, telcos, paths.staging)
    return telcos


def default_workers() -> int:
    """Processes ``simrecon run`` uses by default: one per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _die_with_run(run_pid: int) -> None:
    """A worker ends when the process that runs the stages (``run_pid``) ends, however it
    ends (a kill included), so a killed run leaves no worker writing into a folder the
    next run rebuilds. (Its parent is the fork server, which outlives the run while
    workers hold it open: watching the parent is not enough.)"""

    def watch() -> None:
        while True:
            try:
                os.kill(run_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass
            time.sleep(1.0)

    threading.Thread(target=watch, name="simrecon-run-watch", daemon=True).start()


class _InProcess(Executor):
    """``workers=1``: every task in this process, in order."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def _pool(workers: int) -> Executor:
    if workers <= 1:
        return _InProcess()
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() \
        else "spawn"
    mp = multiprocessing.get_context(method)
    if method == "forkserver":
        # Imported once in the fork server, shared by every worker: the stages and the
        # gates' Great Expectations (seconds to import, in every gate task otherwise).
        mp.set_forkserver_preload(["pipelines.stages", "expectations"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=mp,
                               initializer=_die_with_run, initargs=(os.getpid(),))


def run_all(config_path: str, run_date: str, workers: int = 1) -> dict:
    """Every stage in order (the CLI's ``simrecon run``); mapped stages in up to
    ``workers`` processes. Returns where the outputs are and each stage's seconds."""
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            timings[name] = round(time.perf_counter() - start, 3)
            log.info("stage %s done in %.2fs", name, timings[name])

    def mapped(name: str, fn: Callable[..., Any], items: Iterable[Any],
               *, telcos: bool = False) -> list[Any]:
        """``fn(config_path, run_date, item)`` for every item, side by side; a telco's
        bad input (``TelcoInputError``) is logged and leaves that telco out."""
        start = time.perf_counter()
        futures = [(item, pool.submit(fn, config_path, run_date, item)) for item in items]
        out = []
        for item, future in futures:
            try:
                out.append(future.result())
            except TelcoInputError as exc:
                if not telcos:
                    raise
                log.error("telco %s skipped: %s", item, exc)
        timings[name] = round(time.perf_counter() - start, 3)
        log.info("stage %s done in %.2fs (%d task(s))", name, timings[name], len(futures))
        return out

    with _pool(workers) as pool:
        telcos = timed("plan", plan_run, config_path, run_date)
        # The registry gate runs beside the telcos' reading: they do not need it.
        start = time.perf_counter()
        registry = pool.submit(gate_registry, config_path, run_date)
        read = mapped("ingest+normalise", _read_telco, telcos, telcos=True)
        registry.result()
        timings["gate_registry (beside ingest)"] = round(time.perf_counter() - start, 3)
        ready = [r["telco"] for r in read]
        cut = mapped("partition", partition_telco, ready, telcos=True)
        mapped("gate_export", gate_export, [c["telco"] for c in cut], telcos=True)
        shards = timed("plan_shards", plan_shards, config_path, run_date)
        mapped("match_shard", match_shard, shards)
        # The search, one task per registry shard and batch of searched rows, shares the
        # workers with the rules that span shards (independent of it): the search is the
        # longest step after matching.
        search_tasks = timed("collect_searched", collect_searched, config_path, run_date)
        spanning = pool.submit(spanning_flags, config_path, run_date)
        mapped("search_registry_shard", search_registry_shard, search_tasks)
        timed("choose_candidates", choose_candidates, config_path, run_date)
        timed("spanning_flags(wait)", spanning.result)  # only what was left after the search
        mapped("flag", flag_shard, shards)
        mapped("review_queue+gate_results", _step, ["write_review_queue", "gate_results"])
        # Every planned telco, as in the DAG: a telco that did not make it is skipped
        # inside (the stage knows; here, with shared_work, the files are not on this disk).
        mapped("corrections", write_corrections, telcos)
        mapped("gate_corrections", gate_corrections, telcos)
        timed("report", build_report, config_path, run_date)
        timed("approve", approve_publication, config_path, run_date)
        published = timed("publish", publish_run, config_path, run_date)
        timed("lookup_index", refresh_lookup_index, config_path, run_date)
    return {**published, "timings": timings}


def _read_telco(config_path: str, run_date: str, telco: str) -> dict:
    """One telco's ingest then normalise (one task: the second only reads the first's
    file)."""
    ingest_telco(config_path, run_date, telco)
    return {**normalise_telco(config_path, run_date, telco), "telco": telco}


_STEPS: dict[str, Callable[[str, str], dict]] = {
    "write_review_queue": write_review_queue, "gate_results": gate_results,
}


def _step(config_path: str, run_date: str, name: str) -> dict:
    """A single (unmapped) stage by name, so independent stages run side by side."""
    return _STEPS[name](config_path, run_date)
