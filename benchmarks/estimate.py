"""Re-estimate the bundled match model on a seeded benchmark world, reproducibly.

    .venv/bin/python -m benchmarks.estimate --out models/fellegi-sunter-v1.json \\
        --version fs-2026.12-1

Generates the world (``data_samples.generator``, ``noise="benchmark"``, seed 1 by
default: never the accuracy benchmark's seed) with the exports of the run before,
makes that previous run (so each number has its history), writes a run
configuration for the world (``benchmarks.accuracy.write_world_config``) and runs
``simrecon model estimate`` on it. The same arguments give the same model (its
``estimated_at`` aside).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from datetime import date
from pathlib import Path

from benchmarks.accuracy import PREVIOUS_RUN_DATE, RUN_DATE, write_world_config
from data_samples.generator import PREVIOUS_EXPORTS, generate_world
from pipelines.reconcile.estimate import estimate_from_config
from pipelines.stages import run_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.estimate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--registry", type=int, default=100_000, help="citizens")
    parser.add_argument("--random-pairs", type=int, default=300_000)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the world here (default: a temp folder)")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="simrecon-estimate-"))
    try:
        world = workdir / "world"
        if not (world / PREVIOUS_EXPORTS).exists():
            generate_world(world, seed=args.seed, n_subscriptions=args.subscriptions,
                           n_citizens=args.registry, noise="benchmark", previous=True)
        config = write_world_config(world, workdir)
        # The run before, on the exports as they were then: each number's history.
        shutil.rmtree(workdir / "runs", ignore_errors=True)
        run_all(str(write_world_config(world, workdir, exports=PREVIOUS_EXPORTS,
                                       name="simrecon-previous.yaml")), PREVIOUS_RUN_DATE)
        model = estimate_from_config(
            str(config), date.fromisoformat(RUN_DATE), args.out, version=args.version,
            random_pairs=args.random_pairs, seed=args.seed)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    weights = model.to_dict()["weights_for_reading"]
    for field in ("id", "document", "history", "others", "search_prior_at_1M_citizens"):
        print(field, weights[field])
    print("metadata", model.metadata)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
