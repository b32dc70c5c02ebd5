"""The candidate search's index of each registry shard, written with the snapshot.

Every search task (one registry shard x one batch of searched rows) needs the shard's
half of the candidate plan: its integer blocking keys, sorted, and its CCCD and CMND
numbers as sorted integers (``matching.candidates.RegistryIndex``). Made per task, that
was most of a task's time at 10M (about 4 s a task, 48 tasks), and the same every time:
it depends on the shard alone. So it is made once per shard when the snapshot is
prepared and read by each task (three small Parquet files beside the shard's, listed in
the manifest with their sha256 like every other file). A snapshot prepared before these
files existed still works: the search then makes the index itself (slower, same result).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from matching.candidates import RegistryIndex, registry_index, registry_parts
from pipelines.storage.files import write_parquet

# What the index is made of (a subset of the shard's columns).
INDEX_SOURCE_COLUMNS = ("citizen_id", "legacy_id", "full_name", "date_of_birth",
                        "dob_precision", "gender")
_PARTS = ("given", "surname", "canonical")


def index_files(shard: int) -> dict[str, str]:
    """The index's files of one shard, relative to the snapshot folder."""
    folder = f"shard={shard:03d}"
    return {"blocks": f"{folder}/search-blocks.parquet",
            "numbers": f"{folder}/search-numbers.parquet",
            "names": f"{folder}/search-names.parquet"}


def index_of_shard(shard: pa.Table) -> RegistryIndex:
    """The index of a shard (a table with :data:`INDEX_SOURCE_COLUMNS`)."""
    parts = registry_parts(shard["full_name"], shard["date_of_birth"],
                           shard["dob_precision"], shard["gender"])
    return registry_index(parts, shard["citizen_id"].combine_chunks(),
                          shard["legacy_id"].combine_chunks())


def write_index(index: RegistryIndex, root: Path, shard: int) -> dict[str, int]:
    """Write ``index`` as shard ``shard``'s files under ``root``; rows per file."""
    files = index_files(shard)
    blocks = pa.table({"key": pa.array(index.block_keys, pa.int64()),
                       "citizen": pa.array(index.block_citizens, pa.int32())})
    widths, values, citizens = [], [], []
    for width, (known, rows) in sorted(index.numbers.items()):
        widths.append(np.full(len(known), width, np.int8))
        values.append(known)
        citizens.append(rows)
    numbers = pa.table({"width": pa.array(np.concatenate(widths), pa.int8()),
                        "value": pa.array(np.concatenate(values), pa.int64()),
                        "citizen": pa.array(np.concatenate(citizens), pa.int32())})
    dictionaries = [(part, index.dictionaries[part]) for part in _PARTS]
    dictionaries.append(("sex", index.sexes))
    names = pa.table({
        "part": pa.array([p for p, values in dictionaries for _ in range(len(values))],
                         pa.string()),
        "value": pa.concat_arrays([values.cast(pa.string()) for _, values in dictionaries])})
    written = {}
    for name, table in (("blocks", blocks), ("numbers", numbers), ("names", names)):
        write_parquet(table, root / files[name])
        written[files[name]] = table.num_rows
    return written


def read_index(paths: dict[str, Path]) -> RegistryIndex:
    """The index from its files (``paths``: :func:`index_files`' names to their paths,
    checked by the caller)."""
    blocks = pq.read_table(paths["blocks"])
    numbers = pq.read_table(paths["numbers"])
    names = pq.read_table(paths["names"])
    part = names["part"].combine_chunks()
    value = names["value"].combine_chunks()

    def dictionary(name: str) -> pa.Array:
        return value.filter(pc.equal(part, name))

    width = numbers["width"].to_numpy()
    known = {w: (np.asarray(numbers["value"].to_numpy()[width == w], np.int64),
                 np.asarray(numbers["citizen"].to_numpy()[width == w], np.int64))
             for w in (12, 9)}
    return RegistryIndex(
        dictionaries={p: dictionary(p) for p in _PARTS}, sexes=dictionary("sex"),
        block_keys=np.asarray(blocks["key"].to_numpy(), np.int64),
        block_citizens=np.asarray(blocks["citizen"].to_numpy(), np.int64),
        numbers=known)
