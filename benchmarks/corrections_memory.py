"""Peak memory and CPU of one telco's correction delivery, on a synthetic run's results.

Why: the ``corrections`` step peaked at 7.57 GiB at 30M subscriptions (issue 11); this
reproduces it without a real world, so a change can be measured old against new.

Two steps, each its own process (``ru_maxrss`` is the process's own peak)::

    # results of an N-subscription run (3 telcos, N/3 each) in 24 shards, the flag
    # stage's layout (row groups of ROW_GROUP_ROWS, sorted by telco, source_row), each
    # shard's flagged keys, and an SQLite history holding a previous run of one telco
    uv run --frozen python -m benchmarks.corrections_memory generate /tmp/corrmem/w10m 10000000

    # one telco's delivery (store=None, or --history for the previous run recorded);
    # prints peak RSS, CPU seconds and the RSS after each step of the delivery
    uv run --frozen python -m benchmarks.corrections_memory deliver /tmp/corrmem/w10m \
        /tmp/corrmem/out-new [--history]

To measure older code on the same inputs, run the ``deliver`` step with that code first
on ``PYTHONPATH`` (e.g. ``git archive <commit> | tar -x -C /tmp/base``); the outputs of
both can then be compared file by file (``sha256sum``).

Flags are drawn per row: each of the 13 telco-actionable flags with probability 3% (a
third of the rows listed, some with 2-3 flags), NEEDS_REVIEW with 2%; INVALID_MSISDN rows
carry no canonical number (keyed by the number as sent).
"""

from __future__ import annotations

import argparse
import functools
import resource
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.lookup_results import shard_table
from matching.flags import FLAGS
from pipelines.reconcile.shard_steps import ROW_GROUP_ROWS
from pipelines.reporting import aggregates
from pipelines.results.dataset import part_path
from pipelines.storage.files import write_parquet

SHARDS = 24
TELCO = "viettel"
RUN_DATE, PREVIOUS_DATE = "2026-11-28", "2026-11-21"
SEED = 20261204


def _flags(rng: np.random.Generator, rows: np.ndarray,
           msisdn: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Each row's flags (list in FLAGS order) and its msisdn: null if INVALID_MSISDN, the
    number of row ``row // 1000`` if DUPLICATE_MSISDN (rows sharing a number)."""
    n = len(rows)
    p = np.full(len(FLAGS), 0.03)
    p[FLAGS.index("NEEDS_REVIEW")] = 0.02
    matrix = rng.random((n, len(FLAGS))) < p
    _, cols = np.nonzero(matrix)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(matrix.sum(axis=1), out=offsets[1:])
    flags = pa.ListArray.from_arrays(pa.array(offsets),
                                     pc.take(pa.array(FLAGS), pa.array(cols)))
    invalid = matrix[:, FLAGS.index("INVALID_MSISDN")]
    duplicate = matrix[:, FLAGS.index("DUPLICATE_MSISDN")]
    shared = shard_table(rng, rows // 1000, 1)["msisdn"]
    msisdn = pc.if_else(pa.array(duplicate), shared, msisdn)
    return flags, pc.if_else(pa.array(~invalid), msisdn, pa.nulls(n, pa.string()))


def generate(folder: Path, n: int) -> None:
    """The results, flagged keys and history of an ``n``-subscription run in ``folder``."""
    rng = np.random.default_rng(SEED)
    shard_of = rng.integers(0, SHARDS, n)  # a holder's shard: rows of a telco spread
    for shard in range(SHARDS):
        rows = np.flatnonzero(shard_of == shard).astype(np.int64)
        table = shard_table(rng, rows, n)
        flags, msisdn = _flags(rng, rows, table["msisdn"])
        raw = pc.if_else(pc.is_null(msisdn), pc.binary_join_element_wise(
            table["msisdn"], "x", ""), table["msisdn_raw"])
        table = table.set_column(table.schema.get_field_index("flags"), "flags", flags)
        table = table.set_column(table.schema.get_field_index("msisdn"), "msisdn", msisdn)
        table = table.set_column(table.schema.get_field_index("msisdn_raw"), "msisdn_raw", raw)
        table = table.sort_by([("telco", "ascending"), ("source_row", "ascending")])
        write_parquet(table, part_path(folder, shard), ROW_GROUP_ROWS)
        write_parquet(aggregates.flagged_keys(table), _flagged_path(folder, shard))
        print(f"shard {shard}: {len(rows):,} rows", flush=True)
    _write_history(folder, rng)


def _flagged_path(folder: Path, shard: int) -> Path:
    return folder / "flagged" / f"{shard:03d}.parquet"


def _write_history(folder: Path, rng: np.random.Generator) -> None:
    """A previous run of TELCO: 80% of this run's keys (with streaks) and as many again
    tenths of keys no longer flagged (resolved)."""
    from pipelines.correction_cycle import history

    keys = []
    for shard in range(SHARDS):
        flagged = pq.read_table(_flagged_path(folder, shard),
                                filters=pc.field("telco") == TELCO)
        bits = np.asarray(flagged["flags"].to_numpy(), dtype=np.int64)
        for flag, bit in aggregates.FLAG_BITS.items():
            if not bit & aggregates.TELCO_ACTIONABLE_BITS:
                continue
            on = (bits & bit) != 0
            keep = on & (rng.random(len(bits)) < 0.8)
            gone = ~on & (rng.random(len(bits)) < 0.01)  # flagged before, resolved now
            chosen = pa.array(keep | gone)
            numbers = pc.filter(flagged["number"], chosen)
            keys.append(pa.table({"telco": pa.repeat(pa.scalar(TELCO), len(numbers)),
                                  "msisdn": numbers,
                                  "flag": pa.repeat(pa.scalar(flag), len(numbers))}))
    table = pa.concat_tables(keys).group_by(history.KEY).aggregate([])
    table = table.take(pc.sort_indices(table, [(c, "ascending") for c in history.KEY]))
    streak = rng.integers(1, 6, table.num_rows)
    first = np.datetime64(PREVIOUS_DATE) - (streak - 1) * np.timedelta64(7, "D")
    table = table.append_column("runs", pa.array(streak, pa.int64()))
    table = table.append_column("first_seen", pa.array(first.astype("datetime64[D]"),
                                                       pa.date32()))
    store = folder / "history.sqlite"
    store.unlink(missing_ok=True)
    batches = (table.slice(i, 500_000) for i in range(0, table.num_rows, 500_000))
    done = history.record_batches(store, PREVIOUS_DATE, [TELCO], batches, "2026-11-21T00:00")
    print(f"history: {done:,} keys of {TELCO} on {PREVIOUS_DATE}", flush=True)


# --- the measured step ----------------------------------------------------------------------


def _rss_mib() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB."""
    with open("/proc/self/statm") as handle:
        current = int(handle.read().split()[1]) * resource.getpagesize()
    return current / 2**20, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _traced(owner: object, name: str) -> None:
    """Print the RSS after each call of ``owner.name`` (if it exists)."""
    inner = getattr(owner, name, None)
    if inner is None:
        return

    @functools.wraps(inner)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = inner(*args, **kwargs)
        current, peak = _rss_mib()
        print(f"  after {name:<22} rss {current:8.0f} MiB  peak {peak:8.0f} MiB", flush=True)
        return out

    setattr(owner, name, wrapper)


def deliver(folder: Path, out: Path, with_history: bool) -> None:
    """One telco's delivery of the run in ``folder``, written to ``out``."""
    from pipelines.correction_cycle import compact_keys, deadlines, history
    from pipelines.delivery import correction_lists
    from pipelines.results.dataset import RunResults
    from pipelines.stages import outputs

    for owner, name in ((outputs, "_flagged_keys"), (correction_lists, "classified_rows"),
                        (correction_lists, "telco_keys"), (correction_lists, "write_keys"),
                        (history, "previous_keys"), (compact_keys, "classify")):
        _traced(owner, name)
    out.mkdir(parents=True, exist_ok=True)
    store = None
    if with_history:  # a copy: the store is the run's to write (engine creates tables)
        store = out / "history.sqlite"
        store.write_bytes((folder / "history.sqlite").read_bytes())
    paths = SimpleNamespace(flagged=functools.partial(_flagged_path, folder))
    start = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter()
    print(f"start: rss {_rss_mib()[0]:.0f} MiB", flush=True)
    counts = correction_lists.write_delivery(  # flagged passed inline, as outputs.py does
        out, TELCO, RUN_DATE, results=RunResults(folder),
        flagged=outputs._flagged_keys(paths, SHARDS, TELCO), quarantine=[],
        store=store, policy=deadlines.DeadlinePolicy(), keys_out=out / "keys.parquet")
    end = resource.getrusage(resource.RUSAGE_SELF)
    cpu = end.ru_utime + end.ru_stime - start.ru_utime - start.ru_stime
    print(f"counts: {counts}")
    print(f"RESULT peak_rss {end.ru_maxrss / 2**20:.2f} GiB  cpu {cpu:.1f} s  "
          f"wall {time.perf_counter() - wall:.1f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    made = commands.add_parser("generate")
    made.add_argument("folder", type=Path)
    made.add_argument("n", type=int)
    run = commands.add_parser("deliver")
    run.add_argument("folder", type=Path)
    run.add_argument("out", type=Path)
    run.add_argument("--history", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "generate":
        generate(args.folder, args.n)
    else:
        deliver(args.folder, args.out, args.history)


if __name__ == "__main__":
    sys.exit(main())

