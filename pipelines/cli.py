"""The ``simrecon`` command: run a reconciliation or regenerate the samples, without Airflow."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
from datetime import date
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "config" / "simrecon.yaml"


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not verbose:
        # Great Expectations logs hundreds of INFO lines about its own start-up (functions
        # it registers, temporary docs folders); the gates log their verdicts themselves.
        logging.getLogger("great_expectations").setLevel(logging.WARNING)


def _cmd_run(args: argparse.Namespace) -> int:
    from pipelines.deploy.workers import default_workers, start_fork_server

    workers = args.workers if args.workers else default_workers()
    if workers > 1:
        start_fork_server()  # its imports run beside this process's own (next line)
    from pipelines.stages import run_all

    gc.freeze()  # as in the workers (pipelines/deploy/frozen_imports.py): the imports' objects
    outcome = run_all(str(args.config), args.run_date, workers=workers)
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


def _cmd_mapping_check(args: argparse.Namespace) -> int:
    from pipelines.config import load_config
    from pipelines.intake.mapping_check import check_mapping

    config = load_config(args.config)
    telcos = [args.telco] if args.telco else [m.telco for m in config.telcos()]
    unusable = False
    for telco in telcos:
        report = check_mapping(config, telco, rows=args.rows,
                               run_date=date.fromisoformat(args.run_date))
        print("\n".join(report.lines()))
        print()
        unusable |= report.error is not None
    return 1 if unusable else 0


DEFAULT_LOOKUP_SETTINGS = REPO_ROOT / "config" / "lookup.yaml"


def _lookup_settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from pipelines.lookup.settings import load_serve_settings

    return load_serve_settings(args.settings)


def _service_db(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from pipelines.config import load_config
    from pipelines.lookup import service_store
    from pipelines.lookup.service import service_store_of

    settings = _lookup_settings(args)
    return settings, service_store.engine(service_store_of(load_config(settings.run_config_path)))


def _cmd_lookup_index(args: argparse.Namespace) -> int:
    from pipelines.stages import refresh_lookup_index

    outcome = refresh_lookup_index(str(args.config), args.run_date)
    print(json.dumps(outcome, indent=2))
    return 0


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    import getpass

    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("simrecon: the passwords differ")
    return first


def _cmd_lookup_account(args: argparse.Namespace) -> int:
    from pipelines.lookup import accounts

    settings, db = _service_db(args)
    try:
        if args.account_command == "add":
            if args.role not in settings.roles:
                raise accounts.AccountError(f"role {args.role!r}: one of {sorted(settings.roles)}")
            provinces = accounts.province_codes([p for p in args.provinces.split(",")])
            telcos = "*" if args.telcos.strip() == "*" else ",".join(
                sorted(t.strip() for t in args.telcos.split(",") if t.strip()))
            account = accounts.create_account(db, args.name, args.agency, args.role, provinces,
                                               telcos, _password(args))
            print(f"account {account.name} ({account.role}, {account.agency}): provinces "
                  f"{provinces}, telcos {telcos}")
        elif args.account_command == "password":
            accounts.set_password(db, args.name, _password(args))
            print(f"account {args.name}: password changed")
        elif args.account_command == "unlock":
            accounts.unlock(db, args.name)
            print(f"account {args.name}: unlocked")
        elif args.account_command == "disable":
            accounts.disable(db, args.name)
            print(f"account {args.name}: disabled, sessions closed")
    except accounts.AccountError as exc:
        print(f"simrecon: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from pipelines.lookup.app import serve

    serve(_lookup_settings(args), host=args.host, port=args.port)
    return 0


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from pipelines.lookup import audit

    _, db = _service_db(args)
    verdict = audit.verify(db)
    if verdict.ok:
        print(f"audit log intact: {verdict.entries} entries, head {verdict.head_seq} "
              f"{verdict.head_hash}")
        return 0
    print(f"AUDIT LOG BROKEN at entry {verdict.first_broken}: {verdict.problem}",
          file=sys.stderr)
    return 1


def _cmd_audit_export(args: argparse.Namespace) -> int:
    from pipelines.lookup import audit

    _, db = _service_db(args)
    out = open(args.out, "w", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    count = 0
    try:
        for entry in audit.export(db, args.start, args.end, args.account):
            out.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
    finally:
        if args.out:
            out.close()
    print(f"{count} audit entries exported", file=sys.stderr)
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

    mapping = sub.add_parser("mapping", help="telco mappings (docs/data-contracts.md)")
    mapping_sub = mapping.add_subparsers(dest="mapping_command", required=True)
    check = mapping_sub.add_parser(
        "check", help="read the first rows of a telco's export through its mapping: fields "
        "before and after normalisation, vocabulary coverage, date formats, the encoding, "
        "and every flag rule the mapping leaves unable to fire")
    check.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                       help="run configuration (telcos_dir, flags, intake settings)")
    check.add_argument("--telco", default=None, help="the telco to check (default: every one)")
    check.add_argument("--rows", type=int, default=200, help="rows read from the export")
    check.add_argument("--run-date", default=date.today().isoformat(),
                       help="YYYY-MM-DD: reference date for normalisation (default: today)")
    check.set_defaults(func=_cmd_mapping_check)

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

    _lookup_parsers(sub)
    return parser


def _lookup_parsers(sub) -> None:  # type: ignore[no-untyped-def]
    """``lookup``, ``serve`` and ``audit`` (docs/lookup.md)."""

    def settings_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--settings", type=Path, default=DEFAULT_LOOKUP_SETTINGS,
                       help=f"look-up service settings (default: {DEFAULT_LOOKUP_SETTINGS})")

    lookup = sub.add_parser("lookup", help="the look-up index and agency accounts "
                            "(docs/lookup.md)")
    lookup_sub = lookup.add_subparsers(dest="lookup_command", required=True)
    indexed = lookup_sub.add_parser(
        "index", help="index a published run for the look-up service (what the DAG's "
        "lookup_index task does after publish)")
    indexed.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                         help="run configuration (output_dir, lookup settings)")
    indexed.add_argument("--run-date", default=None,
                         help="YYYY-MM-DD of a published run (default: the latest)")
    indexed.set_defaults(func=_cmd_lookup_index)
    account = lookup_sub.add_parser("account", help="agency accounts of the look-up service")
    account_sub = account.add_subparsers(dest="account_command", required=True)
    add = account_sub.add_parser("add", help="create an account (asks for its password)")
    add.add_argument("name")
    add.add_argument("--agency", required=True, help="the agency the account belongs to")
    add.add_argument("--role", required=True, help="a role of the settings (investigator, "
                     "compliance, ...)")
    add.add_argument("--provinces", required=True,
                     help="* or comma-separated old codes (079), old provinces or 2025 units")
    add.add_argument("--telcos", required=True, help="* or comma-separated telco names")
    for name, text in (("password", "set a new password (and unlock)"),
                       ("unlock", "lift a lockout"),
                       ("disable", "disable the account and close its sessions")):
        command = account_sub.add_parser(name, help=text)
        command.add_argument("name")
    for command in account_sub.choices.values():
        settings_option(command)
        command.add_argument("--password-stdin", action="store_true",
                             help="read the password from standard input")
        command.set_defaults(func=_cmd_lookup_account)

    serve = sub.add_parser("serve", help="run the look-up service for authorised agencies")
    settings_option(serve)
    serve.add_argument("--host", default=None, help="address to listen on (default: settings)")
    serve.add_argument("--port", type=int, default=None, help="port (default: settings)")
    serve.set_defaults(func=_cmd_serve)

    audit = sub.add_parser("audit", help="the look-up service's audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the hash chain; name the first "
                                  "broken entry")
    settings_option(verify)
    verify.set_defaults(func=_cmd_audit_verify)
    export = audit_sub.add_parser("export", help="entries for oversight, as JSON lines")
    settings_option(export)
    export.add_argument("--from", dest="start", default=None,
                        help="from this UTC date or time (YYYY-MM-DD[THH:MM])")
    export.add_argument("--to", dest="end", default=None, help="before this UTC date or time")
    export.add_argument("--account", default=None, help="one account's entries only")
    export.add_argument("--out", default=None, help="file to write (default: standard output)")
    export.set_defaults(func=_cmd_audit_export)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return args.func(args)
    except Exception as exc:
        # Imported here: pipelines.config pulls in pyarrow and pandas, which ``simrecon
        # run`` should not wait for before it starts its workers (_cmd_run).
        from pipelines.config import ConfigError
        from pipelines.errors import RegistryError
        from pipelines.lookup.settings import LookupSettingsError

        if not isinstance(exc, ConfigError | RegistryError | LookupSettingsError):
            raise
        print(f"simrecon: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
