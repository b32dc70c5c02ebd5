"""Where a run's files live, and how they are written so readers never see half a file.

A run for date D is built in ``<output_dir>/.staging/D/`` (outputs only) and
``<output_dir>/.work/D/`` (working state: the plan, ingested rows, per-stage
counts, telco errors), each file written to a temporary name and renamed into
place. ``publish`` then swaps the staging folder into ``<output_dir>/D`` with
directory renames, so a reader sees either the previous complete run or the
new one, and only afterwards deletes the working state: a publish that dies
half-way can be retried, and a stage started after publish finds no plan and
refuses to run instead of publishing a partial run."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's) content to disk, so a rename never publishes a
    name whose bytes a power cut could lose; a killed process needs no more than the
    rename itself."""
    flags = (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:  # e.g. folders on platforms that cannot open them
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Write to a hidden temporary name in the same folder, then rename into place:
    readers (and later stages) see the old file or the complete new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_parquet(table: pa.Table, path: Path) -> Path:
    """Write Parquet atomically (deterministic bytes: no pandas index, fixed settings)."""
    return write_atomically(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


class AtomicParquetWriter:
    """A Parquet file written in pieces (``write``), renamed into place on ``close``.

    Like ``write_parquet`` for tables too large to hold at once: the pieces go to a
    hidden temporary name; a failure (or a kill) leaves at most that ``.tmp`` file.
    The schema is that of the first piece; later pieces are cast to it.
    """

    def __init__(self, path: Path, compression: str = "zstd") -> None:
        self.path = path
        self.compression = compression  # e.g. "lz4" for a working file read back once
        self._tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        self._writer: pq.ParquetWriter | None = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(self._tmp, table.schema,
                                            compression=self.compression)
        self._writer.write_table(table.cast(self._writer.schema).combine_chunks())

    def close(self, empty: pa.Schema | None = None) -> Path:
        """Finish the file (with ``empty``'s schema and no rows if nothing was written)."""
        if self._writer is None:
            if empty is None:
                raise ValueError(f"{self.path}: nothing written and no schema given")
            return write_parquet(empty.empty_table(), self.path)
        try:
            self._writer.close()
            _fsync(self._tmp)
            os.replace(self._tmp, self.path)
            _fsync(self.path.parent)
        finally:
            self._tmp.unlink(missing_ok=True)
        return self.path

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicParquetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        if exc_type is not None:
            self.abort()


def publish_dir(tmp: Path, final: Path) -> bool:
    """Rename a completely written folder ``tmp`` to ``final`` (same parent), flushed.

    Returns False (and removes ``tmp``) when ``final`` already exists: someone else
    published the same content first.
    """
    for path in sorted(tmp.rglob("*"), reverse=True):
        _fsync(path)
    _fsync(tmp)
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    _fsync(final.parent)
    return True


def write_bytes(data: bytes, path: Path) -> Path:
    return write_atomically(path, lambda tmp: tmp.write_bytes(data))


def write_text(text: str, path: Path, encoding: str = "utf-8") -> Path:
    return write_bytes(text.encode(encoding), path)


def write_json(obj: object, path: Path) -> Path:
    text = json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True, default=str)
    return write_text(text + "\n", path)


def read_json(path: Path) -> object:
    return json.loads(path.read_text(encoding="utf-8"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def reset_dir(path: Path) -> None:
    """Empty ``path`` (used for a run's staging folder at the start of a run)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def swap_into_place(staging: Path, final: Path) -> None:
    """Replace ``final`` by ``staging`` with renames, never exposing a partial folder.

    The old folder is first renamed aside, then the new one renamed in, then the
    old one deleted. A crash between the two renames leaves the old run under a
    ``.replaced-*`` name, which the next publish cleans up.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    for leftover in final.parent.glob(f".replaced-{final.name}-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    aside = final.parent / f".replaced-{final.name}-{uuid.uuid4().hex}"
    if final.exists():
        os.replace(final, aside)
    os.replace(staging, final)
    shutil.rmtree(aside, ignore_errors=True)
