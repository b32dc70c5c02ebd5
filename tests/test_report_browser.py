"""The compliance report in a real browser: headless Chromium (Debian's ``chromium``).

The report must render offline with its charts, run its script without an
error, load nothing but itself, and its search, filters and row explanations
must work. A screenshot is left in ``tests/artifacts/`` (or
``$SIMRECON_TEST_ARTIFACTS``) for people to look at. Chromium missing is a
failure, not a skip: ``scripts/test.sh`` installs it.

The checker itself is tested first on pages with a deliberate fault, so that
"no error" means something.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.stages import run_all

from .browser import artifacts_dir, open_page
from .conftest import write_config

RUN_DATE = "2026-11-28"

PROBES = {
    "charts": "Array.from(document.querySelectorAll('svg.chart')).map(s => "
              "[s.id, s.querySelector('title').textContent, s.getBBox().width > 50,"
              " s.querySelectorAll('rect,circle,polyline').length])",
    "rows": "document.querySelectorAll('#flagged tr.row').length",
    "count": "document.getElementById('f-count').textContent",
    "filter_flag": """(() => {
        const f = document.getElementById('f-flag');
        f.value = 'BULK_ACTIVATION'; f.dispatchEvent(new Event('input'));
        const shown = Array.from(document.querySelectorAll('#flagged tr.row'))
          .filter(r => !r.hidden);
        return [shown.length, shown.every(r => r.dataset.flags.split(' ')
          .includes('BULK_ACTIVATION')), document.getElementById('f-count').textContent];
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
          .find(r => r.nextElementSibling.querySelector('table.waterfall'));
        row.querySelector('button.expand').click();
        const detail = row.nextElementSibling;
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
    assert found.values["count"] == f"{rows:,} of {rows:,} rows match"
    bulk, only_bulk, text = found.values["filter_flag"]
    assert 0 < bulk < rows and only_bulk and text.startswith(f"{bulk:,} of")
    matched, consistent = found.values["filter_telco_search"]
    assert matched >= 1 and consistent
    visible, expanded, reasons, flags, waterfall = found.values["expand"]
    assert visible and expanded == "true" and reasons == flags
    assert "Date of birth" in waterfall and "probability" in waterfall
    assert shot.is_file() and shot.stat().st_size > 50_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
