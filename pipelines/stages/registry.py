"""Registry stages: the run's registry gate, and the three steps of a registry
refresh (dags/citizen_registry_refresh.py, ``simrecon registry prepare``).
"""

from __future__ import annotations

import importlib
import logging
import threading
from pathlib import Path

from pipelines.config import RunConfig, load_config, parse_run_date
from pipelines.errors import (
    RegistryError,
)
from pipelines.registry import snapshot as registry_snapshot
from pipelines.storage.files import (
    read_json,
    write_json,
)
from pipelines.storage.workarea import in_work_area

log = logging.getLogger("simrecon.stages")
# The gates' suites (Great Expectations), imported ahead of the gate (refresh_registry).
GATE_MODULE = "expectations"


def stage_run_registry(config_path: str, run_date: str) -> dict:
    """With ``prepared_registry.prepare_in_run`` and the work on this machine (no
    ``shared_work``): the refresh's first step (:func:`prepare_registry`: the snapshot
    found, or staged without its gate, so no Great Expectations here), for
    :func:`gate_registry` to take from there (``staging``, ``snapshot``); {} otherwise.
    ``simrecon run`` calls it in its own process at once, beside the telcos' intake in
    the workers, instead of waiting for a worker."""
    config = load_config(config_path)
    parse_run_date(run_date)
    if not config.prepared_registry.prepare_in_run or config.shared_work:
        return {}
    return prepare_registry(config_path, run_date)


@in_work_area("run_registry")
def gate_registry(config_path: str, run_date: str, staging: str = "",
                  snapshot_id: str = "") -> dict:
    """Choose the run's prepared registry snapshot and check it cheaply; a failure stops
    the whole run (``RegistryError``).

    With ``prepared_registry.prepare_in_run`` the snapshot of ``registry`` cut into
    ``prepared_registry.shards`` is used, prepared here first (validated by the
    ``registry_prepared`` suite as of the run date) when it does not exist yet, or, given
    ``staging`` (:func:`stage_run_registry`), gated and published from there, or, given
    the ``snapshot_id`` it found, that snapshot while it is there (the raw file is not
    hashed again);
    otherwise the latest snapshot the registry refresh published. The check reads no
    row: manifest, files, counts, the snapshot's gate, no birth after the run date.
    """
    # Here, not at the top: a registry refresh needs neither the run's folders nor the
    # history store (pipelines.stages.common).
    from pipelines.quality import gates
    from pipelines.stages.common import planned_context, write_gate

    config, paths = planned_context(config_path, run_date)
    settings, folder = config.prepared_registry, config.prepared_registry_path
    day = parse_run_date(run_date)
    paths.registry_snapshot.unlink(missing_ok=True)
    prepared = False
    if settings.prepare_in_run:
        try:
            found = registry_snapshot.find(folder, snapshot_id) \
                if snapshot_id and not staging else None
            if staging:
                registry_snapshot.gate(folder / staging, day, config.gates.example_rows)
                snapshot = registry_snapshot.publish(folder / staging, folder,
                                                     keep=settings.keep)
                prepared = True
            elif found is not None:
                snapshot = found
            else:
                snapshot, prepared = registry_snapshot.prepare(
                    config.registry_path, folder, settings.shards, as_of=day,
                    example_rows=config.gates.example_rows, set_latest=False,
                    keep=settings.keep)
        except registry_snapshot.RegistryGateFailed as exc:
            write_gate(paths, exc.result)
            raise
    else:
        snapshot = registry_snapshot.latest(folder)
        if snapshot is None:
            raise RegistryError(
                f"{folder}: no prepared registry snapshot; run the citizen_registry_refresh "
                "DAG or `simrecon registry prepare` first")
        if snapshot.shards != settings.shards:
            log.warning("registry snapshot %s has %d shards (prepared_registry.shards: %d): "
                        "the run uses the snapshot's", snapshot.id, snapshot.shards,
                        settings.shards)
    prepared_gate = snapshot.gate_result()
    suites = [*prepared_gate["suites"], registry_snapshot.check(snapshot, day)]
    result = gates.gate_result("registry", "registry", suites)
    result["registry_snapshot"] = snapshot.identity()
    write_gate(paths, result)
    if not result["success"]:
        raise RegistryError(f"{snapshot.path}: {gates.failure_reason(result)}")
    # Relative to output_dir when inside it: a task on another machine (shared_work)
    # finds it under its own copy of output_dir.
    chosen = snapshot.path.resolve()
    root = paths.output_dir.resolve()
    where = chosen.relative_to(root) if chosen.is_relative_to(root) else chosen
    write_json({"path": str(where), "snapshot": snapshot.id,
                "shards": snapshot.shards, "citizens": snapshot.citizens}, paths.registry_snapshot)
    return {"success": True, "citizens": snapshot.citizens, "shards": snapshot.shards,
            "snapshot": snapshot.id, "prepared": prepared}


def _registry_context(config_path: str, as_of: str) -> tuple[RunConfig, Path, int]:
    parse_run_date(as_of)
    config = load_config(config_path)
    return config, config.prepared_registry_path, config.prepared_registry.shards


@in_work_area("registry")
def prepare_registry(config_path: str, as_of: str) -> dict:
    """Refresh step 1: read, validate and normalise the raw snapshot (``registry``) and cut
    it into ``prepared_registry.shards`` shards in a staging folder; nothing to do when
    that snapshot (same source content, same shard count) is already published."""
    config, folder, count = _registry_context(config_path, as_of)
    digest = registry_snapshot.source_digest(config.registry_path)
    existing = registry_snapshot.find(folder, registry_snapshot.snapshot_id(digest, count))
    if existing is not None:
        return {"snapshot": existing.id, "staging": "", "citizens": existing.citizens,
                "shards": existing.shards, "reused": True}
    staging = registry_snapshot.stage(config.registry_path, folder, count, digest)
    # Relative to the registry folder, so the next step finds it on any worker (shared_work).
    return {"snapshot": registry_snapshot.snapshot_id(digest, count),
            "staging": str(staging.relative_to(folder)),
            "citizens": read_json(staging / "draft.json")["citizens"],  # type: ignore[index]
            "shards": count, "reused": False}


@in_work_area("registry")
def gate_prepared_registry(config_path: str, as_of: str, staging: str) -> dict:
    """Refresh step 2: the ``registry_prepared`` suite over the staged snapshot (as of
    ``as_of``); a failure discards it (``RegistryError``; result kept in ``rejected/``)."""
    if not staging:
        return {"success": True, "reused": True}
    config, folder, _ = _registry_context(config_path, as_of)
    result = registry_snapshot.gate(folder / staging, parse_run_date(as_of),
                                   config.gates.example_rows)
    return {"success": result["success"], "reused": False}


@in_work_area("registry")
def publish_registry(config_path: str, as_of: str, snapshot: str, staging: str) -> dict:
    """Refresh step 3: put the staged snapshot in place and make it the latest.
    ``changed`` is False when it already was the latest (nothing new to announce)."""
    config, folder, _ = _registry_context(config_path, as_of)
    if staging:
        published = registry_snapshot.publish(folder / staging, folder,
                                             keep=config.prepared_registry.keep)
    else:
        found = registry_snapshot.find(folder, snapshot)
        if found is None:
            raise RegistryError(f"{folder}: snapshot {snapshot} is not there any more")
        published = found
    changed = registry_snapshot.set_latest_snapshot(folder, published)
    log.info("registry %s: snapshot %s (%d citizens, %d shards)%s", as_of, published.id,
             published.citizens, published.shards, "" if changed else ", already the latest")
    return {"snapshot": published.id, "path": str(published.path), "changed": changed,
            "citizens": published.citizens, "shards": published.shards,
            "source_sha256": published.manifest["source"]["sha256"]}


def refresh_registry(config_path: str, as_of: str) -> dict:
    """The three refresh steps in this process (``simrecon registry prepare``). The gate's
    Great Expectations (~3-4 s to import) is imported in a thread while the snapshot is
    prepared, which spends most of its time in Arrow with the GIL released."""
    importing = threading.Thread(target=importlib.import_module, args=(GATE_MODULE,),
                                 name="simrecon-import-gates", daemon=True)
    importing.start()
    prepared = prepare_registry(config_path, as_of)
    importing.join()
    gate_prepared_registry(config_path, as_of, prepared["staging"])
    published = publish_registry(config_path, as_of, prepared["snapshot"], prepared["staging"])
    return {**published, "prepared": not prepared["reused"]}
