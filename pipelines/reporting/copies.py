"""A copy of a published run's report for one role (``simrecon report render``).

The published ``report.html`` is always masked; a role listed in
``report.unmasked_roles`` may have a copy with full ID numbers rendered outside
the runs folder (which is published and copied as a whole).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.config import ConfigError, RunConfig, load_config
from pipelines.reporting import aggregates
from pipelines.reporting.report import (
    FlaggedCandidates,
    Report,
    build_from,
    previous_summaries,
    render_html,
    reveal_ids_for,
    sample_limit,
    settings_of,
)
from pipelines.reporting.workbook import write_workbook
from pipelines.results.dataset import ResultsNotFoundError, RunResults
from pipelines.storage.files import write_text
from pipelines.storage.modes import make_dirs
from pipelines.storage.paths import RunPaths
from pipelines.storage.workarea import in_work_area


@in_work_area("published")  # shared_work: the published run, fetched from the bucket
def render_copy(config_path: str | Path, run_date: str, out: str | Path,
                role: str | None = None) -> tuple[Path, Path]:
    """Render the report of the published run ``run_date`` again, to ``out`` (``.html``)
    and the workbook next to it (``.xlsx``), for ``role``.

    A role listed in ``report.unmasked_roles`` gets full ID numbers; any other role
    is refused (``RoleNotAllowedError``) before anything is read; no role gives the
    masked report. The copy is never written inside the runs folder (``output_dir``),
    which is published and copied as a whole.
    """
    config = load_config(config_path)
    reveal_ids_for(role, config.report.unmasked_roles)
    out = Path(out).resolve()
    if out.suffix.lower() != ".html":
        raise ConfigError(f"{out}: the report copy must be an .html file")
    runs = config.output_path.resolve()
    if out.is_relative_to(runs):
        raise ConfigError(f"{out}: write the copy outside the runs folder {runs} (it is "
                          "published and copied as a whole)")
    run = runs / run_date
    try:
        results = RunResults(run)
    except ResultsNotFoundError as exc:
        raise ConfigError(f"{run}: no published run ({exc})") from exc
    if not (run / "summary.json").is_file():
        raise ConfigError(f"{run}: no published run (summary.json)")
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    content = _content(config, summary, results, runs, role)
    html_path = write_text(render_html(content), out)
    xlsx_path = write_workbook(content, out.with_suffix(".xlsx"))
    logging.getLogger("simrecon.report").info(
        "report of run %s rendered for role %s (ID numbers %s): %s", run_date, role or "-",
        "in full" if content.reveal_ids else "masked", out)
    return html_path, xlsx_path


def _content(config: RunConfig, summary: dict, results: RunResults, runs: Path,
             role: str | None) -> Report:
    """The report of a published run, recomputed from its results a shard at a time
    (the run's working aggregates are gone once it is published)."""
    settings = settings_of(config)
    engineering = RunPaths(config.output_path, summary["run_date"], config.private_path)
    candidates = FlaggedCandidates(sample_limit(settings))
    buckets = aggregates.pos_buckets(results.num_rows)
    # Each part's partial aggregates go to an owner-only folder in the engineers' area,
    # so its points of sale are merged a bucket at a time (never the run's at once).
    make_dirs(engineering.private_root)
    with tempfile.TemporaryDirectory(prefix=".report-render-",
                                     dir=engineering.private_root) as scratch:
        folders = []
        for shard, path in enumerate(results.files):
            part = pq.read_table(path)
            folders.append(Path(scratch) / f"{shard:03d}")
            aggregates.of_results(part, top=settings["top"],
                                  provinces_file=settings["provinces_file"]
                                  ).write(folders[-1], pos_buckets=buckets)
            found = aggregates.flagged_keys(part)
            del part
            candidates.add(found.append_column(
                "shard", pa.array([shard] * found.num_rows, pa.int32())))
        merged = aggregates.merge_folders(folders, buckets, settings["top"])
    flagged, total = candidates.fetch(results)
    reasons: dict[str, int] = {}
    # Quarantined rows are engineer-only (<private_dir>/<date>/quarantine); runs published
    # before that kept them in the run folder.
    folder = engineering.engineering / "quarantine"
    if not folder.is_dir():
        folder = results.run_dir / "quarantine"
    for path in sorted(folder.glob("*.parquet")):
        for reason, n in aggregates.value_counts(
                pq.read_table(path, columns=["reason"])["reason"]).items():
            reasons[reason] = reasons.get(reason, 0) + n
    return build_from(summary, merged, flagged, total, dict(sorted(reasons.items())),
                      previous=previous_summaries(runs, summary["run_date"],
                                                  settings["trend_runs"] - 1),
                      **{**settings, "role": role})
