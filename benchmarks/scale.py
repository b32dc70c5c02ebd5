"""Scale benchmark (issue 4): generate a world of N subscriptions and a registry of N
citizens, prepare the registry once (``simrecon registry prepare``, timed on its own:
it is a once-per-snapshot job), then run the whole pipeline through the CLI
(``simrecon run``) and print wall time and peak RSS per stage and in total, and the
throughput.

    .venv/bin/python -m benchmarks.scale --subscriptions 1000000
    .venv/bin/python -m benchmarks.scale --subscriptions 1000000 10000000 --json out.json
    .venv/bin/python -m benchmarks.scale --subscriptions 1000000 --end-to-end

``--end-to-end`` also times one ``simrecon run`` from an empty output folder that
prepares the registry itself, beside the telcos' intake (``prepare_in_run``, the
default configuration): the whole job as a new user runs it.

Worlds are cached under benchmarks/out/ (gitignored) by size, registry size and seed;
each measurement uses a fresh output folder. Stage times come from the run's own
``stage X done in Ys (..., Z CPU s)`` log lines (a mapped stage, run in worker processes,
is one line: its wall time, and the CPU seconds of all its tasks). Memory is sampled
every 20 ms from /proc for the ``simrecon`` process and every process it starts (the
worker processes of ``--workers``): the peak RSS of a stage is the largest resident set
of any one of them between the end of the previous stage and the end of that stage; the
run's peak is the largest kernel high-water mark (VmHWM) of any one process. The target of
issue 11 is per process ("no process above 3 GB"), so figures are per process, never
summed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
RUN_DATE = "2026-11-28"
STAGE_LINE = re.compile(r"stage (?P<stage>\S+) done in (?P<seconds>[0-9.]+)s"
                        r"(?:.*?(?P<cpu>[0-9.]+) CPU s)?")


def world(n: int, citizens: int, seed: int) -> Path:
    """The cached world of ``n`` subscriptions and ``citizens`` registry rows."""
    folder = OUT / f"world-{n}-{citizens}-{seed}"
    if n > 1_000_000 and citizens == n and not (folder / "ground_truth.parquet").exists():
        # The generator holds a world in Python objects (~2.5 GB per million rows): larger
        # worlds are assembled from re-keyed 1M parts (benchmarks/world.py), linked here.
        from benchmarks.world import world as assembled

        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.unlink(missing_ok=True)
        folder.symlink_to(assembled(n, seed))
    if not (folder / "ground_truth.parquet").exists():
        from data_samples.generator import generate_world

        start = time.perf_counter()
        generate_world(folder, seed=seed, n_subscriptions=n, n_citizens=citizens,
                       noise="benchmark")
        print(f"generated {n:,} subscriptions, {citizens:,} citizens in "
              f"{time.perf_counter() - start:.1f}s", flush=True)
    return folder


def config_for(folder: Path, shards: int | None, *, prepare_in_run: bool = False) -> Path:
    """A run configuration for ``folder``; outputs go to ``folder/runs`` and the
    engineer-only files, the prepared registry among them, to ``folder/runs-private``
    (both emptied first, so every measurement starts from nothing and the registry is
    really prepared). ``prepare_in_run``: the run prepares the registry itself, beside
    the telcos' intake (the default configuration's way), instead of a ``registry
    prepare`` before it."""
    for outputs in ("runs", "runs-private"):
        shutil.rmtree(folder / outputs, ignore_errors=True)
    telcos = folder / "telcos"
    telcos.mkdir(exist_ok=True)
    for source in sorted((REPO / "config" / "telcos").glob("*.yaml")):
        mapping = yaml.safe_load(source.read_text(encoding="utf-8"))
        mapping["source"] = str(folder / "exports" / Path(mapping["source"]).name)
        (telcos / source.name).write_text(yaml.safe_dump(mapping, allow_unicode=True),
                                          encoding="utf-8")
    settings: dict = {
        "registry": str(folder / "registry" / "citizens.parquet"),
        "telcos_dir": str(telcos),
        "output_dir": str(folder / "runs"),
        # the benchmark prepares the snapshot itself, before the run, and times it apart
        # (unless the end to end is measured in one command)
        "prepared_registry": {"prepare_in_run": prepare_in_run},
    }
    if shards is not None:
        settings["prepared_registry"]["shards"] = shards
    config = folder / "simrecon.yaml"
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    return config


SAMPLE_SECONDS = 0.1  # between two readings of the run's processes' memory


def _rss_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _tree(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as f:
                    todo.extend(int(child) for child in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def measure(args: list[str]) -> dict:
    """Run ``python -m pipelines.cli *args`` and return wall time, the peak RSS (GiB) of
    its largest process and, per stage, its logged time and the largest RSS of any of
    its processes while it ran."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    window = {"max": 0}  # largest RSS (KiB) of one process since the last stage line
    hwm: dict[int, int] = {}  # per process, its high-water mark
    processes = {"count": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            pids = _tree(proc.pid)
            processes["count"] = max(processes["count"], len(pids))
            for pid in pids:
                window["max"] = max(window["max"], _rss_kib(pid, "VmRSS:"))
                hwm[pid] = max(hwm.get(pid, 0), _rss_kib(pid, "VmHWM:"))
            # VmHWM is each process's own high-water mark, exact however seldom it is
            # read; VmRSS gives the stages' windows. Every 20 ms this loop took ~5% of a
            # core from the 2-core runs it measures (1M run: ~1.4 CPU s); every 100 ms ~1%.
            time.sleep(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stages: list[dict] = []
    tail: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        tail = [*tail, line][-40:]
        found = STAGE_LINE.search(line)
        if found:
            current = max(window["max"], _rss_kib(proc.pid, "VmRSS:"))
            stages.append({"stage": found["stage"], "seconds": float(found["seconds"]),
                           "cpu_s": float(found["cpu"] or 0.0),
                           "peak_rss_gib": round(current / 2**20, 3)})
            # Progress as it happens: a 30M run takes the better part of an hour.
            print(f"    {found['stage']:30s} {float(found['seconds']):9.2f} s "
                  f"{float(found['cpu'] or 0.0):8.1f} CPU s {current / 2**20:6.2f} GiB",
                  file=sys.stderr, flush=True)
            window["max"] = 0
    stdout = proc.stdout.read() if proc.stdout else ""
    code = proc.wait()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if code != 0:
        print("".join(tail), stdout, file=sys.stderr)
        raise SystemExit(f"simrecon {' '.join(args[:2])} failed with exit code {code}")
    peak = max([*hwm.values(), *(s["peak_rss_gib"] * 2**20 for s in stages), 0])
    return {"wall_s": round(wall, 2), "peak_rss_gib": round(peak / 2**20, 3),
            "processes": processes["count"], "stages": stages}


def grouped(stages: list[dict]) -> list[dict]:
    """Per-telco and per-shard stages (``ingest[viettel]``, ``match_shard[003]``) summed
    into one line per step, peak RSS the largest of them."""
    out: dict[str, dict] = {}
    for s in stages:
        name = s["stage"].split("[")[0]
        entry = out.setdefault(name, {"stage": name, "seconds": 0.0, "cpu_s": 0.0,
                                      "peak_rss_gib": 0.0, "count": 0})
        entry["seconds"] += s["seconds"]
        entry["cpu_s"] += s.get("cpu_s", 0.0)
        entry["peak_rss_gib"] = max(entry["peak_rss_gib"], s["peak_rss_gib"])
        entry["count"] += 1
    return list(out.values())


def machine() -> dict:
    with open("/proc/loadavg", encoding="ascii") as f:
        load = " ".join(f.read().split()[:3])
    return {"machine": platform.machine(), "cores": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                / 2**30, 1),
            "python": platform.python_version(), "loadavg_before": load}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriptions", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--citizens-ratio", type=float, default=1.0,
                        help="registry size as a multiple of the subscriptions (issue 4: 1)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--shards", type=int, default=None,
                        help="prepared_registry.shards (default: one per 1.25M subscriptions, "
                             "at least 8: a shard's size, not the run's, sets the memory)")
    parser.add_argument("--workers", type=int, default=None,
                        help="simrecon run --workers (default: one per CPU)")
    parser.add_argument("--end-to-end", action="store_true",
                        help="also measure one `simrecon run` that prepares the registry "
                             "itself beside the intake (prepared_registry.prepare_in_run, "
                             "the default configuration), from an empty output folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    host = machine()
    print(f"machine: {host['machine']}, {host['cores']} cores, {host['memory_gib']} GiB, "
          f"Python {host['python']}, loadavg {host['loadavg_before']}", flush=True)
    figures: dict = {"host": host, "runs": []}
    for n in args.subscriptions:
        citizens = max(2500, round(n * args.citizens_ratio))
        folder = world(n, citizens, args.seed)
        shards = args.shards or max(8, -(-n // 1_250_000))
        config = config_for(folder, shards)
        prepared = measure(["registry", "prepare", "--config", str(config),
                            "--as-of", RUN_DATE])
        ran = measure(["run", "--config", str(config), "--run-date", RUN_DATE,
                       *(["--workers", str(args.workers)] if args.workers else [])])
        steps = grouped(ran["stages"])
        matching = sum(s["seconds"] for s in steps
                       if s["stage"] in ("partition", "plan_shards", "match_shard",
                                         "collect_searched", "route_search_batch",
                                         "search_partition",
                                         "choose_candidates", "spanning_flags(wait)"))
        figures["runs"].append({"subscriptions": n, "citizens": citizens,
                                "registry_prepare": prepared, "run": ran, "steps": steps,
                                "holder_linking_s": round(matching, 2)})
        if args.end_to_end:
            whole = measure(["run", "--config", str(config_for(folder, shards,
                                                               prepare_in_run=True)),
                             "--run-date", RUN_DATE,
                             *(["--workers", str(args.workers)] if args.workers else [])])
            figures["runs"][-1]["end_to_end"] = whole
        print(f"\n{n:,} subscriptions, {citizens:,} citizens (seed {args.seed})")
        print(f"  registry prepare: wall {prepared['wall_s']:.1f}s, "
              f"peak RSS {prepared['peak_rss_gib']:.2f} GiB (once per snapshot)")
        print(f"  simrecon run:     wall {ran['wall_s']:.1f}s, peak RSS of one process "
              f"{ran['peak_rss_gib']:.2f} GiB ({ran['processes']} processes), throughput "
              f"{n / ran['wall_s']:,.0f} subscriptions/s")
        if args.end_to_end:
            whole = figures["runs"][-1]["end_to_end"]
            print(f"  end to end, one `simrecon run` preparing the registry beside the "
                  f"intake: wall {whole['wall_s']:.1f}s, peak RSS of one process "
                  f"{whole['peak_rss_gib']:.2f} GiB")
        print(f"  holder linking (partition + match_shard + search_candidates, spanning): "
              f"{matching:.1f}s")
        print(f"  {'step':20s} {'n':>3s} {'seconds':>9s} {'CPU s':>8s} {'peak RSS GiB':>13s}")
        for s in steps:
            print(f"  {s['stage']:20s} {s['count']:3d} {s['seconds']:9.2f} {s['cpu_s']:8.1f} "
                  f"{s['peak_rss_gib']:13.2f}")
        print(f"  {'total (logged)':20s} {'':3s} "
              f"{sum(s['seconds'] for s in steps):9.2f} "
              f"{sum(s['cpu_s'] for s in steps):8.1f} {ran['peak_rss_gib']:13.2f}",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
