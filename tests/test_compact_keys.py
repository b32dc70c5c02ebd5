"""The compact classification of a telco's keys equals ``history.classify``'s (its pandas
adapter: keys carried to the compact form and back intact), and a telco's rows picked per
shard equal the ``source_row`` filter's."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from matching.flags import FLAGS
from pipelines.correction_cycle import compact_keys, history
from pipelines.reporting.aggregates import FLAG_BITS
from pipelines.results.dataset import RunResults, part_path


def _rows(rng: np.random.Generator, n: int) -> tuple[pa.Array, np.ndarray]:
    """``n`` rows' numbers (some shared, some not digits) and flag bits (1-3 flags)."""
    numbers = pa.array([f"09{rng.integers(0, 40):08d}" if i % 7 else f"+84 {i % 5}x"
                        for i in range(n)], pa.string())
    bits = np.zeros(n, dtype=np.int64)
    for _ in range(3):
        pick = rng.integers(0, len(FLAGS), n)
        bits |= np.where(rng.random(n) < 0.6, 1 << pick, 0)
    bits[bits == 0] = FLAG_BITS["NO_ID"]
    return numbers, bits


def _pandas_keys(numbers: pa.Array, keys: compact_keys.TelcoKeys) -> pd.DataFrame:
    return pd.DataFrame({"telco": keys.telco,
                         "msisdn": pc.take(numbers, pa.array(keys.row)).to_pylist(),
                         "flag": [FLAGS[c] for c in keys.flag], "row": keys.row})


def _record(store: Path, run_date: str, numbers: pa.Array, bits: np.ndarray) -> None:
    keys = compact_keys.TelcoKeys.of_rows("a", numbers, bits)
    history.record(store, run_date, _pandas_keys(numbers, keys), ["a"],
                   recorded_at=f"{run_date}T00:00:00")


def test_compact_classification_equals_history_classify(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    store = tmp_path / "h.sqlite"
    for run_date in ("2026-01-01", "2026-01-08", "2026-01-15"):
        _record(store, run_date, *_rows(rng, 60))
    with sqlite3.connect(store) as db:  # a flag this code no longer knows: resolved
        db.execute("INSERT INTO flags VALUES ('2026-01-15','a','0900000001','OLD_FLAG',2,"
                   "'2026-01-08')")
    numbers, bits = _rows(rng, 80)
    keys = compact_keys.TelcoKeys.of_rows("a", numbers, bits)
    expected, expected_resolved = history.classify(store, "2026-01-22",
                                                   _pandas_keys(numbers, keys), ["a"])
    classes, resolved = compact_keys.classify(
        keys, history.previous_keys(store, "2026-01-22", "a"), "2026-01-22")

    assert classes.persisting.any() and not classes.persisting.all()
    assert (classes.runs > 2).any()
    assert classes.persisting.tolist() == (expected["tracking"] == history.PERSISTING).tolist()
    assert classes.runs.tolist() == expected["runs"].tolist()
    assert classes.first_seen.astype(object).tolist() == expected["first_seen"].tolist()
    assert "OLD_FLAG" in resolved["flag"].to_pylist()
    assert resolved.to_pydict() == {c: expected_resolved[c].tolist()
                                    for c in resolved.column_names}

    # Each key once, in key order: as write_keys wrote the pandas keys.
    unique = compact_keys.unique_keys(keys, classes)
    frame = expected.drop_duplicates(history.KEY).sort_values(history.KEY, kind="stable")
    assert unique.num_rows < len(keys)
    assert unique.to_pydict() == {
        "telco": frame["telco"].tolist(), "msisdn": frame["msisdn"].tolist(),
        "flag": frame["flag"].tolist(), "runs": frame["runs"].tolist(),
        "first_seen": frame["first_seen"].tolist()}


def test_legacy_rows_get_their_streak(tmp_path: Path) -> None:
    store = tmp_path / "h.sqlite"
    numbers = pa.array(["0911111111", "0922222222"])
    bits = np.array([FLAG_BITS["NO_ID"], FLAG_BITS["DOB_MISMATCH"]])
    for run_date in ("2026-01-01", "2026-01-08"):
        _record(store, run_date, numbers, bits)
    with sqlite3.connect(store) as db:  # recorded before the store kept streaks
        db.execute("UPDATE flags SET runs = NULL, first_seen = NULL")
    keys = compact_keys.TelcoKeys.of_rows("a", numbers[:1], bits[:1])
    expected, expected_resolved = history.classify(store, "2026-01-15",
                                                   _pandas_keys(numbers[:1], keys), ["a"])
    classes, resolved = compact_keys.classify(
        keys, history.previous_keys(store, "2026-01-15", "a"), "2026-01-15")
    assert classes.runs.tolist() == expected["runs"].tolist() == [3]
    assert classes.first_seen.astype(object).tolist() == expected["first_seen"].tolist()
    assert resolved.to_pydict() == {c: expected_resolved[c].tolist()
                                    for c in resolved.column_names}


def test_rows_picked_per_shard_equal_the_filter(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rows_of = {}
    for shard in range(3):
        source_row = np.sort(rng.choice(1000, 200, replace=False)) * 3 + shard
        table = pa.table({"telco": ["a"] * 100 + ["b"] * 100,
                          "source_row": np.concatenate([source_row[:100], source_row[100:]]),
                          "x": rng.integers(0, 9, 200)})
        path = part_path(tmp_path, shard)
        path.parent.mkdir(parents=True)
        pq.write_table(table, path, row_group_size=32)
        rows_of[path] = np.sort(rng.choice(source_row[:100], 30, replace=False))
    del rows_of[part_path(tmp_path, 1)]  # a shard with none of the rows is not read
    results = RunResults(tmp_path)
    wanted = np.concatenate(list(rows_of.values()))
    filtered = pa.concat_tables(results.telco_rows(
        "a", ["source_row", "x"], filter=pc.field("source_row").isin(wanted), batch_rows=16))
    picked = pa.concat_tables(results.telco_rows("a", ["source_row", "x"], batch_rows=16,
                                                 rows_of=rows_of))
    assert picked.num_rows == 60
    assert picked.equals(filtered)
