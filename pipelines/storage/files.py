"""Where a run's files live, and how they are written so readers never see half a file.

A run for date D is built in ``<output_dir>/.staging/D/`` (outputs only),
``<private_dir>/.staging/D/`` (engineer-only outputs, ``pipelines/storage/paths.py``)
and ``<output_dir>/.work/D/`` (working state: the plan, ingested rows, per-stage
counts, telco errors), each file written to a temporary name (owner-only,
``pipelines/storage/modes.py``) and renamed into place. ``publish`` then swaps the
staging folders into ``<private_dir>/D`` and ``<output_dir>/D`` with directory
renames, so a reader sees either the previous complete run or the new one, and only
afterwards deletes the working state: a publish that dies half-way can be retried, and
a stage started after publish finds no plan and refuses to run instead of publishing a
partial run."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Self

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from pipelines.storage.modes import FILE_MODE, make_dirs, open_private


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
    make_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.chmod(tmp, FILE_MODE)  # owner-only whatever the umask (storage/modes.py)
        _fsync(tmp)
        os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# --- digests: sha256 taken while a file is written, for the manifests -----------------
# A streamed file's digest is recorded beside it in a hidden sidecar
# (``.<name>.digest.json``: sha256, bytes, rows) when it is renamed into place, so the
# run's manifest never reads a national run's outputs again to hash them
# (``describe_file``); the sidecars are consumed and removed when the manifest is made.
DIGEST_SUFFIX = ".digest.json"


@dataclass(frozen=True)
class Digest:
    sha256: str
    bytes: int
    rows: int | None = None


def digest_sidecar(path: Path) -> Path:
    return path.with_name(f".{path.name}{DIGEST_SUFFIX}")


def record_digest(path: Path, digest: Digest) -> None:
    write_json({"sha256": digest.sha256, "bytes": digest.bytes, "rows": digest.rows},
               digest_sidecar(path))


def recorded_digest(path: Path) -> Digest | None:
    """The digest recorded when ``path`` was written, if it still describes the file."""
    sidecar = digest_sidecar(path)
    if not sidecar.is_file():
        return None
    data = read_json(sidecar)
    assert isinstance(data, dict)
    if data.get("bytes") != path.stat().st_size:
        return None
    return Digest(sha256=data["sha256"], bytes=data["bytes"], rows=data.get("rows"))


def file_digest(path: Path) -> Digest:
    """The recorded digest, or one computed now (small files are not recorded)."""
    return recorded_digest(path) or Digest(sha256=sha256_of(path), bytes=path.stat().st_size)


class HashingSink:
    """A write-only binary file that hashes (sha256, unless ``hashed`` is False) and counts
    what passes through it: the sink pyarrow's Parquet, CSV and IPC writers stream into."""

    def __init__(self, handle: BinaryIO, hashed: bool = True) -> None:
        self._handle = handle
        self._sha = hashlib.sha256() if hashed else None
        self.size = 0
        self.closed = False

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        written = self._handle.write(view)
        written = view.nbytes if written is None else written
        if self._sha is not None:
            self._sha.update(view[:written])
        self.size += written
        return written

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._handle.flush()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    def hexdigest(self) -> str:
        assert self._sha is not None, "a sink made with hashed=False has no digest"
        return self._sha.hexdigest()


class _AtomicStream:
    """A file written in pieces to a hidden temporary name, hashed as it goes, renamed
    into place (with its digest recorded) on ``commit``; ``abort`` leaves nothing.
    ``hashed`` False: neither hashed nor recorded (a working file no manifest lists)."""

    hashed = True

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        self._handle: BinaryIO | None = None
        self._writer: (pq.ParquetWriter | pa_csv.CSVWriter | pa.ipc.RecordBatchFileWriter
                       | None) = None  # the format's
        self.sink: HashingSink | None = None
        self.rows = 0

    def _open(self) -> HashingSink:
        if self.sink is None:
            make_dirs(self.path.parent)
            # Created 0600 (storage/modes.py); closed in commit/abort.
            self._handle = os.fdopen(open_private(self._tmp), "wb")
            self.sink = HashingSink(self._handle, self.hashed)
        return self.sink

    def _commit(self) -> Path:
        assert self._handle is not None and self.sink is not None
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            os.replace(self._tmp, self.path)
            _fsync(self.path.parent)
        finally:
            self._tmp.unlink(missing_ok=True)
        if self.hashed:
            record_digest(self.path, Digest(self.sink.hexdigest(), self.sink.size, self.rows))
        return self.path

    def _abort(self) -> None:
        if self._handle is not None and not self._handle.closed:
            self._handle.close()
        self._tmp.unlink(missing_ok=True)

    def _finish(self) -> Path:
        """Close the format's writer, then rename the file into place."""
        assert self._writer is not None
        try:
            self._writer.close()
        except BaseException:
            self._abort()
            raise
        return self._commit()

    def abort(self) -> None:
        """Give the file up: nothing is left behind."""
        if self._writer is not None:
            with contextlib.suppress(Exception):  # abandoning the file anyway
                self._writer.close()
        self._abort()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        if exc_type is not None:
            self.abort()


class _TableStream(_AtomicStream):
    """A file of Arrow tables written in pieces: its schema is the first piece's (or
    ``schema``), later pieces are cast to it; ``close`` with no piece written gives a file
    of ``empty``'s schema and no rows. A format says how it opens (``_open_format``) and
    appends (``_append``)."""

    def __init__(self, path: Path, schema: pa.Schema | None = None) -> None:
        super().__init__(path)
        self._schema = schema

    def _open_format(self, schema: pa.Schema) -> None:
        raise NotImplementedError

    def _append(self, table: pa.Table) -> None:
        raise NotImplementedError

    def write(self, table: pa.Table | pa.RecordBatch) -> None:
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        schema = self._schema = self._schema or table.schema
        self._open_format(schema)
        self._append(table.cast(schema))
        self.rows += table.num_rows

    def close(self, empty: pa.Schema | None = None) -> Path:
        """Finish the file (with ``empty``'s schema and no rows if nothing was written)."""
        if self._writer is None:
            if empty is None and self._schema is None:
                raise ValueError(f"{self.path}: nothing written and no schema given")
            self._open_format(self._schema or empty)  # type: ignore[arg-type]
        return self._finish()


class AtomicParquetWriter(_TableStream):
    """A Parquet file written in pieces (``write``), renamed into place on ``close``.

    For tables too large to hold at once: the pieces go to a hidden temporary name; a
    failure (or a kill) leaves at most that ``.tmp`` file. The schema is that of the
    first piece (or ``schema``); later pieces are cast to it. ``row_group_rows`` keeps
    row groups small enough for a reader's filter to skip most of a large file.
    ``compression``: zstd, or e.g. lz4 for a working file that is read back once.
    ``plain``: columns written without dictionary encoding (values nearly all distinct:
    numbers, names; the dictionary built for them overflows and is thrown away, a third
    of a results file's write); the others are dictionary-encoded as usual.
    ``statistics``: False for a working file that is only ever read whole (no reader
    filters it by the row groups' min/max), whose statistics would cost ~20% of the write.
    ``uncompressed``: columns written without compression (a large column that is
    hardly ever read back, where compressing is most of the write's work).
    """

    def __init__(self, path: Path, schema: pa.Schema | None = None,
                 row_group_rows: int | None = None, compression: str = "zstd",
                 plain: Iterable[str] = (), statistics: bool = True,
                 uncompressed: Iterable[str] = ()) -> None:
        super().__init__(path, schema)
        self._row_group_rows = row_group_rows
        self._compression = compression
        self._plain = frozenset(plain)
        self._statistics = statistics
        self._uncompressed = frozenset(uncompressed)

    def _open_format(self, schema: pa.Schema) -> None:
        if self._writer is None:
            dictionary: bool | list[str] = [name for name in schema.names
                                             if name not in self._plain] \
                if self._plain else True
            compression: str | dict[str, str] = {
                name: "none" if name in self._uncompressed else self._compression
                for name in schema.names} if self._uncompressed else self._compression
            self._writer = pq.ParquetWriter(pa.PythonFile(self._open(), mode="w"), schema,
                                            compression=compression,
                                            use_dictionary=dictionary,
                                            write_statistics=self._statistics)

    def _append(self, table: pa.Table) -> None:
        assert isinstance(self._writer, pq.ParquetWriter)
        self._writer.write_table(table.combine_chunks(), row_group_size=self._row_group_rows)


class AtomicArrowWriter(_TableStream):
    """A working file in Arrow's IPC file format (Feather), written in pieces and renamed
    into place on ``close``, for state read back within the run, whole or by column
    (``read_arrow``). Its buffers are Arrow's own, LZ4-compressed: no encoding to undo, so
    it is written about twice and read four times as fast as LZ4 Parquet (1M world, a
    matched shard of 125k rows and 50 columns: write 0.128 -> 0.068 CPU s, whole read
    0.082 -> 0.018 s; 13 -> 22 MB). Not hashed: no manifest lists a working file. Each
    ``write`` is cut into record batches of at most ``batch_rows``."""

    hashed = False

    def __init__(self, path: Path, schema: pa.Schema | None = None,
                 batch_rows: int | None = None, compression: str | None = "lz4") -> None:
        super().__init__(path, schema)
        self._batch_rows = batch_rows
        self._compression = compression

    def _open_format(self, schema: pa.Schema) -> None:
        if self._writer is None:
            self._writer = pa.ipc.new_file(
                pa.PythonFile(self._open(), mode="w"), schema,
                options=pa.ipc.IpcWriteOptions(compression=self._compression))

    def _append(self, table: pa.Table) -> None:
        assert isinstance(self._writer, pa.ipc.RecordBatchFileWriter)
        self._writer.write_table(table, max_chunksize=self._batch_rows)


def write_arrow(table: pa.Table, path: Path, batch_rows: int | None = None) -> Path:
    """Write a working file in Arrow's IPC format atomically (``AtomicArrowWriter``)."""
    return _written_whole(AtomicArrowWriter(path, table.schema, batch_rows), table)


def open_arrow(path: Path, columns: Sequence[str] | None = None
               ) -> pa.ipc.RecordBatchFileReader:
    """A reader of an Arrow IPC working file that decodes only ``columns`` (all: None),
    in the file's order. Read, not memory-mapped: a mapped file's pages stay resident
    while its reader lives, so a stage streaming a telco's file batch by batch grew with
    the telco (30M world, ingest and normalise: 1.18 -> 2.02 GiB)."""
    source = pa.OSFile(str(path))
    if columns is None:
        return pa.ipc.open_file(source)
    names = pa.ipc.open_file(source).schema.names
    missing = [c for c in columns if c not in names]
    if missing:
        raise KeyError(f"{path}: no column(s) {missing}")
    return pa.ipc.open_file(source, options=pa.ipc.IpcReadOptions(
        included_fields=sorted(names.index(c) for c in columns)))


def read_arrow(path: Path, columns: Sequence[str] | None = None,
               filter: pc.Expression | None = None,
               filter_columns: Sequence[str] = ()) -> pa.Table:
    """An Arrow IPC working file (``write_arrow``): every column or only ``columns`` (in
    that order; the others are not even decompressed), the rows where ``filter`` holds
    (``filter_columns``: the columns it reads, when they are not among ``columns``)."""
    read = None if columns is None else [*columns, *(c for c in filter_columns
                                                     if c not in columns)]
    table = open_arrow(path, read).read_all()
    if filter is not None:
        table = table.filter(filter)
    return table if columns is None else table.select(list(columns))


def arrow_schema(path: Path) -> pa.Schema:
    """The schema of an Arrow IPC working file (its footer only)."""
    return open_arrow(path).schema


def arrow_rows(path: Path) -> int:
    """The rows of an Arrow IPC working file (its batches' headers only)."""
    return open_arrow(path).count_rows()


class AtomicCsvWriter(_AtomicStream):
    """A CSV file (UTF-8 with BOM, so Excel shows Vietnamese text; one header line)
    written in pieces and renamed into place on ``close``; see ``AtomicParquetWriter``."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        super().__init__(path)
        self.schema = schema

    def _csv(self) -> pa_csv.CSVWriter:
        if self._writer is None:
            sink = self._open()
            sink.write(b"\xef\xbb\xbf")
            self._writer = pa_csv.CSVWriter(pa.PythonFile(sink, mode="w"), self.schema)
        assert isinstance(self._writer, pa_csv.CSVWriter)
        return self._writer

    def write(self, table: pa.Table) -> None:
        self._csv().write_table(table.select(self.schema.names).cast(self.schema))
        self.rows += table.num_rows

    def close(self) -> Path:
        self._csv()  # a list without rows still has its header
        return self._finish()


def write_parquet(table: pa.Table, path: Path, row_group_rows: int | None = None,
                  plain: Iterable[str] = (), *, compression: str = "zstd",
                  statistics: bool = True) -> Path:
    """Write Parquet atomically (deterministic bytes: no pandas index, fixed settings);
    ``plain``, ``compression``, ``statistics``: see ``AtomicParquetWriter``."""
    return _written_whole(AtomicParquetWriter(path, table.schema, row_group_rows, plain=plain,
                                              compression=compression, statistics=statistics),
                          table)


def write_csv(table: pa.Table, path: Path) -> Path:
    """Write a CSV atomically (UTF-8 with BOM, header line)."""
    return _written_whole(AtomicCsvWriter(path, table.schema), table)


def _written_whole(writer: _TableStream | AtomicCsvWriter, table: pa.Table) -> Path:
    """``table`` written by ``writer`` in one piece: in place, or nothing left behind."""
    try:
        writer.write(table)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


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
    make_dirs(path)


def swap_into_place(staging: Path, final: Path) -> None:
    """Replace ``final`` by ``staging`` with renames, never exposing a partial folder.

    The old folder is first renamed aside, then the new one renamed in, then the
    old one deleted. A crash between the two renames leaves the old run under a
    ``.replaced-*`` name, which the next publish cleans up.
    """
    make_dirs(final.parent)
    for leftover in final.parent.glob(f".replaced-{final.name}-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    aside = final.parent / f".replaced-{final.name}-{uuid.uuid4().hex}"
    if final.exists():
        os.replace(final, aside)
    os.replace(staging, final)
    shutil.rmtree(aside, ignore_errors=True)


def parquet_batches(source: pq.ParquetFile, batch_rows: int,
                    columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
    """``source``'s rows in tables of exactly ``batch_rows`` (the last one shorter), with
    a reader of its own for each row group. One ``ParquetFile.iter_batches`` over the
    whole file gives the same batches but holds about 30 MB more of Arrow memory for
    every million rows it has read (pyarrow 26; measured on a 13M-row file: 456 MB after
    10M rows, 69 MB flat this way), so a stage reading a whole telco with it grows with
    the telco. A huge row group is still read in batches, not whole."""
    return _rebatched((batch for group in range(source.num_row_groups)
                       for batch in source.iter_batches(
                           batch_size=batch_rows, row_groups=[group],
                           columns=list(columns) if columns else None)), batch_rows)


def arrow_batches(path: Path, batch_rows: int,
                  columns: Sequence[str] | None = None) -> Iterator[pa.Table]:
    """An Arrow IPC working file's rows (``columns``) in tables of exactly ``batch_rows``
    (the last one shorter), one record batch read at a time."""
    reader = open_arrow(path, columns)
    names = list(columns) if columns is not None else reader.schema.names
    return _rebatched((reader.get_batch(i).select(names)
                       for i in range(reader.num_record_batches)), batch_rows)


def _rebatched(batches: Iterable[pa.RecordBatch], batch_rows: int) -> Iterator[pa.Table]:
    pending: list[pa.Table] = []
    held = 0
    for batch in batches:
        pending.append(pa.Table.from_batches([batch]))
        held += batch.num_rows
        while held >= batch_rows:
            whole = pa.concat_tables(pending)
            yield whole.slice(0, batch_rows)
            rest = whole.slice(batch_rows)
            pending, held = ([rest], rest.num_rows) if rest.num_rows else ([], 0)
    if held:
        yield pa.concat_tables(pending)
