"""The worker processes of ``simrecon run`` (``--workers``), kept apart from the stages so
the command can start them before it imports anything heavy.

Workers are forked from a fork server that imports the stages and the gates' Great
Expectations once (seconds, in every task otherwise). Starting that server first lets
its imports run beside the command's own imports and the plan, instead of after them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any

from pipelines.stages import STAGE_MODULES

# What the fork server imports once for every worker: every stage module (the package
# itself imports its stages lazily, so naming it would preload nothing) and the gates;
# then the objects they made are frozen (``frozen_imports``: it must stay last).
PRELOAD = [*STAGE_MODULES, "expectations", "pipelines.deploy.frozen_imports"]


def default_workers() -> int:
    """Processes ``simrecon run`` uses by default: one per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _method() -> str:
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def start_fork_server() -> None:
    """Start the fork server now (it imports ``PRELOAD`` in the background); the pool's
    first worker would otherwise start it, and wait for its imports, only then."""
    if _method() != "forkserver":
        return
    from multiprocessing import forkserver

    multiprocessing.get_context("forkserver").set_forkserver_preload(PRELOAD)
    forkserver.ensure_running()


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


# A worker keeps the memory its finished task freed while it holds less than this: the
# next task reuses it instead of faulting in (and the kernel zeroing) fresh pages, which
# cost a 1M run ~2 s of its ~32 when every task handed everything back. Above it the
# memory goes back (a large shard's peak is not carried into the next task).
RELEASE_ABOVE_BYTES = 1 << 30


def resident_bytes() -> int | None:
    """This process's resident set now (Linux), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def release_memory(above: int = RELEASE_ABOVE_BYTES) -> bool:
    """Hand the memory a finished task freed back to the system if this process holds
    more than ``above`` bytes (always where its size cannot be read): Arrow's allocator
    and the C heap keep freed memory for reuse, so without this a worker carries the
    peak of its largest task into every later one (the run's largest processes were
    workers holding an earlier task's peak beside the current one's). Returns whether
    it was released."""
    resident = resident_bytes()
    if resident is not None and resident <= above:
        return False
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)
    return True


class InProcess(Executor):
    """``workers=1``: every task in this process, in order."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def pool(workers: int) -> Executor:
    """Up to ``workers`` processes (the fork server started if it is not yet), or this
    process alone for ``workers <= 1``."""
    if workers <= 1:
        return InProcess()
    method = _method()
    if method == "forkserver":
        start_fork_server()
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                               initializer=_die_with_run, initargs=(os.getpid(),))
