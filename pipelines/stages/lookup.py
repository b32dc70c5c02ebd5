"""The look-up index stages (pipelines/lookup/, docs/lookup.md): ``stage_lookup_index``
builds the run's index from its staged results while the correction lists, the report
and publication go on, and leaves it pending; ``refresh_lookup_index``, after publish,
swaps it in (or builds in full when there is none, or it is stale) and settles the
verification requests the run answers."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from pipelines.lookup import index, requests, service_store
from pipelines.lookup.store import IndexReader, index_store_of, service_store_of
from pipelines.results.dataset import ResultsNotFoundError, RunResults
from pipelines.stages.common import context, log
from pipelines.storage.files import Digest, read_json, recorded_digest, sha256_of
from pipelines.storage.workarea import in_work_area


def _digest(entries: Iterable[tuple[str, str]]) -> str:
    """One sha256 over the results files' (path, sha256): what a pending build was built
    from, compared at the swap with what was published."""
    sha = hashlib.sha256()
    for path, file_sha in sorted(entries):
        sha.update(f"{path}\t{file_sha}\n".encode())
    return sha.hexdigest()


def _published_digest(run_dir: Path) -> str:
    manifest = read_json(run_dir / "manifest.json")
    assert isinstance(manifest, dict)
    return _digest((e["path"], e["sha256"]) for e in manifest["files"]
                   if e["path"].startswith("results/"))


def _file_sha(path: Path, original: Path) -> str:
    """The sha256 recorded when ``original`` was written (its sidecar, which publish
    consumes: it may be gone), else computed from ``path`` (the same file)."""
    try:
        recorded: Digest | None = recorded_digest(original)
    except FileNotFoundError:
        recorded = None
    return recorded.sha256 if recorded is not None else sha256_of(path)


def _link_results(run_dir: Path, folder: Path) -> tuple[RunResults, str]:
    """Hard links to ``run_dir``'s results in ``folder`` (publish may rename the staging
    folder while the build reads them) and their digest."""
    results = RunResults(run_dir)
    entries = []
    for part in results.files:
        relative = part.relative_to(run_dir)
        if not relative.as_posix().startswith("results/"):
            raise ResultsNotFoundError(f"{run_dir}: results not in the dataset layout")
        link = folder / relative
        link.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            os.link(part, link)
        except OSError as exc:
            if isinstance(exc, FileNotFoundError):
                raise
            shutil.copyfile(part, link)  # another file system: a copy
        entries.append((relative.as_posix(), _file_sha(link, part)))
    return RunResults(folder), _digest(entries)


def _settings(config) -> dict:  # type: ignore[no-untyped-def]
    settings = config.lookup
    return {"records_per_bucket": settings.records_per_bucket,
            "partition_rows": settings.partition_rows,
            "keep_unseen_days": settings.keep_unseen_days,
            "work_dir": config.output_path / "lookup"}


@in_work_area("staged_results")
def stage_lookup_index(config_path: str, run_date: str) -> dict:
    """Build the index of run ``run_date`` from its results in the staging folder (after
    the results gate, before publication), merged with the current index, and leave it
    pending for ``refresh_lookup_index``. Never makes it live: a run that is not
    published leaves a pending build that the next build drops. Counts only.

    Never fails the run: it only saves the swap step time, so a failure is logged and the
    swap step builds in full (and fails there if the cause persists)."""
    try:
        return _stage(config_path, run_date)
    except Exception as exc:
        log.warning("lookup index %s: no pending build (%s), the swap step builds in full",
                    run_date, type(exc).__name__)
        return {"run_date": run_date, "staged": False}


def _stage(config_path: str, run_date: str) -> dict:
    config, paths = context(config_path, run_date)
    work_dir = config.output_path / "lookup"
    work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = work_dir / f".stage-{run_date}-{uuid.uuid4().hex}"
    try:
        try:
            results, digest = _link_results(paths.staging, folder)
        except FileNotFoundError:  # published meanwhile: the swap step builds in full
            log.info("lookup index %s: results no longer staged, nothing to stage", run_date)
            return {"run_date": run_date, "staged": False}
        counts = index.stage_index(results, run_date, index_store_of(config),
                                   results_digest=digest, **_settings(config))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"run_date": run_date, "staged": True, "subscriptions": counts["subscriptions"],
            "carried": counts["carried"], "document_entries": counts["document_entries"],
            "seconds": counts["seconds"]}


@in_work_area("published")
def refresh_lookup_index(config_path: str, run_date: str | None = None) -> dict:
    """Make the published run ``run_date`` (the latest published run when None) the
    look-up index: swap in its pending build if it is still valid (``index.swap_staged``),
    else index it in full, merged with the current index; then close the verification
    requests that run verified and escalate those past their deadline. Counts only."""
    from pipelines.config import load_config

    config = load_config(config_path)
    if run_date is None:
        latest = RunResults.latest(config.output_path)
        if latest is None:
            raise ResultsNotFoundError(f"{config.output_path}: no published run to index")
        run_date = latest.run_date
    config, paths = context(config_path, run_date)
    if not (paths.final / "manifest.json").is_file():
        raise ResultsNotFoundError(f"run {run_date} is not published: nothing to index")
    store = index_store_of(config)
    settings = _settings(config)
    digest = _published_digest(paths.final)
    counts = index.swap_staged(run_date, store, digest, work_dir=settings["work_dir"])
    if counts is None:
        counts = index.build_index(RunResults(paths.final), run_date, store,
                                   results_digest=digest, **settings)
    reader = IndexReader(store)

    def verified(telco: str, msisdn: str) -> bool:
        _, found = index.find_number(reader, msisdn)
        return any(r["telco"] == telco and r["status"] == "VERIFIED"
                   and r["last_run"] == run_date for r in found)

    try:
        settled = requests.settle(service_store.engine(service_store_of(config)), run_date,
                                  verified)
    finally:
        reader.close()
    log.info("lookup index %s: %d subscriptions (%s); requests closed %d, escalated %d",
             run_date, counts["subscriptions"], "staged" if counts.get("staged") else "built",
             settled[requests.CLOSED_VERIFIED], settled[requests.ESCALATED])
    return {"run_date": run_date, "staged": bool(counts.get("staged")),
            "subscriptions": counts["subscriptions"], "carried": counts["carried"],
            "document_entries": counts["document_entries"], "seconds": counts["seconds"],
            "requests_closed": settled[requests.CLOSED_VERIFIED],
            "requests_escalated": settled[requests.ESCALATED]}
