"""The ``simrecon`` command: run a reconciliation or regenerate the samples, without Airflow."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import date
from pathlib import Path

from pipelines.config import ConfigError
from pipelines.errors import RegistryError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "config" / "simrecon.yaml"


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from pipelines.stages import run_all
    from pipelines.stages.run import default_workers

    outcome = run_all(str(args.config), args.run_date,
                      workers=args.workers if args.workers else default_workers())
    print(f"run folder:       {outcome['run_dir']}")
    print(f"report:           {outcome['report']}")
    for path in outcome["correction_lists"]:
        print(f"correction list:  {path}")
    if outcome["failed_telcos"]:
        print(f"NOT PROCESSED:    {', '.join(outcome['failed_telcos'])} "
              "(see summary.json and the report)", file=sys.stderr)
        return 1
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from data_samples.generator import generate_world

    counts = generate_world(Path(args.out), seed=args.seed, n_citizens=args.citizens,
                            n_subscriptions=args.subscriptions)
    print(json.dumps(counts, indent=2, default=str, ensure_ascii=False))
    return 0


def _cmd_model_estimate(args: argparse.Namespace) -> int:
    from pipelines.reconcile.estimate import estimate_from_config

    model = estimate_from_config(str(args.config), date.fromisoformat(args.run_date),
                                 Path(args.out), version=args.version,
                                 random_pairs=args.random_pairs, seed=args.seed)
    print(f"model {model.version} written to {args.out}")
    print(json.dumps(model.to_dict()["weights_for_reading"], indent=2))
    return 0


def _cmd_review_import(args: argparse.Namespace) -> int:
    from pipelines.config import load_config
    from pipelines.correction_cycle.review import ReviewImportError, import_decisions
    from pipelines.stages import store_of

    try:
        outcome = import_decisions(args.file, args.reviewer, store_of(load_config(args.config)))
    except ReviewImportError as exc:
        print(f"simrecon: review import refused: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(outcome, indent=2, ensure_ascii=False))
    return 0


def _cmd_report_render(args: argparse.Namespace) -> int:
    from pipelines.reporting.copies import render_copy
    from pipelines.reporting.report import RoleNotAllowedError

    try:
        html_path, xlsx_path = render_copy(args.config, args.run_date, args.out, role=args.role)
    except RoleNotAllowedError as exc:
        print(f"simrecon: refused: {exc}", file=sys.stderr)
        return 2
    print(f"report:   {html_path}")
    print(f"workbook: {xlsx_path}")
    return 0


def _cmd_registry_prepare(args: argparse.Namespace) -> int:
    from pipelines.stages import refresh_registry

    outcome = refresh_registry(str(args.config), args.as_of)
    print(f"snapshot:  {outcome['snapshot']} ({outcome['citizens']} citizens, "
          f"{outcome['shards']} shards; {'prepared now' if outcome['prepared'] else 'reused'})")
    print(f"folder:    {outcome['path']}")
    print(f"latest:    {'now this snapshot' if outcome['changed'] else 'unchanged'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simrecon", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run every stage for one run date")
    run.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                     help=f"run configuration YAML (default: {DEFAULT_CONFIG})")
    run.add_argument("--run-date", default=date.today().isoformat(),
                     help="YYYY-MM-DD (default: today); rerunning a date replaces its folder")
    run.add_argument("--workers", type=int, default=0,
                     help="processes for the per-telco and per-shard stages (default: one "
                          "per CPU; 1: everything in this process)")
    run.set_defaults(func=_cmd_run)

    sample = sub.add_parser("sample", help="regenerate the bundled sample world")
    sample.add_argument("--out", default=str(REPO_ROOT / "data_samples"))
    sample.add_argument("--seed", type=int, default=20261128)
    sample.add_argument("--citizens", type=int, default=2500)
    sample.add_argument("--subscriptions", type=int, default=4000)
    sample.set_defaults(func=_cmd_sample)

    model = sub.add_parser("model", help="the Fellegi-Sunter match model (docs/matching.md)")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    estimate = model_sub.add_parser(
        "estimate", help="re-estimate m/u, document-link priors and the candidate search's "
        "model from a registry, telco exports and the previous run (docs/matching.md)")
    estimate.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                          help="run configuration naming the registry and telco mappings")
    estimate.add_argument("--run-date", default=date.today().isoformat(),
                          help="YYYY-MM-DD: reference date for normalisation (default: today)")
    estimate.add_argument("--out", required=True, help="model JSON to write (e.g. models/...)")
    estimate.add_argument("--version", required=True, help="version label stored in the file")
    estimate.add_argument("--random-pairs", type=int, default=300_000,
                          help="random registry pairs for the u probabilities")
    estimate.add_argument("--seed", type=int, default=1, help="seed of the random pairs")
    estimate.set_defaults(func=_cmd_model_estimate)
    review = sub.add_parser("review", help="the review queue (docs/data-contracts.md)")
    review_sub = review.add_subparsers(dest="review_command", required=True)
    imported = review_sub.add_parser(
        "import", help="validate a filled-in review/queue.{csv,xlsx} and record its decisions")
    imported.add_argument("file", type=Path, help="the filled-in queue (.csv or .xlsx)")
    imported.add_argument("--reviewer", required=True, help="who decided (kept with each one)")
    imported.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                          help="run configuration naming where decisions are stored")
    imported.set_defaults(func=_cmd_review_import)

    report = sub.add_parser("report", help="the compliance report (docs/data-contracts.md)")
    report_sub = report.add_subparsers(dest="report_command", required=True)
    render = report_sub.add_parser(
        "render", help="render a published run's report and workbook again, for a role: "
        "full ID numbers only for a role in report.unmasked_roles")
    render.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="run configuration (output_dir, report settings)")
    render.add_argument("--run-date", required=True, help="YYYY-MM-DD of a published run")
    render.add_argument("--role", default=None,
                        help="who reads the copy (e.g. investigator); without it IDs stay masked")
    render.add_argument("--out", required=True, type=Path,
                        help="the .html to write, outside the runs folder (.xlsx next to it)")
    render.set_defaults(func=_cmd_report_render)

    registry = sub.add_parser("registry", help="prepared registry snapshots "
                              "(docs/data-contracts.md)")
    registry_sub = registry.add_subparsers(dest="registry_command", required=True)
    prepare = registry_sub.add_parser(
        "prepare", help="validate, normalise and shard the configured registry snapshot "
        "once, and make it the latest (what the citizen_registry_refresh DAG does)")
    prepare.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                         help="run configuration: registry, prepared_registry.{dir,shards}")
    prepare.add_argument("--as-of", default=date.today().isoformat(),
                         help="YYYY-MM-DD: no date of birth may be after it (default: today)")
    prepare.set_defaults(func=_cmd_registry_prepare)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return args.func(args)
    except (ConfigError, RegistryError) as exc:
        print(f"simrecon: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
