"""The compliance report in a real browser: headless Chromium (Debian's ``chromium``).

The report must render offline with its charts, run its script without an
error, load nothing but itself, and its search, filters and row explanations
must work. Issue 16: reports of a run with 1, 2 and 14 earlier runs, and of one
with more flagged rows than its table shows, fit 1,366 and 1,920 px windows
without horizontal scrolling, their chart labels do not overlap, every telco's
trend line can be seen, and the flagged table's counters state the run's true
totals (``tests/report_probes.py``); screenshots go to
``tests/artifacts/report/``. A screenshot is left in ``tests/artifacts/`` (or
``$SIMRECON_TEST_ARTIFACTS``) for people to look at. Chromium missing is a
failure, not a skip: ``scripts/test.sh`` installs it.

The checker itself is tested first on pages with a deliberate fault, so that
"no error" means something.
"""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest

from pipelines.reporting import copies
from pipelines.results.dataset import RunResults
from pipelines.stages import run_all

from . import report_probes
from .browser import artifacts_dir, open_page
from .conftest import write_config

RUN_DATE = "2026-11-28"

PROBES = {
    "charts": "(document.querySelectorAll('details').forEach(d => { d.open = true; }), "
              "Array.from(document.querySelectorAll('svg.chart')).map(s => "
              "[s.id, s.querySelector('title').textContent, s.getBBox().width > 50,"
              " s.querySelectorAll('rect,circle,polygon,polyline').length]))",
    "rows": "document.querySelectorAll('#flagged tr.row').length",
    "count": "document.getElementById('f-count').textContent",
    "filter_flag": """(() => {
        document.querySelectorAll('details').forEach(d => { d.open = false; });
        const f = document.getElementById('f-flag');
        f.value = 'BULK_ACTIVATION'; f.dispatchEvent(new Event('input'));
        const all = Array.from(document.querySelectorAll('#flagged tr.row'));
        const shown = all.filter(r => !r.hidden);
        return [shown.length, shown.every(r => r.dataset.flags.split(' ')
          .includes('BULK_ACTIVATION')), document.getElementById('f-count').textContent,
          all.filter(r => r.dataset.flags.split(' ').includes('BULK_ACTIVATION')).length];
    })()""",
    "filter_telco_search": """(() => {
        document.getElementById('f-reset').click();
        const t = document.getElementById('f-telco');
        t.value = 'viettel'; t.dispatchEvent(new Event('input'));
        const first = Array.from(document.querySelectorAll('#flagged tr.row'))
          .find(r => !r.hidden);
        const number = first.children[3].textContent;
        const s = document.getElementById('f-search');
        s.value = number; s.dispatchEvent(new Event('input'));
        const shown = Array.from(document.querySelectorAll('#flagged tr.row'))
          .filter(r => !r.hidden);
        return [shown.length, shown.every(r => r.dataset.telco === 'viettel'
          && r.textContent.includes(number))];
    })()""",
    "expand": """(() => {
        document.getElementById('f-reset').click();
        const row = Array.from(document.querySelectorAll('#flagged tr.row'))
          .find(r => !r.hidden && r.nextElementSibling.querySelector('table.waterfall'));
        row.querySelector('button.expand').click();
        const detail = row.nextElementSibling;
        detail.querySelectorAll('details').forEach(d => { d.open = true; });
        const visible = !detail.hidden && detail.getBoundingClientRect().height > 40;
        return [visible, row.querySelector('button.expand').getAttribute('aria-expanded'),
                detail.querySelectorAll('ul.reasons li').length,
                row.dataset.flags.split(' ').length,
                detail.querySelector('table.waterfall').innerText];
    })()""",
}


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report-browser")
    return Path(run_all(str(write_config(tmp)), RUN_DATE)["run_dir"])


def test_the_checker_catches_script_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text("<!doctype html><meta charset=utf-8><p>x</p>"
                      "<script>document.addEventListener('DOMContentLoaded', () => "
                      "{ notDefinedAnywhere(); });</script>"
                      "<script>console.error('deliberate console error');</script>",
                      encoding="utf-8")
    found = open_page(broken)
    assert any("notDefinedAnywhere" in e for e in found.errors), found.errors
    assert any("deliberate console error" in e for e in found.errors), found.errors

    handler = tmp_path / "handler.html"  # an error only when a control is used
    handler.write_text("<!doctype html><button id=b>b</button><script>document.getElementById"
                       "('b').addEventListener('click', () => { null.x; });</script>",
                       encoding="utf-8")
    clean_load = open_page(handler)
    assert clean_load.errors == []
    clicked = open_page(handler, evaluate={"click": "document.getElementById('b').click()"})
    assert any("TypeError" in e for e in clicked.errors), clicked.errors


def test_the_checker_sees_external_loads(tmp_path: Path) -> None:
    page = tmp_path / "external.html"
    page.write_text("<!doctype html><meta http-equiv='Content-Security-Policy' "
                    "content=\"default-src 'none'\"><img src='https://cdn.example.invalid/a.png'>"
                    "<p>x</p>", encoding="utf-8")
    found = open_page(page)
    assert found.errors, "a blocked external load must count as an error"
    assert any("Content Security Policy" in e or "cdn.example.invalid" in e
               for e in found.errors), found.errors


def test_report_renders_in_chromium_without_errors(published: Path) -> None:
    shot = artifacts_dir() / f"report-{RUN_DATE}.png"
    shot.unlink(missing_ok=True)
    found = open_page(published / "report.html", screenshot=shot, evaluate=PROBES)
    print(f"\nscreenshot of the report: {shot}")
    assert found.errors == [], found.errors
    # It loads nothing but itself (no CDN, no font, no image from anywhere).
    assert {u.split(":", 1)[0] for u in found.requests} <= {"file", "data"}, found.requests
    assert [u for u in found.requests if u.startswith("file:")] == [
        (published / "report.html").resolve().as_uri()]
    charts = {c[0]: c for c in found.values["charts"]}
    for chart in ("chart-flags", "chart-trend", "chart-scores", "chart-provinces",
                  "chart-cycle-viettel"):
        assert chart in charts, sorted(charts)
        _, title, drawn, marks = charts[chart]
        assert title and drawn and marks > 0, charts[chart]
    rows = found.values["rows"]
    assert rows > 100
    assert found.values["count"].startswith(f"{rows:,} shown of {rows:,} flagged")
    shown, only_bulk, text, bulk = found.values["filter_flag"]
    assert 0 < shown <= min(bulk, 50) and only_bulk and text.startswith(f"{bulk:,} shown of")
    matched, consistent = found.values["filter_telco_search"]
    assert matched >= 1 and consistent
    visible, expanded, reasons, flags, waterfall = found.values["expand"]
    assert visible and expanded == "true" and reasons == flags
    assert "Date of birth" in waterfall and "probability" in waterfall
    assert shot.is_file() and shot.stat().st_size > 50_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- issue 16: layout, charts and counters at laptop and desktop sizes -------------------

SIZES = ((1366, 768), (1920, 1080))
# name: (earlier runs in the runs folder, report settings)
SCENARIOS = {"history-1": (1, {}), "history-2": (2, {}), "history-14": (14, {}),
             "sampled": (2, {"flagged_rows": 120})}


def earlier_summary(summary: dict, day: str, k: int) -> dict:
    """A past run's ``summary.json`` for the trend, made to be hard to draw: two telcos
    with the same numbers (one line over the other), a third a few flags apart (labels
    that would print over each other), and a handful resolved against hundreds listed."""
    telcos = sorted(t for t, s in summary["telcos"].items() if "failed" not in s)
    flagged = {t: 921 + k if i < 2 else 912 + k for i, t in enumerate(telcos)}
    return {"run_date": day,
            "telcos": {t: {"subscriptions": 5_000, "flagged": flagged[t]} for t in telcos},
            "tracking": {"by_telco": {t: {"flagged": flagged[t], "new": 20 + k,
                                          "persisting": flagged[t] - 20 - k,
                                          "resolved": 1 + k % 3} for t in telcos}}}


@pytest.fixture(scope="module")
def truth(published: Path) -> dict:
    """The run's true flagged totals, counted here from its results."""
    frame = RunResults(published).read().to_pandas()
    flagged = frame[frame["flags"].map(len).gt(0)]
    by_flag: dict[str, int] = {}
    for flags in flagged["flags"]:
        for f in flags:
            by_flag[f] = by_flag.get(f, 0) + 1
    return {"total": len(flagged), "by_telco": flagged["telco"].value_counts().to_dict(),
            "by_flag": by_flag, "telcos": sorted(frame["telco"].unique())}


@pytest.fixture(scope="module", params=list(SCENARIOS))
def scenario(request: pytest.FixtureRequest, published: Path,
             tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The published run copied into a runs folder with ``earlier`` past runs before
    it, its report rendered again the way ``simrecon report render`` does (the past
    summaries read from the runs folder, the settings from the config)."""
    name = request.param
    earlier, settings = SCENARIOS[name]
    tmp = tmp_path_factory.mktemp(name)
    runs = tmp / "runs"
    shutil.copytree(published, runs / RUN_DATE)
    summary = json.loads((published / "summary.json").read_text(encoding="utf-8"))
    first = date.fromisoformat(RUN_DATE) - timedelta(days=7 * earlier)
    for k in range(earlier):
        day = (first + timedelta(days=7 * k)).isoformat()
        (runs / day).mkdir(parents=True)
        (runs / day / "summary.json").write_text(
            json.dumps(earlier_summary(summary, day, k)), encoding="utf-8")
    config = write_config(tmp, report=settings)
    html, _ = copies.render_copy(config, RUN_DATE, tmp / "out" / "report.html")
    return {"name": name, "html": html, "earlier": earlier,
            "flagged_rows": settings.get("flagged_rows", 2000)}


def _probe(page: Path, shot: Path, width: int, height: int) -> dict:
    found = open_page(page, screenshot=shot, width=width, height=height, evaluate={
        "overflow": report_probes.OVERFLOW, "overlaps": report_probes.label_overlaps(),
        "series": report_probes.SERIES_VISIBLE, "counters": report_probes.COUNTERS,
        "runs": "document.querySelectorAll('#chart-trend g.series')[0]"
                ".querySelectorAll('.marker').length",
        "height": "document.documentElement.scrollHeight"})
    return {"errors": found.errors, **found.values}


def test_report_fits_reads_and_counts_true(scenario: dict, truth: dict) -> None:
    folder = artifacts_dir() / "report"
    for width, height in SIZES:
        shot = folder / f"{scenario['name']}-{width}x{height}.png"
        shot.unlink(missing_ok=True)
        got = _probe(scenario["html"], shot, width, height)
        print(f"\nscreenshot {scenario['name']} at {width}x{height}: {shot} "
              f"(page {got['height']:,} px tall)")
        assert got["errors"] == [], got["errors"]
        assert shot.is_file()
        assert got["overflow"]["over"] <= 0, got["overflow"]
        assert got["overlaps"] == [], got["overlaps"]
        # Every telco's line is drawn and can be seen (not hidden under another).
        assert sorted(got["series"]) == truth["telcos"], got["series"]
        for telco, seen in got["series"].items():
            assert seen["width"] > 0 and seen["height"] > 0 and seen["shown"], (telco, seen)
            assert seen["seen"], (telco, seen)
        assert got["runs"] == min(scenario["earlier"] + 1, 14)
        # The counters state the run's true totals, the sample's size next to them.
        counters = got["counters"]
        assert counters["all"]["total"] == truth["total"]
        assert counters["all"]["shown"] == min(truth["total"], scenario["flagged_rows"])
        assert {t: c["total"] for t, c in counters["telco"].items()} == truth["by_telco"]
        assert {f: c["total"] for f, c in counters["flag"].items()} == truth["by_flag"]
        for c in counters["flag"].values():
            assert c["shown"] <= c["total"]
        assert 0 < counters["visible_rows"] <= 50  # one page of the table
        if scenario["flagged_rows"] < truth["total"]:
            assert counters["all"]["shown"] < counters["all"]["total"]
            assert "sampled" in counters["all"]["text"] and "results/" in counters["all"]["text"]


FAULTY = """<!doctype html><meta charset=utf-8><body style="margin:0">
<div style="width:3000px">too wide</div>
<svg class="chart" id="chart-trend" width="400" height="200">
 <text x="10" y="20">921</text><text x="14" y="22">912</text>
 <g class="series" data-series="a"><circle class="marker" cx="100" cy="100" r="5"/></g>
 <g class="series" data-series="b"><circle class="marker" cx="100" cy="100" r="5"/></g>
 <g class="series" data-series="c" style="display:none">
  <circle class="marker" cx="150" cy="100" r="5"/></g>
</svg>
<select id="f-telco"><option value="">all</option><option>a</option></select>
<select id="f-flag"><option value="">all</option><option>NO_ID</option></select>
<button id="f-reset">reset</button>
<table id="flagged"><tr class="row"><td>x</td></tr></table>
<p id="f-count">1 shown of <b id="f-total">1</b> flagged</p>
</body>"""


def test_the_probes_catch_each_fault(tmp_path: Path) -> None:
    """A page with every fault the probes look for: too wide, two labels on top of each
    other, a series drawn exactly under another and one hidden, a counter stating the
    sample's size (1) where the run has 9."""
    page = tmp_path / "faulty.html"
    page.write_text(FAULTY, encoding="utf-8")
    got = _probe(page, tmp_path / "faulty.png", 1366, 768)
    assert got["overflow"]["over"] > 0 and got["overflow"]["culprits"], got["overflow"]
    assert [o[1:] for o in got["overlaps"]] == [["921", "912"]], got["overlaps"]
    series = got["series"]
    assert series["b"]["seen"] and not series["a"]["seen"]  # a lies under b
    assert not series["c"]["shown"] and not series["c"]["seen"]
    assert got["counters"]["all"]["total"] != 9  # the test's comparison would fail
