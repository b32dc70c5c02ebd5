"""Build the look-up index from a run's results; read one number or one document from it.

The index maps a subscription number to the records of the subscriptions that hold it
(one per telco, normally one), and a document number (as the telco sent it, or the
verified citizen's) to the numbers of every subscription it leads to, across telcos
(pipelines/lookup/records.py). It is built from the results of the latest published
run, read through ``RunResults`` like the report, merged with the previous index: a
subscription (telco, number) keeps the first run that had it, and one that left the
runs stays findable, with its last run, for ``lookup.keep_unseen_days``.

Both tables are hash buckets (``bucket`` → the packed entries whose key falls in it,
``lookup.records_per_bucket`` on average): Arrow compute packs the records and groups
them by bucket, so the database receives a few hundred thousand rows in key order
instead of ten million rows to index, which is what makes 10 million subscriptions a
build of seconds. A look-up reads one bucket and keeps the entries of the key asked.

Memory is bounded by a partition, never by the run: the build streams the results once,
writing each record to one of ``P`` spill files by the top bits of its key hash (``P`` =
rows / ``lookup.partition_rows``, a power of two), then handles one partition at a time:
numbers (merge with the previous index's same hash range, group, insert), then
documents. Buckets are the top ``bits`` bits of the hash, so each partition holds a
contiguous range of buckets and the tables are written in key order.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from pipelines.lookup import keys, records
from pipelines.lookup.store import (
    DOCUMENTS,
    NUMBERS,
    IndexChangedError,
    IndexReader,
    IndexUnavailableError,
    IndexWriter,
    Store,
    build_lock,
    drop_pending,
    pending_meta,
    sqlite_file,
    swap_pending,
)
from pipelines.results.dataset import RunResults
from pipelines.threads import ahead

log = logging.getLogger("simrecon.lookup")

FORMAT = "3"  # record layout and key hash; an index of another format is rebuilt
_NUMBER_SPILL = pa.schema([("hash", pa.uint64()), ("telco", pa.string()),
                           ("msisdn", pa.string()), ("body", pa.string())])
_DOCUMENT_SPILL = pa.schema([("hash", pa.uint64()), ("entry", pa.string())])
_MAX_TELCOS = 1024  # identity = number * _MAX_TELCOS + telco code


def _bits_for(n: float) -> int:
    return max(0, math.ceil(math.log2(max(1.0, n))))


class _Spill:
    """``P`` Arrow IPC files, one per partition, written batch by batch."""

    def __init__(self, folder: Path, name: str, schema: pa.Schema, pbits: int) -> None:
        self.schema, self.pbits = schema, pbits
        self.paths = [folder / f"{name}-{p:05d}.arrow" for p in range(1 << pbits)]
        self._writers: dict[int, ipc.RecordBatchFileWriter] = {}

    def _writer(self, p: int) -> ipc.RecordBatchFileWriter:
        writer = self._writers.get(p)
        if writer is None:
            writer = self._writers[p] = ipc.new_file(self.paths[p], self.schema)
        return writer

    def split(self, table: pa.Table) -> list[tuple[int, pa.Table]]:
        """``table``'s rows by partition (compute only: any thread)."""
        if table.num_rows == 0:
            return []
        table = table.select(self.schema.names).cast(self.schema)
        if self.pbits == 0:
            return [(0, table)]
        part = keys.top_bits(table["hash"].to_numpy(), self.pbits)
        order = _stable_order(part, self.pbits)
        part = part[order]
        table = table.take(pa.array(order))
        cuts = np.flatnonzero(np.diff(part)) + 1
        return [(int(part[start]), table.slice(start, stop - start))
                for start, stop in zip(np.r_[0, cuts], np.r_[cuts, len(part)], strict=True)]

    def write(self, parts: list[tuple[int, pa.Table]]) -> None:
        for p, table in parts:
            self._writer(p).write_table(table)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def read(self, p: int) -> pa.Table:
        path = self.paths[p]
        if not path.exists():
            return self.schema.empty_table()
        with ipc.open_file(path) as reader:
            table = reader.read_all()
        path.unlink()
        return table.combine_chunks()


def _stable_order(values: np.ndarray, bits: int) -> np.ndarray:
    """The stable sort order of ``values`` (non-negative, below ``2**bits``), cheaply:
    NumPy sorts 16-bit values by radix; wider ones, with the position in the low bits
    (every key distinct, so any sort is stable), by a plain sort of the keys instead of
    a stable argsort."""
    n = len(values)
    if bits <= 16:
        return np.argsort(values.astype(np.uint16), kind="stable")
    shift = max(1, (n - 1).bit_length())
    if bits + shift > 64:
        return np.argsort(values, kind="stable")
    composite = (values.astype(np.uint64) << np.uint64(shift)) | np.arange(n, dtype=np.uint64)
    composite.sort()
    return (composite & np.uint64((1 << shift) - 1)).astype(np.int64)


def _bucket_rows(hashes: np.ndarray, entries: pa.Array, bits: int) -> list[tuple[int, str]]:
    """Group packed entries by bucket: ``(bucket, entries joined)`` in bucket order."""
    if len(hashes) == 0:
        return []
    bucket = keys.top_bits(hashes, bits)
    order = _stable_order(bucket, bits)
    bucket = bucket[order]
    entries = entries.take(pa.array(order))
    if isinstance(entries, pa.ChunkedArray):
        entries = entries.combine_chunks()
    cuts = np.flatnonzero(np.diff(bucket)) + 1
    starts = np.r_[0, cuts]
    offsets = pa.array(np.r_[starts, len(bucket)].astype(np.int32))
    grouped = pc.binary_join(pa.ListArray.from_arrays(offsets, entries), records.RECORD_SEP)
    return list(zip(bucket[starts].tolist(), grouped.to_numpy(zero_copy_only=False).tolist(),
                    strict=True))


def _references(documents: list[pa.Array], msisdn: pa.Array) -> pa.Table:
    """Document entries ``document → number`` for each non-null, non-repeated document."""
    return _document_entries(documents, lambda doc, keep: records.pack(doc, msisdn.filter(keep)))


def _document_entries(documents: list[pa.Array], entry) -> pa.Table:  # type: ignore[no-untyped-def]
    """One entry per document of each row (the document as sent, then the verified
    citizen when it differs); ``entry(document, keep)`` packs the entries."""
    own = keys.without_nulls(documents[0])
    citizen = keys.without_nulls(documents[1])
    citizen = pc.if_else(pc.fill_null(pc.equal(citizen, own), False),
                         pa.scalar(None, pa.string()), citizen)
    parts = []
    for document in (own, citizen):
        keep = pc.is_valid(document)
        chosen = document.filter(keep)
        parts.append(pa.table({"hash": keys.key_hashes(chosen), "entry": entry(chosen, keep)},
                              schema=_DOCUMENT_SPILL))
    return pa.concat_tables(parts)


def _identities(telco: pa.Array, msisdn: pa.Array, telcos: pa.Array) -> np.ndarray:
    """(number, telco) as one integer: the 10-digit number times ``_MAX_TELCOS`` plus the
    telco's position in ``telcos``."""
    code = pc.index_in(telco, value_set=telcos).to_numpy(zero_copy_only=False)
    number = pc.cast(msisdn, pa.int64()).to_numpy(zero_copy_only=False)
    return number * _MAX_TELCOS + code


def _old_partition(reader: IndexReader, meta: dict[str, str], pbits: int, p: int,
                   cutoff: str) -> pa.Array:
    """The previous index's records in partition ``p``'s hash range, seen on or after
    ``cutoff``."""
    old_bits = int(meta["bits"])
    if pbits:
        low_hash, high_hash = p << (64 - pbits), ((p + 1) << (64 - pbits)) - 1
    else:
        low_hash, high_hash = 0, (1 << 64) - 1
    low, high = low_hash >> (64 - old_bits), high_hash >> (64 - old_bits)
    texts = pa.array(list(reader.bucket_range(NUMBERS, low, high)), pa.string())
    old = records.split_records(texts)
    if len(old) == 0:
        return old
    old = old.filter(pc.greater_equal(pc.utf8_slice_codeunits(old, 11, 21), cutoff))
    if old_bits < pbits:  # old buckets wider than this partition: keep its own records
        number = pc.utf8_slice_codeunits(old, records.BODY_START, records.BODY_START + 10)
        old = old.filter(pa.array(keys.top_bits(keys.key_hashes(number), pbits) == p))
    return old


def _merge_numbers(new_rows: pa.Table, old: pa.Array, run_date: str
                   ) -> tuple[pa.Array, np.ndarray, pa.Array]:
    """This partition's records: this run's with the first run kept from the previous
    index, then the previous records this run no longer has. Returns (records, their
    hashes, the carried records)."""
    run = pa.scalar(run_date, pa.string())
    new = {name: new_rows.column(name).combine_chunks() for name in new_rows.column_names}
    if len(old) == 0:
        packed = records.pack(run, run, new["body"])
        return packed, new["hash"].to_numpy(), old
    fixed = records.fixed_fields(old)
    telcos = pc.unique(pa.concat_arrays([new["telco"], fixed["telco"]]))
    if len(telcos) >= _MAX_TELCOS:
        raise ValueError(f"more than {_MAX_TELCOS} telcos")
    new_id = _identities(new["telco"], new["msisdn"], telcos)
    old_id = _identities(fixed["telco"], fixed["msisdn"], telcos)
    old_first = pc.cast(pc.cast(fixed["first_run"], pa.date32()), pa.int32()).to_numpy()
    order = np.lexsort((old_first, old_id))  # per identity, the earliest first run first
    ids, first = old_id[order], old_first[order]
    start = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    unique, first = ids[start], first[start]
    at = np.minimum(np.searchsorted(unique, new_id), len(unique) - 1)
    found = unique[at] == new_id
    today = np.int32((date.fromisoformat(run_date) - date(1970, 1, 1)).days)
    first_run = pc.cast(pa.array(np.where(found, first[at], today).astype(np.int32),
                                 pa.int32()).cast(pa.date32()), pa.string())
    new_sorted = np.sort(new_id)
    at = np.minimum(np.searchsorted(new_sorted, old_id), max(len(new_sorted) - 1, 0))
    still = new_sorted[at] == old_id if len(new_sorted) else np.zeros(len(old_id), bool)
    carried = old.filter(pa.array(~still))
    packed = pa.concat_arrays([records.pack(first_run, run, new["body"]), carried])
    carried_hash = keys.key_hashes(pc.utf8_slice_codeunits(
        carried, records.BODY_START, records.BODY_START + 10))
    return packed, np.concatenate([new["hash"].to_numpy(), carried_hash]), carried


def _previous(reader: IndexReader) -> dict[str, str] | None:
    try:
        meta = reader.meta(refresh=True)
    except IndexUnavailableError:
        return None
    return meta if meta.get("format") == FORMAT else None


def build_index(results: RunResults, run_date: str, store: Store, *,
                records_per_bucket: int = 16, partition_rows: int = 500_000,
                keep_unseen_days: int = 365, work_dir: Path | None = None,
                batch_rows: int = 131_072, results_digest: str = "") -> dict:
    """Build the index of ``results`` (run ``run_date``) merged with the current one, and
    swap it in (any pending build is dropped). Returns counts (no citizen data).
    ``results_digest``: recorded in its meta (``results``), as a pending build's is."""
    return _locked_build(results, run_date, store, None, results_digest, records_per_bucket,
                         partition_rows, keep_unseen_days, work_dir, batch_rows)


def stage_index(results: RunResults, run_date: str, store: Store, *,
                records_per_bucket: int = 16, partition_rows: int = 500_000,
                keep_unseen_days: int = 365, work_dir: Path | None = None,
                batch_rows: int = 131_072, results_digest: str = "") -> dict:
    """Build the index of ``results`` (run ``run_date``, not published yet) merged with
    the current one, exactly as ``build_index`` would, but leave it pending: ``swap_staged``
    swaps it in once the run is published and if the index it was merged with is still
    the current one. Any earlier pending build is dropped. Returns counts."""
    return _locked_build(results, run_date, store, run_date, results_digest,
                         records_per_bucket, partition_rows, keep_unseen_days, work_dir,
                         batch_rows)


def swap_staged(run_date: str, store: Store, results_digest: str, *,
                work_dir: Path | None = None) -> dict | None:
    """Swap in the build staged for run ``run_date`` if it is still what a build now would
    give: staged for this run, from results whose digest is ``results_digest`` (the
    published files'), merged with the index generation that is current now. Returns its
    counts, or None (why logged) after dropping a stale one: then build in full."""
    started = time.perf_counter()
    with build_lock(store, _work_root(store, work_dir)):
        pending = pending_meta(store, run_date)
        if pending is None:
            log.info("lookup index %s: no pending build, building from the published run",
                     run_date)
            return None
        reader = IndexReader(store)
        try:
            current = _generation(reader)
        finally:
            reader.close()
        why = ("it is for another run" if pending.get("run_date") != run_date
               else "it was built with another format" if pending.get("format") != FORMAT
               else "the index changed since it was built"
               if pending.get("merged_with") != current
               else "its results are not the published ones"
               if pending.get("results") != results_digest else "")
        if why:
            drop_pending(store)
            log.warning("lookup index %s: pending build dropped (%s), building from the "
                        "published run", run_date, why)
            return None
        swap_pending(store, run_date)
    counts = {k: int(pending[k]) for k in _COUNTS}
    counts.update(seconds=round(time.perf_counter() - started, 2), run_date=run_date,
                  bits=int(pending["bits"]), staged=True)
    log.info("lookup index %s: pending build swapped in, %d subscriptions (%d carried from "
             "earlier runs), %d document entries, %.2fs", run_date, counts["subscriptions"],
             counts["carried"], counts["document_entries"], counts["seconds"])
    return counts


_COUNTS = ("subscriptions", "this_run", "carried", "without_number", "document_entries")


def _work_root(store: Store, work_dir: Path | None) -> Path:
    return Path(work_dir or (sqlite_file(store) or Path(tempfile.gettempdir()) / "x").parent)


def _generation(reader: IndexReader) -> str:
    """The generation of the current index (any format), "" when there is none."""
    try:
        return reader.meta(refresh=True).get("generation", "")
    except IndexUnavailableError:
        return ""


def _locked_build(results: RunResults, run_date: str, store: Store, pending: str | None,
                  results_digest: str, records_per_bucket: int, partition_rows: int,
                  keep_unseen_days: int, work_dir: Path | None, batch_rows: int) -> dict:
    """The build, under ``build_lock``: swapped in, or left pending for run ``pending``."""
    started = time.perf_counter()
    work_root = _work_root(store, work_dir)
    with build_lock(store, work_root):
        drop_pending(store)  # a build not swapped in (its run not published) or stale
        reader = IndexReader(store)
        merged_with = _generation(reader)
        previous = _previous(reader)
        if previous is not None and previous.get("run_date", "") > run_date:
            reader.close()
            raise ValueError(f"the look-up index already holds run {previous['run_date']}, "
                             f"later than {run_date}: refusing to go back")
        # Mostly the same subscriptions as the previous index, plus the few that left.
        expected = max(results.num_rows, int(previous["subscriptions"]) if previous else 0)
        pbits = _bits_for(expected / partition_rows)
        bits = max(pbits, _bits_for(expected / records_per_bucket), 1)
        cutoff = (date.fromisoformat(run_date) - timedelta(days=keep_unseen_days)).isoformat()
        folder = Path(tempfile.mkdtemp(prefix=".lookup-build-", dir=work_root))
        writer = IndexWriter(store)
        try:
            counts = _build(results, run_date, reader, previous, writer, folder, pbits, bits,
                            cutoff, batch_rows)
            meta = {"format": FORMAT, "generation": uuid.uuid4().hex,
                    "run_date": run_date, "bits": str(bits), "merged_with": merged_with,
                    "results": results_digest,
                    "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    **{k: str(v) for k, v in counts.items()}}
            if pending is None:
                writer.publish(meta)
            else:
                writer.stage(meta, pending)
        except BaseException:
            writer.abort()
            raise
        finally:
            reader.close()
            shutil.rmtree(folder, ignore_errors=True)
    counts.update(seconds=round(time.perf_counter() - started, 2), run_date=run_date,
                  bits=bits, partitions=1 << pbits)
    log.info("lookup index %s%s: %d subscriptions (%d carried from earlier runs), %d "
             "document entries, %.1fs", run_date, " (pending)" if pending else "",
             counts["subscriptions"], counts["carried"], counts["document_entries"],
             counts["seconds"])
    return counts


def _build(results: RunResults, run_date: str, reader: IndexReader,
           previous: dict[str, str] | None, writer: IndexWriter, folder: Path, pbits: int,
           bits: int, cutoff: str, batch_rows: int) -> dict[str, int]:
    numbers = _Spill(folder, "numbers", _NUMBER_SPILL, pbits)
    documents = _Spill(folder, "documents", _DOCUMENT_SPILL, pbits)
    counts = {"subscriptions": 0, "this_run": 0, "carried": 0, "without_number": 0,
              "document_entries": 0}
    run = pa.scalar(run_date, pa.string())
    clock = time.perf_counter()

    def pass1(batch: pa.RecordBatch) -> tuple[list, list, int, int]:
        """This batch's records split by number hash, and its document entries by
        document hash (a record without a number goes whole to the documents)."""
        body = records.body_columns(batch)
        packed = records.pack(*body.values())
        msisdn = keys.without_nulls(body["msisdn"])
        numbered = pc.is_valid(msisdn)
        unnumbered = pc.invert(numbered)
        number = msisdn.filter(numbered)
        number_parts = numbers.split(pa.table({
            "hash": keys.key_hashes(number), "telco": body["telco"].filter(numbered),
            "msisdn": number, "body": packed.filter(numbered)}))
        documents_of = [body["id_number"], body["citizen_id"]]
        entries = _references([d.filter(numbered) for d in documents_of], number)
        whole = records.pack(run, run, packed.filter(unnumbered))
        entries = pa.concat_tables([entries, _document_entries(
            [d.filter(unnumbered) for d in documents_of],
            lambda doc, keep: whole.filter(keep))])
        return number_parts, documents.split(entries), len(whole), entries.num_rows

    for number_parts, document_parts, unnumbered, entries in ahead(
            pass1, results.batches(records.RESULT_COLUMNS, batch_rows=batch_rows),
            name="lookup-build"):
        numbers.write(number_parts)
        documents.write(document_parts)
        counts["this_run"] += unnumbered + sum(t.num_rows for _, t in number_parts)
        counts["without_number"] += unnumbered
        counts["document_entries"] += entries
    numbers.close()
    counts["pass1_ms"], clock = int(1000 * (time.perf_counter() - clock)), time.perf_counter()

    def pass2(p: int) -> tuple[list, list, int]:
        """Partition ``p`` merged with the previous index, grouped by bucket; the carried
        records' document entries."""
        new = numbers.read(p)
        old = _old_partition(reader, previous, pbits, p, cutoff) if previous \
            else pa.array([], pa.string())
        packed, hashes, carried = _merge_numbers(new, old, run_date)
        parts: list = []
        if len(carried):
            fields = records.record_fields(carried, ("msisdn", "id_number", "citizen_id"))
            parts = documents.split(_references([fields["id_number"], fields["citizen_id"]],
                                                fields["msisdn"]))
        return _bucket_rows(hashes, packed, bits), parts, len(carried)

    for rows, document_parts, carried in ahead(pass2, range(1 << pbits), name="lookup-build"):
        writer.insert(NUMBERS, rows)
        documents.write(document_parts)
        counts["carried"] += carried
        counts["document_entries"] += sum(t.num_rows for _, t in document_parts)
    counts["subscriptions"] = counts["this_run"] + counts["carried"]
    documents.close()
    counts["pass2_ms"], clock = int(1000 * (time.perf_counter() - clock)), time.perf_counter()

    def pass3(p: int) -> list:
        entries = documents.read(p)
        return _bucket_rows(entries["hash"].to_numpy(), entries["entry"], bits)

    for rows in ahead(pass3, range(1 << pbits), name="lookup-build"):
        writer.insert(DOCUMENTS, rows)
    counts["pass3_ms"] = int(1000 * (time.perf_counter() - clock))
    return counts


# --- reading ----------------------------------------------------------------------------


def find_number(reader: IndexReader, number: str) -> tuple[dict[str, str], list[dict]]:
    """(index meta, the record of every subscription whose number is ``number``)."""
    meta, texts = reader.buckets(NUMBERS, [keys.key_hash(number)])
    found = [r for text in texts for r in records.unpack_bucket(text)[0]
             if r["msisdn"] == number]
    return meta, found


def find_document(reader: IndexReader, document: str) -> tuple[dict[str, str], list[dict]]:
    """(index meta, the record of every subscription whose document as sent, or verified
    citizen, is ``document``), across telcos."""
    for _ in range(3):
        meta, texts = reader.buckets(DOCUMENTS, [keys.key_hash(document)])
        found, numbers = [], set()
        for text in texts:
            whole, references = records.unpack_bucket(text)
            found += [r for r in whole if document in (r["id_number"], r["citizen_id"])]
            numbers |= {number for doc, number in references if doc == document}
        if not numbers:
            return meta, found
        try:
            _, number_texts = reader.buckets(NUMBERS, [keys.key_hash(n) for n in numbers],
                                             meta)
        except IndexChangedError:
            continue
        found += [r for text in number_texts for r in records.unpack_bucket(text)[0]
                  if r["msisdn"] in numbers and document in (r["id_number"], r["citizen_id"])]
        return meta, found
    raise IndexChangedError("the look-up index kept changing during the look-up")
