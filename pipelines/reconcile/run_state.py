"""What the sharded steps of a run read about the run itself: the registry snapshot it
chose and its shard plan (written by ``gate_registry`` and ``plan_shards``)."""

from __future__ import annotations

from pipelines.errors import RegistryError
from pipelines.registry.snapshot import Snapshot, open_snapshot
from pipelines.storage.files import read_json
from pipelines.storage.paths import RunPaths


def snapshot_of_run(paths: RunPaths) -> Snapshot:
    """The prepared registry snapshot ``gate_registry`` chose for this run."""

    if not paths.registry_snapshot.exists():
        raise RegistryError(f"run {paths.run_date}: no registry snapshot was chosen "
                            "(the gate_registry step did not succeed)")
    # A relative path is inside output_dir (gate_registry): this task's copy of it.
    return open_snapshot(paths.output_dir / read_json(paths.registry_snapshot)["path"])  # type: ignore[index]


def shard_plan(paths: RunPaths) -> dict:
    if not paths.shard_plan.exists():
        raise RuntimeError(f"run {paths.run_date}: no shard plan (plan_shards did not run)")
    return read_json(paths.shard_plan)  # type: ignore[return-value]
