"""Accuracy benchmark: a seeded world with benchmark noise, the whole pipeline, the truth.

    .venv/bin/python -m benchmarks.accuracy --subscriptions 100000 --registry 100000

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
  (the search for NO_ID / INVALID_ID / ID_NOT_FOUND rows), and the share of
  invented people carrying a well-formed number who were offered one;
* calibration (issue 15): reliability tables (predicted probability in bins
  against the observed share right) and the expected calibration error (ECE) of
  ``candidate_probability`` (is the row's best candidate its holder?) and of the
  document links' ``match_probability`` (is the document's citizen the holder?);
* every link a user would act on (holder links, suggestions, candidates at
  probability >= 0.5): precision, and recall over the linkable rows (as above: the
  document leads to the true holder), and, for information, over every row whose
  true holder is in the registry and whose document leads to them or to nobody
  (a searched row can be unresolvable: two namesakes born the same day, no number).

With history (the default) the world also holds the exports as the previous run
(``PREVIOUS_RUN_DATE``) received them, and that run is made first: each number's
verified holder then is evidence for the search (``data_samples.generator``,
``_previous_rows``).

To see every searched row's best candidate, not only those clearly best, the run
offers every one (``suggest_min_probability`` ~0, ``suggest_min_margin_bits`` 0);
the offer under the configured thresholds is then taken from
``candidate_probability`` and ``candidate_margin_bits`` exactly as the search takes
it (``pipelines.reconcile.search.choose``). The other outputs do not depend on it.

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

from data_samples.generator import PREVIOUS_EXPORTS, generate_world
from matching.flags import FLAGS
from pipelines.config import MatchingSettings
from pipelines.results.dataset import RunResults

REPO = Path(__file__).resolve().parents[1]
RUN_DATE = "2026-11-28"
PREVIOUS_RUN_DATE = "2026-11-27"  # the run before, on the exports as they were then
TARGETS = {"link_precision": 0.999, "link_recall": 0.995, "flag_precision": 0.99,
           "flag_recall": 0.98, "review_share": 0.01, "suggestion_right": 0.95,
           "suggestion_wrong": 0.005,
           # issue 15
           "candidate_wrong": 0.002, "invented_with_candidate": 0.01, "ece": 0.01,
           "bin_gap": 0.03, "bin_min_rows": 100, "acted_precision": 0.9995,
           "acted_recall": 0.999, "name_mismatch_precision": 0.999}
# Probability bins of the reliability tables (the last ones narrow: most links are there).
BIN_EDGES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.99, 0.999, 1.0)
EXPOSE_EVERY_CANDIDATE = {"suggest_min_probability": 1e-12, "suggest_min_margin_bits": 0.0}


def write_world_config(world: Path, folder: Path, *, exports: str = "exports",
                       name: str = "simrecon.yaml", extra: dict | None = None,
                       **matching: object) -> Path:
    """A run configuration for ``world`` whose outputs go to ``folder/runs`` (``exports``:
    the world's folder of telco exports, e.g. ``exports_previous``; ``extra``: more
    top-level settings; ``matching``: the matching settings)."""
    telcos = folder / f"telcos-{exports}"
    telcos.mkdir(parents=True, exist_ok=True)
    for path in sorted((REPO / "config" / "telcos").glob("*.yaml")):
        mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
        mapping["source"] = str((world / exports / Path(mapping["source"]).name).resolve())
        (telcos / path.name).write_text(yaml.safe_dump(mapping, allow_unicode=True),
                                        encoding="utf-8")
    config = {"registry": str(world / "registry" / "citizens.parquet"),
              "telcos_dir": str(telcos), "output_dir": str(folder / "runs")}
    if matching:
        config["matching"] = matching
    config.update(extra or {})
    path = folder / name
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


def reliability(probability: np.ndarray, right: np.ndarray) -> dict:
    """Reliability table (per bin: rows, mean probability, observed share right) and the
    expected calibration error: the row-weighted mean gap between the two.

    Per bin also ``sigma``: the standard deviation of the observed share if every
    probability were exact (``sqrt(sum p (1 - p)) / rows``), so a gap can be read against
    the sampling noise of a bin of that size (a bin of 278 rows near 0.5 has σ = 0.03,
    the whole tolerance of issue 15). Information only: the targets use the gap."""
    probability = np.asarray(probability, dtype=float)
    right = np.asarray(right, dtype=bool)
    edges = np.asarray(BIN_EDGES)
    at = np.clip(np.searchsorted(edges, probability, side="right") - 1, 0, len(edges) - 2)
    bins, gap_sum = [], 0.0
    for b in range(len(edges) - 1):
        mine = at == b
        rows = int(mine.sum())
        if not rows:
            continue
        mean, observed = float(probability[mine].mean()), float(right[mine].mean())
        gap_sum += rows * abs(mean - observed)
        sigma = float(np.sqrt((probability[mine] * (1 - probability[mine])).sum()) / rows)
        bins.append({"low": float(edges[b]), "high": float(edges[b + 1]), "rows": rows,
                     "mean_probability": mean, "observed": observed,
                     "gap": observed - mean, "sigma": sigma})
    total = len(probability)
    return {"rows": total, "ece": gap_sum / total if total else 0.0, "bins": bins,
            **_if_exact(probability, at)}


# Draws of :func:`_if_exact` (seeded: the same figures for the same run).
EXACT_DRAWS = 2000


def _if_exact(probability: np.ndarray, at: np.ndarray) -> dict:
    """What the bin target can show when every probability is exact: outcomes drawn
    from the rows' own probabilities (``EXACT_DRAWS`` times), the share of draws in which
    every bin of at least ``bin_min_rows`` rows lands within ``bin_gap`` of its mean
    probability (``chance_bins_within_if_exact``), and per such bin the share of draws it
    does not. A target a perfectly calibrated model misses half the time says little."""
    rng = np.random.default_rng(20261205)
    missed = np.zeros(EXACT_DRAWS, dtype=bool)
    per_bin = {}
    for b in np.unique(at):
        p = probability[at == b]
        if len(p) < TARGETS["bin_min_rows"]:
            continue
        right = np.zeros(EXACT_DRAWS)
        for lo in range(0, len(p), 4096):  # bounded: draws x 4096 at a time
            chunk = p[lo:lo + 4096]
            right += (rng.random((EXACT_DRAWS, len(chunk))) < chunk).sum(axis=1)
        out = np.abs(right / len(p) - p.mean()) > TARGETS["bin_gap"] + 1e-9  # 0.47 - 0.5
        per_bin[f"{BIN_EDGES[b]:g}-{BIN_EDGES[b + 1]:g}"] = float(out.mean())
        missed |= out
    return {"chance_bins_within_if_exact": float(1 - missed.mean()),
            "bin_out_if_exact": per_bin}


def score(results: pd.DataFrame, truth: pd.DataFrame,
          settings: MatchingSettings | None = None) -> dict:
    """Every figure of the benchmark from a results table and its ground truth.

    ``settings``: the thresholds a candidate is offered at (default: the configuration's
    defaults), applied to ``candidate_probability`` and ``candidate_margin_bits`` of a
    run that exposed every best candidate (see the module docstring)."""
    settings = settings or MatchingSettings()
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

    # The offer under the configured thresholds (the run exposed every best candidate).
    probability = joined["candidate_probability"]
    clear = probability.notna() & (probability >= settings.suggest_min_probability) \
        & (joined["candidate_margin_bits"] >= settings.suggest_min_margin_bits)
    best = joined["candidate_citizen_id"]
    offered = best.where(clear)
    suggested_id = joined["suggested_citizen_id"].where(clear)

    mistyped = joined["expected_suggested_citizen_id"].notna()
    suggested = suggested_id.notna()
    suggestion = {
        "mistyped_rows": int(mistyped.sum()),
        "suggestions": int(suggested.sum()),
        "right_share_of_mistyped": float(
            (suggested_id == joined["expected_suggested_citizen_id"])[mistyped]
            .mean()) if mistyped.any() else 1.0,
        "wrong_share_of_suggestions": float(
            (suggested_id != true_holder)[suggested].mean())
        if suggested.any() else 0.0,
    }
    unregistered = joined["expected_status"] == "UNREGISTERED"
    findable = unregistered & true_holder.notna()
    has_candidate = offered.notna()
    invented = true_holder.isna() & joined["expected_flags"].map(
        lambda fs: "ID_NOT_FOUND" in list(fs))
    candidate = {
        "unregistered_rows": int(unregistered.sum()),
        "unregistered_with_holder_in_registry": int(findable.sum()),
        "candidates": int(has_candidate.sum()),
        "right_share_of_findable": float((offered == true_holder)[findable].mean())
        if findable.any() else 1.0,
        "wrong": int((offered != true_holder)[has_candidate].sum()),
        "wrong_share_of_candidates": float((offered != true_holder)[has_candidate].mean())
        if has_candidate.any() else 0.0,
        "invented_with_number": int(invented.sum()),
        "invented_with_candidate": int((invented & has_candidate).sum()),
        "invented_share_with_candidate": float(has_candidate[invented].mean())
        if invented.any() else 0.0,
    }
    searched = probability.notna()
    calibration = {
        "candidates": reliability(probability[searched].to_numpy(),
                                  (best == true_holder)[searched].to_numpy()),
        "holder_links": reliability(
            joined["match_probability"][joined["matched_citizen_id"].notna()
                                        & joined["match_band"].notna()].to_numpy(),
            (joined["matched_citizen_id"] == true_holder)[
                joined["matched_citizen_id"].notna() & joined["match_band"].notna()].to_numpy()),
    }
    # Every link a user would act on: the holder, else a suggestion, else a candidate
    # offered at probability >= 0.5.
    acted = joined["holder_citizen_id"].fillna(suggested_id).fillna(
        offered.where(probability >= 0.5))
    reachable = true_holder.notna() & (joined["document_citizen_id"].isna()
                                      | (joined["document_citizen_id"] == true_holder))
    acted_right = acted.notna() & (acted == true_holder)
    acting = {"links": int(acted.notna().sum()), "right": int(acted_right.sum()),
              "linkable": int(linkable.sum()), "reachable": int(reachable.sum()),
              "precision": float(acted_right.sum() / max(acted.notna().sum(), 1)),
              "recall": float((acted_right & linkable).sum() / max(linkable.sum(), 1)),
              "recall_of_reachable": float((acted_right & reachable).sum()
                                           / max(reachable.sum(), 1))}
    review = int((joined["status"] == "REVIEW").sum())
    return {
        "rows": len(truth), "scored_rows": len(joined), "quarantined": quarantined,
        "status_agreement": float((joined["status"] == joined["expected_status"]).mean()),
        "review_rows": review, "review_share": review / max(len(joined), 1),
        "review_band_rows": int((joined["match_band"] == "REVIEW").sum()),
        "link": link, "flags": flags, "suggestion": suggestion, "candidate": candidate,
        "calibration": calibration, "acted": acting,
    }


def failures(figures: dict) -> list[str]:
    """The Done-when targets of issues 3 and 15 that the figures miss."""
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
    if figures["flags"]["NAME_MISMATCH"]["precision"] < TARGETS["name_mismatch_precision"]:
        out.append("NAME_MISMATCH precision")
    if figures["review_share"] > TARGETS["review_share"]:
        out.append("review share")
    s, c = figures["suggestion"], figures["candidate"]
    if s["right_share_of_mistyped"] < TARGETS["suggestion_right"]:
        out.append("suggestions right")
    if s["wrong_share_of_suggestions"] > TARGETS["suggestion_wrong"]:
        out.append("suggestions wrong")
    if c["wrong_share_of_candidates"] > TARGETS["candidate_wrong"]:
        out.append("candidates wrong")
    if c["invented_share_with_candidate"] > TARGETS["invented_with_candidate"]:
        out.append("invented people with a candidate")
    table = figures["calibration"]["candidates"]
    if table["ece"] > TARGETS["ece"]:
        out.append("candidate ECE")
    if any(b["rows"] >= TARGETS["bin_min_rows"] and abs(b["gap"]) > TARGETS["bin_gap"]
           for b in table["bins"]):
        out.append("candidate reliability bin")
    a = figures["acted"]
    if a["precision"] < TARGETS["acted_precision"]:
        out.append("acted-on precision")
    if a["recall"] < TARGETS["acted_recall"]:
        out.append("acted-on recall")
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
        f"({c['wrong']:,} of {c['candidates']:,} candidates) |",
        f"| invented people with a well-formed number offered a candidate | "
        f"{c['invented_share_with_candidate']:.4f} ({c['invented_with_candidate']:,} of "
        f"{c['invented_with_number']:,}) |",
        f"| candidate probability ECE | {figures['calibration']['candidates']['ece']:.4f} "
        f"(of {figures['calibration']['candidates']['rows']:,} searched rows with a "
        f"candidate) |",
        f"| holder-link probability ECE | "
        f"{figures['calibration']['holder_links']['ece']:.4f} "
        f"(of {figures['calibration']['holder_links']['rows']:,} document links) |",
        f"| links acted on (holder, suggestion, candidate p >= 0.5): precision | "
        f"{figures['acted']['precision']:.5f} ({figures['acted']['right']:,} right of "
        f"{figures['acted']['links']:,}) |",
        f"| links acted on: recall | {figures['acted']['recall']:.5f} (of "
        f"{figures['acted']['linkable']:,} linkable rows) |",
        f"| links acted on: recall of every row whose holder is in the registry and not "
        f"behind another's document | {figures['acted']['recall_of_reachable']:.5f} (of "
        f"{figures['acted']['reachable']:,}) |",
        "",
        "| flag | planted | found | precision | recall | F1 |", "|---|---:|---:|---:|---:|---:|",
    ]
    for flag, f in figures["flags"].items():
        lines.append(f"| {flag} | {f['planted']:,} | {f['found']:,} | {f['precision']:.4f} | "
                     f"{f['recall']:.4f} | {f['f1']:.4f} |")
    for title, key in (("candidate_probability (best candidate is the holder)", "candidates"),
                       ("match_probability of document links (the document's citizen is "
                        "the holder)", "holder_links")):
        table = figures["calibration"][key]
        lines += ["", f"Reliability of {title}: ECE {table['ece']:.4f}", "",
                  "| probability | rows | mean probability | observed | gap | σ if exact |",
                  "|---|---:|---:|---:|---:|---:|"]
        for b in table["bins"]:
            lines.append(f"| {b['low']:g}–{b['high']:g} | {b['rows']:,} | "
                         f"{b['mean_probability']:.4f} | {b['observed']:.4f} | "
                         f"{b['gap']:+.4f} | {b['sigma']:.4f} |")
        out = ", ".join(f"{k} {v:.2f}" for k, v in table["bin_out_if_exact"].items() if v)
        lines += ["", f"If every probability were exact, every bin of ≥ "
                  f"{TARGETS['bin_min_rows']} rows would land within {TARGETS['bin_gap']} in "
                  f"{table['chance_bins_within_if_exact']:.0%} of draws"
                  + (f" (out: {out})" if out else "") + "."]
    return "\n".join(lines)


def run(subscriptions: int, seed: int, workdir: Path, citizens: int | None = None,
        history: bool = True, **matching: object) -> dict:
    """Generate, run (the previous run first, with ``history``), score. Returns the
    figures plus timings."""
    world = workdir / "world"
    citizens = citizens or max(2500, round(subscriptions * 0.625))
    start = time.perf_counter()
    if not (world / "ground_truth.parquet").exists() or \
            (history and not (world / PREVIOUS_EXPORTS).exists()):
        generate_world(world, seed=seed, n_subscriptions=subscriptions, n_citizens=citizens,
                       noise="benchmark", previous=history)
    generated = time.perf_counter() - start
    settings = MatchingSettings(**matching)  # type: ignore[arg-type]
    exposed = {**matching, **EXPOSE_EVERY_CANDIDATE}
    config = write_world_config(world, workdir, **exposed)
    shutil.rmtree(workdir / "runs", ignore_errors=True)  # a kept world is run afresh
    from pipelines.stages import run_all

    start = time.perf_counter()
    previous_s = 0.0
    if history:
        before = write_world_config(world, workdir, exports=PREVIOUS_EXPORTS,
                                    name="simrecon-previous.yaml", **exposed)
        run_all(str(before), PREVIOUS_RUN_DATE)
        previous_s = time.perf_counter() - start
        start = time.perf_counter()
    outcome = run_all(str(config), RUN_DATE)
    ran = time.perf_counter() - start
    results = RunResults(outcome["run_dir"]).read().to_pandas()
    truth = pq.read_table(world / "ground_truth.parquet").to_pandas()
    figures = score(results, truth, settings)
    figures["citizens"] = citizens
    figures["timings"] = {"generate_s": round(generated, 1), "pipeline_s": round(ran, 1),
                          "previous_run_s": round(previous_s, 1),
                          "stages": outcome["timings"]}
    figures["history"] = history
    figures["model_version"] = str(results["model_version"].iloc[0])
    summary = json.loads((Path(outcome["run_dir"]) / "summary.json").read_text())
    figures["namesake_prior"] = summary.get("namesake_prior")
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--registry", type=int, default=None,
                        help="citizens in the registry (default 0.625 x subscriptions, at "
                             "least 2,500)")
    parser.add_argument("--seed", type=int, default=20261128)
    parser.add_argument("--no-history", dest="history", action="store_false",
                        help="no previous run (each number without history)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the world and the run here (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="simrecon-accuracy-"))
    try:
        figures = run(args.subscriptions, args.seed, workdir, args.registry, args.history)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    figures["machine"] = f"{platform.machine()}, {platform.python_version()}"
    print(f"{figures['citizens']:,} citizens in the registry")
    print(render(figures))
    print(f"\nmodel {figures['model_version']}; generate {figures['timings']['generate_s']} s, "
          f"pipeline {figures['timings']['pipeline_s']} s")
    prior = figures["namesake_prior"]
    if prior:
        print(f"namesake prior: {prior['holder_share']:.4f} of the holders of "
              f"{prior['rows']:,} searched rows with a candidate have a namesake, "
              f"{prior['registry_share']:.4f} of the registry; "
              f"{prior['namesake_bits']:+.2f} bits with one, {prior['other_bits']:+.2f} without")
    missed = failures(figures)
    print("targets met" if not missed else "targets missed: " + ", ".join(missed))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0 if not missed else 1


if __name__ == "__main__":
    raise SystemExit(main())
