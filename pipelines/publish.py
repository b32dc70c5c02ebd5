"""Publish stage: per-telco correction lists, the manifest, and the atomic swap.

A telco's correction list holds only that telco's flagged subscriptions and
only what the telco itself sent (number, its own record reference, the
document it recorded) plus reason codes: never registry data such as the
registry name, date of birth, or a citizen id the telco did not send.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from pipelines.reasons import reason_descriptions
from pipelines.storage import sha256_of, write_bytes

# Flags a telco can act on; NEEDS_REVIEW is the compliance team's own business.
TELCO_ACTIONABLE_EXCLUDES = ("NEEDS_REVIEW",)

CORRECTION_COLUMNS = (
    "telco", "source_file", "source_row", "msisdn", "msisdn_as_sent", "id_type",
    "id_number_as_sent", "activation_date", "status", "reason_codes", "reason_vi", "reason_en",
)


def _describe(flag_lists: pa.ListArray, language: str) -> pa.Array:
    """Join the description of each row's flags, vectorised through list ops."""
    descriptions = reason_descriptions()
    codes = list(descriptions)
    texts = pa.array([descriptions[c][language] for c in codes], pa.string())
    flat = pc.list_flatten(flag_lists)
    described = pc.take(texts, pc.index_in(flat, value_set=pa.array(codes)))
    rebuilt = pa.ListArray.from_arrays(flag_lists.offsets, described)
    return pc.binary_join(rebuilt, " | ")


def correction_list(results: pa.Table, telco: str) -> pa.Table:
    rows = results.filter(pc.equal(results["telco"], telco))
    flags = rows["flags"].combine_chunks()
    flat = pc.list_flatten(flags)
    keep_flat = pc.invert(pc.is_in(flat, value_set=pa.array(TELCO_ACTIONABLE_EXCLUDES)))
    parents = pc.list_parent_indices(flags)
    telco_flags = pa.ListArray.from_arrays(
        pa.array(_offsets_after_filter(parents, keep_flat, len(flags))), pc.filter(flat, keep_flat)
    )
    has_action = pc.greater(pc.list_value_length(telco_flags), 0)
    rows = rows.filter(has_action)
    telco_flags = telco_flags.filter(has_action)
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
        }
    ).sort_by([("source_row", "ascending")])


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
