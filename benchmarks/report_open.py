"""How long Chromium takes to open ``report.html`` of a large run (issue 16).

    .venv/bin/python -m benchmarks.report_open --copies 60 --rows 2000 20000 --repeat 3

1. The bundled samples are run once (``run_all``, 4,000 subscriptions) and their
   results repeated ``--copies`` times with fresh row numbers: a run whose flagged
   rows far outnumber the table, as in a 10M run (the page does not grow with the
   run: its figures are aggregates and its table a bounded sample, so only
   ``report.flagged_rows`` changes its size).
2. Fourteen earlier runs are written as ``summary.json`` files and read back by
   ``previous_summaries`` (the trend charts at their fullest).
3. For each ``--rows`` (``report.flagged_rows``), the report is built and rendered
   (``report.build``, ``render_html``), and opened ``--repeat`` times in headless
   Chromium (``tests/browser.py``): the page's own navigation timing
   (DOMContentLoaded, load event, first contentful paint) and the wall time of the
   whole open (browser start included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipelines.intake.quarantine import empty_quarantine  # noqa: E402
from pipelines.reporting import aggregates, report  # noqa: E402
from pipelines.results.dataset import RunResults  # noqa: E402
from pipelines.stages import run_all  # noqa: E402
from tests.browser import TIMEOUT, open_page  # noqa: E402
from tests.conftest import write_config  # noqa: E402

RUN_DATE = "2026-11-28"
TIMING = """(() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const paint = performance.getEntriesByType('paint')
    .find(p => p.name === 'first-contentful-paint');
  return {dom: nav.domContentLoadedEventEnd, load: nav.loadEventEnd,
          fcp: paint ? paint.startTime : null,
          rows: document.querySelectorAll('#flagged tr.row').length};
})()"""


def large_results(tmp: Path, copies: int) -> tuple[pa.Table, dict]:
    """The samples' results repeated ``copies`` times, and the run's summary of them."""
    run_dir = Path(run_all(str(write_config(tmp)), RUN_DATE)["run_dir"])
    results = RunResults(run_dir).read()
    big = pa.concat_tables([results] * copies)
    big = big.set_column(big.schema.get_field_index("source_row"), "source_row",
                         pa.array(range(1, big.num_rows + 1), pa.int64()))
    counts = aggregates.of_results(big)
    summary = report.summarise(counts, {}, {t: {} for t in counts.telcos}, {}, RUN_DATE)
    return big, summary


def earlier_runs(summary: dict, runs: Path, count: int) -> list[dict]:
    """``count`` earlier runs' summaries written under ``runs`` and read back."""
    first = date.fromisoformat(RUN_DATE) - timedelta(days=count)
    for k in range(count):
        day = (first + timedelta(days=k)).isoformat()
        (runs / day).mkdir(parents=True, exist_ok=True)
        telcos = {t: {"subscriptions": s["subscriptions"], "flagged": s["flagged"] - 50 * k}
                  for t, s in summary["telcos"].items()}
        tracking = {t: {"flagged": s["flagged"], "new": 100, "persisting": s["flagged"] - 100,
                        "resolved": 5 + k} for t, s in telcos.items()}
        (runs / day / "summary.json").write_text(json.dumps(
            {"run_date": day, "telcos": telcos, "tracking": {"by_telco": tracking}}),
            encoding="utf-8")
    return report.previous_summaries(runs, RUN_DATE, count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=60)
    parser.add_argument("--rows", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="report-open-") as folder:
        tmp = Path(folder)
        big, summary = large_results(tmp, args.copies)
        previous = earlier_runs(summary, tmp / "history", 14)
        print(f"run: {big.num_rows:,} subscriptions, {summary['flagged']:,} flagged; "
              f"{len(previous)} earlier runs; {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
        print("| flagged_rows | HTML MB | build+render s | DOMContentLoaded ms | load ms | "
              "first paint ms | open wall s |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for rows in args.rows:
            start = time.perf_counter()
            content = report.build(summary, big, empty_quarantine(), previous=previous,
                                   flagged_rows=rows, workbook_flagged_rows=rows)
            page = tmp / f"report-{rows}.html"
            page.write_text(report.render_html(content), encoding="utf-8")
            built = time.perf_counter() - start
            timings, walls = [], []
            for _ in range(args.repeat):
                start = time.perf_counter()
                try:
                    found = open_page(page, width=1366, height=768, evaluate={"t": TIMING})
                except TimeoutError:
                    print(f"| {rows:,} | {page.stat().st_size / 1e6:.1f} | {built:.1f} | "
                          f"did not load within {TIMEOUT:.0f} s | | | |")
                    break
                walls.append(time.perf_counter() - start)
                if found.errors:
                    raise SystemExit(f"page errors: {found.errors}")
                timings.append(found.values["t"])
                assert timings[-1]["rows"] == min(rows, summary["flagged"])

            if not timings:
                continue

            def median(key: str, values: list[dict] = timings) -> float:
                return statistics.median(v[key] for v in values if v[key] is not None)

            print(f"| {rows:,} | {page.stat().st_size / 1e6:.1f} | {built:.1f} | "
                  f"{median('dom'):,.0f} | {median('load'):,.0f} | {median('fcp'):,.0f} | "
                  f"{statistics.median(walls):.1f} |")
        print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
