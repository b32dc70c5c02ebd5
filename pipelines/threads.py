"""Work ahead in threads: a bounded pipeline for the steps that alternate computing
(Arrow and NumPy, which release the GIL) with writing, so they use a second core."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ahead(work: Callable[[T], R], items: Iterable[T], workers: int = 2, *,
          name: str = "simrecon-ahead") -> Iterator[R]:
    """``work`` over ``items`` in ``workers`` threads, results in order, at most
    ``workers`` items ahead of the caller (memory stays bounded: the caller's result
    plus ``workers`` more)."""
    with ThreadPoolExecutor(workers, thread_name_prefix=name) as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
