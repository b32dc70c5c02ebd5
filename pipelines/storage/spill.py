"""Bucketed spill files: rows set aside on disk by bucket and read back one bucket at a
time, so a step that must regroup a large table (by birth year, by shard, by value)
holds one bucket, never the whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from pipelines.storage.modes import make_dirs


class BucketSpill:
    """Append-only Arrow IPC files, one per bucket, each read back (and removed) once."""

    def __init__(self, folder: Path, schema: pa.Schema) -> None:
        self.folder, self.schema = folder, schema
        make_dirs(folder)
        self._writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}

    def write(self, table: pa.Table, bucket: np.ndarray) -> None:
        """Append each row of ``table`` to its bucket's file (one stable sort)."""
        if not table.num_rows:
            return
        order = np.argsort(bucket, kind="stable")
        ordered = table.select(self.schema.names).take(pa.array(order))
        sorted_buckets = bucket[order]
        starts = np.flatnonzero(np.r_[True, sorted_buckets[1:] != sorted_buckets[:-1]])
        for start, stop in zip(starts, np.r_[starts[1:], len(order)], strict=True):
            key = int(sorted_buckets[start])
            writer = self._writers.get(key)
            if writer is None:
                writer = self._writers[key] = pa.ipc.new_file(
                    str(self.folder / f"{key}.arrow"), self.schema)
            writer.write_table(ordered.slice(int(start), int(stop - start)).cast(self.schema))

    def buckets(self) -> list[int]:
        return sorted(self._writers)

    def read(self, bucket: int) -> pa.Table:
        """The bucket's rows in the order written (empty when it got none); the file is
        removed."""
        writer = self._writers.pop(bucket, None)
        if writer is None:
            return self.schema.empty_table()
        writer.close()
        path = self.folder / f"{bucket}.arrow"
        with pa.OSFile(str(path)) as handle:
            table = pa.ipc.open_file(handle).read_all()
        path.unlink()
        return table

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
