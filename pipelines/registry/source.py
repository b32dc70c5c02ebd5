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
    if not path.exists():
        raise RegistryError(f"{path}: citizen registry snapshot not found")
    try:
        schema = objectstore.read_parquet_schema(path)  # a local path or a URL
    except (pa.ArrowInvalid, OSError) as exc:
        raise RegistryError(f"{path}: not a readable Parquet file: {exc}") from exc
    missing = [c for c in REGISTRY_FIELDS if c not in schema.names]
    if missing:
        raise RegistryError(f"{path}: missing column(s) {missing}; has {schema.names}")
    raw = objectstore.read_parquet(path, columns=list(REGISTRY_FIELDS))

    citizen_id = ids.clean_document_number(pc.cast(raw["citizen_id"], pa.string()))
    if citizen_id.null_count:
        raise RegistryError(f"{path}: {citizen_id.null_count} row(s) without citizen_id")
    if pc.count_distinct(citizen_id).as_py() != len(citizen_id):
        raise RegistryError(f"{path}: citizen_id is not unique")
    birth_text = pc.cast(raw["date_of_birth"], pa.string())
    birth = dates.parse_dates(birth_text, REGISTRY_DATE_FORMATS)
    if birth.unparsed.any():
        raise RegistryError(
            f"{path}: {int(birth.unparsed.sum())} date_of_birth value(s) not in "
            f"{list(REGISTRY_DATE_FORMATS)}"
        )
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
    log.info("registry: %d citizens loaded from %s", table.num_rows, path.name)
    return table
