"""Publish stage: per-telco correction lists, the manifest, and the atomic swap.

A telco's correction list holds only that telco's flagged subscriptions and
only what the telco itself sent (number, its own record reference, the
document it recorded) plus reason codes: never registry data such as the
registry name, date of birth, or a citizen id the telco did not send.

Each flagged row also says whether its flags are new or persisting since the
telco's last list (``pipelines.correction_cycle.history``), what the telco must do and by when
(``pipelines.correction_cycle.deadlines``). With the CSV come, per telco, an XLSX workbook (the
list, the flags resolved since the last list, the quarantined rows to resend,
the reason codes), ``resolved/<telco>.csv``, ``resend/<telco>.csv`` and a
delivery manifest with counts and sha256 (``<telco>.manifest.json``).
"""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from pipelines.correction_cycle import deadlines, history
from pipelines.delivery.reasons import reason_descriptions, reason_table
from pipelines.storage.files import sha256_of, write_bytes, write_json
from pipelines.storage.xlsx import write_xlsx

# Flags a telco can act on; NEEDS_REVIEW is the compliance team's own business.
TELCO_ACTIONABLE_EXCLUDES = ("NEEDS_REVIEW",)

CORRECTION_COLUMNS = (
    "telco", "source_file", "source_row", "msisdn", "msisdn_as_sent", "id_type",
    "id_number_as_sent", "activation_date", "status", "reason_codes", "reason_vi", "reason_en",
    "flag_status", "flagged_runs", "first_seen", "action", "action_vi", "action_en", "deadline",
)
RESOLVED_COLUMNS = ("telco", "msisdn", "reason_code", "reason_vi", "reason_en", "first_seen",
                    "flag_status")
RESEND_COLUMNS = ("telco", "source_file", "source_row", "stage", "reason", "detail",
                  "raw_record")


def _describe(flag_lists: pa.ListArray, language: str) -> pa.Array:
    """Join the description of each row's flags, vectorised through list ops."""
    descriptions = reason_descriptions()
    codes = list(descriptions)
    texts = pa.array([descriptions[c][language] for c in codes], pa.string())
    flat = pc.list_flatten(flag_lists)
    described = pc.take(texts, pc.index_in(flat, value_set=pa.array(codes)))
    rebuilt = pa.ListArray.from_arrays(flag_lists.offsets, described)
    return pc.binary_join(rebuilt, " | ")


def _telco_rows(results: pa.Table, telco: str) -> tuple[pa.Table, pa.ListArray]:
    """The telco's rows with at least one flag it can act on, and those flags."""
    rows = results.filter(pc.equal(results["telco"], telco))
    flags = rows["flags"].combine_chunks()
    if isinstance(flags, pa.ChunkedArray):  # an empty table has no chunk to combine
        flags = pa.array([], rows.schema.field("flags").type)
    flat = pc.list_flatten(flags)
    keep_flat = pc.invert(pc.is_in(flat, value_set=pa.array(TELCO_ACTIONABLE_EXCLUDES)))
    parents = pc.list_parent_indices(flags)
    telco_flags = pa.ListArray.from_arrays(
        pa.array(_offsets_after_filter(parents, keep_flat, len(flags))), pc.filter(flat, keep_flat)
    )
    has_action = pc.greater(pc.list_value_length(telco_flags), 0)
    return rows.filter(has_action), telco_flags.filter(has_action)


def tracked_keys(results: pa.Table, telco: str) -> pd.DataFrame:
    """The telco's ``(telco, msisdn, flag)`` keys, as recorded in the flag history."""
    rows, telco_flags = _telco_rows(results, telco)
    return history.flag_keys(rows, telco_flags)


def correction_list(results: pa.Table, telco: str, *, run_date: str | None = None,
                    store: Path | None = None,
                    policy: deadlines.DeadlinePolicy | None = None) -> pa.Table:
    """One row per flagged subscription of ``telco``, in the contract's columns.

    With ``store`` the rows are classified against the flag history (else all
    are new); ``run_date`` and ``policy`` give the action and deadline.
    """
    rows, telco_flags = _telco_rows(results, telco)
    today = date.fromisoformat(run_date) if run_date else date.today()
    keys = history.flag_keys(rows, telco_flags)
    if store is not None and run_date:
        keys, _ = history.classify(store, run_date, keys, [telco])
    else:
        keys = keys.assign(tracking=history.NEW, runs=1, first_seen=today)
    n = rows.num_rows
    persisting = np.zeros(n, dtype=bool)
    runs = np.ones(n, dtype=np.int64)
    first_seen = np.full(n, np.datetime64(today, "D"))
    if len(keys):
        index = keys["row"].to_numpy()
        np.logical_or.at(persisting, index, (keys["tracking"] == history.PERSISTING).to_numpy())
        np.maximum.at(runs, index, keys["runs"].to_numpy(dtype=np.int64))
        np.minimum.at(first_seen, index,
                      keys["first_seen"].to_numpy(dtype="datetime64[D]"))
    seen = pa.array(first_seen, pa.date32())
    action, deadline = deadlines.actions(seen, telco_flags, today,
                                         policy or deadlines.DeadlinePolicy())
    texts = deadlines.ACTION_TEXT
    codes = list(texts)
    picked = pc.index_in(action, value_set=pa.array(codes))
    action_vi = pc.take(pa.array([texts[c]["vi"] for c in codes]), picked)
    action_en = pc.take(pa.array([texts[c]["en"] for c in codes]), picked)
    return pa.table(
        {
            "telco": rows["telco"],
            "source_file": rows["source_file"],
            "source_row": rows["source_row"],
            "msisdn": rows["msisdn"],
            "msisdn_as_sent": rows["msisdn_raw"],
            "id_type": rows["id_type"],
            "id_number_as_sent": rows["id_number"],
            "activation_date": rows["activation_date"],
            "status": rows["status"],
            "reason_codes": pc.binary_join(telco_flags, "|"),
            "reason_vi": _describe(telco_flags, "vi"),
            "reason_en": _describe(telco_flags, "en"),
            "flag_status": pa.array(np.where(persisting, history.PERSISTING, history.NEW),
                                    pa.string()),
            "flagged_runs": pa.array(runs, pa.int64()),
            "first_seen": seen,
            "action": action,
            "action_vi": action_vi,
            "action_en": action_en,
            "deadline": deadline,
        }
    ).sort_by([("source_row", "ascending")])


def resolved_list(results: pa.Table, telco: str, run_date: str, store: Path) -> pa.Table:
    """The telco's flags of its last list that no longer apply."""
    _, resolved = history.classify(store, run_date, tracked_keys(results, telco), [telco])
    descriptions = reason_descriptions()
    return pa.table({
        "telco": pa.array(resolved["telco"].tolist(), pa.string()),
        "msisdn": pa.array(resolved["msisdn"].tolist(), pa.string()),
        "reason_code": pa.array(resolved["flag"].tolist(), pa.string()),
        "reason_vi": pa.array([descriptions.get(f, {}).get("vi", "") for f in resolved["flag"]],
                              pa.string()),
        "reason_en": pa.array([descriptions.get(f, {}).get("en", "") for f in resolved["flag"]],
                              pa.string()),
        "first_seen": pa.array([str(d) for d in resolved["first_seen"]], pa.string()),
        "flag_status": pa.array([history.RESOLVED] * len(resolved), pa.string()),
    })


def resend_list(quarantine: pa.Table, telco: str) -> pa.Table:
    """The telco's quarantined rows: it must fix and resend them."""
    rows = quarantine.filter(pc.equal(quarantine["telco"], telco))
    return rows.select(list(RESEND_COLUMNS)).sort_by([("source_row", "ascending")])


def _offsets_after_filter(parents: pa.Array, keep: pa.Array, n: int) -> np.ndarray:
    kept_parents = np.asarray(pc.filter(parents, keep).to_numpy(zero_copy_only=False))
    counts = np.bincount(kept_parents, minlength=n) if kept_parents.size else np.zeros(n, int)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return offsets


def write_correction_csv(table: pa.Table, path: Path) -> Path:
    """CSV in UTF-8 with BOM, so Excel shows Vietnamese text correctly."""
    buffer = io.BytesIO()
    pa_csv.write_csv(table, buffer, write_options=pa_csv.WriteOptions(include_header=True))
    return write_bytes(b"\xef\xbb\xbf" + buffer.getvalue(), path)


def describe_outputs(root: Path) -> list[dict]:
    """Every file under the run folder with its size, sha256 and row count."""
    entries = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative == "manifest.json" or "/." in f"/{relative}":
            continue
        entry = {"path": relative, "bytes": path.stat().st_size, "sha256": sha256_of(path)}
        if path.suffix == ".parquet":
            entry["rows"] = pq.ParquetFile(path).metadata.num_rows
        elif path.suffix == ".csv":
            with path.open("rb") as handle:
                entry["rows"] = max(sum(1 for _ in handle) - 1, 0)
        entries.append(entry)
    return entries


def write_delivery(corrections_dir: Path, telco: str, listed: pa.Table, resolved: pa.Table,
                   resend: pa.Table, run_date: str,
                   extra_files: list[Path] | None = None) -> tuple[list[Path], Path]:
    """The telco's XLSX, resolved and resend CSVs and its delivery manifest (written last).
    ``extra_files``: more files of this telco's delivery, already written under
    ``corrections_dir`` (its verification requests: pipelines/lookup/delivery.py)."""
    files = [
        corrections_dir / f"{telco}.csv",
        write_xlsx({"corrections": listed, "resolved": resolved, "resend": resend,
                    "reason_codes": reason_table()}, corrections_dir / f"{telco}.xlsx"),
        write_correction_csv(resolved, corrections_dir / "resolved" / f"{telco}.csv"),
        write_correction_csv(resend, corrections_dir / "resend" / f"{telco}.csv"),
        *(extra_files or []),
    ]
    status = listed["flag_status"].to_pylist()
    actions = listed["action"].to_pylist()
    manifest = {
        "telco": telco,
        "run_date": run_date,
        "counts": {
            "flagged": listed.num_rows,
            "new": status.count(history.NEW),
            "persisting": status.count(history.PERSISTING),
            "resolved": resolved.num_rows,
            "resend": resend.num_rows,
            "by_action": {a: actions.count(a) for a in sorted(set(actions))},
        },
        "files": [{"path": f.relative_to(corrections_dir).as_posix(), "bytes": f.stat().st_size,
                   "sha256": sha256_of(f)} for f in files],
    }
    return files, write_json(manifest, corrections_dir / f"{telco}.manifest.json")
