"""Sharded reconciliation: the hash, the routing, and results that do not depend on the
number of shards (issue 4, item 2). The DAG run with mapped shard tasks is in
tests/test_dag_run.py."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipelines.config import FlagSettings, MatchingSettings
from pipelines.reconcile import flag, match, sharding
from pipelines.registry import snapshot as registry_snapshot
from pipelines.registry.source import load_registry
from pipelines.results.dataset import RunResults
from pipelines.stages import run_all
from pipelines.storage.files import arrow_rows, read_arrow

from .conftest import REPO, same_review_key, write_config

RUN_DATE = "2026-11-28"


# --- comparing two run folders ------------------------------------------------------------
_GENERATED = re.compile(rb"Generated [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2} UTC")
# Files whose bytes carry the time they were written; the manifest lists their sha256.
TIMESTAMPED = ("report.html", "manifest.json")


def _without_times(value: object) -> object:
    """JSON without the keys that hold times (``…_at``) or this machine's config path."""
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items()
                if not k.endswith("_at") and k != "config"}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


def comparable(path: Path) -> object:
    """A file's content, minus timestamps: bytes for most; the report without its
    "Generated …" line; JSON without ``…_at`` keys (and, in the manifest, without the
    checksums of the timestamped files)."""
    data = path.read_bytes()
    if path.name == "report.html":
        return _GENERATED.sub(b"Generated <time>", data)
    if path.suffix == ".json":
        content = _without_times(json.loads(data))
        if path.name == "manifest.json" and isinstance(content, dict):
            content["files"] = [f for f in content["files"] if f["path"] not in TIMESTAMPED
                                and not f["path"].startswith("results/")]
        return content
    return data


def _outputs(run: Path) -> set[str]:
    """The run folder's files, but the results dataset's parts (one per shard) and the
    manifest's entries for them: the results are compared by content."""
    return {str(p.relative_to(run)) for p in run.rglob("*")
            if p.is_file() and not p.relative_to(run).as_posix().startswith("results/")}


def differing_outputs(run_a: Path, run_b: Path) -> list[str]:
    """Every output of either run folder whose content differs (timestamps aside): the
    results dataset as the rows it holds (whatever its number of parts), every other
    file as its bytes."""
    names_a, names_b = _outputs(run_a), _outputs(run_b)
    differing = sorted(names_a ^ names_b)
    for name in sorted(names_a & names_b):
        if comparable(run_a / name) != comparable(run_b / name):
            differing.append(name)
    results_a, results_b = RunResults(run_a).read(), RunResults(run_b).read()
    if results_a.schema != results_b.schema or any(
            _values(results_a[c]) != _values(results_b[c]) for c in results_a.column_names):
        differing.append("results/")
    return differing


# --- the hash ------------------------------------------------------------------------------
def test_the_hash_is_pinned_and_spreads_numbers_evenly() -> None:
    """The hash is part of the prepared snapshot's contract (HASH_NAME): it must give the
    same shard on every machine, in every process, for ever."""
    values = pa.array(["079090001234", "001185000001", "123456789", "B1234567", None, ""])
    assert sharding.shard_of(values, 8).tolist() == [3, 1, 1, 0, -1, 0]
    assert sharding.stable_hash(values)[0] == 12594255313554067211
    # Leading zeros count: "079…" and "79…" are different documents.
    assert sharding.stable_hash(pa.array(["079090001234"]))[0] \
        != sharding.stable_hash(pa.array(["79090001234"]))[0]
    # Position matters in non-numeric documents too.
    hashed = sharding.stable_hash(pa.array(["AB12", "BA12"]))
    assert hashed[0] != hashed[1]
    # Slices and chunked arrays hash like the values they hold.
    whole = sharding.stable_hash(values)
    assert sharding.stable_hash(values.slice(2)).tolist() == whole[2:].tolist()
    chunked = pa.chunked_array([values.slice(0, 3), values.slice(3)])
    assert sharding.stable_hash(chunked).tolist() == sharding.stable_hash(values).tolist()

    cccd = pa.array([f"0{p:02d}{g}{y:02d}{s:06d}" for p, g, y, s in
                     zip(np.arange(200_000) % 96, np.arange(200_000) % 4,
                         np.arange(200_000) % 100, np.arange(200_000), strict=True)])
    counts = np.bincount(sharding.shard_of(cccd, 16), minlength=16)
    assert counts.min() > 0.95 * len(cccd) / 16 and counts.max() < 1.05 * len(cccd) / 16


def test_subscriptions_meet_their_citizen_in_the_same_shard() -> None:
    """A CCCD goes where its citizen is; an old CMND goes to the shard of the first
    citizen holding it (through the legacy index), wherever its own hash points."""
    n = 8
    legacy = pa.table({"legacy_id": ["123456789", "987654321"],
                       "shard": pa.array([6, 2], pa.int32())})
    id_type = pa.array(["CCCD", "CMND", "CMND", "CMND", "PASSPORT", None])
    id_number = pa.array(["079090001234", "123456789", "987654321", "555555555", "B1234567",
                          None])
    source_row = pa.array([1, 2, 3, 4, 5, 6], pa.int64())
    routed = sharding.route_subscriptions(id_type, id_number, source_row, legacy, n)
    own = sharding.shard_of(id_number, n)
    assert routed[0] == own[0]                          # CCCD: the citizen's shard
    assert routed[1] == 6 and routed[2] == 2            # CMND: through the legacy index
    assert routed[3] == own[3] and routed[4] == own[4]  # not in the index: its own hash
    assert 0 <= routed[5] < n                           # no number: spread by source_row


# --- registry-wide facts in a sharded registry ----------------------------------------------
def _tiny_registry(tmp_path: Path) -> Path:
    """Six citizens; two share a legacy number (the BR-VT/Đồng Nai collision) and three
    share a name. Shuffled so that the sharing citizens live in different shards."""
    table = pa.table({
        "citizen_id": ["079090000001", "075090000002", "001190000003", "001190000004",
                       "079301000005", "048085000006"],
        "legacy_id": ["273000001", "273000001", None, "024000004", None, None],
        "full_name": ["Nguyễn Văn An", "Nguyễn Văn An", "Trần Thị Bình", "Nguyễn Văn An",
                      "Lê Văn Cường", "Phạm Thị Dung"],
        "date_of_birth": ["1990-01-01", "1990-02-02", "1990-03-03", "1990-04-04",
                          "2001-05-05", "1985-06-06"],
        "gender": ["M", "M", "F", "M", "M", "F"],
        "date_of_death": pa.nulls(6, pa.string()),
    })
    path = tmp_path / "citizens.parquet"
    pq.write_table(table, path)
    return path


def _subscriptions() -> pa.Table:
    from pipelines.intake.normalise import NORMALISED_SCHEMA

    n = 3
    rows = {name: pa.nulls(n, field.type) for name, field in
            zip(NORMALISED_SCHEMA.names, NORMALISED_SCHEMA, strict=True)}
    rows.update({
        "telco": pa.array(["t"] * n), "source_row": pa.array([1, 2, 3], pa.int64()),
        "id_type": pa.array(["CMND", "CCCD", "CMND"]),
        "id_number": pa.array(["273000001", "001190000004", "024000004"]),
        "id_valid": pa.array([True, True, True]),
        "full_name": pa.array(["Nguyễn Văn An"] * n),
        "date_of_birth": pa.array([date(1990, 1, 1), date(1990, 4, 4), date(1990, 4, 4)]),
        "dob_precision": pa.array(["day"] * n), "gender": pa.array(["M"] * n),
    })
    return pa.table({k: pc.cast(v, NORMALISED_SCHEMA.field(k).type) for k, v in rows.items()})


def test_a_shard_scores_like_the_whole_registry(tmp_path: Path) -> None:
    """Name frequencies and shared CMNDs are counted over the whole registry when it is
    prepared, so matching one shard gives what matching the whole registry gives."""
    source = _tiny_registry(tmp_path)
    whole = load_registry(source)
    subscriptions = _subscriptions()
    settings = MatchingSettings(candidate_search=False)
    expected = match.match(subscriptions, whole, settings)
    assert expected["link_ambiguous"].to_pylist() == [True, False, False]

    for count in (2, 5):
        snapshot, _ = registry_snapshot.prepare(source, tmp_path / f"r{count}", count,
                                               as_of=date(2026, 11, 28))
        legacy = pq.read_table(snapshot.legacy_index_path)
        shared = legacy.filter(pc.equal(legacy["legacy_id"], "273000001"))
        assert shared["citizens"].to_pylist() == [2]
        assert shared["citizen_id"].to_pylist() == ["079090000001"]  # first in source order
        routed = sharding.route_subscriptions(subscriptions["id_type"], subscriptions["id_number"],
                                            subscriptions["source_row"], legacy, count)
        got = []
        for k in range(count):
            rows = np.flatnonzero(routed == k)
            if rows.size:
                part = subscriptions.take(pa.array(rows))
                got.append(match.match(part, pq.read_table(snapshot.shard_path(k)), settings))
        got_table = pa.concat_tables(got).sort_by("source_row")
        for column in ("matched_citizen_id", "link_ambiguous", "name_frequency",
                       "match_probability", "match_band", "holder_citizen_id"):
            assert got_table[column].equals(expected[column]), (count, column)


def test_spanning_rules_group_over_every_telco_on_compact_columns() -> None:
    rows = pa.table({
        "telco": ["a", "a", "b", "b", "b"], "source_row": [1, 2, 1, 2, 3],
        "matched_citizen_id": ["X", "X", "X", None, None],
        "id_type": ["CCCD", "CCCD", "CMND", "CCCD", None],
        "id_number": ["X", "X", "111111111", "Y", None],
        "id_valid": [True, True, True, True, False],
        "line_status": ["ACTIVE"] * 5, "point_of_sale": ["p"] * 5,
        "activation_date": pa.array([date(2026, 1, 1)] * 5),
        "msisdn": ["0901", "0902", "0901", None, "0903"],
    })
    masks = flag.spanning_masks(rows, FlagSettings(max_active_subscriptions_per_holder=2,
                                                   bulk_min_activations=5,
                                                   bulk_max_distinct_ids=4))
    assert masks["EXCESS_SUBSCRIPTIONS"].tolist() == [True, True, True, False, False]
    assert masks["DUPLICATE_MSISDN"].tolist() == [True, False, True, False, False]
    assert masks["BULK_ACTIVATION"].tolist() == [True] * 5


# --- the whole run ---------------------------------------------------------------------------
def test_results_do_not_depend_on_the_shard_count(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Done-when of issue 4: 1, 3 and 8 shards give byte-for-byte the same run folder,
    timestamps aside; and the same results as matching the whole registry at once. The
    8-shard run also cuts the searched rows into batches of 17 (batches across
    subscription shards) and lays the registry out for the search in birth-year
    partitions of about 500 citizens (many search tasks): the same again."""
    from pipelines.registry import build

    runs = {}
    for count in (1, 3, 8):
        folder = tmp_path / f"shards-{count}"
        folder.mkdir()
        batches = {"matching": {"search_batch_rows": 17}} if count == 8 else {}
        monkeypatch.setattr(build, "BUCKET_ROWS", 500 if count == 8 else build.BUCKET_ROWS)
        config = same_review_key(write_config(folder, prepared_registry={"shards": count},
                                              **batches))
        outcome = run_all(str(config), RUN_DATE)
        assert outcome["failed_telcos"] == []
        assert RunResults(outcome["run_dir"]).files[-1].parent.name == f"shard={count - 1:03d}"
        runs[count] = Path(outcome["run_dir"])
    assert differing_outputs(runs[1], runs[3]) == []
    assert differing_outputs(runs[1], runs[8]) == []
    # The namesake prior was estimated from every batch's rows (the same whatever the
    # batches: summary.json is among the outputs compared above).
    prior = json.loads((runs[8] / "summary.json").read_text())["namesake_prior"]
    assert 0 < prior["registry_share"] < 1 and prior["rows"] > 0 and prior["holders"] > 0
    manifest = json.loads((runs[8] / "manifest.json").read_text())
    assert {"results/shard=007/part-0.parquet", "summary.json", "corrections/viettel.csv",
            "gates/registry.json"} <= {f["path"] for f in manifest["files"]}

    # Unsharded reference: the normalised rows against the raw registry in one piece.
    normalised = pa.concat_tables(
        pq.read_table(runs[3].parent.with_name("runs-private") / RUN_DATE / "normalised"
                      / f"{t}.parquet")
        for t in ("mobifone", "viettel", "vinaphone"))
    reference = flag.flag(match.match(normalised, load_registry(
        REPO / "data_samples" / "registry" / "citizens.parquet"), MatchingSettings()),
        FlagSettings())
    results = RunResults(runs[3]).read()
    assert results.num_rows == reference.num_rows == 4000
    for column in reference.column_names:
        assert _values(results[column]) == _values(reference[column]), column


def test_a_run_in_worker_processes_equals_a_run_in_one(tmp_path: Path) -> None:
    """``simrecon run`` runs the mapped stages in worker processes (one per CPU by
    default); the outputs are those of a run in this one process."""
    runs = {}
    for workers in (1, 2):
        folder = tmp_path / f"workers-{workers}"
        folder.mkdir()
        config = same_review_key(write_config(folder, prepared_registry={"shards": 3}))
        outcome = run_all(str(config), RUN_DATE, workers=workers)
        assert outcome["failed_telcos"] == []
        runs[workers] = Path(outcome["run_dir"])
        # Every stage's CPU seconds are counted, in the workers too (the step that
        # matches every shard cannot have taken none).
        cpu = outcome["cpu_seconds"]
        assert set(outcome["timings"]) - {"gate_registry (beside ingest)"} <= set(cpu)
        assert cpu["match_shard"] > 0.05 and cpu["search_partition"] > 0
        # the snapshot, prepared in the run, was staged in the command's own process
        assert cpu["stage_run_registry"] > 0.05
    assert differing_outputs(runs[1], runs[2]) == []


def _values(column: pa.ChunkedArray) -> list:
    """Python values, NaN as None (NaN never equals itself)."""
    return [None if isinstance(v, float) and v != v else v for v in column.to_pylist()]


def test_a_run_in_which_no_telco_made_it_publishes_an_empty_well_formed_run(
        tmp_path: Path) -> None:
    import yaml

    telcos = tmp_path / "telcos"
    telcos.mkdir()
    mapping = yaml.safe_load((REPO / "config" / "telcos" / "viettel.yaml").read_text("utf-8"))
    mapping["source"] = str(tmp_path / "missing.csv")
    (telcos / "viettel.yaml").write_text(yaml.safe_dump(mapping, allow_unicode=True), "utf-8")
    outcome = run_all(str(write_config(tmp_path, telcos_dir=telcos,
                                       prepared_registry={"shards": 2})), RUN_DATE)
    assert outcome["failed_telcos"] == ["viettel"]
    results = RunResults(outcome["run_dir"]).read()
    assert results.num_rows == 0 and "status" in results.column_names


def test_a_telco_not_cut_into_shards_is_reported_failed_and_left_out(tmp_path: Path) -> None:
    """A telco whose partition task failed (after its export gate passed): plan_shards
    leaves it out, the others are matched and published, and the run reports it (check
    turns the run red). A telco whose export gate did not pass is never cut."""
    from pipelines import stages
    from pipelines.errors import RunIncompleteError, TelcoInputError
    from pipelines.storage.paths import RunPaths

    config = str(write_config(tmp_path, prepared_registry={"shards": 3}))
    telcos = stages.plan_run(config, RUN_DATE)
    stages.gate_registry(config, RUN_DATE)
    for telco in telcos:
        stages.ingest_telco(config, RUN_DATE, telco)
        stages.normalise_telco(config, RUN_DATE, telco)
        if telco != "viettel":
            stages.gate_export(config, RUN_DATE, telco)
            stages.partition_telco(config, RUN_DATE, telco)
        else:  # its gate never ran (a crashed task): it is not cut either
            with pytest.raises(TelcoInputError, match="not cut into shards"):
                stages.partition_telco(config, RUN_DATE, telco)
            stages.gate_export(config, RUN_DATE, telco)
    assert stages.plan_shards(config, RUN_DATE) == [0, 1, 2]
    for shard in range(3):
        stages.match_shard(config, RUN_DATE, shard)
    for step in ("search_candidates", "spanning_flags", "flag_subscriptions", "gate_results",
                 "write_corrections", "gate_corrections", "build_report", "publish_run"):
        getattr(stages, step)(config, RUN_DATE)
    run_dir = RunPaths(tmp_path / "runs", RUN_DATE).final
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "shards" in summary["failed_telcos"]["viettel"]
    assert set(RunResults(run_dir).read()["telco"].to_pylist()) \
        == {"mobifone", "vinaphone"}
    with pytest.raises(RunIncompleteError, match="viettel"):
        stages.check_run(config, RUN_DATE)


# --- the candidate search, one registry shard at a time (issue 15) ---------------------------
def test_the_search_finds_the_same_whatever_the_registry_shards(tmp_path: Path) -> None:
    """Every searched row of the samples, searched shard by shard in 1, 3 and 8 registry
    shards and the parts folded in any order, gets exactly what the search over the whole
    registry in one piece gives: block sizes, name frequencies and the registry's size
    come from the snapshot, ties break by the source row, sums run in a fixed order."""
    from datetime import date as _date

    from pipelines.reconcile import search
    from pipelines.reconcile.estimate import load_subscriptions
    from pipelines.reconcile.model_file import load_model

    settings = MatchingSettings()
    model = load_model(settings)
    source = REPO / "data_samples" / "registry" / "citizens.parquet"
    whole = load_registry(source)
    subscriptions = load_subscriptions(str(write_config(tmp_path)), _date(2026, 11, 28))
    linked = match.match(subscriptions, whole, MatchingSettings(candidate_search=False))
    unlinked = pc.and_(pc.is_null(linked["matched_citizen_id"]),
                       pc.fill_null(pc.not_equal(linked["id_type"], "PASSPORT"), True))
    rows = subscriptions.filter(unlinked)
    assert rows.num_rows > 100
    expected = search.search(rows, whole, model, settings)
    assert expected["candidate_citizen_id"].null_count < rows.num_rows  # it finds some
    searched = search.searched_rows(rows)
    for count in (1, 3, 8):
        snapshot, _ = registry_snapshot.prepare(source, tmp_path / f"r{count}", count,
                                               as_of=date(2026, 11, 28))
        parts = [search.search_shard(searched, pq.read_table(snapshot.shard_path(k)), model,
                                     settings, snapshot.statistics) for k in range(count)]
        assert sum(p.num_rows for p in parts) >= expected.num_rows - \
            expected["candidate_probability"].null_count
        share = search.registry_namesakes([snapshot.search_citizens(p)
                                           for p in snapshot.search_present])
        for order in (parts, parts[::-1]):
            found = search.choose(searched, order, model, settings, share)
            for column in found.column_names:
                assert _values(found[column]) == _values(expected[column]), (count, column)


def test_row_positions_find_pairs_across_chunked_tables_of_several_telcos() -> None:
    """(telco, source_row) found across tables whose telco columns come in several chunks
    (the telcos' ranks taken from the chunks, never through Python objects)."""
    within = pa.concat_tables([
        pa.table({"telco": ["a", "a", "b"], "source_row": pa.array([1, 5, 2], pa.int64())}),
        pa.table({"telco": ["c", "c"], "source_row": pa.array([0, 9], pa.int64())})])
    rows = pa.concat_tables([
        pa.table({"telco": ["c"], "source_row": pa.array([9], pa.int64())}),
        pa.table({"telco": ["a", "b", "d"], "source_row": pa.array([5, 2, 1], pa.int64())})])
    assert within["telco"].num_chunks == 2
    assert sharding.row_positions(rows, within).tolist() == [4, 1, 2, -1]
    empty = pa.table({"telco": pa.array([], pa.string()), "source_row": pa.array([], pa.int64())})
    assert sharding.row_positions(empty, within).tolist() == []


def test_results_are_written_with_high_cardinality_columns_plain(tmp_path: Path) -> None:
    """The results file's per-subscription columns carry no dictionary (building one that
    overflows costs a third of the write); the others keep theirs; the table reads back
    equal."""
    from pipelines.storage.files import write_parquet

    table = pa.table({"msisdn": [f"09{i:08d}" for i in range(1000)],
                      "status": ["VERIFIED", "REVIEW"] * 500})
    path = write_parquet(table, tmp_path / "part.parquet", plain=flag.PLAIN_COLUMNS)
    assert pq.read_table(path).equals(table)
    chunks = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {chunks.column(i).path_in_schema: chunks.column(i).encodings
                 for i in range(chunks.num_columns)}
    assert "msisdn" in flag.PLAIN_COLUMNS
    assert "RLE_DICTIONARY" not in encodings["msisdn"]
    assert "RLE_DICTIONARY" in encodings["status"]


def test_bucket_of_is_the_stable_hash_modulo_the_buckets() -> None:
    """A row's bucket is ``stable_hash % buckets`` (a null key: bucket 0), in every chunk;
    with one bucket, 0 without hashing."""
    from pipelines.reconcile.shard_steps import bucket_of

    keys = pa.chunked_array([pa.array(["pos-1", "b", None, "pos-1", "0912345678"]),
                             pa.array(["b", "Điểm bán 7", None, "0912345678"])])
    for buckets in (1, 3, 7):
        expected = (sharding.stable_hash(keys) % np.uint64(buckets)).astype(np.int32)
        got = bucket_of(keys, buckets)
        assert got.dtype == np.int32
        assert got.tolist() == expected.tolist()
    assert len(set(bucket_of(keys, 7).tolist())) > 1


def test_spanning_flags_are_the_same_in_any_number_of_buckets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spanning rules' masks of a run cut into 1 or 5 buckets of keys are equal (a
    number, a point of sale lies whole in one bucket); the matched shards are Arrow IPC
    working files, read by column."""
    from pipelines.reconcile import shard_steps
    from pipelines.stages.common import context
    from pipelines.stages.intake import gate_export, partition_telco
    from pipelines.stages.reconcile import match_shard, plan_shards
    from pipelines.stages.registry import gate_registry
    from pipelines.stages.run import _read_telco, plan_run

    config = str(same_review_key(write_config(tmp_path, prepared_registry={"shards": 3})))
    telcos = plan_run(config, RUN_DATE)
    gate_registry(config, RUN_DATE)
    for telco in telcos:
        _read_telco(config, RUN_DATE, telco)
        gate_export(config, RUN_DATE, telco)
        partition_telco(config, RUN_DATE, telco)
    for shard in plan_shards(config, RUN_DATE):
        match_shard(config, RUN_DATE, shard)
    settings, paths = context(config, RUN_DATE)
    whole = read_arrow(paths.matched_shard(0))
    assert whole.num_rows == arrow_rows(paths.matched_shard(0)) > 0
    assert read_arrow(paths.matched_shard(0), ["msisdn", "telco"]).equals(
        whole.select(["msisdn", "telco"]))
    masks = {}
    for buckets in (1, 5):
        monkeypatch.setattr(shard_steps, "spanning_buckets",
                            lambda total, rows_per_bucket=0, b=buckets: b)
        counts = shard_steps.spanning_flags(settings, paths)
        assert counts["buckets"] == buckets
        assert counts["duplicate_msisdn"] and counts["bulk_activation"]
        masks[buckets] = [pq.read_table(paths.spanning_flags(k)) for k in range(3)]
    assert all(a.equals(b) for a, b in zip(masks[1], masks[5], strict=True))
