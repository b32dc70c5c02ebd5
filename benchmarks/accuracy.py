"""Accuracy benchmark: a seeded world with benchmark noise, the whole pipeline, the truth.

    .venv/bin/python -m benchmarks.accuracy --subscriptions 100000

Generates a world with ``data_samples.generator`` (``noise="benchmark"``),
writes a temporary run configuration whose telco mappings point at it, runs
``pipelines.stages.run_all`` and scores the run's results (``RunResults``) against
``ground_truth.parquet``:

* holder link: a row links its holder when ``holder_citizen_id`` (the
  document's citizen, accepted by the model) is set; it counts as right only
  when it names ``true_holder_citizen_id``. Recall is over the rows whose
  document leads to their true holder (the linkable rows);
* every flag: precision, recall, F1;
* REVIEW rows (count and share), status agreement;
* suggestions for mistyped CCCDs (truth ``expected_suggested_citizen_id``):
  right share of those rows, wrong share of all suggestions (a suggestion is
  wrong when it is not the true holder); the same for ``candidate_citizen_id``
  (search by blocking keys for NO_ID / INVALID_ID / ID_NOT_FOUND rows).

The figures go to ``benchmarks/RESULTS.md`` by hand, with the command.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml

from data_samples.generator import generate_world
from matching.flags import FLAGS

REPO = Path(__file__).resolve().parents[1]
RUN_DATE = "2026-11-28"
TARGETS = {"link_precision": 0.999, "link_recall": 0.995, "flag_precision": 0.99,
           "flag_recall": 0.98, "review_share": 0.01, "suggestion_right": 0.95,
           "suggestion_wrong": 0.005}


def write_world_config(world: Path, folder: Path, **matching: object) -> Path:
    """A run configuration for ``world`` whose outputs go to ``folder/runs``."""
    telcos = folder / "telcos"
    telcos.mkdir(parents=True, exist_ok=True)
    for path in sorted((REPO / "config" / "telcos").glob("*.yaml")):
        mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
        mapping["source"] = str((world / "exports" / Path(mapping["source"]).name).resolve())
        (telcos / path.name).write_text(yaml.safe_dump(mapping, allow_unicode=True),
                                        encoding="utf-8")
    config = {"registry": str(world / "registry" / "citizens.parquet"),
              "telcos_dir": str(telcos), "output_dir": str(folder / "runs")}
    if matching:
        config["matching"] = matching
    path = folder / "simrecon.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _prf(expected: np.ndarray, found: np.ndarray) -> dict:
    tp = int((expected & found).sum())
    fp = int((~expected & found).sum())
    fn = int((expected & ~found).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"planted": tp + fn, "found": tp + fp, "precision": precision, "recall": recall,
            "f1": f1}


def score(results: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Every figure of the benchmark from a results table and its ground truth."""
    joined = truth.merge(results, on=["telco", "source_row"], how="left", indicator=True)
    quarantined = int((joined["_merge"] == "left_only").sum())
    joined = joined[joined["_merge"] == "both"]
    true_holder = joined["true_holder_citizen_id"]
    linkable = true_holder.notna() & (joined["document_citizen_id"] == true_holder)
    linked = joined["holder_citizen_id"].notna()
    right_link = linked & (joined["holder_citizen_id"] == true_holder)
    link = {"linked": int(linked.sum()), "right": int(right_link.sum()),
            "linkable": int(linkable.sum()),
            "precision": float(right_link.sum() / max(linked.sum(), 1)),
            "recall": float((right_link & linkable).sum() / max(linkable.sum(), 1))}

    flags = {}
    for flag in FLAGS:
        expected = joined["expected_flags"].map(lambda fs, f=flag: f in list(fs)).to_numpy()
        found = joined["flags"].map(lambda fs, f=flag: f in list(fs)).to_numpy()
        flags[flag] = _prf(expected, found)

    mistyped = joined["expected_suggested_citizen_id"].notna()
    suggested = joined["suggested_citizen_id"].notna()
    suggestion = {
        "mistyped_rows": int(mistyped.sum()),
        "suggestions": int(suggested.sum()),
        "right_share_of_mistyped": float(
            (joined["suggested_citizen_id"] == joined["expected_suggested_citizen_id"])[mistyped]
            .mean()) if mistyped.any() else 1.0,
        "wrong_share_of_suggestions": float(
            (joined["suggested_citizen_id"] != true_holder)[suggested].mean())
        if suggested.any() else 0.0,
    }
    unregistered = joined["expected_status"] == "UNREGISTERED"
    findable = unregistered & true_holder.notna()
    has_candidate = joined["candidate_citizen_id"].notna()
    candidate = {
        "unregistered_rows": int(unregistered.sum()),
        "unregistered_with_holder_in_registry": int(findable.sum()),
        "candidates": int(has_candidate.sum()),
        "right_share_of_findable": float(
            (joined["candidate_citizen_id"] == true_holder)[findable].mean())
        if findable.any() else 1.0,
        "wrong_share_of_candidates": float(
            (joined["candidate_citizen_id"] != true_holder)[has_candidate].mean())
        if has_candidate.any() else 0.0,
    }
    review = int((joined["status"] == "REVIEW").sum())
    return {
        "rows": len(truth), "scored_rows": len(joined), "quarantined": quarantined,
        "status_agreement": float((joined["status"] == joined["expected_status"]).mean()),
        "review_rows": review, "review_share": review / max(len(joined), 1),
        "review_band_rows": int((joined["match_band"] == "REVIEW").sum()),
        "link": link, "flags": flags, "suggestion": suggestion, "candidate": candidate,
    }


def failures(figures: dict) -> list[str]:
    """The Done-when targets of issue 3 that the figures miss."""
    out = []
    if figures["link"]["precision"] < TARGETS["link_precision"]:
        out.append("link precision")
    if figures["link"]["recall"] < TARGETS["link_recall"]:
        out.append("link recall")
    for flag, f in figures["flags"].items():
        if f["planted"] == 0:
            continue
        if f["precision"] < TARGETS["flag_precision"] or f["recall"] < TARGETS["flag_recall"]:
            out.append(f"flag {flag}")
    if figures["review_share"] > TARGETS["review_share"]:
        out.append("review share")
    s = figures["suggestion"]
    if s["right_share_of_mistyped"] < TARGETS["suggestion_right"]:
        out.append("suggestions right")
    if s["wrong_share_of_suggestions"] > TARGETS["suggestion_wrong"]:
        out.append("suggestions wrong")
    return out


def render(figures: dict) -> str:
    """Plain-text tables (Markdown-compatible) of the figures."""
    link, s, c = figures["link"], figures["suggestion"], figures["candidate"]
    lines = [
        f"rows {figures['rows']:,} (scored {figures['scored_rows']:,}, quarantined "
        f"{figures['quarantined']:,}); status agreement {figures['status_agreement']:.4f}",
        "",
        "| measure | value |", "|---|---:|",
        f"| holder-link precision | {link['precision']:.5f} ({link['right']:,} right of "
        f"{link['linked']:,} links) |",
        f"| holder-link recall | {link['recall']:.5f} (of {link['linkable']:,} linkable rows) |",
        f"| rows in REVIEW | {figures['review_rows']:,} ({100 * figures['review_share']:.2f}%); "
        f"in the review band {figures['review_band_rows']:,} |",
        f"| mistyped-CCCD suggestions right | {s['right_share_of_mistyped']:.4f} "
        f"(of {s['mistyped_rows']:,} rows) |",
        f"| suggestions wrong | {s['wrong_share_of_suggestions']:.4f} "
        f"(of {s['suggestions']:,} suggestions) |",
        f"| search candidates right (UNREGISTERED rows whose holder is in the registry) | "
        f"{c['right_share_of_findable']:.4f} (of {c['unregistered_with_holder_in_registry']:,}) |",
        f"| search candidates wrong | {c['wrong_share_of_candidates']:.4f} "
        f"(of {c['candidates']:,} candidates) |",
        "",
        "| flag | planted | found | precision | recall | F1 |", "|---|---:|---:|---:|---:|---:|",
    ]
    for flag, f in figures["flags"].items():
        lines.append(f"| {flag} | {f['planted']:,} | {f['found']:,} | {f['precision']:.4f} | "
                     f"{f['recall']:.4f} | {f['f1']:.4f} |")
    return "\n".join(lines)


def run(subscriptions: int, seed: int, workdir: Path, **matching: object) -> dict:
    """Generate, run, score. Returns the figures plus timings."""
    world = workdir / "world"
    start = time.perf_counter()
    generate_world(world, seed=seed, n_subscriptions=subscriptions,
                   n_citizens=max(2500, round(subscriptions * 0.625)), noise="benchmark")
    generated = time.perf_counter() - start
    config = write_world_config(world, workdir, **matching)
    from pipelines.results.dataset import RunResults
    from pipelines.stages import run_all

    start = time.perf_counter()
    outcome = run_all(str(config), RUN_DATE)
    ran = time.perf_counter() - start
    results = RunResults(outcome["run_dir"]).read().to_pandas()
    truth = pq.read_table(world / "ground_truth.parquet").to_pandas()
    figures = score(results, truth)
    figures["timings"] = {"generate_s": round(generated, 1), "pipeline_s": round(ran, 1),
                          "stages": outcome["timings"]}
    figures["model_version"] = str(results["model_version"].iloc[0])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the world and the run here (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="simrecon-accuracy-"))
    try:
        figures = run(args.subscriptions, args.seed, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    figures["machine"] = f"{platform.machine()}, {platform.python_version()}"
    print(render(figures))
    print(f"\nmodel {figures['model_version']}; generate {figures['timings']['generate_s']} s, "
          f"pipeline {figures['timings']['pipeline_s']} s")
    missed = failures(figures)
    print("targets met" if not missed else "targets missed: " + ", ".join(missed))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0 if not missed else 1


if __name__ == "__main__":
    raise SystemExit(main())
