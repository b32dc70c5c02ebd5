"""The correction cycle over three runs (issue 6, "Done when").

Day 1 flags; between runs the telco fixes some records (the suggested CCCD
for IDs one typo away) and a reviewer decides some queued cases (one of them
on a row whose name the telco then changes); day 2; day 3 with nothing new.
The expected new/persisting/resolved sets are computed independently from
the published lists, and compared with what the lists and manifests say.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines.cli import main
from pipelines.results.dataset import RunResults
from pipelines.stages import run_all

from .conftest import REPO, write_config

DAYS = ("2026-11-28", "2026-11-29", "2026-11-30")


def _world(tmp: Path) -> tuple[Path, Path]:
    """Copies of the telco mappings; viettel reads an editable copy of its export."""
    folder = tmp / "telcos"
    folder.mkdir()
    export = tmp / "viettel.csv"
    for path in sorted((REPO / "config" / "telcos").glob("*.yaml")):
        mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
        source = (path.parent / mapping["source"]).resolve()
        if mapping["telco"] == "viettel":
            shutil.copyfile(source, export)
            source = export
        mapping["source"] = str(source)
        (folder / path.name).write_text(yaml.safe_dump(mapping, allow_unicode=True),
                                        encoding="utf-8")
    return folder, export


def _listed(run_dir: Path) -> dict[str, pd.DataFrame]:
    return {p.stem: pd.read_csv(p, dtype=str, encoding="utf-8-sig", keep_default_na=False)
            for p in sorted((run_dir / "corrections").glob("*.csv"))}


def _keys(lists: dict[str, pd.DataFrame]) -> set[tuple[str, str, str]]:
    keys = set()
    for frame in lists.values():
        for telco, number, raw, codes in zip(frame["telco"], frame["msisdn"],
                                             frame["msisdn_as_sent"], frame["reason_codes"],
                                             strict=True):
            keys |= {(telco, number or raw, code) for code in codes.split("|")}
    return keys


def _edit_export(export: Path, edits: dict[int, dict[str, str]]) -> None:
    """Change fields of data rows (1-based ``source_row``) of the viettel CSV."""
    with export.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    for source_row, fields in edits.items():
        for column, value in fields.items():
            rows[source_row][header.index(column)] = value
    with export.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)


@pytest.fixture(scope="module")
def cycle(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("cycle")
    telcos, export = _world(tmp)
    config = write_config(tmp, telcos_dir=telcos)
    day1 = Path(run_all(str(config), DAYS[0])["run_dir"])
    results1 = RunResults(day1).read().to_pandas()

    # The telco fixes the documents whose correct CCCD was suggested.
    viettel = results1[results1["telco"] == "viettel"]
    typo = viettel[viettel["suggested_citizen_id"].notna()
                   & viettel["flags"].map(lambda f: "ID_NOT_FOUND" in list(f))].head(4)
    assert len(typo) >= 2, "the sample world plants near-miss IDs at viettel"
    fixed = {int(r.source_row): {"SO_GIAY_TO": r.suggested_citizen_id}
             for r in typo.itertuples()}

    # A reviewer decides three viettel cases of the queue.
    queue = pd.read_csv(day1 / "review" / "queue.csv", dtype=str, encoding="utf-8-sig")
    mine = queue[queue["telco"] == "viettel"].head(3).copy()
    assert len(mine) == 3
    confirmed, rejected, changed = (mine.iloc[i] for i in range(3))
    queue.loc[mine.index, "decision"] = ["confirmed_holder", "NOT_HOLDER", "CONFIRMED_HOLDER"]
    queue.loc[mine.index, "comment"] = ["giấy tờ gốc đã kiểm tra", "khác người", "ok"]
    filled = tmp / "queue_filled.csv"
    queue.to_csv(filled, index=False, encoding="utf-8-sig")
    assert main(["review", "import", str(filled), "--reviewer", "Lê Thu Hà",
                 "--config", str(config)]) == 0
    # ... and the telco then changes the third case's name: that decision must not apply.
    fixed[int(changed["source_row"])] = {"HO_TEN": "Tran Thi Khac"}
    _edit_export(export, fixed)

    day2 = Path(run_all(str(config), DAYS[1])["run_dir"])
    day3 = Path(run_all(str(config), DAYS[2])["run_dir"])
    return {"config": config, "runs": [day1, day2, day3], "typo": typo,
            "confirmed": confirmed, "rejected": rejected, "changed": changed}


def _manifests(run_dir: Path) -> dict[str, dict]:
    return {p.name.removesuffix(".manifest.json"): json.loads(p.read_text())
            for p in (run_dir / "corrections").glob("*.manifest.json")}


def test_new_persisting_and_resolved_counts(cycle: dict) -> None:
    day1, day2, day3 = cycle["runs"]
    keys = [_keys(_listed(d)) for d in (day1, day2, day3)]
    for before, after, run_dir in ((None, keys[0], day1), (keys[0], keys[1], day2),
                                   (keys[1], keys[2], day3)):
        manifests = _manifests(run_dir)
        for telco, frame in _listed(run_dir).items():
            mine = {k for k in after if k[0] == telco}
            prior = {k for k in (before or set()) if k[0] == telco}
            resolved = pd.read_csv(run_dir / "corrections" / "resolved" / f"{telco}.csv",
                                   dtype=str, encoding="utf-8-sig", keep_default_na=False)
            got = {(t, m, f) for t, m, f in zip(resolved["telco"], resolved["msisdn"],
                                                resolved["reason_code"], strict=True)}
            assert got == prior - mine, (run_dir.name, telco)
            counts = manifests[telco]["counts"]
            assert counts["resolved"] == len(prior - mine)
            assert counts["flagged"] == len(frame)
            # A row is persisting when any of its flags stood on the previous list.
            expected_persisting = sum(
                any((t, m or r, c) in prior for c in codes.split("|"))
                for t, m, r, codes in zip(frame["telco"], frame["msisdn"],
                                          frame["msisdn_as_sent"], frame["reason_codes"],
                                          strict=True))
            assert counts["persisting"] == expected_persisting
            assert counts["new"] == len(frame) - expected_persisting
            assert (frame["flag_status"] == "persisting").sum() == expected_persisting
    # Day 3 saw exactly the data of day 2: nothing new, nothing resolved, streaks of 3.
    assert keys[2] == keys[1]
    for telco, counts in ((t, m["counts"]) for t, m in _manifests(day3).items()):
        assert counts["new"] == 0 and counts["resolved"] == 0, telco
    listed = pd.concat(_listed(day3).values())
    always = [all((t, m or r, c) in keys[0] for c in codes.split("|"))
              for t, m, r, codes in zip(listed["telco"], listed["msisdn"],
                                        listed["msisdn_as_sent"], listed["reason_codes"],
                                        strict=True)]
    assert (listed[always]["flagged_runs"] == "3").all()
    assert (listed[always]["first_seen"] == DAYS[0]).all()


def test_fixed_records_are_resolved(cycle: dict) -> None:
    resolved = pd.read_csv(cycle["runs"][1] / "corrections" / "resolved" / "viettel.csv",
                           dtype=str, encoding="utf-8-sig")
    gone = set(zip(resolved["msisdn"], resolved["reason_code"], strict=True))
    for number in cycle["typo"]["msisdn"]:
        assert (number, "ID_NOT_FOUND") in gone


def test_decisions_apply_only_to_unchanged_rows(cycle: dict) -> None:
    for run_dir in cycle["runs"][1:]:
        results = RunResults(run_dir).read().to_pandas()
        viettel = results[results["telco"] == "viettel"].set_index("msisdn")
        ok = viettel.loc[cycle["confirmed"]["msisdn"]]
        assert ok["review_decision"] == "CONFIRMED_HOLDER"
        assert ok["review_reviewer"] == "Lê Thu Hà" and ok["review_decided_at"]
        assert ok["status"] == "VERIFIED" and "NEEDS_REVIEW" not in list(ok["flags"])
        no = viettel.loc[cycle["rejected"]["msisdn"]]
        assert no["review_decision"] == "NOT_HOLDER" and no["status"] == "MISMATCH"
        assert {"NAME_MISMATCH", "DOB_MISMATCH"} & set(no["flags"])
        changed = viettel.loc[cycle["changed"]["msisdn"]]
        assert pd.isna(changed["review_decision"])
        assert changed["row_hash"] != cycle["changed"]["row_hash"]
        assert changed["status"] != "VERIFIED"
        queue = pd.read_csv(run_dir / "review" / "queue.csv", dtype=str, encoding="utf-8-sig")
        assert cycle["confirmed"]["row_hash"] not in set(queue["row_hash"])
        # The rejected case is now on the telco's list, as a mismatch.
        listed = _listed(run_dir)["viettel"]
        assert cycle["rejected"]["msisdn"] in set(listed["msisdn"])


def test_bad_review_file_is_refused_whole(cycle: dict, tmp_path: Path) -> None:
    day1 = cycle["runs"][0]
    queue = pd.read_csv(day1 / "review" / "queue.csv", dtype=str, encoding="utf-8-sig")
    queue.loc[queue.index[:2], "decision"] = ["CONFIRMED_HOLDER", "maybe"]
    queue.loc[queue.index[0], "row_hash"] = "edited"
    bad = tmp_path / "bad.csv"
    queue.to_csv(bad, index=False, encoding="utf-8-sig")
    from pipelines.config import load_config
    from pipelines.correction_cycle.review import (
        ReviewImportError,
        import_decisions,
        latest_decisions,
    )
    from pipelines.stages import store_of

    store = store_of(load_config(cycle["config"]))
    before = len(latest_decisions(store))
    with pytest.raises(ReviewImportError, match=r"line 2: row_hash.*line 3: decision 'MAYBE'"):
        import_decisions(bad, "someone", store)
    assert len(latest_decisions(store)) == before


def test_deadlines_escalate_with_age(cycle: dict) -> None:
    listed = pd.concat(_listed(cycle["runs"][2]).values())
    assert set(listed["action"]) == {"NOTIFY_AND_CORRECT"}  # two days old: no block yet
    first = pd.to_datetime(listed["first_seen"])
    deadline = pd.to_datetime(listed["deadline"])
    assert ((deadline - first).dt.days == 30).all()
    assert listed["action_vi"].str.len().gt(0).all()


def test_summary_carries_tracking_and_trend(cycle: dict) -> None:
    day3 = cycle["runs"][2]
    summary = json.loads((day3 / "summary.json").read_text())
    manifests = _manifests(day3)
    for telco, counts in summary["tracking"]["by_telco"].items():
        for key in ("flagged", "new", "persisting", "resolved"):
            assert counts[key] == manifests[telco]["counts"][key], (telco, key)
    trend = [t for t in summary["tracking"]["trend"] if t["telco"] == "viettel"]
    assert [t["run_date"] for t in trend] == list(DAYS)
    keys = [len({k for k in _keys(_listed(d)) if k[0] == "viettel"}) for d in cycle["runs"]]
    assert [t["flags"] for t in trend] == keys


def test_report_shows_the_cycle_and_trend(cycle: dict) -> None:
    html = (cycle["runs"][2] / "report.html").read_text(encoding="utf-8")
    assert 'id="tracking"' in html and 'id="trend"' in html
    trend = html[html.index('id="trend"'):]
    for day in DAYS:
        assert day in trend
    # The trend chart (inline SVG) has one x-axis label per run: all three dates.
    chart = re.search(r'<svg class="chart" id="chart-trend".*?</svg>', html, re.S)
    assert chart is not None
    labels = re.findall(r'>(\d{4}-\d{2}-\d{2})</text>', chart.group(0))
    assert sorted(set(labels)) == sorted(DAYS)


def test_report_trend_shows_the_cycle(cycle: dict) -> None:
    """Day 3's report (HTML table, cycle charts and workbook) gives, per run and telco,
    what that run's lists and manifests say: on the list, new, persisting, resolved."""
    from openpyxl import load_workbook

    day3 = cycle["runs"][2]
    html = (day3 / "report.html").read_text(encoding="utf-8")
    book = load_workbook(day3 / "report.xlsx", read_only=True)
    sheet = list(book["trend"].iter_rows(values_only=True))
    header = sheet[0]
    workbook = {(r[header.index("run_date")], r[header.index("telco")]): r for r in sheet[1:]}
    for run_dir in cycle["runs"]:
        listed = _listed(run_dir)
        for telco, manifest in _manifests(run_dir).items():
            counts = manifest["counts"]
            expected = [len(listed[telco]), counts["new"], counts["persisting"],
                        counts["resolved"]]
            row = re.search(rf'<tr class="trend-row" data-run="{run_dir.name}" '
                            rf'data-telco="{telco}">(.*?)</tr>', html, re.S)
            assert row, (run_dir.name, telco)
            cells = [int(c.replace(",", "")) for c in
                     re.findall(r"<td>([0-9,]+)</td>", row.group(1))]
            assert cells[-4:] == expected, (run_dir.name, telco, cells)
            got = workbook[(run_dir.name, telco)]
            assert [got[header.index(c)] for c in ("listed", "new", "persisting",
                                                   "resolved")] == expected
            # Flagged subscriptions (any flag, NEEDS_REVIEW included: a confirmed case
            # leaves it) as in that run's results.
            results = RunResults(run_dir).read().to_pandas()
            mine = results[results["telco"] == telco]
            assert got[header.index("flagged")] == mine["flags"].map(len).gt(0).sum()
            assert cells[1] == got[header.index("flagged")]
    # Day 2 resolved the fixed records at viettel; the cycle chart draws them below
    # the axis (a labelled bar per run: the resolved count of that run).
    resolved_day2 = _manifests(cycle["runs"][1])["viettel"]["counts"]["resolved"]
    assert resolved_day2 >= len(cycle["typo"])
    chart = re.search(r'<svg class="chart" id="chart-cycle-viettel".*?</svg>', html, re.S)
    assert chart is not None
    assert f"<title>{DAYS[1]}, resolved: {resolved_day2:,}</title>" in chart.group(0)
    assert f"<title>{DAYS[0]}, new: {len(_listed(cycle['runs'][0])['viettel']):,}</title>" \
        in chart.group(0)


def test_day3_report_opens_in_chromium(cycle: dict) -> None:
    """The report with its three-run trend, in headless Chromium: no script error, the
    trend charts drawn; the screenshot is kept with the test artefacts."""
    from .browser import artifacts_dir, open_page

    shot = artifacts_dir() / "correction-cycle-day3.png"
    shot.unlink(missing_ok=True)
    found = open_page(cycle["runs"][2] / "report.html", screenshot=shot, evaluate={
        "trend_points": "document.querySelectorAll('#chart-trend g.series .marker').length",
        "cycle_charts": "document.querySelectorAll('svg[id^=chart-cycle-]').length"})
    print(f"\nscreenshot of the day-3 report: {shot}")
    assert found.errors == [], found.errors
    telcos = len(_manifests(cycle["runs"][2]))
    assert found.values["trend_points"] == 3 * telcos
    assert found.values["cycle_charts"] == telcos
    assert shot.is_file() and shot.stat().st_size > 50_000
