"""The compliance report (report.html, report.xlsx): content, masking, roles, bounds.

One run over the bundled samples; the numbers the report shows are recomputed
here independently (pandas) from results.parquet.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from openpyxl import load_workbook

from matching.flags import FLAGS
from pipelines.cli import main
from pipelines.config import ConfigError, load_config
from pipelines.intake.quarantine import empty_quarantine
from pipelines.reporting import aggregates, charts, copies, report
from pipelines.reporting.workbook import write_workbook
from pipelines.results.dataset import RunResults
from pipelines.stages import run_all
from pipelines.storage.files import sha256_of

from .conftest import run_until_flagged, write_config

RUN_DATE = "2026-11-28"
ID_TOKEN = re.compile(r"(?<![0-9])[0-9]{9}(?:[0-9]{3})?(?![0-9])")
SHEETS = ["about", "totals", "by_telco_status", "by_telco_flag", "trend", "match_scores",
          "score_bands", "provinces_2025", "provinces_old", "top_points_of_sale", "top_holders",
          "flagged", "reason_codes"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("report")
    config = write_config(tmp, report={"unmasked_roles": ["investigator"]})
    run_dir = Path(run_all(str(config), RUN_DATE)["run_dir"])
    results = RunResults(run_dir).read()
    frame = results.to_pandas()
    ids = {i for i in frame["id_number"].dropna() if len(i) >= 9}
    for column in ("matched_citizen_id", "holder_citizen_id", "suggested_citizen_id",
                   "candidate_citizen_id"):
        ids |= set(frame[column].dropna())
    return {"config": config, "dir": run_dir, "tmp": tmp, "results": results, "frame": frame,
            "ids": ids, "html": (run_dir / "report.html").read_text(encoding="utf-8")}


def _workbook_text(path: Path) -> dict[str, list[tuple]]:
    book = load_workbook(path, read_only=True)
    return {sheet.title: list(sheet.iter_rows(values_only=True)) for sheet in book.worksheets}


def _sheet(path: Path, name: str) -> pd.DataFrame:
    rows = _workbook_text(path)[name]
    width = len(rows[0])  # read-only mode drops a row's trailing empty cells
    return pd.DataFrame([tuple(r) + (None,) * (width - len(r)) for r in rows[1:]],
                        columns=rows[0])


def _leaked(text: str, ids: set[str]) -> set[str]:
    return {t for t in ID_TOKEN.findall(text) if t in ids}


def test_report_and_workbook_are_published_with_the_run(run: dict) -> None:
    manifest = json.loads((run["dir"] / "manifest.json").read_text())
    listed = {f["path"]: f for f in manifest["files"]}
    for name in ("report.html", "report.xlsx"):
        assert name in listed
        assert listed[name]["sha256"] == sha256_of(run["dir"] / name)
    assert list(_workbook_text(run["dir"] / "report.xlsx")) == SHEETS


def test_html_is_one_offline_file_with_every_section(run: dict) -> None:
    html = run["html"]
    # Nothing loaded from anywhere: no external URL in a src/href, a CSP that forbids it.
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)
    assert "default-src 'none'" in html
    for chart in ("chart-flags", "chart-trend", "chart-scores", "chart-provinces",
                  "chart-cycle-viettel", "chart-cycle-mobifone", "chart-cycle-vinaphone"):
        match = re.search(rf'<svg class="chart" id="{chart}" role="img"[^>]*>'
                          rf'<title id="{chart}-title">[^<]+</title><desc', html)
        assert match, chart
    for table in ("by-telco-status", "by-flag", "tracking", "trend", "score-bands", "provinces",
                  "top-pos-table", "top-holders-table", "flagged", "gates"):
        assert f'id="{table}"' in html, table


def test_totals_and_rates_match_the_results(run: dict) -> None:
    frame, html = run["frame"], run["html"]
    flagged = frame["flags"].map(len).gt(0)
    assert f"{flagged.sum():,} of {flagged.sum():,} flagged subscriptions are listed" in html
    assert html.count('<tr class="row"') == flagged.sum()
    rate = f"{100 * flagged.sum() / len(frame):.1f}%"
    assert re.search(rf"Flagged<b>{flagged.sum():,}</b><span class=\"pct\">{rate}", html)
    totals = _sheet(run["dir"] / "report.xlsx", "totals").set_index("measure")
    assert totals.loc["flagged", "count"] == flagged.sum()
    for status, n in frame["status"].value_counts().items():
        assert totals.loc[f"status {status}", "count"] == n
    by_flag = _sheet(run["dir"] / "report.xlsx", "by_telco_flag").set_index("flag")
    exploded = frame[["telco", "flags"]].explode("flags").dropna()
    counts = exploded.groupby(["flags", "telco"]).size()
    for (flag, telco), n in counts.items():
        assert by_flag.loc[flag, telco] == n
        assert by_flag.loc[flag, f"{telco}_pct"] == round(
            100 * n / (frame["telco"] == telco).sum(), 2)


def test_top_points_of_sale_and_holders(run: dict) -> None:
    frame = run["frame"]
    bulk = frame[frame["flags"].map(lambda f: "BULK_ACTIVATION" in f)]
    expected = (bulk.groupby(["telco", "point_of_sale"]).size().reset_index(name="n")
                .sort_values(["n", "telco", "point_of_sale"], ascending=[False, True, True]))
    top = _sheet(run["dir"] / "report.xlsx", "top_points_of_sale")
    assert len(top) == min(20, len(expected)) > 0
    assert list(zip(top["telco"], top["point_of_sale"], top["bulk_rows"], strict=True)) == list(
        zip(expected["telco"], expected["point_of_sale"], expected["n"], strict=True))[:20]
    assert (top["bulk_pct"] <= 100).all()

    holder = frame["holder_citizen_id"].fillna(
        frame["id_number"].where(frame["id_type"].isin(["CCCD", "CMND"])))
    active = frame.assign(holder=holder, active=frame["line_status"].eq("ACTIVE"))
    active = active[active["holder"].fillna("").str.len() > 0]
    counts = active.groupby("holder").agg(n=("telco", "size"), act=("active", "sum"))
    counts = counts.reset_index().sort_values(["act", "n", "holder"],
                                              ascending=[False, False, True]).head(20)
    holders = _sheet(run["dir"] / "report.xlsx", "top_holders")
    assert list(holders["active"]) == list(counts["act"])
    assert list(holders["subscriptions"]) == list(counts["n"])
    masked = report.mask_id(pa.array(list(counts["holder"]))).to_pylist()
    assert list(holders["holder"]) == masked
    assert all("*****" in h for h in holders["holder"])


@pytest.mark.parametrize(("parts", "buckets", "top"), [(5, 3, 4), (3, 1, 1000)])
def test_points_of_sale_merged_a_bucket_at_a_time_are_the_whole_runs(
        run: dict, tmp_path: Path, parts: int, buckets: int, top: int) -> None:
    """Partials of rows cut anyhow (a point of sale's rows, days and documents in every
    part), written by buckets and merged a bucket at a time: the top points of sale,
    their days and distinct documents, that the whole results give at once."""
    results = run["results"]
    # Points of sale that sell in bulk over days, documents repeated (the samples' few
    # bulk sellers each sell on one day).
    rng = np.random.default_rng(11)
    n = results.num_rows
    for name, values in (
            ("point_of_sale", pa.array([f"POS-{i:02d}" for i in rng.integers(0, 12, n)])),
            ("activation_date", pa.array(rng.integers(20_000, 20_006, n).astype("int32"),
                                         pa.int32()).cast(pa.date32())),
            ("id_number", pa.array([f"0790{i:08d}" for i in rng.integers(0, 400, n)])),
            ("flags", pa.array([["BULK_ACTIVATION"] if b else [] for b in rng.random(n) < .6],
                               pa.list_(pa.string())))):
        at = results.schema.get_field_index(name)
        results = results.set_column(at, results.schema.field(at), values.cast(
            results.schema.field(at).type))
    whole = aggregates.top_points_of_sale(aggregates.of_results(results), top)
    assert whole.num_rows > 0
    assert pc.max(whole["days"]).as_py() > 1
    assert pc.max(whole["distinct_documents"]).as_py() > 1
    part = np.arange(results.num_rows) % parts
    folders = []
    for k in range(parts):
        folders.append(tmp_path / str(k))
        aggregates.of_results(results.filter(pa.array(part == k))).write(
            folders[-1], pos_buckets=buckets)
    groups = pq.ParquetFile(folders[0] / "pos_docs.parquet").num_row_groups
    assert groups == buckets  # one row group per bucket: a bucket is read alone
    merged = aggregates.merge_points_of_sale(folders, buckets, top)
    assert merged.equals(whole)


def test_provinces_add_up(run: dict) -> None:
    frame = run["frame"]
    units = _sheet(run["dir"] / "report.xlsx", "provinces_2025")
    assert units["subscriptions"].sum() == len(frame)
    assert units["flagged"].sum() == frame["flags"].map(len).gt(0).sum()
    assert len(units) == 34 + 2  # the 34 units, "unknown province", "no CCCD"
    old = _sheet(run["dir"] / "report.xlsx", "provinces_old")
    assert len(old) == 63 + 2 and old["subscriptions"].sum() == len(frame)
    # Hà Nội (001) holders, counted independently from the holder's CCCD.
    cccd = frame["holder_citizen_id"].fillna(
        frame["id_number"].where(frame["id_type"].eq("CCCD")))
    hanoi = cccd.fillna("").str.fullmatch(r"001[0-9]{9}").sum()
    assert old.set_index("old_code").loc["001", "subscriptions"] == hanoi
    for flag in FLAGS:
        assert units[flag].sum() == frame["flags"].map(lambda f, x=flag: x in f).sum()


def test_scores_cover_every_scored_row(run: dict) -> None:
    frame = run["frame"]
    scores = _sheet(run["dir"] / "report.xlsx", "match_scores")
    statuses = [c for c in scores.columns if c != "bin_from_bits"]
    assert scores[statuses].to_numpy().sum() == frame["match_weight"].notna().sum()
    bands = _sheet(run["dir"] / "report.xlsx", "score_bands").set_index("status")
    assert bands.to_numpy().sum() == len(frame)
    assert bands.loc["VERIFIED", "VERIFY"] == (frame["status"].eq("VERIFIED")
                                               & frame["match_band"].eq("VERIFY")).sum()


def test_flagged_sheet_explains_each_row(run: dict) -> None:
    sheet = _sheet(run["dir"] / "report.xlsx", "flagged")
    frame = run["frame"]
    flagged = frame[frame["flags"].map(len).gt(0)]
    assert len(sheet) == len(flagged)
    assert list(sheet["source_row"]) == list(
        flagged.sort_values(["telco", "source_row"])["source_row"])
    assert sheet["reasons_en"].str.len().gt(0).all()
    linked = sheet["match_weight"].notna()
    assert linked.any()
    weights = ["id_weight", "doc_weight", "name_weight", "dob_weight", "gender_weight",
               "history_weight", "others_weight"]
    total = sheet.loc[linked, weights].fillna(0).sum(axis=1)
    assert (abs(total - sheet.loc[linked, "match_weight"]) < 0.05).all()
    assert set(sheet["name_comparison"]) - {"not compared"}
    assert 'class="waterfall"' in run["html"]


def test_default_report_masks_every_id(run: dict) -> None:
    assert run["ids"]
    assert not _leaked(run["html"], run["ids"])
    assert "*****" in run["html"]
    text = json.dumps(_workbook_text(run["dir"] / "report.xlsx"), default=str)
    assert not _leaked(text, run["ids"])
    assert "*****" in text


def test_an_allowed_role_sees_full_ids(run: dict, capsys: pytest.CaptureFixture) -> None:
    out = run["tmp"] / "for-investigators" / "report.html"
    assert main(["report", "render", "--config", str(run["config"]), "--run-date", RUN_DATE,
                 "--role", "investigator", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    html = out.read_text(encoding="utf-8")
    assert 'id="unmasked-notice"' in html and "investigator" in html
    shown = _leaked(html, run["ids"])
    flagged = run["frame"][run["frame"]["flags"].map(len).gt(0)]
    assert set(flagged["id_number"].dropna()) & shown
    workbook = out.with_suffix(".xlsx")
    holders = _sheet(workbook, "top_holders")
    assert not holders["holder"].str.contains(r"\*").any()
    assert set(holders["holder"]) <= run["ids"]
    assert set(_sheet(workbook, "flagged")["id_number"].dropna()) <= run["ids"] | set(
        run["frame"]["id_number"].dropna())


def test_a_role_not_allowed_is_refused(run: dict, capsys: pytest.CaptureFixture) -> None:
    out = run["tmp"] / "telco-copy" / "report.html"
    assert main(["report", "render", "--config", str(run["config"]), "--run-date", RUN_DATE,
                 "--role", "telco", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "'telco' may not see full ID numbers" in err
    assert "investigator" in err
    assert not out.parent.exists()
    # Without any role configured, nobody sees them.
    (run["tmp"] / "plain").mkdir()
    plain = write_config(run["tmp"] / "plain")
    with pytest.raises(report.RoleNotAllowedError, match="allows: no role"):
        copies.render_copy(plain, RUN_DATE, out, role="investigator")
    assert load_config(plain).report.unmasked_roles == []


def test_a_copy_without_role_is_masked_and_never_in_the_runs_folder(run: dict) -> None:
    out = run["tmp"] / "copy" / "report.html"
    html_path, xlsx_path = copies.render_copy(run["config"], RUN_DATE, out)
    html = html_path.read_text(encoding="utf-8")
    assert not _leaked(html, run["ids"]) and "unmasked-notice" not in html
    # Same content as the published workbook: byte for byte (deterministic).
    assert sha256_of(xlsx_path) == sha256_of(run["dir"] / "report.xlsx")
    with pytest.raises(ConfigError, match="outside the runs folder"):
        copies.render_copy(run["config"], RUN_DATE, run["dir"] / "x.html", role="investigator")
    assert not (run["dir"] / "x.html").exists()


def test_role_names_are_checked() -> None:
    from pipelines.config import ReportSettings

    with pytest.raises(ValueError, match="lower-case"):
        ReportSettings(unmasked_roles=["Investigator; rm"])
    assert report.reveal_ids_for(None, ["investigator"]) is False
    assert report.reveal_ids_for("investigator", ["investigator"]) is True


def test_formula_like_values_stay_text(run: dict, tmp_path: Path) -> None:
    results = run["results"]
    flagged = pc.greater(pc.list_value_length(results["flags"]), 0)
    first = pc.index(flagged, True).as_py()
    pos = results["point_of_sale"].to_pylist()
    pos[first] = '=HYPERLINK("http://example.invalid","x")'
    changed = results.set_column(results.schema.get_field_index("point_of_sale"),
                                 "point_of_sale", pa.array(pos, pa.string()))
    summary = json.loads((run["dir"] / "summary.json").read_text())
    content = report.build(summary, changed, empty_quarantine(), previous=[])
    path = write_workbook(content, tmp_path / "r.xlsx")
    book = load_workbook(path)
    cells = [c for row in book["flagged"].iter_rows() for c in row
             if isinstance(c.value, str) and c.value.startswith("=HYPERLINK")]
    assert cells and all(c.data_type == "s" for c in cells)
    html = report.render_html(content)
    assert "=HYPERLINK(&#34;http://example.invalid&#34;" in html  # escaped, inert text


def test_the_report_stays_bounded_on_a_large_run(run: dict) -> None:
    """A run 60 times the samples: the table and workbook are capped, every telco and
    flag is still represented, and the HTML size does not grow with the rows."""
    results = run["results"]
    big = pa.concat_tables([results] * 60)
    big = big.set_column(big.schema.get_field_index("source_row"), "source_row",
                         pa.array(range(1, big.num_rows + 1), pa.int64()))
    summary = json.loads((run["dir"] / "summary.json").read_text())
    start = time.perf_counter()
    content = report.build(summary, big, empty_quarantine(), previous=[], flagged_rows=300,
                           workbook_flagged_rows=1000)
    html = report.render_html(content)
    elapsed = time.perf_counter() - start
    total = int(pc.sum(pc.greater(pc.list_value_length(big["flags"]), 0)).as_py())
    assert content.flagged_total == total > 10_000
    assert html.count('<tr class="row"') == 300 and content.sheet_flagged.num_rows == 1000
    assert f"300 of {total:,} flagged subscriptions" in html
    shown = {(t, f) for r in content.table_rows for t, f in ((r["telco"], x) for x in r["flags"])}
    present = {(t, f) for t, fl in zip(big["telco"].to_pylist()[:results.num_rows],
                                       big["flags"].to_pylist()[:results.num_rows],
                                       strict=True) for f in fl}
    assert shown == present
    rows = [(r["telco"], r["source_row"]) for r in content.table_rows]
    assert rows == sorted(rows)
    assert len(html.encode()) < 1_500_000
    print(f"\nreport of {big.num_rows:,} rows built and rendered in {elapsed:.2f}s, "
          f"{len(html.encode()) / 1e6:.2f} MB")
    assert elapsed < 30


def test_select_flagged_is_round_robin_over_telco_and_flag() -> None:
    a, b, c = "NO_ID", "LEGACY_ID", "DUPLICATE_MSISDN"
    flags = [[a]] * 50 + [[b]] * 3 + [[]] * 5 + [[a, c]]
    table = pa.table({"telco": ["x"] * 50 + ["y"] * 9, "source_row": list(range(59)),
                      "flags": pa.array(flags, pa.list_(pa.string()))})
    picked, total = report.select_flagged(table, 6)
    assert total == 54
    # The first row of each (telco, flag) group, then the second, then the third (in
    # source order within a rank): row 58, the only y row with A or C, is not crowded
    # out by fifty x rows.
    assert picked["source_row"].to_pylist() == [0, 1, 2, 50, 51, 58]
    assert picked["telco"].to_pylist() == sorted(picked["telco"].to_pylist())
    assert report.select_flagged(table, 0)[0].num_rows == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_flagged_sample_chosen_shard_by_shard_is_the_whole_runs(seed: int) -> None:
    """The report keeps, of each shard's flagged keys, only those among the first
    ``limit`` of a (telco, flag) group (``first_of_groups``: memory set by a shard, not
    the run); chosen among those, with the run's total, the sample is exactly the one
    chosen among every flagged row of the run: skewed flags, rows with several flags,
    telcos spread over shards at random."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = 5_000
    common = 1 << 2  # one flag on most rows, rare ones on a few, some rows with several
    flags = np.where(rng.random(n) < 0.8, common, 0) | \
        (rng.random(n) < 0.02).astype(np.int64) << 5 | \
        (rng.random(n) < 0.3).astype(np.int64) << 1 | \
        (rng.random(n) < 0.001).astype(np.int64) << 9
    keep = flags != 0
    mixed = pa.table({"telco": rng.choice(["mobifone", "viettel", "vinaphone"], n)[keep],
                      "source_row": rng.permutation(n)[keep].astype(np.int64),
                      "flags": pa.array(flags[keep], pa.int32())})
    # one group only: the sample is its first rows, the bound at its tightest
    single = pa.table({"telco": ["viettel"] * 400, "source_row": rng.permutation(400),
                       "flags": pa.array([common] * 400, pa.int32())})
    for keys, shards, limit in itertools.product((mixed, single), (1, 2, 7),
                                                 (1, 10, 300, 10_000)):
        shard = rng.integers(0, shards, keys.num_rows)
        sharded = keys.append_column("shard", pa.array(shard, pa.int32()))
        whole, whole_total = report.select_flagged_keys(sharded, limit)
        parts = [report.first_of_groups(sharded.filter(pa.array(shard == k)), limit)
                 for k in range(shards)]
        assert sum(p.num_rows for p in parts) <= shards * 3 * 4 * limit  # x groups
        chosen, total = report.select_flagged_keys(pa.concat_tables(parts), limit,
                                                   keys.num_rows)
        assert total == whole_total == keys.num_rows
        assert chosen.to_pylist() == whole.to_pylist()


def test_trend_leaves_a_gap_where_a_telco_failed() -> None:
    runs = [{"run_date": "2026-11-27", "telcos": {"a": {"subscriptions": 10, "flagged": 4},
                                                   "b": {"failed": "bad file"}},
             "tracking": {"by_telco": {"a": {"flagged": 3, "new": 3, "persisting": 0,
                                             "resolved": 0}}}},
            {"run_date": "2026-11-28", "telcos": {"a": {"subscriptions": 10, "flagged": 2},
                                                   "b": {"subscriptions": 5, "flagged": 1}}}]
    rows = report.trend_rows(runs)
    assert [(r["run_date"], r["telco"], r["flagged"], r["processed"]) for r in rows] == [
        ("2026-11-27", "a", 4, True), ("2026-11-27", "b", None, False),
        ("2026-11-28", "a", 2, True), ("2026-11-28", "b", 1, True)]
    assert rows[0]["flagged_pct"] == 40.0 and rows[0]["listed"] == 3
    assert rows[2]["listed"] is None  # an old summary without tracking


def test_chart_text_is_escaped_and_labelled() -> None:
    svg = str(charts.hbars("c", "T <b>", ["<script>alert(1)</script>"], [3]))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert '<title id="c-title">T &lt;b&gt;</title>' in svg and ">3<" in svg
    empty = str(charts.line_chart("e", "Trend", [], {}))
    assert "No run to show yet." in empty


# --- issue 16: what the page says about itself, its counters and its scores -------------


def test_header_marks_personal_data_and_points_to_the_follow_ups(run: dict) -> None:
    html = run["html"]
    notice = html[html.index('id="privacy-notice"'):html.index("</div>",
                                                              html.index('id="privacy-notice"'))]
    assert "Personal data" in notice and "Dữ liệu cá nhân" in notice
    for role in load_config(run["config"]).report.audience:
        assert role in notice
    # Every path the header names exists in the published run folder.
    paths = re.findall(r'href="([^"]+)"', notice)
    assert "review/queue.xlsx" in paths
    assert {p for p in paths if p.startswith("corrections/")} == {
        f"corrections/{t}.csv" for t in run["frame"]["telco"].unique()}
    for path in paths:
        assert (run["dir"] / path).is_file(), path
    # The workbook says the same.
    about = dict(_workbook_text(run["dir"] / "report.xlsx")["about"][1:])
    assert "personal data" in about["personal_data"]
    assert about["audience"] == ", ".join(load_config(run["config"]).report.audience)
    assert (run["dir"] / about["review_queue"]).is_file()
    for path in about["correction_lists"].split(", "):
        assert (run["dir"] / path).is_file(), path


def test_the_audience_is_a_setting(run: dict) -> None:
    summary = json.loads((run["dir"] / "summary.json").read_text())
    content = report.build(summary, run["results"], empty_quarantine(), previous=[],
                           audience=["thanh tra Bộ TT&TT"])
    html = report.render_html(content)
    audience = html[html.index('id="audience"'):]
    assert audience[:audience.index("</p>")].count("thanh tra Bộ TT&amp;TT") == 1
    (run["tmp"] / "bad").mkdir(exist_ok=True)
    with pytest.raises(ConfigError):
        load_config(write_config(run["tmp"] / "bad", report={"audience": []}))


def test_filter_totals_are_the_runs_true_counts(run: dict) -> None:
    """Every combination of the flagged table's filters has its total from the run's
    aggregates, equal to the count in the results."""
    frame = run["frame"]
    summary = json.loads((run["dir"] / "summary.json").read_text())
    totals = report.filter_totals(summary)
    flagged = frame[frame["flags"].map(len).gt(0)]
    for key, n in totals.items():
        telco, flag, status = key.split("|")
        mine = flagged
        if telco:
            mine = mine[mine["telco"] == telco]
        if flag:
            mine = mine[mine["flags"].map(lambda f, flag=flag: flag in list(f))]
        if status:
            mine = mine[mine["status"] == status]
        assert n == len(mine), key
    assert totals["||"] == len(flagged) > 0


def test_match_scores_are_said_in_words(run: dict) -> None:
    frame, html = run["frame"], run["html"]
    for element, statuses in (("share-verified", ["VERIFIED"]), ("share-review", ["REVIEW"]),
                              ("share-unmatched", ["MISMATCH", "UNREGISTERED"])):
        share = f"{100 * frame['status'].isin(statuses).mean():.1f}%"
        assert f'id="{element}">{share}</b>' in html, element
    section = html[html.index('id="scores-section"'):html.index('id="scores-technical"')]
    assert "bits" not in section and "log" not in section  # the figures are one click away
    technical = html[html.index('id="scores-technical"'):html.index('id="provinces-section"')]
    assert 'id="chart-scores"' in technical and "bits" in technical


def test_every_flag_status_and_decision_has_a_short_verdict() -> None:
    from pipelines.correction_cycle.review import DECISIONS
    from pipelines.reporting import verdicts
    from pipelines.schema import STATUSES

    for verdict in [*map(verdicts.flag, FLAGS), *map(verdicts.status, STATUSES),
                    *map(verdicts.decision, DECISIONS)]:
        assert verdict.short_en != verdict.code and verdict.short_vi != verdict.code, verdict
        assert len(verdict.short_en) <= 22 and len(verdict.short_vi) <= 24, verdict
        assert len(verdict.long_en) > len(verdict.short_en), verdict


@pytest.mark.parametrize("wanted", [[100, 101, 102, 250], [5, 5, 5], [239, 240, 240, 241],
                                    [50.0], []])
def test_dodged_labels_keep_apart_inside_the_plot(wanted: list[float]) -> None:
    placed = charts.dodge(wanted, 10, 240, gap=12)
    assert len(placed) == len(wanted)
    ordered = sorted(placed)
    assert all(b - a >= 12 - 1e-9 for a, b in itertools.pairwise(ordered))
    assert all(10 <= y <= 240 for y in placed)
    # A label keeps its rank: the lower value's label stays lower.
    for i, a in enumerate(wanted):
        for j, b in enumerate(wanted):
            if a < b:
                assert placed[i] < placed[j], (wanted, placed)


def test_the_report_from_the_sample_gathered_beside_the_lists_is_the_report_alone(
        tmp_path: Path) -> None:
    """``report_sample`` reads the flagged sample beside the correction lists; the report
    made from it is the one the report makes reading the results itself, and a sample
    gathered for another size is not used."""
    from pipelines import stages
    from pipelines.storage.paths import RunPaths

    config = str(write_config(tmp_path))
    run_until_flagged(config, RUN_DATE)
    stages.gate_results(config, RUN_DATE)
    stages.write_corrections(config, RUN_DATE)
    paths = RunPaths(tmp_path / "runs", RUN_DATE)

    def made() -> tuple[str, bytes]:
        stages.build_report(config, RUN_DATE)
        workbook = load_workbook(paths.staging / "report.xlsx", read_only=True)
        cells = [row for sheet in workbook.worksheets
                 for row in sheet.iter_rows(values_only=True)]
        # The generation time (to the minute) is the only thing allowed to differ.
        html, stamps = re.subn(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", "",
                               (paths.staging / "report.html").read_text())
        assert stamps == 1
        return html, json.dumps(cells, default=str).encode()

    alone = made()
    gathered = stages.gather_report_sample(config, RUN_DATE)
    assert paths.report_sample().exists() and gathered["rows"] > 0
    assert gathered["flagged"] >= gathered["rows"]
    assert made() == alone
    # a sample gathered for another size is read again from the results
    sample = pq.read_table(paths.report_sample())
    meta = dict(sample.schema.metadata)
    meta[b"simrecon.sample_limit"] = b"3"
    pq.write_table(sample.slice(0, 3).replace_schema_metadata(meta), paths.report_sample())
    assert made() == alone
