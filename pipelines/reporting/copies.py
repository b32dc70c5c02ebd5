"""A copy of a published run's report for one role (``simrecon report render``).

The published ``report.html`` is always masked; a role listed in
``report.unmasked_roles`` may have a copy with full ID numbers rendered outside
the runs folder (which is published and copied as a whole).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.config import ConfigError, load_config
from pipelines.intake.quarantine import empty_quarantine
from pipelines.reporting.report import from_config, render_html, reveal_ids_for
from pipelines.reporting.workbook import write_workbook
from pipelines.storage.files import write_text


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
    if not (run / "summary.json").is_file() or not (run / "results.parquet").is_file():
        raise ConfigError(f"{run}: no published run (summary.json, results.parquet)")
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    results = pq.read_table(run / "results.parquet")
    parts = [pq.read_table(p) for p in sorted((run / "quarantine").glob("*.parquet"))]
    quarantine = pa.concat_tables(parts) if parts else empty_quarantine()
    content = from_config(config, summary, results, quarantine, runs, role=role)
    html_path = write_text(render_html(content), out)
    xlsx_path = write_workbook(content, out.with_suffix(".xlsx"))
    logging.getLogger("simrecon.report").info(
        "report of run %s rendered for role %s (ID numbers %s): %s", run_date, role or "-",
        "in full" if content.reveal_ids else "masked", out)
    return html_path, xlsx_path
