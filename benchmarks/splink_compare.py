"""Splink (DuckDB backend) on the same holder-linking task as ``benchmarks.scale``
(issue 4, item 5): link each subscription to its holder in the registry, and score
both Splink and simrecon against the ground truth in the same way.

    .venv/bin/python -m benchmarks.scale --subscriptions 1000000      # first: world + run
    .venv/bin/python -m benchmarks.splink_compare --subscriptions 1000000

Input. Both tools get the same, already normalised data, so that the comparison is of
linking only: the subscriptions are the run's engineer-only
``runs-private/<date>/normalised/*.parquet`` (what simrecon's match steps read) and
the registry is the run's prepared snapshot (every shard). For Splink, names are
folded (NFD, diacritics and case removed, đ→d), the surname is the first token, the
date of birth is ``YYYY-MM-DD`` text, and the document number goes to ``cccd``
(12-digit CCCD) or ``cmnd`` (old 9/12-digit CMND, matched against the registry's
``legacy_id``). This preparation is not timed.

Splink settings (``link_only``, two tables, DuckDB in-process):

* blocking rules for prediction: ``cccd``; ``cmnd``; ``dob`` and ``surname``;
* comparisons: ``name`` JaroWinkler at 0.95 / 0.88 (plus exact and else levels);
  ``dob`` exact / Levenshtein ≤ 1 / ≤ 2; ``gender`` exact; ``cccd`` exact with
  term-frequency adjustment; ``cmnd`` exact;
* training: λ from the deterministic rules ``cccd`` / ``cmnd`` (recall 0.95); u by
  random sampling (``--u-pairs``, default 10⁷ pairs); m by EM on the blocking rules
  ``cccd`` and then ``dob``+``surname`` (each round estimates the fields it does not
  block on);
* link: the best-scoring registry row per subscription with match probability > 0.5.

Timed for Splink: linker construction, training and prediction plus the best-match
selection. Timed for simrecon (from the scale run's log, ``benchmarks/out/
scale-<n>.json`` when present, else a fresh in-process run of the steps): its holder
linking, i.e. ``partition`` + ``match_shard`` + ``search_candidates`` (``search_
candidates`` also searches the whole registry for rows whose document led nowhere,
which Splink's blocking does not attempt).

Scoring (as in ``benchmarks/accuracy.py``): a link is right when it names
``true_holder_citizen_id``; precision = right links / links; recall = right links
among the linkable rows (document leads to the true holder) / linkable rows;
F1 = 2PR/(P+R).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import unicodedata
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
RUN_DATE = "2026-11-28"


def _fold(names: pd.Series) -> pd.Series:
    def one(value: object) -> object:
        if not isinstance(value, str):
            return None
        text = value.replace("đ", "d").replace("Đ", "D")
        text = "".join(c for c in unicodedata.normalize("NFD", text)
                       if unicodedata.category(c) != "Mn")
        return " ".join(text.lower().split()) or None

    return names.map(one)


def inputs(world: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Subscriptions and registry, both normalised by simrecon, in Splink's shape."""
    run = world / "runs-private" / RUN_DATE  # normalised/ is engineer-only
    subs = pd.concat([pq.read_table(p).to_pandas()
                      for p in sorted((run / "normalised").glob("*.parquet"))],
                     ignore_index=True)
    snapshot = sorted((world / "runs-private" / "registry").glob("snapshot=*"))[-1]
    registry = pd.concat([pq.read_table(p).to_pandas()
                          for p in sorted(snapshot.glob("shard=*/part.parquet"))],
                         ignore_index=True)

    def shape(frame: pd.DataFrame, uid: pd.Series, cccd: pd.Series,
              cmnd: pd.Series) -> pd.DataFrame:
        name = _fold(frame["full_name"])
        return pd.DataFrame({
            "unique_id": uid.astype(str).to_numpy(),
            "name": name.to_numpy(),
            "surname": name.str.split(" ").str[0].to_numpy(),
            "dob": pd.to_datetime(frame["date_of_birth"]).dt.strftime("%Y-%m-%d").to_numpy(),
            "gender": frame["gender"].to_numpy(),
            "cccd": cccd.to_numpy(), "cmnd": cmnd.to_numpy()})

    is_cccd = subs["id_type"].eq("CCCD")
    is_cmnd = subs["id_type"].eq("CMND")
    left = shape(subs, subs["telco"] + ":" + subs["source_row"].astype(str),
                 subs["id_number"].where(is_cccd), subs["id_number"].where(is_cmnd))
    right = shape(registry, registry["citizen_id"], registry["citizen_id"],
                  registry["legacy_id"])
    return left, right


def run_splink(left: pd.DataFrame, right: pd.DataFrame, u_pairs: float) -> tuple[pd.Series, dict]:
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    timings: dict[str, float] = {}
    start = time.perf_counter()
    settings = SettingsCreator(
        link_type="link_only",
        blocking_rules_to_generate_predictions=[
            block_on("cccd"), block_on("cmnd"), block_on("dob", "surname")],
        comparisons=[
            cl.JaroWinklerAtThresholds("name", [0.95, 0.88]),
            cl.LevenshteinAtThresholds("dob", [1, 2]),
            cl.ExactMatch("gender"),
            cl.ExactMatch("cccd").configure(term_frequency_adjustments=True),
            cl.ExactMatch("cmnd"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker([left, right], settings, db_api=DuckDBAPI(),
                    input_table_aliases=["subscriptions", "registry"])
    linker.training.estimate_probability_two_random_records_match(
        [block_on("cccd"), block_on("cmnd")], recall=0.95)
    linker.training.estimate_u_using_random_sampling(max_pairs=u_pairs)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("cccd"))
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("dob", "surname"))
    timings["train_s"] = round(time.perf_counter() - start, 2)
    mark = time.perf_counter()
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    pairs = predictions.as_pandas_dataframe()
    timings["predict_s"] = round(time.perf_counter() - mark, 2)
    # the subscription side of each pair, whichever of l/r Splink put it on
    sub_left = pairs["source_dataset_l"].eq("subscriptions")
    frame = pd.DataFrame({
        "sub": pairs["unique_id_l"].where(sub_left, pairs["unique_id_r"]),
        "citizen": pairs["unique_id_r"].where(sub_left, pairs["unique_id_l"]),
        "p": pairs["match_probability"]})
    best = frame.sort_values("p", ascending=False).drop_duplicates("sub")
    timings["total_s"] = round(time.perf_counter() - start, 2)
    timings["pairs_above_0_5"] = len(pairs)
    return best.set_index("sub")["citizen"], timings


def link_figures(truth: pd.DataFrame, link: pd.Series) -> dict:
    """Holder-link precision, recall and F1 as in ``benchmarks/accuracy.py``;
    ``link`` is indexed like ``truth`` (NaN: no link)."""
    true_holder = truth["true_holder_citizen_id"]
    linkable = true_holder.notna() & (truth["document_citizen_id"] == true_holder)
    linked = link.notna()
    right = linked & (link == true_holder)
    precision = float(right.sum() / max(linked.sum(), 1))
    recall = float((right & linkable).sum() / max(linkable.sum(), 1))
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"links": int(linked.sum()), "right": int(right.sum()),
            "linkable": int(linkable.sum()), "precision": round(precision, 5),
            "recall": round(recall, 5), "f1": round(f1, 5)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.splink_compare",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    parser.add_argument("--citizens-ratio", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--u-pairs", type=float, default=1e7)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    n = args.subscriptions
    citizens = max(2500, round(n * args.citizens_ratio))
    world = OUT / f"world-{n}-{citizens}-{args.seed}"
    from pipelines.results.dataset import ResultsNotFoundError, RunResults

    try:
        run = RunResults(world / "runs" / RUN_DATE)
    except ResultsNotFoundError:
        raise SystemExit(f"{world}: run `python -m benchmarks.scale --subscriptions {n}` "
                         "first") from None

    truth = pq.read_table(world / "ground_truth.parquet",
                          columns=["telco", "source_row", "document_citizen_id",
                                   "true_holder_citizen_id"]).to_pandas()
    truth.index = truth["telco"] + ":" + truth["source_row"].astype(str)
    results = run.read(columns=["telco", "source_row", "holder_citizen_id"]).to_pandas()
    results.index = results["telco"] + ":" + results["source_row"].astype(str)
    ours = link_figures(truth, results["holder_citizen_id"].reindex(truth.index))
    scale_json = OUT / f"scale-{n // 1_000_000}m.json"
    ours_s = None
    if scale_json.exists():
        for entry in json.loads(scale_json.read_text(encoding="utf-8"))["runs"]:
            if entry["subscriptions"] == n:
                ours_s = entry["holder_linking_s"]

    mark = time.perf_counter()
    left, right = inputs(world)
    print(f"prepared Splink input ({len(left):,} subscriptions, {len(right):,} citizens) "
          f"in {time.perf_counter() - mark:.1f}s (not timed)", flush=True)
    best, timings = run_splink(left, right, args.u_pairs)
    theirs = link_figures(truth, best.reindex(truth.index))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    print(f"\n{n:,} subscriptions, {citizens:,} citizens (seed {args.seed})")
    print(f"{'':28s} {'simrecon':>12s} {'Splink':>12s}")
    print(f"{'holder linking time (s)':28s} {ours_s or float('nan'):12.1f} "
          f"{timings['total_s']:12.1f}")
    for key in ("precision", "recall", "f1"):
        print(f"{'link ' + key:28s} {ours[key]:12.5f} {theirs[key]:12.5f}")
    print(f"{'links':28s} {ours['links']:12,d} {theirs['links']:12,d}")
    print(f"Splink: train {timings['train_s']}s, predict {timings['predict_s']}s, "
          f"{timings['pairs_above_0_5']:,} pairs > 0.5; process peak RSS {peak:.2f} GiB")
    if ours_s:
        print(f"speed-up: {timings['total_s'] / ours_s:.1f}x")
    if args.json:
        args.json.write_text(json.dumps({"simrecon": {**ours, "seconds": ours_s},
                                         "splink": {**theirs, **timings,
                                                    "peak_rss_gib": round(peak, 2)}},
                                        indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
