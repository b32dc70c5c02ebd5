"""Bounded reads of telco-sized files: exact batches a row group at a time, and the
legacy index as integer keys giving the same shards as the text lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.reconcile.sharding import LegacyShards, route_subscriptions
from pipelines.storage.files import parquet_batches


def test_parquet_batches_are_exact_and_span_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    table = pa.table({"n": pa.array(np.arange(1000)), "s": pa.array([str(i) for i in range(1000)])})
    pq.write_table(table, path, row_group_size=137)
    batches = list(parquet_batches(pq.ParquetFile(path), 300, columns=["n"]))
    assert [b.num_rows for b in batches] == [300, 300, 300, 100]
    assert pa.concat_tables(batches).equals(table.select(["n"]))
    whole = list(parquet_batches(pq.ParquetFile(path), 5000))
    assert len(whole) == 1 and whole[0].equals(table)


def test_legacy_shards_match_the_text_lookup() -> None:
    legacy = pa.table({
        "legacy_id": ["012345678", "12345678", "987654321", "A1234567", "000000001"],
        "shard": pa.array([1, 2, 3, 4, 5], pa.int32())})
    numbers = pa.array(["012345678", "12345678", "987654321", "A1234567", "1", None,
                        "000000001", "555555555", "0012345678"])
    found = LegacyShards(legacy.to_batches(max_chunksize=2)).shard(numbers)
    at = pc.fill_null(pc.index_in(numbers, value_set=legacy["legacy_id"].combine_chunks()), -1)
    shard = legacy["shard"].to_numpy()
    expected = np.where(at.to_numpy() >= 0, shard[np.maximum(at.to_numpy(), 0)], -1)
    assert found.tolist() == expected.tolist() == [1, 2, 3, 4, -1, -1, 5, -1, -1]
    id_type = pa.array(["CMND"] * len(numbers))
    rows = pa.array(np.arange(len(numbers)))
    assert route_subscriptions(id_type, numbers, rows, legacy, 8).tolist() == \
        route_subscriptions(id_type, numbers, rows, LegacyShards.of(legacy), 8).tolist()
