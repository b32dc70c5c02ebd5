"""Intake benchmark: wall time and peak RSS of the ingest and normalise stages.

Each measurement runs the real stage functions (``ingest_telco``, ``normalise_telco``,
after ``plan_run``) in a fresh process and reports the stages' wall time, the
process's CPU time (user + system, imports included: steadier than wall time on a
shared machine) and its peak RSS (``ru_maxrss``, imports included), so that runs
are comparable between sizes and between trees.

    python -m benchmarks.intake world --subscriptions 1000000      # the 1M world's 3 exports
    python -m benchmarks.intake csv --rows 1000000 5000000          # one Viettel-like CSV
    python -m benchmarks.intake csv --rows 1000000 --repo /tmp/old  # another checkout

``csv`` builds a CSV of N rows from the 1M world's Viettel export (cached under
benchmarks/.cache): its rows over and over, each pass with ``-<k>`` appended to
the dealer code (the last column), so that no two rows are identical (an identical
row would be quarantined as DUPLICATE_ROW and not normalised).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from benchmarks.world import CACHE, world

REPO = Path(__file__).resolve().parents[1]
RUN_DATE = "2026-11-28"

_CHILD = f"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from pipelines.stages.run import plan_run
from pipelines.stages import ingest_telco, normalise_telco
config, telcos = sys.argv[2], sys.argv[3].split(",")
plan_run(config, {RUN_DATE!r})
timings = {{}}
for telco in telcos:
    start = time.perf_counter()
    stats = ingest_telco(config, {RUN_DATE!r}, telco)
    timings["ingest[" + telco + "]"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    normalised = normalise_telco(config, {RUN_DATE!r}, telco)
    timings["normalise[" + telco + "]"] = round(time.perf_counter() - start, 3)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"seconds": timings, "rows_in_file": stats["rows_in_file"],
                  "rows_normalised": normalised["rows_normalised"],
                  "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
                  "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}}))
"""


def _config(folder: Path, exports: dict[str, Path], out: Path) -> Path:
    telcos = out / "telcos"
    shutil.rmtree(out, ignore_errors=True)
    telcos.mkdir(parents=True)
    for source in sorted((REPO / "config" / "telcos").glob("*.yaml")):
        mapping = yaml.safe_load(source.read_text(encoding="utf-8"))
        if mapping["telco"] not in exports:
            continue
        mapping["source"] = str(exports[mapping["telco"]])
        (telcos / source.name).write_text(yaml.safe_dump(mapping, allow_unicode=True),
                                          encoding="utf-8")
    config = out / "simrecon.yaml"
    config.write_text(yaml.safe_dump({
        "registry": str(folder / "registry" / "citizens.parquet"),
        "telcos_dir": str(telcos), "output_dir": str(out / "runs"),
    }), encoding="utf-8")
    return config


def measure(repo: Path, config: Path, telcos: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(repo), str(config),
                           ",".join(telcos)], capture_output=True, text=True, cwd=repo)
    if done.returncode:
        raise SystemExit(done.stderr[-4000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["total_s"] = round(sum(result["seconds"].values()), 2)
    return result


def big_csv(rows: int) -> Path:
    """A Viettel-like CSV of ``rows`` rows, no two identical (see module doc)."""
    path = CACHE / f"viettel-{rows}.csv"
    if path.exists():
        return path
    source = world(1_000_000) / "exports" / "viettel_subscribers.csv"
    header, body = source.read_bytes().split(b"\n", 1)
    lines = body.rstrip(b"\n").split(b"\n")
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as out:
        out.write(header + b"\n")
        written, k = 0, 0
        while written < rows:
            take = lines[:rows - written]
            suffix = f"-{k}\n".encode() if k else b"\n"
            out.write(suffix.join(take) + suffix)
            written += len(take)
            k += 1
    tmp.replace(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["world", "csv"])
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--repo", type=Path, default=REPO, help="the tree to measure")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    folder = world(args.subscriptions if args.what == "world" else 1_000_000)
    out = CACHE / "intake-bench"
    if args.what == "world":
        exports = {"viettel": folder / "exports" / "viettel_subscribers.csv",
                   "vinaphone": folder / "exports" / "vinaphone_subscribers.csv",
                   "mobifone": folder / "exports" / "mobifone_subscribers.parquet"}
        config = _config(folder, exports, out)
        for _ in range(args.repeat):
            print(json.dumps(measure(args.repo, config, sorted(exports))))
        return
    for rows in args.rows:
        config = _config(folder, {"viettel": big_csv(rows)}, out)
        for _ in range(args.repeat):
            print(json.dumps({"rows": rows, **measure(args.repo, config, ["viettel"])}))


if __name__ == "__main__":
    main()
