"""Peak memory of the candidate search against the registry's shard count (issue 15).

    .venv/bin/python -m benchmarks.search_memory --world benchmarks/out/world-1000000-1000000-7 \
        --shards 1 8 32

For each shard count: a fresh output folder, the registry prepared in that many shards,
the run's stages up to ``match_shard`` in one process, then ``search_candidates`` alone
in a fresh process whose peak resident set (``ru_maxrss``) and wall time are measured:
the searched rows are collected once, routed batch by batch, each birth-year partition
of the registry's search layout is searched on its own
(``pipelines.reconcile.search.search_partition``), and the parts are folded
(``choose_candidates``). (Until issue 11's year-routed search the search went registry
shard by registry shard, so the shard count set its memory; the partitions now do,
about ``pipelines.registry.build.BUCKET_ROWS`` citizens each, whatever the shards.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.accuracy import RUN_DATE, write_world_config

_UP_TO_MATCH = """
import sys
from pipelines import stages
config, date = sys.argv[1], sys.argv[2]
telcos = stages.plan_run(config, date)
stages.gate_registry(config, date)
for telco in telcos:
    stages.ingest_telco(config, date, telco)
    stages.normalise_telco(config, date, telco)
    stages.gate_export(config, date, telco)
    stages.partition_telco(config, date, telco)
for shard in stages.plan_shards(config, date):
    stages.match_shard(config, date, shard)
"""
_SEARCH = """
import json, resource, sys, time
from pipelines import stages
start = time.perf_counter()
out = stages.search_candidates(sys.argv[1], sys.argv[2])
print(json.dumps({"seconds": round(time.perf_counter() - start, 1),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                        / 1024),
                  **out}))
"""


def measure(world: Path, shards: int, folder: Path) -> dict:
    config = write_world_config(world, folder, extra={"prepared_registry": {"shards": shards}})
    subprocess.run([sys.executable, "-c", _UP_TO_MATCH, str(config), RUN_DATE], check=True)
    done = subprocess.run([sys.executable, "-c", _SEARCH, str(config), RUN_DATE], check=True,
                          capture_output=True, text=True)
    return {"shards": shards, **json.loads(done.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search_memory",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, required=True,
                        help="a generated world folder (registry/, exports/)")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = []
    for shards in args.shards:
        folder = Path(tempfile.mkdtemp(prefix=f"simrecon-search-{shards}-"))
        try:
            rows.append(measure(args.world.resolve(), shards, folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print(json.dumps(rows[-1]), flush=True)
    print("\n| registry shards | search_candidates wall (s) | peak RSS (MiB) | searched rows |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['shards']} | {r['seconds']} | {r['peak_rss_mib']:,} | {r['searched']:,} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
