"""The look-up index and the audit chain (issue 13).

The index is built from a real run's results on SQLite and on a throwaway PostgreSQL
(tests/servers.py), and must answer every number and document exactly as the results
say; a refresh keeps first runs and carries subscriptions that left the runs; readers
never see a half-built index. The audit log's chain survives concurrent writers and
``simrecon audit verify`` names the first entry edited or deleted.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import string
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import yaml

from benchmarks.lookup_results import RESULTS_SCHEMA, write_results
from pipelines.cli import main
from pipelines.lookup import audit, keys, service_store
from pipelines.lookup.index import (
    build_index,
    find_document,
    find_number,
    stage_index,
    swap_staged,
)
from pipelines.lookup.store import IndexReader, pending_file
from pipelines.results.dataset import RunResults, part_path
from pipelines.stages import run_all

from .conftest import write_config
from .servers import new_database, postgres_cluster


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("index")
    return Path(run_all(str(write_config(tmp)), "2026-11-28")["run_dir"])


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[str]:
    with postgres_cluster() as url:
        yield url


def _expected(results: pa.Table) -> tuple[dict, dict]:
    """Per number and per document, the (telco, number) pairs the index must answer."""
    by_number: dict[str, set] = {}
    by_document: dict[str, set] = {}
    for row in results.select(["telco", "msisdn", "id_number", "status",
                               "holder_citizen_id"]).to_pylist():
        key = (row["telco"], row["msisdn"])
        if row["msisdn"]:
            by_number.setdefault(row["msisdn"], set()).add(key)
        documents = {row["id_number"]}
        if row["status"] == "VERIFIED":
            documents.add(row["holder_citizen_id"])
        for document in documents - {None, ""}:
            by_document.setdefault(document, set()).add(key)
    return by_number, by_document


def _check_against_results(store: object, results: pa.Table) -> None:
    reader = IndexReader(store)
    by_number, by_document = _expected(results)
    for number, expected in by_number.items():
        _, found = find_number(reader, number)
        assert {(r["telco"], r["msisdn"]) for r in found} == expected, number
    for document, expected in by_document.items():
        _, found = find_document(reader, document)
        assert {(r["telco"], r["msisdn"] or None) for r in found} == expected, document
    assert find_number(reader, "0399999999")[1] == []
    reader.close()


def test_index_answers_as_the_results_on_sqlite(sample_run: Path, tmp_path: Path) -> None:
    results = RunResults(sample_run)
    store = tmp_path / "lookup" / "index.sqlite"
    # Small partitions and buckets: several of each, as at national scale.
    counts = build_index(results, "2026-11-28", store, partition_rows=1000, records_per_bucket=4)
    assert counts["subscriptions"] == results.num_rows and counts["partitions"] > 1
    assert store.stat().st_mode & 0o777 == 0o600
    assert store.parent.stat().st_mode & 0o777 == 0o700
    _check_against_results(store, results.read())
    row = results.read().filter(pc.equal(results.read()["status"], "VERIFIED")).slice(0, 1) \
        .to_pylist()[0]
    _, (found,) = find_number(IndexReader(store), row["msisdn"])
    assert found["full_name"] == row["full_name"] and found["citizen_id"] == \
        row["holder_citizen_id"]
    assert found["province"] == row["holder_citizen_id"][:3]


def test_index_answers_as_the_results_on_postgres(sample_run: Path,
                                                  postgres_server: str, tmp_path: Path) -> None:
    url = new_database(postgres_server, f"i_{uuid.uuid4().hex[:10]}")
    results = RunResults(sample_run)
    build_index(results, "2026-11-28", url, partition_rows=1000, records_per_bucket=4,
                work_dir=tmp_path)
    build_index(results, "2026-11-29", url, partition_rows=1000, records_per_bucket=4,
                work_dir=tmp_path)  # a swap on top of an index
    _check_against_results(url, results.read())
    _, found = find_number(IndexReader(url), results.read()["msisdn"][0].as_py())
    assert found[0]["first_run"] == "2026-11-28" and found[0]["last_run"] == "2026-11-29"
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        tables = set(conn.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'lookup%'")).scalars())
    engine.dispose()
    assert tables == {"lookup_numbers", "lookup_documents", "lookup_meta"}  # no leftovers


def _results_dir(tmp: Path, name: str, table: pa.Table) -> RunResults:
    run_dir = tmp / name
    part_path(run_dir, 0).parent.mkdir(parents=True)
    pq.write_table(table, part_path(run_dir, 0))
    return RunResults(run_dir)


def test_refresh_keeps_first_runs_and_carries_subscriptions_that_left(tmp_path: Path) -> None:
    write_results(tmp_path / "a", 3000, shards=1, seed=1)
    day1 = RunResults(tmp_path / "a").read()
    # Day 2: the first 100 subscriptions are gone, one number moved to another holder.
    day2 = day1.slice(100)
    store = tmp_path / "index.sqlite"
    build_index(_results_dir(tmp_path, "r1", day1), "2026-01-01", store, keep_unseen_days=10)
    build_index(_results_dir(tmp_path, "r2", day2), "2026-01-05", store, keep_unseen_days=10)
    reader = IndexReader(store)
    gone, stayed = day1.slice(0, 1).to_pylist()[0], day2.slice(0, 1).to_pylist()[0]
    _, (record,) = find_number(reader, gone["msisdn"])
    assert (record["first_run"], record["last_run"]) == ("2026-01-01", "2026-01-01")
    _, found = find_document(reader, gone["id_number"])
    assert gone["msisdn"] in {r["msisdn"] for r in found}  # its document still leads to it
    _, (record,) = find_number(reader, stayed["msisdn"])
    assert (record["first_run"], record["last_run"]) == ("2026-01-01", "2026-01-05")
    assert reader.meta(refresh=True)["carried"] == "100"
    # Written in 16 KB pages (a bucket's row, ~2.5 KB, left most of a 4 KB page empty).
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA page_size").fetchone()[0] == 16384
    # Past keep_unseen_days the subscription that left is dropped.
    build_index(_results_dir(tmp_path, "r3", day2), "2026-01-20", store, keep_unseen_days=10)
    assert find_number(IndexReader(store), gone["msisdn"])[1] == []
    with pytest.raises(ValueError, match="refusing to go back"):
        build_index(_results_dir(tmp_path, "r4", day2), "2026-01-02", store)


def test_readers_never_see_a_half_built_index(tmp_path: Path) -> None:
    write_results(tmp_path / "a", 20_000, shards=2, seed=2)
    results = RunResults(tmp_path / "a")
    numbers = results.read(["msisdn"])["msisdn"].to_pylist()
    store = tmp_path / "index.sqlite"
    build_index(results, "2026-01-01", store)
    stop, seen, problems = threading.Event(), set(), []

    def read() -> None:
        reader = IndexReader(store)
        rng = random.Random(3)
        while not stop.is_set():
            number = rng.choice(numbers)
            meta, found = find_number(reader, number)
            seen.add(meta["run_date"])
            if len(found) != 1 or found[0]["last_run"] != meta["run_date"]:
                problems.append((number, meta["run_date"], found))

    threads = [threading.Thread(target=read) for _ in range(3)]
    for thread in threads:
        thread.start()
    for day in ("2026-01-02", "2026-01-03", "2026-01-04"):
        build_index(results, day, store)
    stop.set()
    for thread in threads:
        thread.join()
    assert problems == []
    assert len(seen) >= 2  # the readers went on through the swaps


# --- the pending build: built before publish, swapped in after --------------------------

_TIMED = {"generation", "built_at", "pass1_ms", "pass2_ms", "pass3_ms"}


def _dump(store: Path) -> tuple[dict, list, list]:
    """An SQLite index's meta (what does not depend on when it was built) and tables."""
    with sqlite3.connect(store) as db:
        meta = {k: v for k, v in db.execute("SELECT name, value FROM lookup_meta")
                if k not in _TIMED}
        return meta, *(db.execute(f"SELECT bucket, records FROM {t} ORDER BY bucket")
                       .fetchall() for t in ("lookup_numbers", "lookup_documents"))


def test_a_pending_build_swapped_in_is_the_full_build(tmp_path: Path) -> None:
    write_results(tmp_path / "a", 3000, shards=2, seed=1)
    day1 = RunResults(tmp_path / "a").read()
    day2 = _results_dir(tmp_path, "r2", day1.slice(100))
    staged, built = tmp_path / "s" / "index.sqlite", tmp_path / "b" / "index.sqlite"
    settings = {"keep_unseen_days": 10, "partition_rows": 1000, "records_per_bucket": 4}
    build_index(_results_dir(tmp_path, "r1", day1), "2026-01-01", staged, **settings)
    built.parent.mkdir(mode=0o700)
    shutil.copyfile(staged, built)  # the same generation under both
    before = _dump(staged)

    counts = stage_index(day2, "2026-01-05", staged, results_digest="d2", **settings)
    pending = pending_file(staged, "2026-01-05")
    assert pending.name == "index.2026-01-05.pending.sqlite"
    assert pending.stat().st_mode & 0o777 == 0o600
    assert _dump(staged) == before, "a pending build is not live"
    swapped = swap_staged("2026-01-05", staged, "d2")
    assert swapped is not None and swapped["staged"] is True
    assert swapped["subscriptions"] == counts["subscriptions"] == 3000
    assert not pending.exists()

    assert swap_staged("2026-01-05", built, "d2") is None  # nothing pending: build in full
    build_index(day2, "2026-01-05", built, results_digest="d2", **settings)
    assert _dump(staged) == _dump(built)
    assert staged.stat().st_mode & 0o777 == 0o600


def test_a_stale_pending_build_is_dropped_not_swapped(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    write_results(tmp_path / "a", 2000, shards=1, seed=4)
    results = RunResults(tmp_path / "a")
    store, other = tmp_path / "index.sqlite", tmp_path / "other" / "index.sqlite"
    build_index(results, "2026-01-01", store)
    stage_index(results, "2026-01-02", store, results_digest="d")
    pending = pending_file(store, "2026-01-02")
    kept = pending.read_bytes()
    # Another run date, other results: not swapped, and dropped.
    assert swap_staged("2026-01-03", store, "d") is None
    assert pending.exists(), "another run's pending build is left for its own swap"
    assert swap_staged("2026-01-02", store, "other results") is None
    assert not pending.exists()
    # The index changed after the pending build was merged with it: not swapped.
    pending.write_bytes(kept)
    build_index(results, "2026-01-01", other)
    os.replace(other, store)  # a build that did not see the pending one
    generation = IndexReader(store).meta(refresh=True)["generation"]
    with caplog.at_level("INFO", logger="simrecon.lookup"):
        assert swap_staged("2026-01-02", store, "d") is None
    assert "the index changed since it was built" in caplog.text
    assert not pending.exists()
    assert IndexReader(store).meta(refresh=True)["generation"] == generation
    # A full build drops a pending build (its run was never published).
    stage_index(results, "2026-01-02", store, results_digest="d")
    build_index(results, "2026-01-02", store)
    assert not pending.exists()
    assert swap_staged("2026-01-02", store, "d") is None


def _publish(staging: Path, final: Path) -> None:
    """What publish does to the results: a manifest, the folder renamed into place."""
    from pipelines.delivery.correction_lists import describe_outputs
    from pipelines.storage.files import write_json

    write_json({"files": describe_outputs(staging)}, staging / "manifest.json")
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, final)


def test_the_stages_swap_the_staged_index_or_build_it(tmp_path: Path) -> None:
    from pipelines.stages import refresh_lookup_index, stage_lookup_index
    from pipelines.storage.paths import RunPaths

    config = write_config(tmp_path, lookup={"partition_rows": 1000})
    runs = tmp_path / "runs"
    store = runs / "lookup" / "index.sqlite"
    day1, day2 = RunPaths(runs, "2026-01-01"), RunPaths(runs, "2026-01-02")
    write_results(day1.staging, 2500, shards=2, seed=5)
    write_results(day2.staging, 2500, shards=2, seed=6)
    # No pending build (the run was published without it): built in full.
    _publish(day1.staging, day1.final)
    first = refresh_lookup_index(str(config), "2026-01-01")
    assert first["staged"] is False and first["subscriptions"] == 2500
    # Staged before publish (the results gate passed), swapped in after.
    assert stage_lookup_index(str(config), "2026-01-02")["staged"] is True
    assert pending_file(store, "2026-01-02").exists()
    assert IndexReader(store).meta(refresh=True)["run_date"] == "2026-01-01"
    _publish(day2.staging, day2.final)
    second = refresh_lookup_index(str(config), "2026-01-02")
    assert second["staged"] is True and not pending_file(store, "2026-01-02").exists()
    assert IndexReader(store).meta(refresh=True)["run_date"] == "2026-01-02"
    # The same as indexing the published runs one after the other.
    other = tmp_path / "full" / "index.sqlite"
    build_index(RunResults(day1.final), "2026-01-01", other, partition_rows=1000)
    build_index(RunResults(day2.final), "2026-01-02", other, partition_rows=1000,
                results_digest=IndexReader(store).meta(refresh=True)["results"])
    ours, theirs = _dump(store), _dump(other)
    ours[0].pop("merged_with"), theirs[0].pop("merged_with")
    assert ours == theirs
    # A run staged but never published (rejected): the pending build never goes live,
    # and the next build drops it.
    day3 = RunPaths(runs, "2026-01-03")
    write_results(day3.staging, 100, shards=1, seed=7)
    assert stage_lookup_index(str(config), "2026-01-03")["staged"] is True
    assert IndexReader(store).meta(refresh=True)["run_date"] == "2026-01-02"
    assert refresh_lookup_index(str(config), "2026-01-02")["staged"] is False
    assert not pending_file(store, "2026-01-03").exists()
    # A stage that cannot build does not fail the run: the swap step builds in full.
    assert stage_lookup_index(str(config), "2026-01-04") == {"run_date": "2026-01-04",
                                                             "staged": False}


def test_a_pending_build_on_postgres(postgres_server: str, tmp_path: Path) -> None:
    url = new_database(postgres_server, f"p_{uuid.uuid4().hex[:10]}")
    write_results(tmp_path / "a", 3000, shards=2, seed=8)
    results = RunResults(tmp_path / "a")
    settings = {"partition_rows": 1000, "records_per_bucket": 4, "work_dir": tmp_path}
    build_index(results, "2026-11-28", url, **settings)
    stage_index(results, "2026-11-29", url, results_digest="d", **settings)
    assert IndexReader(url).meta(refresh=True)["run_date"] == "2026-11-28"
    assert swap_staged("2026-11-30", url, "d", work_dir=tmp_path) is None  # another run
    stage_index(results, "2026-11-29", url, results_digest="d", **settings)
    assert swap_staged("2026-11-29", url, "d", work_dir=tmp_path)["staged"] is True
    _check_against_results(url, results.read())
    assert IndexReader(url).meta(refresh=True)["run_date"] == "2026-11-29"
    stage_index(results, "2026-11-30", url, results_digest="d", **settings)
    build_index(results, "2026-11-30", url, **settings)  # drops the pending build
    assert swap_staged("2026-11-30", url, "d", work_dir=tmp_path) is None
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        tables = set(conn.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'lookup%'")).scalars())
    engine.dispose()
    assert tables == {"lookup_numbers", "lookup_documents", "lookup_meta"}


def test_vectorised_and_single_key_hashes_agree() -> None:
    rng = random.Random(7)
    values = ["0906177345", "079084000999", "C1234567", "Ⓐé", "0", "00", "9" * 19, "١٢٣"]
    values += ["".join(rng.choices(string.ascii_uppercase + string.digits,
                                   k=rng.randint(1, 30))) for _ in range(500)]
    values += ["".join(rng.choices(string.digits, k=rng.randint(1, 20))) for _ in range(500)]
    hashes = keys.key_hashes(pa.array(values))
    assert [int(h) for h in hashes] == [keys.key_hash(v) for v in values]
    assert (keys.key_hashes(pa.array(values).slice(5, 50)) == hashes[5:55]).all()


def test_benchmark_results_have_the_real_schema(sample_run: Path) -> None:
    real = RunResults(sample_run).schema
    assert [(f.name, f.type) for f in RESULTS_SCHEMA] == [(f.name, f.type) for f in real]


# --- the audit chain -----------------------------------------------------------------------


def _entry(i: int) -> dict:
    return {"at": audit.now_utc(), "account": f"a{i % 3}", "agency": "x", "role": "investigator",
            "action": "lookup_number", "query_kind": "number", "query": f"09{i:08d}",
            "case_reference": "VV-1", "legal_basis": "Điều 26", "outcome": "ANSWERED",
            "detail": "", "result_count": 1, "result_digest": audit.digest([i]),
            "client": "127.0.0.1"}


def _settings(tmp: Path, store: str | Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    config = write_config(tmp, lookup={"service_store": str(store)})
    settings = tmp / "lookup.yaml"
    settings.write_text(yaml.safe_dump({"run_config": str(config)}), encoding="utf-8")
    return settings


def test_audit_chain_survives_concurrent_writers(tmp_path: Path) -> None:
    db = service_store.engine(tmp_path / "service.sqlite")
    logs = [audit.AuditLog(db), audit.AuditLog(db)]  # two writers, as two processes

    def write(k: int) -> None:
        for i in range(40):
            logs[k % 2].record(_entry(k * 100 + i))

    threads = [threading.Thread(target=write, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for log in logs:
        log.close()
    verdict = audit.verify(db)
    assert verdict.ok and verdict.entries == 240 and verdict.head_seq == 240
    assert [e["seq"] for e in audit.export(db)] == list(range(1, 241))


def test_audit_verify_names_the_first_broken_entry(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "lookup" / "service.sqlite"
    db = service_store.engine(path)
    audit.append_entries(db, [_entry(i) for i in range(10)])
    settings = _settings(tmp_path, path)
    assert main(["audit", "verify", "--settings", str(settings)]) == 0
    # The database itself refuses changes to the log ...
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), db.begin() as conn:
        conn.execute(sa.text("UPDATE lookup_audit SET query = '0900000000' WHERE seq = 4"))
    # ... and an edit made behind its back (the file opened directly) is named.
    copies = {}
    for case in ("edited", "deleted", "cut"):
        copy = tmp_path / case / "lookup" / "service.sqlite"
        copy.parent.mkdir(parents=True)
        with sqlite3.connect(path) as source, sqlite3.connect(copy) as target:
            source.backup(target)
        copies[case] = copy
    with sqlite3.connect(copies["edited"]) as raw:
        raw.execute("DROP TRIGGER lookup_audit_no_update")
        raw.execute("UPDATE lookup_audit SET legal_basis = 'none' WHERE seq = 4")
    with sqlite3.connect(copies["deleted"]) as raw:
        raw.execute("DROP TRIGGER lookup_audit_no_delete")
        raw.execute("DELETE FROM lookup_audit WHERE seq = 6")
    with sqlite3.connect(copies["cut"]) as raw:
        raw.execute("DROP TRIGGER lookup_audit_no_delete")
        raw.execute("DELETE FROM lookup_audit WHERE seq = 10")
    for case, entry in (("edited", 4), ("deleted", 6), ("cut", 10)):
        capsys.readouterr()
        settings = _settings(tmp_path / case, copies[case])
        assert main(["audit", "verify", "--settings", str(settings)]) == 1, case
        assert f"AUDIT LOG BROKEN at entry {entry}:" in capsys.readouterr().err, case
    # The export for oversight: by account and period, with the hashes to check.
    out = tmp_path / "export.jsonl"
    assert main(["audit", "export", "--settings", str(_settings(tmp_path / "x", path)),
                 "--account", "a1", "--from", "2000-01-01", "--out", str(out)]) == 0
    exported = [yaml.safe_load(line) for line in out.read_text().splitlines()]
    assert [e["seq"] for e in exported] == [2, 5, 8]
    assert all(audit.entry_hash(e) == e["hash"] for e in exported)


def test_audit_chain_on_postgres(postgres_server: str) -> None:
    url = new_database(postgres_server, f"a_{uuid.uuid4().hex[:10]}")
    db = service_store.engine(url)
    log = audit.AuditLog(db)
    threads = [threading.Thread(target=lambda k=k: [log.record(_entry(k * 10 + i))
                                                    for i in range(10)]) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    assert audit.verify(db).ok and audit.verify(db).entries == 40
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), db.begin() as conn:
        conn.execute(sa.text("DELETE FROM lookup_audit WHERE seq = 3"))


@pytest.mark.parametrize("bits", [0, 3, 16, 17, 24, 45])
def test_bucket_order_is_numpys_stable_argsort(bits: int) -> None:
    """The build's cheaper sort (radix for 16 bits, keys with their position above) gives
    exactly the stable order, ties in position order."""
    from pipelines.lookup.index import _stable_order

    rng = np.random.default_rng(bits)
    for n in (0, 1, 2, 1000, 70_000):
        values = rng.integers(0, max(1, min(1 << bits, 50)) if n % 2 else 1 << bits, n,
                              dtype=np.int64) if bits else np.zeros(n, np.int64)
        assert (_stable_order(values, bits) == np.argsort(values, kind="stable")).all()
