"""Scale benchmark: generate a world of N subscriptions, run the whole pipeline through
the CLI, and print wall time and peak memory per stage and in total.

    uv run python benchmarks/scale.py --subscriptions 1000000
    uv run python benchmarks/scale.py --subscriptions 1000000 10000000

Worlds are cached under benchmarks/out/ (gitignored) by size and seed. Each run
is a separate `simrecon run` process, timed with its own stage log lines and
measured with the process's peak RSS (resource.getrusage of the child).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
STAGE_LINE = re.compile(r"stage (?P<stage>\S+) done in (?P<seconds>[0-9.]+)s")


def world(n: int, seed: int) -> Path:
    folder = OUT / f"world-{n}-{seed}"
    if not (folder / "ground_truth.parquet").exists():
        from data_samples.generator import generate_world

        start = time.perf_counter()
        generate_world(folder, seed=seed, n_subscriptions=n,
                       n_citizens=max(2500, int(n * 0.625)), noise="benchmark")
        print(f"generated {n:,} subscriptions in {time.perf_counter() - start:.1f}s",
              flush=True)
    return folder


def config_for(folder: Path) -> Path:
    telcos = folder / "telcos"
    telcos.mkdir(exist_ok=True)
    for source in sorted((REPO / "config" / "telcos").glob("*.yaml")):
        mapping = yaml.safe_load(source.read_text(encoding="utf-8"))
        mapping["source"] = str(folder / "exports" / Path(mapping["source"]).name)
        (telcos / source.name).write_text(yaml.safe_dump(mapping, allow_unicode=True),
                                          encoding="utf-8")
    config = folder / "simrecon.yaml"
    config.write_text(yaml.safe_dump({
        "registry": str(folder / "registry" / "citizens.parquet"),
        "telcos_dir": str(telcos),
        "output_dir": str(folder / "runs"),
    }), encoding="utf-8")
    return config


def run(config: Path) -> tuple[float, float, list[tuple[str, float]]]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--config", str(config),
         "--run-date", "2026-11-28"],
        capture_output=True, text=True, cwd=REPO, check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"simrecon run failed with exit code {proc.returncode}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    stages = [(m["stage"], float(m["seconds"])) for m in STAGE_LINE.finditer(proc.stderr)]
    return wall, peak_kib / 1024 / 1024, stages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriptions", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
          f"Python {platform.python_version()}")
    for n in args.subscriptions:
        config = config_for(world(n, args.seed))
        wall, peak_gib, stages = run(config)
        print(f"\n{n:,} subscriptions: wall {wall:.1f}s, peak RSS {peak_gib:.2f} GiB, "
              f"throughput {n / wall:,.0f} subscriptions/s")
        for stage, seconds in stages:
            print(f"  {stage:22s} {seconds:8.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
