"""Benchmark worlds: the seeded sample world at benchmark size, cached under benchmarks/.cache.

``world(n, seed)`` returns a folder with the generator's five files
(``data_samples.generator.generate_world``: registry, two CSV exports, one Parquet
export, ground truth) for ``n`` subscriptions and a registry of ``n`` citizens,
``noise="benchmark"``.

Up to 1,000,000 subscriptions the generator writes the world itself (about a
minute and 2.5 GB per million). It holds a whole world in Python objects, so a
10,000,000-subscription world would need ~25 GB: larger worlds are assembled
from independent 1,000,000-subscription parts instead (part 0 is the 1M world
of the same seed, part k > 0 has seed ``seed * 1000 + k``), each generated in a
process of its own and re-keyed so that parts never share an identity:

* a CCCD's first digit (the first digit of the province code, always 0, and
  never touched by the generator's typos) becomes k, in the registry and in every
  export row declared CCCD (an 11-digit number that lost its leading zero gets k
  in front);
* dealer codes get the suffix ``-k``;
* source rows, and the ground truth's, are renumbered after the parts before.

Not re-keyed, because no digit of them is free of noise: old CMNDs and phone
numbers. Parts draw them independently, so across parts a few collide (by chance,
like in a real registry: a few thousand shared CMNDs and a few tens of thousands of
duplicated numbers in 10M rows). The ground truth of an assembled world is the
parts' truth, which ignores those collisions: accuracy is measured on the 1M
world, the assembled worlds are for time and memory.

    python -m benchmarks.world --subscriptions 1000000 10000000
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / ".cache"
PART = 1_000_000
READY = "world.ready"

# Export layout (data_samples.generator.LAYOUT_COLUMNS / LAYOUT_VOCAB / FILES).
CSV_EXPORTS = {"viettel": ("exports/viettel_subscribers.csv", ","),
               "vinaphone": ("exports/vinaphone_subscribers.csv", ";")}
PARQUET_EXPORT = ("mobifone", "exports/mobifone_subscribers.parquet")
REGISTRY = "registry/citizens.parquet"
TRUTH = "ground_truth.parquet"
ID_COLUMNS = {"viettel": ("LOAI_GIAY_TO", "CCCD", "SO_GIAY_TO", "MA_DIEM_BAN"),
              "vinaphone": ("loai_giay_to", "cccd", "so_giay_to", "ma_diem_ban"),
              "mobifone": ("document_type", "NATIONAL_ID", "document_number", "dealer_code")}


def world(n: int, seed: int = 7, cache: Path = CACHE) -> Path:
    """The folder of the ``n``-subscription world (generated or assembled once, cached)."""
    folder = cache / f"world-{n}-{seed}"
    if (folder / READY).exists():
        return folder
    start = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    if n <= PART:
        _generate(folder, n, seed)
    else:
        if n % PART or n > 100 * PART:
            raise SystemExit(f"worlds above {PART:,} are assembled from up to 100 parts of "
                             f"{PART:,}")
        parts = [world(PART, seed, cache)] + [
            _part(cache, seed, k) for k in range(1, n // PART)]
        _assemble(folder, parts)  # parts are kept: the 10M and 30M worlds share them
    (folder / READY).write_text(f"{time.perf_counter() - start:.1f}\n")
    print(f"world of {n:,} subscriptions ready in {time.perf_counter() - start:.0f}s: {folder}",
          flush=True)
    return folder


def _generate(folder: Path, n: int, seed: int) -> None:
    """``generate_world`` in a process of its own (it frees all its memory on exit)."""
    code = ("import sys; from pathlib import Path; from data_samples.generator import "
            "generate_world; generate_world(Path(sys.argv[1]), seed=int(sys.argv[2]), "
            "n_subscriptions=int(sys.argv[3]), n_citizens=int(sys.argv[3]), noise='benchmark')")
    subprocess.run([sys.executable, "-c", code, str(folder), str(seed), str(n)], cwd=REPO,
                   check=True)


def _part(cache: Path, seed: int, k: int) -> Path:
    folder = cache / f"part-{PART}-{seed}-{k}"
    if not (folder / READY).exists():
        shutil.rmtree(folder, ignore_errors=True)
        _generate(folder, PART, seed * 1000 + k)
        (folder / READY).write_text("part\n")
    return folder


# --- Re-keying ----------------------------------------------------------------------------
def _first_digit(values: pa.ChunkedArray | pa.Array, k: int) -> pa.Array:
    """Part ``k``'s CCCDs: a leading 0 (after any spaces or separators) becomes ``k % 10``
    (an 11-digit number, a CCCD whose leading 0 was lost, gets it in front); from part
    10 on, the second digit is also shifted by ``k // 10`` (mod 10), so parts 0-99 never
    share a number the way the generator writes it."""
    if k == 0:
        return values
    first = k % 10
    out = pc.replace_substring_regex(values, r"^([^0-9]*)0", rf"\1{first}",
                                     max_replacements=1)
    lost_zero = pc.match_substring_regex(values, r"^[1-9][0-9]{10}$")
    out = pc.if_else(lost_zero, pc.binary_join_element_wise(str(first), values, ""), out)
    shift = k // 10
    if shift:
        # Each second digit d becomes a placeholder (a private-use character, never in
        # the data) for (d + shift) % 10, then the placeholders digits again: no pass
        # matches a digit another pass wrote.
        # A placeholder is neither a digit nor a separator: once a second digit is
        # marked, no later pass may skip over the mark and change the third digit.
        skip = "[^0-9\ue000-\ue009]*"
        for digit in range(10):
            mark = chr(0xE000 + (digit + shift) % 10)
            out = pc.replace_substring_regex(out, rf"^({skip}[0-9]{skip}){digit}",
                                             rf"\1{mark}", max_replacements=1)
        for digit in range(10):
            out = pc.replace_substring(out, chr(0xE000 + digit), str(digit),
                                       max_replacements=1)
    return out


def _rekey_export(table: pa.Table, telco: str, k: int) -> pa.Table:
    if k == 0:
        return table
    type_column, cccd, number_column, dealer_column = ID_COLUMNS[telco]
    is_cccd = pc.fill_null(pc.equal(table[type_column], cccd), False)
    number = pc.if_else(is_cccd, _first_digit(table[number_column], k), table[number_column])
    dealer = table[dealer_column]
    dealer = pc.if_else(pc.fill_null(pc.equal(dealer, ""), True), dealer,
                        pc.binary_join_element_wise(dealer, f"-{k}", ""))
    table = table.set_column(table.column_names.index(number_column), number_column, number)
    return table.set_column(table.column_names.index(dealer_column), dealer_column, dealer)


def _rekey_registry(table: pa.Table, k: int) -> pa.Table:
    index = table.column_names.index("citizen_id")
    return table.set_column(index, "citizen_id", _first_digit(table["citizen_id"], k))


def _rekey_truth(table: pa.Table, k: int, offsets: dict[str, int]) -> pa.Table:
    for column in ("document_citizen_id", "true_holder_citizen_id",
                   "expected_suggested_citizen_id"):
        index = table.column_names.index(column)
        table = table.set_column(index, column, _first_digit(table[column], k))
    shift = pc.cast(pc.index_in(table["telco"], value_set=pa.array(list(offsets))), pa.int64())
    shift = pc.take(pa.array(list(offsets.values()), pa.int64()), shift)
    index = table.column_names.index("source_row")
    return table.set_column(index, "source_row", pc.add(table["source_row"], shift))


def _read_csv(path: Path, delimiter: str) -> pa.Table:
    with path.open("rb") as f:
        header = f.readline().decode("utf-8").rstrip("\r\n").split(delimiter)
    return pa_csv.read_csv(
        path, parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()),
                                              strings_can_be_null=False))


def _assemble(folder: Path, parts: list[Path]) -> None:
    """Concatenate re-keyed parts file by file, streaming (one part in memory at a time)."""
    for relative in (REGISTRY, PARQUET_EXPORT[1], TRUTH, *(p for p, _ in CSV_EXPORTS.values())):
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
    from pipelines.reconcile.sharding import stable_hash

    writers: dict[str, pq.ParquetWriter | _CsvWriter] = {}
    offsets = {"viettel": 0, "vinaphone": 0, "mobifone": 0}
    seen = np.zeros(0, dtype=np.uint64)  # citizen ids so far, hashed and sorted
    dropped = 0
    try:
        for k, part in enumerate(parts):
            registry = _rekey_registry(pq.read_table(part / REGISTRY), k)
            # Parts 10 and up can meet an earlier part's number by chance (a few per
            # million): the registry keeps the first citizen, as a real one would.
            hashed = stable_hash(registry["citizen_id"])
            fresh = ~np.isin(hashed, seen)
            dropped += int((~fresh).sum())
            registry = registry.filter(pa.array(fresh))
            seen = np.sort(np.concatenate([seen, hashed[fresh]]))
            tables = {"registry": registry,
                      "truth": _rekey_truth(pq.read_table(part / TRUTH), k, offsets),
                      "mobifone": _rekey_export(pq.read_table(part / PARQUET_EXPORT[1]),
                                                "mobifone", k)}
            for telco, (relative, delimiter) in CSV_EXPORTS.items():
                tables[telco] = _rekey_export(_read_csv(part / relative, delimiter), telco, k)
            for key, table in tables.items():
                if key not in writers:
                    writers[key] = _writer(folder, key, table.schema)
                writers[key].write_table(table)
            for telco in offsets:
                offsets[telco] += tables[telco].num_rows
            print(f"  part {k}: {sum(offsets.values()):,} subscriptions, "
                  f"{dropped:,} citizen(s) dropped as duplicates", flush=True)
    finally:
        for writer in writers.values():
            writer.close()


class _CsvWriter:
    """CSV as the generator writes it (Python's csv module, minimal quoting): a value is
    quoted only when it holds the delimiter, a quote or a line break. Vectorised."""

    def __init__(self, path: Path, schema: pa.Schema, delimiter: str) -> None:
        self.file = path.open("wb")
        self.delimiter = delimiter
        self.file.write((delimiter.join(schema.names) + "\n").encode("utf-8"))

    def write_table(self, table: pa.Table) -> None:
        special = f"[{re.escape(self.delimiter)}\"\r\n]"
        columns = []
        for column in table.columns:
            text = pc.cast(column, pa.string())
            quoted = pc.binary_join_element_wise(
                '"', pc.replace_substring(text, '"', '""'), '"', "")
            columns.append(pc.if_else(pc.fill_null(pc.match_substring_regex(text, special),
                                                   False), quoted, pc.fill_null(text, "")))
        lines = pc.binary_join_element_wise(*columns, self.delimiter)
        lines = pc.binary_join_element_wise(lines, "", "\n")  # the line, then its end
        if isinstance(lines, pa.ChunkedArray):
            lines = lines.combine_chunks()
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
        first, last = offsets[lines.offset], offsets[lines.offset + len(lines)]
        self.file.write(memoryview(lines.buffers()[2])[first:last])

    def close(self) -> None:
        self.file.close()


def _writer(folder: Path, key: str, schema: pa.Schema) -> pq.ParquetWriter | _CsvWriter:
    if key in CSV_EXPORTS:
        relative, delimiter = CSV_EXPORTS[key]
        return _CsvWriter(folder / relative, schema, delimiter)
    relative = {"registry": REGISTRY, "truth": TRUTH, "mobifone": PARQUET_EXPORT[1]}[key]
    return pq.ParquetWriter(folder / relative, schema, compression="zstd")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriptions", type=int, nargs="+", default=[PART])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    for n in args.subscriptions:
        world(n, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
