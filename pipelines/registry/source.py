"""Loading the citizen registry snapshot into the typed, normalised form matching needs."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from matching import dates, ids, normalize
from pipelines.errors import RegistryError
from pipelines.schema import REGISTRY_FIELDS
from pipelines.storage import objectstore

log = logging.getLogger("simrecon.registry")

REGISTRY_DATE_FORMATS = ("%Y-%m-%d", "%Y")


def load_registry(path: Path) -> pa.Table:
    """Read and normalise the registry; any contract breach stops the run."""
    check_columns(path)
    raw = objectstore.read_parquet(path, columns=list(REGISTRY_FIELDS))
    table, problems = normalise(raw)
    check(path, problems)
    if pc.count_distinct(table["citizen_id"]).as_py() != table.num_rows:
        raise RegistryError(f"{path}: citizen_id is not unique")
    log.info("registry: %d citizens loaded from %s", table.num_rows, path.name)
    return table


def check_columns(path: Path | objectstore.RemoteFile) -> None:
    """Stop when the source is not a readable Parquet file with the registry's columns."""
    if not path.exists():
        raise RegistryError(f"{path}: citizen registry snapshot not found")
    try:
        schema = objectstore.read_parquet_schema(path)  # a local path or a URL
    except (pa.ArrowInvalid, OSError) as exc:
        raise RegistryError(f"{path}: not a readable Parquet file: {exc}") from exc
    missing = [c for c in REGISTRY_FIELDS if c not in schema.names]
    if missing:
        raise RegistryError(f"{path}: missing column(s) {missing}; has {schema.names}")


def normalise(raw: pa.Table | pa.RecordBatch) -> tuple[pa.Table, dict[str, int]]:
    """Raw registry rows (all of them or one batch) in typed, normalised form, and the
    count of each contract breach (``check`` turns them into the error): a batch at a
    time, a registry of any size is read in bounded memory."""
    citizen_id = ids.clean_document_number(pc.cast(raw["citizen_id"], pa.string()))
    birth = dates.parse_dates(pc.cast(raw["date_of_birth"], pa.string()),
                              REGISTRY_DATE_FORMATS)
    death = raw["date_of_death"]
    if not pa.types.is_date32(death.type):
        death = dates.parse_dates(pc.cast(death, pa.string()), ("%Y-%m-%d",)).value
    table = pa.table(
        {
            "citizen_id": citizen_id,
            "legacy_id": ids.clean_document_number(pc.cast(raw["legacy_id"], pa.string())),
            "full_name": normalize.clean_whitespace(normalize.nfc(
                pc.cast(raw["full_name"], pa.string()))),
            "date_of_birth": birth.value,
            "dob_precision": birth.precision,
            "gender": pc.cast(raw["gender"], pa.string()),
            "date_of_death": death,
        }
    )
    return table, {"without_citizen_id": citizen_id.null_count,
                   "unparsed_birth_dates": int(birth.unparsed.sum())}


def check(path: Path | objectstore.RemoteFile, problems: dict[str, int]) -> None:
    """Stop on any contract breach ``normalise`` counted (whole-registry counts)."""
    if problems["without_citizen_id"]:
        raise RegistryError(f"{path}: {problems['without_citizen_id']} row(s) without "
                            "citizen_id")
    if problems["unparsed_birth_dates"]:
        raise RegistryError(
            f"{path}: {problems['unparsed_birth_dates']} date_of_birth value(s) not in "
            f"{list(REGISTRY_DATE_FORMATS)}"
        )
