"""The candidate search by birth-year partitions (issue 11): the same candidates as the
search of the whole registry in one piece, however the registry is partitioned."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipelines.config import MatchingSettings
from pipelines.reconcile import match, search
from pipelines.reconcile.estimate import load_subscriptions
from pipelines.reconcile.model_file import load_model
from pipelines.registry import build
from pipelines.registry import snapshot as registry_snapshot
from pipelines.registry.source import load_registry
from tests.test_shards import REPO, _values, write_config

SOURCE = REPO / "data_samples" / "registry" / "citizens.parquet"


@pytest.fixture(scope="module")
def unlinked(tmp_path_factory: pytest.TempPathFactory) -> tuple[pa.Table, pa.Table]:
    """The samples' rows whose document leads nobody, and the registry whole."""
    folder = tmp_path_factory.mktemp("layout")
    whole = load_registry(SOURCE)
    subscriptions = load_subscriptions(str(write_config(folder)), date(2026, 11, 28))
    linked = match.match(subscriptions, whole, MatchingSettings(candidate_search=False))
    unlinked = pc.and_(pc.is_null(linked["matched_citizen_id"]),
                       pc.fill_null(pc.not_equal(linked["id_type"], "PASSPORT"), True))
    return subscriptions.filter(unlinked), whole


@pytest.mark.parametrize("bucket_rows", [400, 1_000_000])
def test_partitions_by_birth_year_find_what_the_whole_registry_gives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unlinked: tuple[pa.Table, pa.Table],
        bucket_rows: int) -> None:
    """Every searched row routed by its numbers and birth years, each partition searched
    on its own and the parts folded in any order: exactly what the search over the whole
    registry gives (400 citizens a bucket: many partitions; 1M: one per shard)."""
    rows, whole = unlinked
    settings = MatchingSettings()
    model = load_model(settings)
    expected = search.search(rows, whole, model, settings)
    assert expected["candidate_citizen_id"].null_count < rows.num_rows  # it finds some
    monkeypatch.setattr(build, "BUCKET_ROWS", bucket_rows)
    snapshot, _ = registry_snapshot.prepare(SOURCE, tmp_path / "registry", 3,
                                           as_of=date(2026, 11, 28))
    assert snapshot.search_partitions == max(3, -(-whole.num_rows // bucket_rows))
    searched = search.searched_rows(rows)
    routes = search.batch_routes(searched, settings, snapshot.search_numbers,
                                 snapshot.search_partitions)
    by_number = routes.filter(pc.equal(routes["level"], search.ONE_EDIT))
    assert by_number.num_rows > 0  # numbers one slip away lead to citizens
    parts = []
    for p in snapshot.search_present:
        mine = routes.filter(pc.equal(routes["partition"], p))
        if not mine.num_rows:
            continue
        at, local = np.unique(np.asarray(mine["row"], np.int64), return_inverse=True)
        mine = mine.set_column(1, "row", pa.array(local.astype(np.int32)))
        citizens = search.registry_search_table(pq.read_table(snapshot.search_citizens(p)))
        for part in search.search_routed(searched.take(pa.array(at)), mine, citizens,
                                         snapshot.search_index(p), model, settings,
                                         snapshot.statistics):
            parts.append(part.set_column(0, "row", pa.array(at[np.asarray(part["row"])])))
    assert len({int(p) for p in routes["partition"].to_pylist()}) > 1
    share = search.registry_namesakes([snapshot.search_citizens(p)
                                       for p in snapshot.search_present])
    assert 0 < share < 1  # the sample registry has namesakes: the prior is estimated
    # counted when the snapshot was prepared, as over its partitions
    assert snapshot.statistics.with_namesake == round(share * snapshot.citizens)
    assert search._registry_share(snapshot, snapshot.search_present) == pytest.approx(share)
    # a snapshot prepared before the count: the run counts over the partitions itself
    older = dict(snapshot.manifest, statistics={
        k: v for k, v in snapshot.manifest["statistics"].items()
        if k != "citizens_with_namesake"})
    assert search._registry_share(dataclasses.replace(snapshot, manifest=older),
                                  snapshot.search_present) == share
    for order in (parts, parts[::-1]):
        found = search.choose(searched, order, model, settings, share)
        for column in found.column_names:
            assert _values(found[column]) == _values(expected[column]), column
