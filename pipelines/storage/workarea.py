"""A stage's work area in shared object storage (``shared_work: true``), so that no
worker needs a file another worker wrote on its own disk (docs/deployment.md,
"Scaling out").

With the setting on, ``output_dir`` is an object-store URL and it holds, beside the
published run folders (``<date>/``, written by ``objectstore.publish_folder``), every
run's working state with the same layout as a local ``output_dir``:
``.staging/<date>/``, ``.work/<date>/``, the prepared registry ``.registry/``, the
look-up stores ``lookup/`` and the engineer-only files ``.private/`` (what a local run
keeps in ``private_dir``: restrict both dotted prefixes to engineers in the bucket's
policy). A stage decorated with ``in_work_area(scope)``:

1. downloads what its scope reads into a fresh local folder (its own: two workers on
   one machine never share it) and makes that folder the configuration's
   ``output_path`` for the call (``RunConfig.output_path``);
2. runs the plain stage function on local paths (renames and fsync work as always);
3. uploads every file it created or changed, in the order it wrote them, so that
   markers and manifests written last land last, then deletes the objects of files it
   removed; the published ``<date>/`` folders are left to ``publish_folder``.

Without the setting the decorator calls the stage as it is (``file://`` stays the
embedded default). A stage called from inside another stage's work area shares it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import json
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

from pipelines.storage import objectstore

log = logging.getLogger("simrecon.workarea")

P = ParamSpec("P")
R = TypeVar("R")

Scope = Literal["plan", "run", "telco", "shard", "registry", "run_registry", "fresh", "publish",
                "published", "staged_results"]

# Top-level folders of output_dir that work areas write; dated folders are published runs.
OWNED = (".staging/", ".work/", ".registry/", "lookup/", ".private/")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Per-shard and per-telco files (relative to .work/<date>/ or .staging/<date>/): a task
# mapped over one shard or telco downloads only its own of these.
_SHARD_FILE = re.compile(r"^(?:\.work/[^/]+/(?:shards/[^/]+|matched|candidates|spanning|"
                         r"flagged|review|aggregates)/(\d{3})(?:\.parquet|\.arrow|/)"
                         r"|\.staging/[^/]+/results/shard=(\d{3})/)")
_TELCO_FILE = re.compile(r"^(?:\.work/[^/]+/(?:ingested/([^/.]+)\.(?:parquet|arrow)"
                         r"|shards/([^/]+)/)"
                         r"|(?:\.private/)?\.staging/[^/]+/normalised/([^/.]+)\.parquet)")
_SEARCH = re.compile(r"^\.work/[^/]+/search/")

_active: contextvars.ContextVar[Path | None] = contextvars.ContextVar("simrecon_work_area",
                                                                     default=None)


def active_root() -> Path | None:
    """The local folder standing in for ``output_dir`` during a stage, if any."""
    return _active.get()


@dataclass
class WorkArea:
    """One stage's local copy of (part of) the shared ``output_dir``."""

    url: str
    local: Path
    fs: Any = None
    base: str = ""
    fetched: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.fs, self.base = objectstore.filesystem(self.url)
        self.base = self.base.rstrip("/")

    def _key(self, remote: str) -> str:
        return remote[len(self.base) + 1:]

    def _remote(self, key: str) -> str:
        return f"{self.base}/{key}"

    def listing(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (relative to ``output_dir``)."""
        self.fs.invalidate_cache()
        root = self._remote(prefix.rstrip("/"))
        try:
            return sorted(self._key(p) for p in self.fs.find(root))
        except FileNotFoundError:
            return []

    def download(self, keys: list[str]) -> None:
        """Fetch ``keys`` side by side; remember each file's stat to see changes later."""
        if not keys:
            return
        targets = [self.local / k for k in keys]
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
        self.fs.get([self._remote(k) for k in keys], [str(t) for t in targets])
        for key, target in zip(keys, targets, strict=True):
            stat = target.stat()
            self.fetched[key] = (stat.st_size, stat.st_mtime_ns)

    def read_json(self, key: str) -> dict | None:
        try:
            return json.loads(self.fs.cat_file(self._remote(key)))
        except FileNotFoundError:
            return None

    def remove_prefix(self, prefix: str) -> None:
        keys = self.listing(prefix)
        if keys:
            self.fs.rm([self._remote(k) for k in keys])

    def sync_back(self) -> dict[str, int]:
        """Upload what the stage wrote (oldest write first), then delete what it removed."""
        written: list[tuple[int, str]] = []
        present = set()
        for path in self.local.rglob("*"):
            if not path.is_file():
                continue
            key = path.relative_to(self.local).as_posix()
            if not key.startswith(OWNED):
                continue  # a published run folder: publish_folder's, marker last
            present.add(key)
            stat = path.stat()
            if self.fetched.get(key) != (stat.st_size, stat.st_mtime_ns):
                written.append((stat.st_mtime_ns, key))
        for _, key in sorted(written):
            self.fs.put_file(str(self.local / key), self._remote(key))
        gone = sorted(k for k in self.fetched if k not in present and k.startswith(OWNED))
        if gone:
            self.fs.rm([self._remote(k) for k in gone])
        return {"uploaded": len(written), "deleted": len(gone)}


def _wanted(key: str, scope: Scope, item: str | None) -> bool:
    """Whether a task of ``scope`` (mapped over ``item``) needs ``key`` of its run."""
    if scope == "shard":
        found = _SHARD_FILE.match(key)
        if found:
            return int(found.group(1) or found.group(2)) == int(item or -1)
        return not _SEARCH.match(key) and not _TELCO_FILE.match(key)
    if scope == "telco":
        found = _TELCO_FILE.match(key)
        if found:
            return next(g for g in found.groups() if g) == item
        return not _SHARD_FILE.match(key) and not _SEARCH.match(key)
    return True


def _snapshot_file_wanted(relative: str, scope: Scope, item: str | None) -> bool:
    """Whether a task of ``scope`` needs this file of the run's registry snapshot: a
    shard's task only its own shard; the candidate search's layout (``search/``) only
    the run-wide steps (the search's)."""
    if relative.startswith("search/"):
        return scope == "run"
    folder = relative.split("/")[0]
    return scope != "shard" or not folder.startswith("shard=") \
        or folder == f"shard={int(item or -1):03d}"


def _fetch(area: WorkArea, scope: Scope, run_date: str | None, item: str | None) -> None:
    keys: list[str] = []
    if scope == "fresh":  # the plan: the date's working state starts empty
        for prefix in (f".staging/{run_date}/", f".work/{run_date}/",
                       f".private/.staging/{run_date}/"):
            area.remove_prefix(prefix)
        return
    if scope == "plan":  # a step that only checks the run is planned
        area.download([k for k in area.listing(f".work/{run_date}/plan.json")])
        return
    if scope in ("registry", "run_registry"):
        keys += area.listing(".registry/")
        if scope == "registry":
            area.download(keys)
            return
    if run_date:  # the run's working state
        keys += [k for prefix in (f".staging/{run_date}/", f".work/{run_date}/",
                                  f".private/.staging/{run_date}/")
                 for k in area.listing(prefix) if _wanted(k, scope, item)]
        chosen = area.read_json(f".work/{run_date}/registry.json")
        if chosen is not None and scope in ("run", "shard", "telco", "publish"):
            snapshot = Path(chosen["path"])
            if not snapshot.is_absolute():
                folder = snapshot.as_posix()
                keys += [k for k in area.listing(f"{folder}/")
                         if _snapshot_file_wanted(k[len(folder) + 1:], scope, item)]
    if scope == "staged_results" and run_date:  # the look-up index's pending build
        area.download(area.listing(f".staging/{run_date}/results/") + area.listing("lookup/"))
        return
    if scope == "published" and run_date:  # after publication: the run, the look-up stores
        keys = area.listing(f"{run_date}/") + area.listing("lookup/") \
            + area.listing(f".private/{run_date}/")  # the engineer-only quarantine
    # Earlier runs' summaries: the export gate's drift, the report's trend.
    if scope in ("run", "telco", "publish", "published"):
        area.fs.invalidate_cache()
        keys += [area._key(p) for p in area.fs.glob(f"{area.base}/*/summary.json")
                 if _DATE.match(area._key(p).split("/")[0])]
    if scope == "publish" and run_date:  # a retry after the swap republishes the folder
        keys += area.listing(f"{run_date}/") + area.listing(f".private/{run_date}/")
    area.download(sorted(set(keys)))


@contextlib.contextmanager
def work_area(url: str, scratch: Path | None, scope: Scope, run_date: str | None,
              item: str | None = None) -> Iterator[Path]:
    """A local folder standing in for ``url`` (see the module's docstring)."""
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    local = Path(tempfile.mkdtemp(prefix="simrecon-work-", dir=scratch))
    token = _active.set(local)
    try:
        area = WorkArea(url, local)
        start = time.perf_counter()
        _fetch(area, scope, run_date, item)
        fetched = time.perf_counter() - start
        yield local
        start = time.perf_counter()
        done = area.sync_back()
        log.info("work area %s %s: %d file(s) down in %.2fs, %d up and %d deleted in %.2fs",
                 scope, run_date or "-", len(area.fetched), fetched, done["uploaded"],
                 done["deleted"], time.perf_counter() - start)
    finally:
        _active.reset(token)
        shutil.rmtree(local, ignore_errors=True)


def in_work_area(scope: Scope, *, item: str | None = None
                 ) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run the decorated stage ``fn(config_path, run_date | as_of, …)`` in a work area when
    its configuration says ``shared_work``; ``item``: the parameter naming its telco or
    shard (a mapped task downloads only its own of their files)."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if active_root() is not None:
                return fn(*args, **kwargs)
            from pipelines.config import load_config

            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            given = bound.arguments
            config = load_config(str(given["config_path"]))
            if not config.shared_work:
                return fn(*args, **kwargs)
            run_date = given.get("run_date", given.get("as_of"))
            mapped = given.get(item) if item else None
            scratch = config.resolve(config.work_dir) if config.work_dir else None
            with work_area(config.output_dir.rstrip("/"), scratch, scope,
                           None if run_date is None else str(run_date),
                           None if mapped is None else str(mapped)):
                return fn(*args, **kwargs)

        return wrapper

    return decorate


def download_run(url: str, run_date: str, target: Path) -> Path:
    """Copy a published run folder (``<url>/<run_date>/``) to ``target``, for commands
    that read one run (``simrecon report render``)."""
    area = WorkArea(url, target)
    if not area.fs.exists(area._remote(f"{run_date}/{objectstore.MARKER}")):
        raise objectstore.StorageError(f"{objectstore.redact(url)}/{run_date}: not published")
    area.download(area.listing(f"{run_date}/"))
    return target / run_date


__all__ = ["OWNED", "WorkArea", "active_root", "download_run", "in_work_area",
           "work_area"]
