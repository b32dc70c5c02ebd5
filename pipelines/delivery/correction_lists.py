"""What a telco receives: its correction list, written by streaming its rows.

A telco's correction list holds only that telco's flagged subscriptions and
only what the telco itself sent (number, its own record reference, the
document it recorded) plus reason codes: never registry data such as the
registry name, date of birth, or a citizen id the telco did not send.

Each flagged row also says whether its flags are new or persisting since the
telco's last list (``pipelines.correction_cycle.history``), what the telco must do and
by when (``pipelines.correction_cycle.deadlines``). With the CSV come, per telco, an
XLSX workbook (the list, the flags resolved since the last list, the quarantined rows
to resend, the reason codes), ``resolved/<telco>.csv``, ``resend/<telco>.csv`` and a
delivery manifest with counts and sha256 (``<telco>.manifest.json``).

A telco's list is written a slice of rows at a time, in ``source_row`` order, into the
CSV and the workbook together (``write_delivery``): the rows come from the run's
results shard by shard (``pipelines/results/dataset.py``), their new/persisting status
from the telco's flag keys (compact: number and flags as bits), so memory is set by
a slice and the telco's keys, never by the list.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.correction_cycle import compact_keys, deadlines, history
from pipelines.delivery.reasons import reason_descriptions, reason_table
from pipelines.reporting.aggregates import (
    TELCO_ACTIONABLE_BITS,
    bits_to_flags,
    flag_bits,
    flags_array,
)
from pipelines.results.dataset import LEGACY_FILE, RunResults, part_path
from pipelines.storage.files import (
    DIGEST_SUFFIX,
    AtomicCsvWriter,
    AtomicParquetWriter,
    file_digest,
    write_csv,
    write_json,
    write_parquet,
)
from pipelines.storage.xlsx import XlsxWriter

CORRECTION_COLUMNS = (
    "telco", "source_file", "source_row", "msisdn", "msisdn_as_sent", "id_type",
    "id_number_as_sent", "activation_date", "status", "reason_codes", "reason_vi", "reason_en",
    "flag_status", "flagged_runs", "first_seen", "action", "action_vi", "action_en", "deadline",
)
CORRECTION_SCHEMA = pa.schema([
    ("telco", pa.string()), ("source_file", pa.string()), ("source_row", pa.int64()),
    ("msisdn", pa.string()), ("msisdn_as_sent", pa.string()), ("id_type", pa.string()),
    ("id_number_as_sent", pa.string()), ("activation_date", pa.date32()),
    ("status", pa.string()), ("reason_codes", pa.string()), ("reason_vi", pa.string()),
    ("reason_en", pa.string()), ("flag_status", pa.string()), ("flagged_runs", pa.int64()),
    ("first_seen", pa.date32()), ("action", pa.string()), ("action_vi", pa.string()),
    ("action_en", pa.string()), ("deadline", pa.date32())])
RESOLVED_COLUMNS = ("telco", "msisdn", "reason_code", "reason_vi", "reason_en", "first_seen",
                    "flag_status")
RESEND_COLUMNS = ("telco", "source_file", "source_row", "stage", "reason", "detail",
                  "raw_record")
# The list's columns its gate checks (pipelines/quality/facts.py, ``correction_facts``),
# kept as written beside it (``checked_columns``).
CHECKED_COLUMNS = ("telco", "source_row", "reason_codes", "status", "msisdn")
CHECKED_SCHEMA = pa.schema([(name, pa.string()) for name in CHECKED_COLUMNS])
# What a telco's rows need of the results to be listed (their flags come with the keys,
# as bits: the list of flag names is the costliest column to decode).
_RESULT_COLUMNS = ["telco", "source_file", "source_row", "msisdn", "msisdn_raw", "id_type",
                   "id_number", "activation_date", "status"]


def _describe(flag_lists: pa.ListArray, language: str) -> pa.Array:
    """Join the description of each row's flags, vectorised through list ops."""
    descriptions = reason_descriptions()
    codes = list(descriptions)
    texts = pa.array([descriptions[c][language] for c in codes], pa.string())
    flat = pc.list_flatten(flag_lists)
    described = pc.take(texts, pc.index_in(flat, value_set=pa.array(codes)))
    rebuilt = pa.ListArray.from_arrays(flag_lists.offsets, described)
    return pc.binary_join(rebuilt, " | ")


# --- the telco's keys and their history -----------------------------------------------------


def classified_rows(flagged: pa.Table, run_date: str, store: history.Store | None,
                    telco: str) -> tuple[pa.Table, pa.Table, pa.Table]:
    """The telco's keys classified (``write_keys``'s table: each key once, in key order),
    the keys of its last list now resolved (``compact_keys.RESOLVED_SCHEMA``), and per
    listed row (sorted by ``source_row``): its source row, its shard (if ``flagged``
    says), its flags a telco acts on (``bits``), persisting or not, its longest streak and
    its earliest first-seen date.

    Compact throughout (``pipelines/correction_cycle/compact_keys.py``): integer keys and
    Arrow strings, never a Python object per key."""
    listed = flagged.filter(pc.not_equal(pc.bit_wise_and(flagged["flags"],
                                                         TELCO_ACTIONABLE_BITS), 0))
    listed = listed.sort_by("source_row")
    bits = np.asarray(listed["flags"].to_numpy(), dtype=np.int64) & TELCO_ACTIONABLE_BITS
    keys = compact_keys.TelcoKeys.of_rows(telco, listed["number"], bits)
    if store is not None:
        classes, resolved = compact_keys.classify(
            keys, history.previous_keys(store, run_date, telco), run_date)
    else:
        classes = compact_keys.all_new(keys, run_date)
        resolved = compact_keys.RESOLVED_SCHEMA.empty_table()
    persisting, runs, first_seen = compact_keys.per_row(keys, classes, listed.num_rows,
                                                        run_date)
    unique = compact_keys.unique_keys(keys, classes)
    columns = {"source_row": listed["source_row"]}
    if "shard" in listed.column_names:
        columns["shard"] = listed["shard"]
    columns["bits"] = pa.array(bits, pa.int64())
    per_row = pa.table({**columns, "persisting": persisting, "runs": runs,
                        "first_seen": pa.array(first_seen, pa.date32())})
    return unique, resolved, per_row


def correction_rows(rows: pa.Table, classes: pa.Table, run_date: date,
                    policy: deadlines.DeadlinePolicy) -> pa.Table:
    """The list's rows for result ``rows`` (one telco, listed rows only, in source order)
    and their classification ``classes`` (same rows, same order), in the contract's
    columns. The flags are the classification's ``bits`` (``classified_rows``), else the
    rows' own ``flags``."""
    bits = np.asarray(classes["bits"].to_numpy(), dtype=np.int64) \
        if "bits" in classes.column_names \
        else flag_bits(flags_array(rows)) & TELCO_ACTIONABLE_BITS
    # The texts of each distinct set of flags (a handful), then taken per row.
    distinct, inverse = np.unique(bits, return_inverse=True)
    per_row = pa.array(inverse.reshape(-1).astype(np.int32), pa.int32())
    distinct_flags = bits_to_flags(distinct)
    telco_flags = pc.take(distinct_flags, per_row)
    persisting = np.asarray(classes["persisting"].to_numpy(), dtype=bool)
    action, deadline = deadlines.actions(classes["first_seen"], telco_flags, run_date, policy)
    texts = deadlines.ACTION_TEXT
    codes = list(texts)
    picked = pc.index_in(action, value_set=pa.array(codes))
    return pa.table({
        "telco": rows["telco"], "source_file": rows["source_file"],
        "source_row": rows["source_row"], "msisdn": rows["msisdn"],
        "msisdn_as_sent": rows["msisdn_raw"], "id_type": rows["id_type"],
        "id_number_as_sent": rows["id_number"], "activation_date": rows["activation_date"],
        "status": rows["status"],
        "reason_codes": pc.take(pc.binary_join(distinct_flags, "|"), per_row),
        "reason_vi": pc.take(_describe(distinct_flags, "vi"), per_row),
        "reason_en": pc.take(_describe(distinct_flags, "en"), per_row),
        "flag_status": pa.array(np.where(persisting, history.PERSISTING, history.NEW),
                                pa.string()),
        "flagged_runs": classes["runs"], "first_seen": classes["first_seen"],
        "action": action,
        "action_vi": pc.take(pa.array([texts[c]["vi"] for c in codes]), picked),
        "action_en": pc.take(pa.array([texts[c]["en"] for c in codes]), picked),
        "deadline": deadline,
    }, schema=CORRECTION_SCHEMA)


def checked_columns(table: pa.Table) -> pa.Table:
    """The columns of a slice of the list that its gate checks, as the CSV holds them
    read back as text: every value as text, an empty one as null."""
    columns = {}
    for name in CHECKED_COLUMNS:
        text = pc.cast(table[name], pa.string())
        columns[name] = pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)
    return pa.table(columns, schema=CHECKED_SCHEMA)


def resolved_table(resolved: pa.Table) -> pa.Table:
    """The flags of the telco's last list that no longer apply (``resolved``:
    ``compact_keys.RESOLVED_SCHEMA``)."""
    descriptions = reason_descriptions()
    codes = list(descriptions)
    picked = pc.index_in(resolved["flag"], value_set=pa.array(codes, pa.string()))

    def described(language: str) -> pa.Array:
        texts = pa.array([descriptions[c].get(language, "") for c in codes], pa.string())
        return pc.fill_null(pc.take(texts, picked), "")

    return pa.table({
        "telco": resolved["telco"], "msisdn": resolved["msisdn"],
        "reason_code": resolved["flag"], "reason_vi": described("vi"),
        "reason_en": described("en"), "first_seen": resolved["first_seen"],
        "flag_status": pa.repeat(pa.scalar(history.RESOLVED, pa.string()),
                                 resolved.num_rows),
    })


# --- writing a telco's delivery -------------------------------------------------------------


def write_delivery(corrections_dir: Path, telco: str, run_date: str, *,
                   results: RunResults, flagged: pa.Table, quarantine: list[Path],
                   store: history.Store | None, policy: deadlines.DeadlinePolicy,
                   keys_out: Path | None = None, checked_out: Path | None = None,
                   batch_rows: int = 16_384,
                   extra_files: list[Path] | None = None) -> dict:
    """Write ``telco``'s list (CSV and workbook, streamed from ``results`` in source
    order), its resolved and resend lists and its delivery manifest (last); return the
    manifest's counts. ``flagged``: the telco's ``aggregates.flagged_keys`` from every
    shard; ``quarantine``: the telco's quarantine files; ``keys_out``: where the
    classified keys go, for the flag history when the run is published; ``checked_out``:
    where the columns its gate checks go (``checked_columns``), so the gate does not parse
    the list back (written last, once the list is in place); ``extra_files``:
    more files of this delivery, already written under ``corrections_dir`` (its
    verification requests: pipelines/lookup/delivery.py), listed in the manifest."""
    today = date.fromisoformat(run_date)
    keys, resolved, classes = classified_rows(flagged, run_date, store, telco)
    del flagged  # the caller passes it inline: freed before the rows are streamed
    if keys_out is not None:
        write_keys(keys, keys_out)
    del keys
    listed_rows = classes["source_row"]
    csv_path = corrections_dir / f"{telco}.csv"
    csv = AtomicCsvWriter(csv_path, CORRECTION_SCHEMA)
    workbook = XlsxWriter(corrections_dir / f"{telco}.xlsx")
    checked = AtomicParquetWriter(checked_out, CHECKED_SCHEMA, compression="lz4",
                                  statistics=False) if checked_out is not None else None
    new = persisting = 0
    by_action: dict[str, int] = {}
    try:
        sheet = workbook.sheet("corrections", CORRECTION_SCHEMA)
        position = 0
        if len(listed_rows):
            for rows in _listed_rows(results, telco, classes, batch_rows):
                mine = classes.slice(position, rows.num_rows)
                if not mine["source_row"].equals(rows["source_row"]):
                    raise RuntimeError(f"{telco}: the results and the flag keys disagree "
                                       "(rerun the whole date)")
                position += rows.num_rows
                table = correction_rows(rows, mine, today, policy)
                csv.write(table)
                sheet.append(table)
                if checked is not None:
                    checked.write(checked_columns(table))
                status = table["flag_status"]
                persisting += int(pc.sum(pc.equal(status, history.PERSISTING)).as_py() or 0)
                counted = pc.value_counts(table["action"])
                for value, count in zip(counted.field("values").to_pylist(),
                                        counted.field("counts").to_pylist(), strict=True):
                    by_action[value] = by_action.get(value, 0) + count
        if position != len(listed_rows):
            raise RuntimeError(f"{telco}: {len(listed_rows) - position} flagged row(s) not "
                               "found in the results (rerun the whole date)")
        new = position - persisting
        sheet.close()
        resolved_rows = resolved_table(resolved)
        sheet = workbook.sheet("resolved", resolved_rows.schema)
        sheet.append(resolved_rows)
        sheet.close()
        resend = resend_list(quarantine, telco)
        sheet = workbook.sheet("resend", resend.schema)
        sheet.append(resend)
        sheet.close()
        reasons = reason_table()
        sheet = workbook.sheet("reason_codes", reasons.schema)
        sheet.append(reasons)
        sheet.close()
        files = [csv.close(), workbook.close()]
        if checked is not None:
            checked.close()
    except BaseException:
        csv.abort()
        workbook.abort()
        if checked is not None:
            checked.abort()
        raise
    files += [write_csv(resolved_rows, corrections_dir / "resolved" / f"{telco}.csv"),
              write_csv(resend, corrections_dir / "resend" / f"{telco}.csv"),
              *(extra_files or [])]
    counts = {"flagged": position, "new": new, "persisting": persisting,
              "resolved": resolved_rows.num_rows, "resend": resend.num_rows,
              "by_action": dict(sorted(by_action.items()))}
    manifest = {
        "telco": telco, "run_date": run_date, "counts": counts,
        "files": [{"path": f.relative_to(corrections_dir).as_posix(), "bytes": d.bytes,
                   "sha256": d.sha256} for f in files for d in [file_digest(f)]],
    }
    write_json(manifest, corrections_dir / f"{telco}.manifest.json")
    return counts


def _listed_rows(results: RunResults, telco: str, classes: pa.Table,
                 batch_rows: int) -> Iterator[pa.Table]:
    """The results rows of ``classes`` (``classified_rows``) in source order: each shard's
    own rows picked from it, when the flagged keys say which shard holds them."""
    if "shard" not in classes.column_names or not classes.num_rows \
            or results.files == [results.run_dir / LEGACY_FILE]:
        wanted = pc.field("source_row").isin(classes["source_row"])
        yield from results.telco_rows(telco, _RESULT_COLUMNS, filter=wanted,
                                      batch_rows=batch_rows)
        return
    shard = np.asarray(classes["shard"].to_numpy(), dtype=np.int64)
    source_row = np.asarray(classes["source_row"].to_numpy(), dtype=np.int64)
    order = np.argsort(shard, kind="stable")  # per shard, still in source order
    bounds = np.searchsorted(shard[order], np.arange(shard.max() + 2))
    rows_of = {part_path(results.run_dir, k): source_row[order[bounds[k]:bounds[k + 1]]]
               for k in range(len(bounds) - 1) if bounds[k + 1] > bounds[k]}
    yield from results.telco_rows(telco, _RESULT_COLUMNS, batch_rows=batch_rows,
                                  rows_of=rows_of)


def resend_list(quarantine: list[Path], telco: str) -> pa.Table:
    """The telco's quarantined rows: it must fix and resend them (rows that could not be
    read: a small share of an export)."""
    parts = [pq.read_table(path, columns=list(RESEND_COLUMNS),
                           filters=pc.field("telco") == telco) for path in quarantine]
    if not parts:
        from pipelines.intake.quarantine import empty_quarantine

        return empty_quarantine().select(list(RESEND_COLUMNS))
    table = pa.concat_tables(parts)
    return table.sort_by([("source_row", "ascending"), ("stage", "ascending")])


def write_keys(keys: pa.Table, path: Path) -> Path:
    """The telco's classified flag keys (``classified_rows``: each key once, rows sharing
    a number share its keys, in key order), as the flag history records them at publish,
    so the history's index is appended to when they are recorded."""
    return write_parquet(keys, path)


def describe_outputs(root: Path) -> list[dict]:
    """Every file under the run folder with its size, sha256 and row count: the digests
    recorded when the files were written (``pipelines.storage.files``), computed only
    for the small files written whole. The sidecars are removed once read."""
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative == "manifest.json" or "/." in f"/{relative}":
            continue
        digest = file_digest(path)
        entry = {"path": relative, "bytes": digest.bytes, "sha256": digest.sha256}
        if path.suffix == ".parquet":
            entry["rows"] = pq.ParquetFile(path).metadata.num_rows
        elif path.suffix == ".csv":
            entry["rows"] = digest.rows if digest.rows is not None else _csv_rows(path)
        entries.append(entry)
    for sidecar in root.rglob(f".*{DIGEST_SUFFIX}"):
        sidecar.unlink()
    return entries


def _csv_rows(path: Path) -> int:
    with path.open("rb") as handle:
        return max(sum(1 for _ in handle) - 1, 0)
