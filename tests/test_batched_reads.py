"""Bounded reads of telco-sized files: exact batches a row group at a time, and the
legacy index as integer keys giving the same shards as the text lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.reconcile.sharding import (
    LegacyShards,
    route_subscriptions,
    shard_parts,
    split_by_shard,
)
from pipelines.storage.files import AtomicParquetWriter, parquet_batches, write_parquet


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


def test_shard_parts_keep_each_shards_rows_in_order_one_part_at_a_time() -> None:
    rng = np.random.default_rng(3)
    parts = [pa.table({"n": pa.array(np.arange(k * 500, (k + 1) * 500)),
                       "s": pa.array([f"v{i}" for i in range(k * 500, (k + 1) * 500)])})
             for k in range(3)]
    table = pa.concat_tables(parts)  # chunked, as partition holds its batches
    shard = rng.integers(0, 5, table.num_rows).astype(np.int32)
    shard[shard == 3] = 4  # an empty shard
    made = shard_parts(table, shard, 5)
    assert not isinstance(made, list)  # a generator: the caller holds one part at a time
    got = list(made)
    assert [p.num_rows for p in got] == np.bincount(shard, minlength=5).tolist()
    for k, part in enumerate(got):
        assert part.equals(table.filter(pa.array(shard == k)).combine_chunks())
        assert part["s"].num_chunks <= 1  # written without another copy
    assert [p.equals(q) for p, q in zip(split_by_shard(table, shard, 5), got,
                                        strict=True)] == [True] * 5


def test_working_files_without_statistics_and_plain_unique_columns(tmp_path: Path) -> None:
    table = pa.table({"row": pa.array(np.arange(1000)),
                      "code": pa.array([f"c{i % 3}" for i in range(1000)])})
    path = tmp_path / "work.parquet"
    writer = AtomicParquetWriter(path, plain=("row",), statistics=False)
    writer.write(table)
    writer.close()
    column = pq.ParquetFile(path).metadata.row_group(0)
    assert pq.read_table(path).equals(table)
    assert not column.column(0).is_stats_set and not column.column(1).is_stats_set
    assert not column.column(0).has_dictionary_page and column.column(1).has_dictionary_page
    write_parquet(table, tmp_path / "kept.parquet")  # the default keeps both
    kept = pq.ParquetFile(tmp_path / "kept.parquet").metadata.row_group(0).column(0)
    assert kept.is_stats_set and kept.has_dictionary_page


def test_uncompressed_columns_beside_compressed_ones(tmp_path: Path) -> None:
    table = pa.table({"row": pa.array(np.arange(1000)),
                      "raw": pa.array([f"record {i % 7}" for i in range(1000)])})
    path = tmp_path / "work.parquet"
    writer = AtomicParquetWriter(path, compression="lz4", uncompressed=("raw",))
    writer.write(table)
    writer.close()
    group = pq.ParquetFile(path).metadata.row_group(0)
    assert pq.read_table(path).equals(table)
    assert (group.column(0).compression, group.column(1).compression) == ("LZ4", "UNCOMPRESSED")
