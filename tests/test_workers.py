"""The run's worker processes (pipelines/deploy/workers.py): what a worker keeps between
tasks."""

from __future__ import annotations

import gc

import pyarrow as pa
import pytest

from pipelines.deploy import workers


def _allocate_and_free(megabytes: int) -> None:
    """Arrow buffers allocated and dropped: the pool keeps what it may reuse."""
    held = [pa.allocate_buffer(1 << 20) for _ in range(megabytes)]
    del held


def test_a_worker_holding_little_keeps_its_freed_memory_for_the_next_task() -> None:
    resident = workers.resident_bytes()
    assert resident is not None and resident > 0
    _allocate_and_free(64)
    assert workers.release_memory(above=resident + (1 << 30)) is False


def test_a_worker_holding_more_than_the_limit_hands_its_freed_memory_back() -> None:
    _allocate_and_free(64)
    assert workers.release_memory(above=0) is True


def test_the_limit_is_what_the_default_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "resident_bytes",
                        lambda: workers.RELEASE_ABOVE_BYTES + 1)
    assert workers.release_memory() is True
    monkeypatch.setattr(workers, "resident_bytes", lambda: workers.RELEASE_ABOVE_BYTES)
    assert workers.release_memory() is False
    monkeypatch.setattr(workers, "resident_bytes", lambda: None)  # unknown: released
    assert workers.release_memory() is True


def _frozen_objects() -> int:
    return gc.get_freeze_count()


@pytest.mark.skipif(workers._method() != "forkserver", reason="needs the fork server")
def test_workers_start_with_the_imports_objects_frozen() -> None:
    """The fork server freezes what its imports made (frozen_imports, last in PRELOAD),
    so a worker's full collections do not walk them."""
    assert workers.PRELOAD[-1] == "pipelines.deploy.frozen_imports"
    with workers.pool(2) as pool:
        frozen = pool.submit(_frozen_objects).result(timeout=120)
    assert frozen > 10_000
