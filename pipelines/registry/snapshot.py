"""Prepared registry snapshots: validated and normalised once, hash-partitioned by citizen ID.

A raw registry snapshot (``registry`` in the run configuration) is read batch by batch
and normalised (``pipelines.registry.source.normalise``; streamed in bounded memory by
``pipelines.registry.build``), given the columns that need
the whole registry (``registry_row``, ``name_frequency``, ``legacy_citizens``, the
size of each citizen's candidate-search blocks) and the registry's statistics for
scoring (its size, the chance that two citizens share a birth date or year: in the
manifest),
cut into ``shards`` files by ``pipelines.reconcile.sharding.shard_of(citizen_id)``,
validated by the ``registry_prepared`` Great Expectations suite, and published
as one folder (docs/data-contracts.md, "Prepared registry snapshot")::

    <dir>/snapshot=<id>/shard=000/part.parquet … shard=<N-1>/part.parquet
                        search/part=PPP/{citizens,blocks,names}.parquet, search/numbers.parquet
                                   the candidate search's layout: citizens by birth year
                                   (registry/search_index.py)
                        legacy_index.parquet   legacy_id -> first citizen, its shard, how many
                        gate.json              the registry_prepared suite's result
                        manifest.json          written last: counts, shard count, hash, sha256s
    <dir>/latest.json                          the snapshot the refresh published last

``<id>`` is ``<first 16 hex of the source's sha256>-<shards, 3 digits>``: the same
source cut the same way is the same snapshot, prepared once. The folder is
written under ``<dir>/.staging/`` and renamed into place complete, so a reader
never sees half a snapshot; ``latest.json`` is replaced atomically afterwards.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from matching.candidates import BLOCK_FAMILIES, RegistryIndex
from matching.model import (
    RegistryStatistics,
)
from pipelines.errors import RegistryError
from pipelines.reconcile.sharding import HASH_NAME
from pipelines.registry.build import build
from pipelines.registry.search_index import NUMBERS_FILE, partition_files, read_index
from pipelines.storage import objectstore
from pipelines.storage.files import (
    digest_sidecar,
    file_digest,
    publish_dir,
    read_json,
    sha256_of,
    write_json,
)
from pipelines.storage.modes import make_dirs

log = logging.getLogger("simrecon.registry")

# Bump when what a prepared snapshot holds or how it is normalised changes: a run
# refuses a snapshot of another format (prepare it again).
PREPARED_FORMAT = 4
MANIFEST = "manifest.json"
GATE = "gate.json"
LATEST = "latest.json"
LEGACY_INDEX = "legacy_index.parquet"

SHARD_SCHEMA = pa.schema([
    ("citizen_id", pa.string()),
    ("legacy_id", pa.string()),
    ("full_name", pa.string()),
    ("date_of_birth", pa.date32()),
    ("dob_precision", pa.string()),
    ("gender", pa.string()),
    ("date_of_death", pa.date32()),
    # Computed over the whole registry, so a shard scores exactly like the whole:
    ("registry_row", pa.int64()),       # the citizen's row in the source (tie-breaks)
    ("name_frequency", pa.float64()),   # share of citizens with the same canonical name
    ("name_typo_frequency", pa.float64()),  # share of citizens one typo from that name
    ("name_year_frequency", pa.float64()),  # share of those born that year with that name
    ("dob_frequency", pa.float64()),    # chance another citizen shares the date of birth
    ("year_frequency", pa.float64()),   # ... the birth year
    ("legacy_citizens", pa.int32()),    # citizens holding the same legacy_id (0: none)
    # Citizens sharing each of the citizen's candidate-search blocking keys (0: no key),
    # so a shard skips the blocks larger than matching.candidate_max_block exactly as
    # the whole registry would (matching.candidates.registry_block_sizes).
    *((f"block_{family}", pa.int32()) for family in BLOCK_FAMILIES),
])
LEGACY_SCHEMA = pa.schema([
    ("legacy_id", pa.string()),
    ("citizen_id", pa.string()),   # the first citizen (registry order) holding it
    ("shard", pa.int32()),         # that citizen's shard: where a CMND subscription goes
    ("citizens", pa.int32()),      # how many citizens hold it (> 1: ambiguous)
])
# What the candidate search reads of each shard.
BLOCK_COLUMNS = tuple(f"block_{family}" for family in BLOCK_FAMILIES)
SEARCH_COLUMNS = ("citizen_id", "legacy_id", "full_name", "date_of_birth", "dob_precision",
                  "gender", "registry_row", "name_frequency", "name_typo_frequency",
                  "name_year_frequency", "dob_frequency", "year_frequency", *BLOCK_COLUMNS)
GATE_COLUMNS = ["citizen_id", "legacy_id", "gender", "date_of_birth"]


class RegistryGateFailed(RegistryError):
    """The snapshot breaks the ``registry_prepared`` suite; ``result`` is the gate result."""

    def __init__(self, message: str, result: dict) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self):  # type: ignore[no-untyped-def]
        """Picklable with its result, so it crosses from a worker process intact."""
        return type(self), (str(self), self.result)


def snapshot_id(source_sha256: str, shards: int) -> str:
    return f"{source_sha256[:16]}-{shards:03d}"


def shard_file(shard: int) -> str:
    return f"shard={shard:03d}/part.parquet"


@dataclass(frozen=True)
class Snapshot:
    """A published, complete snapshot folder and its manifest."""

    path: Path
    manifest: dict

    @property
    def id(self) -> str:
        return self.manifest["snapshot"]

    @property
    def shards(self) -> int:
        return int(self.manifest["shards"])

    @property
    def citizens(self) -> int:
        return int(self.manifest["citizens"])

    def shard_path(self, shard: int) -> Path:
        return self.path / shard_file(shard)

    @property
    def statistics(self) -> RegistryStatistics:
        """The whole registry's statistics for scoring (size, shared birth dates)."""
        return RegistryStatistics.from_dict(self.manifest["statistics"])

    @property
    def legacy_index_path(self) -> Path:
        return self.path / LEGACY_INDEX

    @property
    def search_partitions(self) -> int:
        """How many birth-year partitions the candidate search's layout has (a year ``y``
        is in partition ``y % search_partitions``: ``registry.search_index``)."""
        return int(self.manifest["search"]["partitions"])

    @property
    def search_present(self) -> list[int]:
        """The partitions that hold citizens (one search task each)."""
        return [int(p) for p in self.manifest["search"]["present"]]

    def search_citizens(self, partition: int) -> Path:
        """The citizens of a search partition (checked like :meth:`verify`)."""
        return self.verify(partition_files(partition)["citizens"])

    def search_index(self, partition: int) -> RegistryIndex:
        """The candidate search's index of a partition (checked like :meth:`verify`)."""
        files = partition_files(partition)
        return read_index(self.verify(files["blocks"]), self.verify(files["names"]))

    @property
    def search_numbers(self) -> Path:
        """The registry's numbers with where their citizens are (checked)."""
        return self.verify(NUMBERS_FILE)

    def gate_result(self) -> dict:
        return read_json(self.path / GATE)  # type: ignore[return-value]

    def identity(self) -> dict:
        """What the snapshot is, independent of how it is cut (for the run's records)."""
        source = self.manifest["source"]
        return {"source_file": Path(source["path"]).name, "source_sha256": source["sha256"],
                "citizens": self.citizens, "as_of": self.manifest["as_of"],
                "format": self.manifest["format"]}

    def verify(self, relative: str) -> Path:
        """The file's path, after checking its sha256 against the manifest (once per
        process for a file unchanged since: see :data:`_VERIFIED`)."""
        entry = next((f for f in self.manifest["files"] if f["path"] == relative), None)
        path = self.path / relative
        if entry is None or not path.is_file() or _sha256_once(path) != entry["sha256"]:
            raise RegistryError(f"{path}: missing or not the file the snapshot's manifest "
                                "describes (sha256 differs): prepare the snapshot again")
        return path


# sha256 of the snapshot files this process has hashed, by (path, inode, size, mtime):
# a worker that routes batch after batch reads the registry's numbers file (600 MB at
# 30M citizens) each time, and hashing it again for every batch made the routing grow
# with batches x registry. A file replaced or rewritten since has another key.
_VERIFIED: dict[tuple[str, int, int, int], str] = {}


def _sha256_once(path: Path) -> str:
    status = path.stat()
    key = (str(path.resolve()), status.st_ino, status.st_size, status.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_of(path)
    return _VERIFIED[key]


def open_snapshot(path: Path) -> Snapshot:
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise RegistryError(f"{path}: not a complete prepared registry snapshot (no {MANIFEST})")
    manifest = read_json(manifest_path)
    if not isinstance(manifest, dict) or manifest.get("format") != PREPARED_FORMAT \
            or manifest.get("hash") != HASH_NAME:
        raise RegistryError(
            f"{path}: prepared with another format or hash "
            f"({manifest.get('format') if isinstance(manifest, dict) else '?'}); this code "
            f"reads format {PREPARED_FORMAT} with {HASH_NAME}: prepare the snapshot again")
    return Snapshot(path, manifest)


def find(registry_dir: Path, snapshot: str) -> Snapshot | None:
    path = registry_dir / f"snapshot={snapshot}"
    return open_snapshot(path) if (path / MANIFEST).is_file() else None


def latest(registry_dir: Path) -> Snapshot | None:
    """The snapshot the registry refresh published last, if any."""
    pointer = registry_dir / LATEST
    if not pointer.is_file():
        return None
    return open_snapshot(registry_dir / read_json(pointer)["path"])  # type: ignore[index]


def _file_entry(root: Path, relative: str, rows: int) -> dict:
    """A file's manifest entry, from the digest taken while it was written."""
    path = root / relative
    digest = file_digest(path)
    digest_sidecar(path).unlink(missing_ok=True)
    return {"path": relative, "rows": rows, "bytes": digest.bytes, "sha256": digest.sha256}


def stage(source: Path | objectstore.RemoteFile, registry_dir: Path, shards: int,
          source_sha256: str) -> Path:
    """Read, validate and normalise the source batch by batch, cut it into shards, write
    the legacy index and a draft manifest into a new folder under ``<dir>/.staging/``
    (``pipelines.registry.build``: memory bounded by a shard, not the registry)."""
    staging = registry_dir / ".staging" / f"snapshot={snapshot_id(source_sha256, shards)}" \
        f".{uuid.uuid4().hex[:12]}"
    make_dirs(staging)  # 0700 (storage/modes.py)
    try:
        built = build(source, staging, shards, shard_schema=SHARD_SCHEMA,
                      legacy_schema=LEGACY_SCHEMA, legacy_file=LEGACY_INDEX,
                      shard_file=shard_file, search_columns=SEARCH_COLUMNS)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    files = [_file_entry(staging, shard_file(k), rows) for k, rows in enumerate(built.shard_rows)]
    files.extend(_file_entry(staging, name, rows)
                 for name, rows in sorted(built.search_files.items()))
    files.append(_file_entry(staging, LEGACY_INDEX, built.legacy_rows))
    statistics = built.statistics or RegistryStatistics(citizens=0, birth_dates=None)
    draft = {
        "format": PREPARED_FORMAT,
        "snapshot": snapshot_id(source_sha256, shards),
        "source": {"path": str(source), "bytes": source.stat().st_size,
                   "sha256": source_sha256},
        "citizens": built.citizens,
        "with_legacy_id": built.with_legacy_id,
        "shared_legacy_ids": built.shared_legacy_ids,
        "max_date_of_birth": str(built.max_date_of_birth) if built.citizens else None,
        "statistics": statistics.to_dict(),
        "shards": shards,
        "hash": HASH_NAME,
        "search": {"partitions": built.search_partitions, "present": built.search_present},
        "files": files,
    }
    write_json(draft, staging / "draft.json")
    log.info("registry: %d citizens in %d shard(s) staged in %s", built.citizens, shards,
             staging)
    return staging


def gate(staging: Path, as_of: date, example_rows: int) -> dict:
    """Run the ``registry_prepared`` suite over the staged snapshot; keep the result in
    ``gate.json``. Raises ``RegistryGateFailed`` (staging removed) when it fails."""
    from expectations.registry import registry_suite
    from pipelines.quality import facts, gates  # pandas and GX: only this step

    draft = read_json(staging / "draft.json")
    shards = [shard_file(k) for k in range(int(draft["shards"]))]  # type: ignore[index]

    def parts():  # type: ignore[no-untyped-def]
        for name in shards:
            citizens = pq.read_table(staging / name, columns=GATE_COLUMNS)
            yield facts.registry_facts(citizens, as_of=as_of), citizens

    outcome = gates.validate_parts(registry_suite(), parts(), max_examples=example_rows,
                                   key_columns=())
    suite = outcome.summary() if outcome is not None else gates.run_suite(
        registry_suite(), gates.to_frame(facts.registry_facts(
            SHARD_SCHEMA.empty_table().select(GATE_COLUMNS), as_of=as_of)), key_columns=())
    result = gates.gate_result("registry", "registry", [suite])
    result["as_of"] = as_of.isoformat()
    write_json(result, staging / GATE)
    if not result["success"]:
        # Kept for the engineer (examples masked); the snapshot itself is discarded.
        write_json(result, staging.parent.parent / "rejected"
                   / f"{draft['snapshot']}.gate.json")  # type: ignore[index]
        source = draft["source"]["path"]  # type: ignore[index]
        shutil.rmtree(staging, ignore_errors=True)
        raise RegistryGateFailed(f"{source}: {gates.failure_reason(result)}", result)
    return result


def publish(staging: Path, registry_dir: Path, *, keep: int) -> Snapshot:
    """Write the manifest, rename the staged folder into place (or keep the identical
    snapshot someone published first), prune old ones. ``latest.json`` is left alone
    (``set_latest_snapshot``)."""
    draft = read_json(staging / "draft.json")
    gate_result = read_json(staging / GATE)
    manifest = {
        **draft,  # type: ignore[dict-item]
        "prepared_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "as_of": gate_result["as_of"],  # type: ignore[index]
        "gate": {"success": gate_result["success"], "file": GATE,  # type: ignore[index]
                 "sha256": sha256_of(staging / GATE)},
    }
    (staging / "draft.json").unlink()
    write_json(manifest, staging / MANIFEST)
    final = registry_dir / f"snapshot={manifest['snapshot']}"
    if not publish_dir(staging, final):
        log.info("registry: snapshot %s was already published", manifest["snapshot"])
    prune(registry_dir, keep)
    return open_snapshot(final)


def set_latest_snapshot(registry_dir: Path, snapshot: Snapshot) -> bool:
    """Point ``latest.json`` at ``snapshot``; False when it already did."""
    current = latest(registry_dir) if (registry_dir / LATEST).is_file() else None
    if current is not None and current.path == snapshot.path:
        return False
    write_json({"snapshot": snapshot.id, "path": snapshot.path.name,
                "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "citizens": snapshot.citizens, "shards": snapshot.shards,
                "source_sha256": snapshot.manifest["source"]["sha256"]},
               registry_dir / LATEST)
    return True


def prune(registry_dir: Path, keep: int) -> list[str]:
    """Delete all but the ``keep`` most recently prepared snapshots (never the latest),
    and staging folders left by preparations that died more than a day ago."""
    pointer = registry_dir / LATEST
    current = read_json(pointer)["path"] if pointer.is_file() else None  # type: ignore[index]
    found = []
    for path in registry_dir.glob("snapshot=*"):
        try:
            found.append((open_snapshot(path).manifest.get("prepared_at", ""), path))
        except RegistryError:
            continue
    found.sort(reverse=True)
    removed = []
    for _, path in found[keep:]:
        if path.name != current:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    cutoff = datetime.now(UTC).timestamp() - 86400
    for leftover in (registry_dir / ".staging").glob("*") \
            if (registry_dir / ".staging").exists() else []:
        if leftover.stat().st_mtime < cutoff:
            shutil.rmtree(leftover, ignore_errors=True)
    return removed


def source_digest(source: Path | objectstore.RemoteFile) -> str:
    """sha256 of the raw registry file (local or behind a URL): the snapshot's identity."""
    if not source.exists():
        raise RegistryError(f"{source}: citizen registry snapshot not found")
    return sha256_of(source)  # type: ignore[arg-type]  # RemoteFile.open() reads it


def prepare(source: Path | objectstore.RemoteFile, registry_dir: Path, shards: int, *,
            as_of: date, example_rows: int = 5, set_latest: bool = True,
            keep: int = 3) -> tuple[Snapshot, bool]:
    """The snapshot of ``source`` cut into ``shards``: the published one if it exists,
    else prepared now (stage, gate, publish). Returns it and whether it was prepared."""
    digest = source_digest(source)
    existing = find(registry_dir, snapshot_id(digest, shards))
    if existing is not None:
        if set_latest:
            set_latest_snapshot(registry_dir, existing)
        return existing, False
    staging = stage(source, registry_dir, shards, digest)
    try:
        gate(staging, as_of, example_rows)
    except RegistryError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    snapshot = publish(staging, registry_dir, keep=keep)
    if set_latest:
        set_latest_snapshot(registry_dir, snapshot)
    return snapshot, True


def check(snapshot: Snapshot, run_date: date) -> dict:
    """The run's cheap check of a published snapshot (no row is read): the manifest's
    format, every file present with its size and row count (Parquet footers), shard
    rows summing to the citizens, the gate passed, no date of birth after the run date.
    Returns a suite result in the shape ``pipelines.quality.gates`` produces."""
    manifest, failed, evaluated = snapshot.manifest, [], 0

    def expect(name: str, ok: bool, description: str, observed: object = None) -> None:
        nonlocal evaluated
        evaluated += 1
        if not ok:
            failed.append({"expectation": name, "column": None, "description": description,
                           "unexpected_count": None, "unexpected_percent": None,
                           "observed_value": observed, "examples": []})

    files = {f["path"]: f for f in manifest["files"]}
    shard_names = [shard_file(k) for k in range(snapshot.shards)]
    expect("shards_listed", all(n in files for n in shard_names) and LEGACY_INDEX in files,
           "the manifest lists every shard and the legacy index",
           sorted(set(shard_names) - set(files)))
    problems = []
    for name, entry in files.items():
        path = snapshot.path / name
        present = path.is_file() and path.stat().st_size == entry["bytes"]
        if not present or pq.ParquetFile(path).metadata.num_rows != entry["rows"]:
            problems.append(name)
    expect("files_as_listed", not problems,
           "every file is present with the size and row count the manifest gives", problems)
    shard_rows = sum(files[n]["rows"] for n in shard_names if n in files)
    expect("rows_add_up", shard_rows == snapshot.citizens,
           "the shards hold every citizen exactly once", shard_rows)
    gate_file = snapshot.path / GATE
    expect("gate_passed", manifest.get("gate", {}).get("success") is True
           and gate_file.is_file() and sha256_of(gate_file) == manifest["gate"]["sha256"],
           "the snapshot passed the registry_prepared suite when it was prepared")
    latest_birth = manifest.get("max_date_of_birth")
    expect("no_birth_after_run_date",
           latest_birth is None or date.fromisoformat(latest_birth) <= run_date,
           "no date of birth after the run date", latest_birth)
    return {"suite": "registry_snapshot", "success": not failed, "rows": snapshot.citizens,
            "evaluated": evaluated, "failed": failed}
