"""Look-up benchmark (issue 13): index build time at N subscriptions, and look-up latency
with concurrent clients on loopback.

    .venv/bin/python -m benchmarks.lookup --subscriptions 10000000
    .venv/bin/python -m benchmarks.lookup --subscriptions 1000000 --clients 20 --seconds 20

1. A synthetic run's results of N subscriptions in the ``RunResults`` layout
   (benchmarks/lookup_results.py; cached under benchmarks/out/ by size and seed).
2. The index is built from them (``build_index``, the code the ``lookup_index`` task
   runs), timed: a first build into an empty store, then a refresh on top of it (the
   daily case: every record merged with the previous index, first runs kept).
3. ``simrecon serve`` is started on a free loopback port (its own process) on that
   index, with an account whose rate limit is lifted; ``--clients`` client tasks, in
   two client processes, each on one keep-alive connection, ask ``POST /api/lookup``
   for random numbers of the index (each with its reason, each audited) for
   ``--seconds`` seconds after a warm-up: first one after another without pause (a
   closed loop: the server is saturated, so latency is mostly queueing), then paced at
   ``--rates`` look-ups per second per client (officers at work, not a flood). Latency
   is measured in the clients from the request's first byte sent to the response's last
   byte read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
RUN_DATE, NEXT_DATE = "2026-11-28", "2026-11-29"
PASSWORD = "benchmark password 2026"


def results_dir(n: int, seed: int) -> Path:
    from benchmarks.lookup_results import write_results

    folder = OUT / f"lookup-results-{n}-{seed}" / RUN_DATE
    if not (folder / "results").is_dir():
        start = time.perf_counter()
        shards = max(1, min(64, n // 500_000))
        write_results(folder, n, shards=shards, seed=seed)
        print(f"generated {n:,} result rows in {time.perf_counter() - start:.1f}s", flush=True)
    return folder


def build(run_dir: Path, store: Path) -> dict:
    from pipelines.lookup.index import build_index
    from pipelines.results.dataset import RunResults

    results = RunResults(run_dir)
    out = {}
    for name, day in (("first_build", RUN_DATE), ("refresh", NEXT_DATE)):
        cpu, load = time.process_time(), os.getloadavg()[0]
        out[name] = build_index(results, day, store)
        # CPU seconds of every thread of this process: less sensitive than wall time to
        # other work on a shared machine.
        out[name]["cpu_seconds"] = round(time.process_time() - cpu, 1)
        out[name]["load_average_before"] = load
    return out


def _sample_numbers(run_dir: Path, k: int, seed: int) -> list[str]:
    import pyarrow.parquet as pq

    from pipelines.results.dataset import RunResults

    files = RunResults(run_dir).files
    rng = random.Random(seed)
    numbers: list[str] = []
    for path in rng.sample(files, min(len(files), 4)):
        column = pq.read_table(path, columns=["msisdn"])["msisdn"].to_pylist()
        numbers += rng.sample(column, min(len(column), k // 4 + 1))
    return [n for n in numbers if n]


# --- clients: raw HTTP/1.1 over keep-alive connections, so the client costs little ------


async def _client(port: int, token: str, numbers: list[str], until: float, warm: float,
                  latencies: list[float], seed: int, interval: float) -> int:
    rng = random.Random(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    errors = 0
    due = time.perf_counter() + rng.random() * interval
    while (now := time.perf_counter()) < until:
        if interval:  # paced: one request every ``interval`` seconds at most
            if due > now:
                await asyncio.sleep(due - now)
            due += interval
        body = json.dumps({"kind": "number", "value": rng.choice(numbers),
                           "case_reference": "BENCH-1", "legal_basis": "benchmark"}).encode()
        request = (f"POST /api/lookup HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body
        start = time.perf_counter()
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        elapsed = time.perf_counter() - start
        if not head.startswith(b"HTTP/1.1 200"):
            errors += 1
            if errors == 1:
                print("first error:", head.split(b"\r\n")[0].decode(), flush=True)
        if now >= warm:
            latencies.append(elapsed)
    writer.close()
    return errors


def _client_process(port: int, token: str, numbers: list[str], clients: int, seconds: float,
                    warmup: float, seed: int, interval: float,
                    out: multiprocessing.Queue) -> None:
    async def run() -> tuple[list[float], int]:
        latencies: list[float] = []
        start = time.perf_counter()
        errors = await asyncio.gather(*[
            _client(port, token, numbers, start + warmup + seconds, start + warmup, latencies,
                    seed * 1000 + i, interval) for i in range(clients)])
        return latencies, sum(errors)

    out.put(asyncio.run(run()))


def latency(store_dir: Path, run_dir: Path, clients: int, seconds: float, seed: int,
            rates: tuple[float, ...] = (0.0,)) -> list[dict]:
    import httpx

    from pipelines.config import load_config
    from pipelines.lookup import accounts, service_store
    from pipelines.lookup.service import service_store_of
    from tests.servers import free_port

    work = Path(tempfile.mkdtemp(prefix="lookup-bench-"))
    config = work / "simrecon.yaml"
    config.write_text(yaml.safe_dump({
        "registry": str(REPO / "data_samples" / "registry" / "citizens.parquet"),
        "telcos_dir": str(REPO / "config" / "telcos"), "output_dir": str(work / "runs"),
        "lookup": {"index_store": str(store_dir / "index.sqlite"),
                   "service_store": str(work / "service.sqlite")}}), encoding="utf-8")
    settings = work / "lookup.yaml"
    settings.write_text(yaml.safe_dump({"run_config": str(config),
                                        "lookups_per_minute": 10**9}), encoding="utf-8")
    db = service_store.engine(service_store_of(load_config(config)))
    accounts.create_account(db, "bench", "benchmark", "investigator", "*", "*", PASSWORD)
    port = free_port()
    log = (work / "serve.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "serve", "--settings",
                               str(settings), "--port", str(port)], cwd=REPO, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        token = httpx.post(f"{url}/api/login", json={"account": "bench",
                                                     "password": PASSWORD}).json()["token"]
        numbers = _sample_numbers(run_dir, 20_000, seed)
        measured = []
        for rate in rates:
            queue: multiprocessing.Queue = multiprocessing.Queue()
            split = [clients // 2 + clients % 2, clients // 2]
            interval = 1.0 / rate if rate else 0.0
            procs = [multiprocessing.Process(target=_client_process, args=(
                port, token, numbers, c, seconds, 3.0, seed + i, interval, queue))
                for i, c in enumerate(split) if c]
            for p in procs:
                p.start()
            gathered = [queue.get() for _ in procs]
            for p in procs:
                p.join()
            measured.append(_figures(gathered, clients, seconds, rate))
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    return measured


def _figures(gathered: list, clients: int, seconds: float, rate: float) -> dict:
    values = np.array([v for lat, _ in gathered for v in lat]) * 1000
    errors = sum(e for _, e in gathered)
    return {"clients": clients, "per_client_per_s": rate or "closed loop",
            "seconds": seconds, "requests": len(values), "errors": int(errors),
            "throughput_per_s": round(len(values) / seconds, 1),
            "p50_ms": round(float(np.percentile(values, 50)), 2),
            "p95_ms": round(float(np.percentile(values, 95)), 2),
            "p99_ms": round(float(np.percentile(values, 99)), 2),
            "max_ms": round(float(values.max()), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriptions", type=int, default=10_000_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0, 5.0],
                        help="look-ups per second per client; 0 = closed loop, no pause "
                        "(default: 0 5)")
    parser.add_argument("--skip-build", action="store_true",
                        help="reuse the index of an earlier run of this benchmark")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    run_dir = results_dir(args.subscriptions, args.seed)
    store_dir = OUT / f"lookup-index-{args.subscriptions}-{args.seed}"
    figures: dict = {"subscriptions": args.subscriptions, "machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "platform": platform.platform(), "load_average": os.getloadavg()}}
    if not args.skip_build:
        shutil.rmtree(store_dir, ignore_errors=True)
        figures["build"] = build(run_dir, store_dir / "index.sqlite")
        for name in ("first_build", "refresh"):
            b = figures["build"][name]
            print(f"{name}: {b['subscriptions']:,} subscriptions in {b['seconds']:.1f}s "
                  f"(CPU {b['cpu_seconds']:.1f}s, load average {b['load_average_before']:.1f}) "
                  f"(pass 1 {b['pass1_ms'] / 1000:.1f}s, pass 2 {b['pass2_ms'] / 1000:.1f}s, "
                  f"pass 3 {b['pass3_ms'] / 1000:.1f}s)", flush=True)
        figures["index_bytes"] = (store_dir / "index.sqlite").stat().st_size
    figures["latency"] = latency(store_dir, run_dir, args.clients, args.seconds, args.seed,
                                 tuple(args.rates))
    figures["machine"]["load_average_after"] = os.getloadavg()
    print(json.dumps(figures["latency"], indent=2), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
