"""A whole run without Airflow (``simrecon run``), and its first step, the plan.

The CLI runs the same stages as the DAG in the same order; stages that the DAG maps
(per telco, per shard) run side by side in up to ``workers`` processes of this
machine, each stage in a process that holds only its own telco's or shard's data, so
the run's memory is set by the largest shard, not by the run. ``workers=1`` runs
everything in this process. (Spreading a run over machines is Airflow's job: the
Celery or Kubernetes executor, docs/deployment.md.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from typing import Any

from pipelines.correction_cycle import review
from pipelines.deploy.workers import pool as _pool
from pipelines.deploy.workers import release_memory
from pipelines.errors import TelcoInputError
from pipelines.stages.common import context, log, store_of
from pipelines.stages.intake import gate_export, ingest_telco, normalise_telco, partition_telco
from pipelines.stages.lookup import refresh_lookup_index, stage_lookup_index
from pipelines.stages.outputs import (
    approve_publication,
    build_report,
    gate_corrections,
    gather_report_sample,
    publish_run,
    write_corrections,
)
from pipelines.stages.reconcile import (
    choose_candidates,
    collect_searched,
    flag_shard,
    gate_results,
    match_shard,
    plan_search,
    plan_shards,
    route_search_batch,
    search_partition,
    spanning_flags,
    write_review_queue,
)
from pipelines.stages.registry import gate_registry, stage_run_registry
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


class _MeasuredPool:
    """The run's pool, adding up each stage's CPU seconds (user + system, every thread of
    the process that ran the task): with the wall seconds they show how busy the workers
    were, which a run on more workers or machines can gain (docs/deployment.md)."""

    def __init__(self, pool: Executor) -> None:
        self.pool = pool
        self.cpu: dict[str, float] = {}

    def submit(self, stage: str, fn: Callable[..., Any], *args: Any) -> Future:
        """``fn(*args)`` in the pool; its CPU seconds are added to ``stage``'s."""
        outer: Future = Future()

        def done(inner: Future) -> None:
            try:
                result, seconds = inner.result()
            except BaseException as exc:  # handed on to whoever waits for the task
                outer.set_exception(exc)
                return
            self.cpu[stage] = self.cpu.get(stage, 0.0) + seconds
            outer.set_result(result)

        self.pool.submit(_with_cpu_seconds, fn, *args).add_done_callback(done)
        return outer


def _with_cpu_seconds(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """``fn(*args)`` and the CPU seconds of this process while it ran; the memory it
    freed is then handed back if the worker holds much (``release_memory``: a worker runs
    many tasks)."""
    start = time.process_time()
    try:
        result = fn(*args)
    finally:
        release_memory()
    return result, time.process_time() - start


def run_all(config_path: str, run_date: str, workers: int = 1) -> dict:
    """Every stage in order (the CLI's ``simrecon run``); mapped stages in up to
    ``workers`` processes. Returns where the outputs are and each stage's seconds (wall
    and CPU: ``timings``, ``cpu_seconds``)."""
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[..., Any], *args: Any, task: str | None = None) -> Any:
        """A stage in this process (or, with ``task``, the wait for that pool task)."""
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            return fn(*args)
        finally:
            timings[name] = round(time.perf_counter() - start, 3)
            pool.cpu[name] = time.process_time() - cpu_start + pool.cpu.get(task or name, 0.0)
            log.info("stage %s done in %.2fs (%.1f CPU s)", name, timings[name], pool.cpu[name])

    def mapped(name: str, fn: Callable[..., Any], items: Iterable[Any],
               *, telcos: bool = False) -> list[Any]:
        """``fn(config_path, run_date, item)`` for every item, side by side; a telco's
        bad input (``TelcoInputError``) is logged and leaves that telco out."""
        start = time.perf_counter()
        futures = [(item, pool.submit(name, fn, config_path, run_date, item))
                   for item in items]
        out = []
        for item, future in futures:
            try:
                out.append(future.result())
            except TelcoInputError as exc:
                if not telcos:
                    raise
                log.error("telco %s skipped: %s", item, exc)
        timings[name] = round(time.perf_counter() - start, 3)
        log.info("stage %s done in %.2fs (%d task(s), %.1f CPU s)", name, timings[name],
                 len(futures), pool.cpu.get(name, 0.0))
        return out

    def chained(steps: Sequence[tuple[str, Callable[..., Any]]], items: list[str], *,
                after: Future | None = None, after_step: int = 0,
                telcos: bool = True,
                queued: Callable[[], Any] | None = None) -> list[list[Any]]:
        """Per-telco chains: each telco's next step is submitted as soon as its previous
        step ends (telcos side by side, no barrier between steps); step ``after_step``
        also waits for ``after`` (its failure is raised). With ``telcos``, a telco's bad
        input (``TelcoInputError``) is logged and ends its chain. Each step is logged when its
        last task ends, with the seconds since the previous step's last one ended.
        ``queued`` is called once every telco's first step is submitted (a task it submits
        then takes the first worker those leave free). Returns, per step, the results of
        the telcos that passed it, in ``items`` order."""
        start = time.perf_counter()
        results: list[dict[str, Any]] = [{} for _ in steps]
        remaining = [len(items)] * len(steps)  # telcos that may still end each step
        ends = [start] * len(steps)
        logged = 0
        pending: dict[Future, tuple[str, int]] = {}
        held: list[str] = []

        def log_ended() -> None:
            nonlocal logged
            while logged < len(steps) and remaining[logged] == 0:
                before = ends[logged - 1] if logged else start
                ends[logged] = max(ends[logged], before)
                seconds = round(ends[logged] - before, 3)
                timings[steps[logged][0]] = seconds
                log.info("stage %s done in %.2fs (%d task(s), telcos side by side, "
                         "%.1f CPU s)", steps[logged][0], seconds, len(results[logged]),
                         pool.cpu.get(steps[logged][0], 0.0))
                logged += 1

        def submit(item: str, k: int) -> None:
            if k == len(steps):
                return
            if k == after_step and after is not None:
                if not after.done():
                    held.append(item)
                    return
                after.result()  # its failure stops the run before this step
            pending[pool.submit(steps[k][0], steps[k][1], config_path, run_date,
                                item)] = (item, k)

        for item in items:
            submit(item, 0)
        if queued is not None:
            queued()
        while pending or held:
            if held and after is not None and after.done():
                after.result()
                waiting, held[:] = list(held), []
                for item in waiting:
                    submit(item, after_step)
                continue
            watched = set(pending) | ({after} if held and after is not None else set())
            finished, _ = wait(watched, return_when=FIRST_COMPLETED)
            for future in finished:
                if future not in pending:
                    continue
                item, k = pending.pop(future)
                try:
                    results[k][item] = future.result()
                except TelcoInputError as exc:
                    if not telcos:
                        raise
                    log.error("telco %s skipped: %s", item, exc)
                    for j in range(k, len(steps)):
                        remaining[j] -= 1
                else:
                    remaining[k] -= 1
                    submit(item, k + 1)
                ends[k] = time.perf_counter()
            log_ended()
        log_ended()
        return [[r[i] for i in items if i in r] for r in results]

    with _pool(workers) as executor, ThreadPoolExecutor(
            1, thread_name_prefix="simrecon-beside") as stage_thread:
        pool = _MeasuredPool(executor)
        telcos = timed("plan", plan_run, config_path, run_date)
        # Each telco goes through its chain on its own; the registry gate runs beside the
        # telcos' reading and export gates (cutting into shards needs its snapshot). A
        # snapshot the run
        # prepares itself is staged in this process, from the start (the workers' first
        # task waits seconds for their fork server's imports), then gated in a worker.
        started = time.perf_counter()

        def registry_gate() -> dict:
            # This process's CPU meanwhile: the staging's threads (the stages' thread only
            # waits for the workers then).
            cpu_start = time.process_time()
            prepared = stage_run_registry(config_path, run_date)
            if prepared.get("staging"):
                pool.cpu["stage_run_registry"] = time.process_time() - cpu_start
                log.info("registry staged in %.2fs (this process, beside the intake)",
                         time.perf_counter() - started)
            return pool.submit("gate_registry", gate_registry, config_path, run_date,
                               prepared.get("staging", ""),
                               prepared.get("snapshot", "")).result()

        registry = stage_thread.submit(registry_gate)
        registry.add_done_callback(lambda _: timings.__setitem__(
            "gate_registry (beside ingest)", round(time.perf_counter() - started, 3)))
        chained([("ingest+normalise", _read_telco), ("gate_export", gate_export),
                 ("partition", partition_telco)], telcos, after=registry, after_step=2)
        registry.result()
        shards = timed("plan_shards", plan_shards, config_path, run_date)
        mapped("match_shard", match_shard, shards)
        # The search (one routing task per batch of searched rows, then one task per
        # partition of the registry's search layout) shares the workers with the rules
        # that span shards (independent of it): it is the longest step after matching.
        # Those rules start first, beside the collection of the searched rows (in this
        # process), so no worker waits for it.
        spanning = pool.submit("spanning_flags", spanning_flags, config_path, run_date)
        search_batches = timed("collect_searched", collect_searched, config_path, run_date)
        mapped("route_search_batch", route_search_batch, search_batches)
        mapped("search_partition", search_partition, plan_search(config_path, run_date))
        timed("choose_candidates", choose_candidates, config_path, run_date)
        # only what was left after the search
        timed("spanning_flags(wait)", spanning.result, task="spanning_flags")
        mapped("flag", flag_shard, shards)
        # The review queue is written beside the results gate and the correction lists
        # (nothing reads it in the run); the lists wait for the results gate, as in the DAG.
        queue = pool.submit("write_review_queue", _step, config_path, run_date,
                            "write_review_queue")
        gated = pool.submit("gate_results", _step, config_path, run_date, "gate_results")
        timed("gate_results", gated.result)
        # The report's sample of flagged rows is read from the results beside the lists
        # (a thread of this process, which only waits for the workers meanwhile).
        sample = stage_thread.submit(timed, "report_sample", gather_report_sample,
                                     config_path, run_date)
        # Every planned telco, as in the DAG: a telco that did not make it is skipped
        # inside (the stage knows; here, with shared_work, the files are not on this disk).
        # Each telco's list is checked as soon as it is written. The look-up index is built
        # from the gated results in the first worker the lists leave free (queued after
        # them: before them it held a worker they needed), beside the last list, the report
        # and publication; left pending, and swapped in after publish (below).
        lookup: list[Future] = []
        chained([("corrections", write_corrections), ("gate_corrections", gate_corrections)],
                telcos, telcos=False, queued=lambda: lookup.append(pool.submit(
                    "lookup_stage", stage_lookup_index, config_path, run_date)))
        staged = lookup[0]
        sample.result()
        timed("review_queue(wait)", queue.result, task="write_review_queue")
        timed("report", build_report, config_path, run_date)
        timed("approve", approve_publication, config_path, run_date)
        published = timed("publish", publish_run, config_path, run_date)
        timed("lookup_stage(wait)", staged.result, task="lookup_stage")
        timed("lookup_index", refresh_lookup_index, config_path, run_date)
    cpu = {name: round(seconds, 3) for name, seconds in pool.cpu.items()}
    return {**published, "timings": timings, "cpu_seconds": cpu}


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
