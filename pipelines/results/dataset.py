"""A run's results: one row per subscription, stored as a dataset partitioned by shard.

Layout inside a run folder (published ``<output_dir>/<date>/`` or its staging folder)::

    results/shard=000/part-0.parquet … results/shard=<N-1>/part-0.parquet

Each part holds the subscriptions routed to that shard (every telco), sorted by
``(telco, source_row)``; together they hold every subscription of the run once.
A run folder written before the dataset layout has one ``results.parquet``; the
reader reads both, so nothing that reads results depends on the layout.

Readers never hold the whole run: :meth:`RunResults.batches` streams (columns and
a filter pushed down to the Parquet reader), :meth:`RunResults.telco_rows` yields
one telco's rows in ``source_row`` order a slice of rows at a time (a k-way merge
of the shards), and :meth:`RunResults.read` is for selections known to be small.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

if TYPE_CHECKING:
    import pyarrow.dataset as ds

RESULTS_DIR = "results"
LEGACY_FILE = "results.parquet"
_PART = re.compile(r"^shard=(\d+)$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def part_path(run_dir: Path, shard: int) -> Path:
    """Where shard ``shard``'s results are written in ``run_dir``."""
    return Path(run_dir) / RESULTS_DIR / f"shard={shard:03d}" / "part-0.parquet"


class ResultsNotFoundError(FileNotFoundError):
    """The folder holds no results (not a run folder, or a run not finished)."""


class RunResults:
    """The results of one run folder, read shard by shard."""

    def __init__(self, run_dir: Path | str) -> None:
        self.run_dir = Path(run_dir)
        if not self.files:
            raise ResultsNotFoundError(
                f"{self.run_dir}: no results ({RESULTS_DIR}/shard=*/part-0.parquet or "
                f"{LEGACY_FILE})")

    @classmethod
    def latest(cls, output_dir: Path | str, before: str | None = None) -> RunResults | None:
        """The latest published run in ``output_dir`` (``<date>/`` folders with a
        ``manifest.json``), optionally the latest before the date ``before``."""
        root = Path(output_dir)
        if not root.is_dir():
            return None
        dated = sorted((p for p in root.iterdir() if p.is_dir() and _DATE.match(p.name)
                        and (before is None or p.name < before)
                        and (p / "manifest.json").is_file()), reverse=True)
        for folder in dated:
            try:
                return cls(folder)
            except ResultsNotFoundError:
                continue
        return None

    @property
    def run_date(self) -> str:
        return self.run_dir.name

    @cached_property
    def files(self) -> list[Path]:
        """Every part, in shard order (the legacy single file as the only part)."""
        folder = self.run_dir / RESULTS_DIR
        if folder.is_dir():
            parts = []
            for sub in folder.iterdir():
                match = _PART.match(sub.name)
                if match and (sub / "part-0.parquet").is_file():
                    parts.append((int(match.group(1)), sub / "part-0.parquet"))
            return [path for _, path in sorted(parts)]
        legacy = self.run_dir / LEGACY_FILE
        return [legacy] if legacy.is_file() else []

    @cached_property
    def schema(self) -> pa.Schema:
        return pq.read_schema(self.files[0])

    @cached_property
    def num_rows(self) -> int:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in self.files)

    def _dataset(self, files: Sequence[Path] | None = None) -> ds.Dataset:
        import pyarrow.dataset as ds  # imports pandas: only for the readers that scan

        return ds.dataset([str(f) for f in (files or self.files)], format="parquet",
                          schema=self.schema)

    def batches(self, columns: Sequence[str] | None = None,
                filter: pc.Expression | None = None,
                batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        """Every row (or those matching ``filter``), shard by shard, ``batch_rows`` at most
        at a time; only ``columns`` are decoded."""
        for path in self.files:
            scanner = self._dataset([path]).scanner(
                columns=list(columns) if columns else None, filter=filter,
                batch_size=batch_rows, use_threads=True)
            for batch in scanner.to_batches():
                if batch.num_rows:
                    yield batch

    def read(self, columns: Sequence[str] | None = None,
             filter: pc.Expression | None = None) -> pa.Table:
        """The matching rows as one table in (telco, source_row) order: for selections
        known to be small (a few rows, one number), or small runs and tests."""
        wanted = list(columns) if columns else self.schema.names
        keys = [k for k in ("telco", "source_row") if k not in wanted]
        table = self._dataset().to_table(columns=[*wanted, *keys], filter=filter)
        table = table.sort_by([("telco", "ascending"), ("source_row", "ascending")])
        return table.select(wanted)

    def telco_rows(self, telco: str, columns: Sequence[str] | None = None,
                   filter: pc.Expression | None = None, batch_rows: int = 65_536,
                   rows_of: Mapping[Path, np.ndarray] | None = None) -> Iterator[pa.Table]:
        """One telco's rows (matching ``filter``) in ``source_row`` order, a few times
        ``batch_rows`` at most at a time: a merge of the shards, each in that order.

        ``rows_of``: only these rows, given per part (``part_path``) as its sorted
        ``source_row``s (parts not named are not read): each part's rows are picked by a
        search in its own few, where a ``source_row`` filter over a national telco's
        millions of rows cost a hash set of them in every part's scan."""
        wanted = list(dict.fromkeys([*(columns or self.schema.names), "source_row"]))
        condition = pc.field("telco") == telco
        if filter is not None:
            condition = condition & filter
        if rows_of is None:
            streams = [self._stream(path, wanted, condition, batch_rows)
                       for path in self.files]
        else:
            streams = [_picked(self._stream(path, wanted, condition, batch_rows),
                               rows_of[path]) for path in self.files
                       if len(rows_of.get(path, ()))]
        for table in merge_sorted(streams, "source_row"):
            yield table.select(list(columns)) if columns else table

    def _stream(self, path: Path, columns: list[str], condition: pc.Expression,
                batch_rows: int) -> Iterator[pa.Table]:
        # No read-ahead: a merge holds one stream per shard, and each stream's
        # look-ahead of decoded batches (16 by default) would set the memory.
        scanner = self._dataset([path]).scanner(columns=columns, filter=condition,
                                                batch_size=batch_rows, use_threads=False,
                                                batch_readahead=0, fragment_readahead=0)
        for batch in scanner.to_batches():
            if batch.num_rows:
                yield pa.Table.from_batches([batch])


def _picked(stream: Iterator[pa.Table], rows: np.ndarray) -> Iterator[pa.Table]:
    """The tables of ``stream`` (sorted by ``source_row``) cut to the ``source_row``s in
    ``rows`` (sorted)."""
    for table in stream:
        have = np.asarray(table["source_row"].to_numpy(), dtype=np.int64)
        place = np.minimum(np.searchsorted(rows, have), len(rows) - 1)
        keep = rows[place] == have
        if keep.any():
            yield table.filter(pa.array(keep))


def merge_sorted(streams: list[Iterator[pa.Table]], key: str) -> Iterator[pa.Table]:
    """Merge streams of tables, each sorted by the integer column ``key`` and disjoint
    from the others, into tables in global ``key`` order.

    Each step emits, from every stream's buffered rows, those up to the smallest last
    key among the buffers (nothing later can come before them), sorted; then refills
    the buffers it emptied. Vectorised: one slice per stream and one sort per step.
    """
    buffers: list[pa.Table | None] = [next(s, None) for s in streams]
    while True:
        live = [i for i, b in enumerate(buffers) if b is not None]
        if not live:
            return
        frontier = min(buffers[i][key][-1].as_py() for i in live)  # type: ignore[index]
        pieces = []
        for i in live:
            table = buffers[i]
            assert table is not None
            keys = table[key].combine_chunks().to_numpy()
            cut = int(np.searchsorted(keys, frontier, side="right"))
            if cut:
                pieces.append(table.slice(0, cut))
            rest = table.slice(cut)
            buffers[i] = rest if rest.num_rows else next(streams[i], None)
        merged = pa.concat_tables(pieces)
        yield merged.take(pc.sort_indices(merged[key]))
