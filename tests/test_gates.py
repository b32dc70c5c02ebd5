"""Great Expectations gates: suites on every boundary, and what a failing gate stops.

The broken-export scenario (half of viettel's rows without an ID number) is
also run through Airflow in tests/test_dag_run.py.
"""

from __future__ import annotations

import csv
import itertools
import json
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from matching.columns import matches
from pipelines.cli import main
from pipelines.config import GateSettings
from pipelines.errors import GateFailedError, RegistryError
from pipelines.quality import facts, gates
from pipelines.results.dataset import RunResults
from pipelines.stages import run_all

from .conftest import REPO, run_until_flagged, write_config

TELCOS_DIR = REPO / "config" / "telcos"
TELCOS = {"mobifone", "viettel", "vinaphone"}
RUN_DATE = "2026-11-28"


def telcos_dir_with(tmp_path: Path, telco: str, rewrite) -> Path:  # type: ignore[no-untyped-def]
    """Copies of the bundled mappings; ``telco``'s CSV export goes through ``rewrite``.

    ``rewrite(rows: list[dict], columns: dict) -> list[dict]`` gets the export's
    rows and the mapping's canonical-field -> column names.
    """
    folder = tmp_path / f"telcos-{telco}"
    folder.mkdir()
    for path in sorted(TELCOS_DIR.glob("*.yaml")):
        mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
        source = (path.parent / mapping["source"]).resolve()
        if mapping["telco"] == telco:
            delimiter = mapping.get("csv", {}).get("delimiter", ",")
            changed = tmp_path / f"{telco}_changed.csv"
            with source.open(encoding="utf-8-sig", newline="") as src:
                reader = csv.DictReader(src, delimiter=delimiter)
                fields = list(reader.fieldnames or [])
                rows = rewrite(list(reader), mapping["columns"])
            with changed.open("w", encoding="utf-8", newline="") as dst:
                writer = csv.DictWriter(dst, fields, delimiter=delimiter)
                writer.writeheader()
                writer.writerows(rows)
            source = changed
        mapping["source"] = str(source)
        (folder / path.name).write_text(yaml.safe_dump(mapping, allow_unicode=True),
                                        encoding="utf-8")
    return folder


def half_ids_missing(rows: list[dict], columns: dict) -> list[dict]:
    for row in rows[::2]:
        row[columns["id_number"]] = ""
    return rows


def telcos_dir_with_half_of_viettel_ids_missing(tmp_path: Path) -> Path:
    """The "deliberately broken export" of issue 5 (also used by tests/test_dag_run.py)."""
    return telcos_dir_with(tmp_path, "viettel", half_ids_missing)


def _gate(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / "gates" / f"{name}.json").read_text(encoding="utf-8"))


def _failed(result: dict) -> list[dict]:
    return [f for s in result["suites"] for f in s["failed"]]


# --- suites over facts, validated in parts ------------------------------------------


def _normalised(n: int = 4) -> pa.Table:
    """Normalised rows with one defect each in rows 2-4 (row 1 is clean)."""
    from datetime import date

    rows = {
        "telco": ["t"] * 4, "source_file": ["f"] * 4, "source_row": [1, 2, 3, 4],
        "msisdn": ["0912345678", "12345", None, "0987654321"],
        "full_name": ["Nguyễn Văn A"] * 4,
        "date_of_birth": [date(1990, 1, 1), date(2030, 5, 5), date(1980, 1, 1), None],
        "dob_precision": ["day", "day", "year", None],
        "gender": ["M", "F", "X", None], "id_type": ["CCCD", "CCCD", "CMND", "CCCD"],
        "id_number": ["079090001234", "07909000123", "123456789", "079090009999"],
        "activation_date": [date(2020, 1, 1), date(1985, 1, 1), date(2026, 11, 1),
                            date(2026, 12, 1)],
        "subscription_type": ["PREPAID"] * 4, "line_status": ["ACTIVE"] * 4,
        "point_of_sale": ["x"] * 4,
    }
    return pa.table(rows)


def _facts_of(rows: pa.Table) -> pd.DataFrame:
    from datetime import date

    from pipelines.quality import facts

    return gates.to_frame(facts.export_facts(rows, run_date=date(2026, 11, 28),
                                             earliest_activation=date(1990, 1, 1)))


def test_facts_give_counts_and_masked_examples_of_the_data() -> None:
    from expectations.telco_export import normalised_suite

    rows = _normalised()
    settings = GateSettings(max_malformed_id_share=0.0)
    result = gates.run_suite(normalised_suite(settings), _facts_of(rows), shown=rows)
    assert result["success"] is False
    by_column: dict[str, list[dict]] = {}
    for f in result["failed"]:
        by_column.setdefault(f["column"], []).append(f)
    (msisdn,) = [f for f in by_column["msisdn"] if "10 digits" in f["description"]]
    assert msisdn["unexpected_count"] == 1
    # The example shows the number as it is in the data, not its fact code.
    assert msisdn["examples"] == [{"telco": "t", "source_row": 2, "msisdn": "12345"}]
    assert by_column["date_of_birth"][0]["unexpected_count"] == 1
    assert by_column["activation_date"][0]["unexpected_count"] == 2
    assert by_column["gender"][0]["unexpected_count"] == 1
    (cccd,) = [f for f in by_column["id_number"] if "CCCD" in f["description"]]
    assert cccd["unexpected_count"] == 1
    # The example's ID number is masked, never shown in full.
    (example,) = cccd["examples"]
    assert example["id_number"] == "********123" and "07909000123" not in json.dumps(result)
    json.dumps(result)  # JSON-able


def test_parts_merge_into_the_verdict_of_the_whole() -> None:
    """Shard by shard, merged: the counts and the verdict of one validation of the whole,
    whatever the cut; the examples are the first rows in source order."""
    from expectations.telco_export import normalised_suite

    rows = _normalised()
    suite = normalised_suite(GateSettings(max_malformed_id_share=0.0))
    whole = gates.validate(suite, _facts_of(rows), shown=rows).summary()
    for cut in ([0, 4], [0, 1, 4], [0, 2, 3, 4], [0, 1, 2, 3, 4]):
        parts = [rows.slice(a, b - a) for a, b in itertools.pairwise(cut)]
        merged = gates.merge([gates.validate(suite, _facts_of(part), shown=part)
                              for part in reversed(parts)]).summary()
        assert merged == whole, cut


def test_one_bad_row_passes_and_a_bad_share_fails() -> None:
    """A share check is judged on the total: one bad row among many, cut into parts in
    which it is a large share, passes; the same defect in 2% of the rows fails."""
    from datetime import date

    from expectations.telco_export import normalised_suite

    clean = _normalised().slice(0, 1)
    n = 1000
    rows = pa.concat_tables([clean] * n)
    rows = rows.set_column(2, "source_row", pa.array(range(1, n + 1), pa.int64()))
    births = [date(1990, 1, 1)] * n
    births[500] = date(2031, 1, 1)  # one birth after the run date
    one_bad = rows.set_column(rows.schema.get_field_index("date_of_birth"), "date_of_birth",
                              pa.array(births, pa.date32()))
    suite = normalised_suite(GateSettings())  # max_bad_row_share 1%
    parts = [one_bad.slice(k, 100) for k in range(0, n, 100)]
    outcome = gates.merge([gates.validate(suite, _facts_of(p), shown=p) for p in parts])
    assert outcome.success, outcome.summary()
    births = [date(2031, 1, 1) if i % 50 == 0 else date(1990, 1, 1) for i in range(n)]
    many_bad = rows.set_column(rows.schema.get_field_index("date_of_birth"), "date_of_birth",
                               pa.array(births, pa.date32()))
    outcome = gates.merge([gates.validate(suite, _facts_of(p), shown=p)
                           for p in (many_bad.slice(k, 100) for k in range(0, n, 100))])
    (failed,) = outcome.summary()["failed"]
    assert failed["column"] == "date_of_birth" and failed["unexpected_count"] == 20
    assert "after the run date" in failed["description"]


def test_validation_in_parts_bounds_examples_on_a_million_rows() -> None:
    import time

    from expectations.telco_export import normalised_suite
    from pipelines.quality import facts

    n = 1_000_000
    base = _normalised().slice(0, 1)
    rows = base.take(pa.array(np.zeros(n, dtype=np.int64)))
    rows = rows.set_column(2, "source_row", pa.array(np.arange(1, n + 1), pa.int64()))
    ids = pa.array(np.where(np.arange(n) % 2 == 0, None, "079090001234"), pa.string())
    rows = rows.set_column(rows.schema.get_field_index("id_number"), "id_number", ids)
    start = time.perf_counter()
    from datetime import date

    outcome = gates.validate_parts(
        normalised_suite(GateSettings()),
        ((facts.export_facts(part, run_date=date(2026, 11, 28),
                             earliest_activation=date(1990, 1, 1)), part)
         for part in (rows.slice(k, 250_000) for k in range(0, n, 250_000))),
        max_examples=3, rows_per_validation=300_000)
    elapsed = time.perf_counter() - start
    assert outcome is not None
    (no_id,) = outcome.summary()["failed"]
    assert no_id["unexpected_count"] == n // 2 and no_id["column"] == "id_number"
    assert [e["source_row"] for e in no_id["examples"]] == [1, 3, 5]
    print(f"\nnormalised suite on {n:,} rows in parts: {elapsed:.1f}s")


# --- gates through the CLI path (run_all) ------------------------------------------


def test_a_clean_run_passes_every_gate_and_keeps_the_results(tmp_path: Path) -> None:
    outcome = run_all(str(write_config(tmp_path)), RUN_DATE)
    run_dir = Path(outcome["run_dir"])
    names = {p.stem for p in (run_dir / "gates").glob("*.json")}
    assert names == {"registry", "results"} | {f"export.{t}" for t in TELCOS} \
        | {f"corrections.{t}" for t in TELCOS}
    for name in names:
        assert _gate(run_dir, name)["success"], name
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert {f"gates/{n}.json" for n in names} <= {f["path"] for f in manifest["files"]}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {g["gate"] for g in summary["gates"]} == names
    assert 'id="gates"' in (run_dir / "report.html").read_text(encoding="utf-8")


def test_broken_export_fails_its_gate_and_publishes_no_list_for_that_telco(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = write_config(tmp_path, telcos_dir=telcos_dir_with_half_of_viettel_ids_missing(
        tmp_path))
    assert main(["run", "--config", str(config), "--run-date", RUN_DATE]) == 1
    assert "viettel" in capsys.readouterr().err

    run_dir = tmp_path / "runs" / RUN_DATE
    assert {p.stem for p in (run_dir / "corrections").glob("*.csv")} == TELCOS - {"viettel"}
    export = _gate(run_dir, "export.viettel")
    assert export["success"] is False
    (no_id,) = [f for f in _failed(export) if f["column"] == "id_number"
                and f["expectation"] == "expect_column_values_to_not_be_null"]
    assert no_id["unexpected_count"] >= 1868 // 2
    assert no_id["examples"] and all(e["id_number"] is None for e in no_id["examples"])
    for telco in TELCOS - {"viettel"}:
        assert _gate(run_dir, f"export.{telco}")["success"], telco

    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["failed_telcos"]) == {"viettel"}
    assert "lack an ID number" in summary["failed_telcos"]["viettel"]
    results = RunResults(run_dir).read()
    assert "viettel" not in set(results["telco"].to_pylist())
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "export.viettel" in report and "FAILED" in report and "lack an ID number" in report


def test_one_bad_row_in_a_good_export_passes_and_a_bad_share_fails(tmp_path: Path) -> None:
    """Through the whole run: one subscription activated after the run date does not
    fail viettel's export (it is counted and shown), 3% of them do."""

    def future_activation(every: int):  # type: ignore[no-untyped-def]
        def rewrite(rows: list[dict], columns: dict) -> list[dict]:
            for row in rows[::every]:
                row[columns["activation_date"]] = "01/01/2027"
            return rows
        return rewrite

    one = tmp_path / "one"
    one.mkdir()
    config = write_config(one, telcos_dir=telcos_dir_with(one, "viettel",
                                                          future_activation(10_000)))
    outcome = run_all(str(config), RUN_DATE)
    assert outcome["failed_telcos"] == []
    export = _gate(Path(outcome["run_dir"]), "export.viettel")
    assert export["success"] is True and _failed(export) == []
    share = tmp_path / "share"
    share.mkdir()
    config = write_config(share, telcos_dir=telcos_dir_with(share, "viettel",
                                                            future_activation(30)))
    outcome = run_all(str(config), RUN_DATE)
    assert outcome["failed_telcos"] == ["viettel"]
    (failed,) = _failed(_gate(Path(outcome["run_dir"]), "export.viettel"))
    assert failed["column"] == "activation_date"
    assert failed["unexpected_count"] == -(-1868 // 30)
    assert all(e["activation_date"] == "2027-01-01" for e in failed["examples"])


def test_gate_examples_never_show_a_full_id_number(tmp_path: Path) -> None:
    def bad_cccd(rows: list[dict], columns: dict) -> list[dict]:
        for row in rows:
            if row[columns["id_type"]] == "CCCD":
                row[columns["id_number"]] = row[columns["id_number"]][:11]
        return rows

    config = write_config(tmp_path, telcos_dir=telcos_dir_with(tmp_path, "viettel", bad_cccd))
    outcome = run_all(str(config), RUN_DATE)
    assert outcome["failed_telcos"] == ["viettel"]
    run_dir = Path(outcome["run_dir"])
    text = (run_dir / "gates" / "export.viettel.json").read_text(encoding="utf-8")
    (shape,) = [f for f in _failed(json.loads(text)) if "CCCD" in f["description"]]
    assert shape["examples"]
    private = run_dir.parent.with_name("runs-private") / run_dir.name  # engineer-only
    sent = pq.read_table(private / "normalised" / "viettel.parquet")["id_number"].drop_null()
    for text_ in (text, (run_dir / "report.html").read_text(encoding="utf-8")):
        assert not any(number in text_ for number in sent.to_pylist()[:200])
    assert all("*" in e["id_number"] for e in shape["examples"])


def test_row_count_drop_and_nfd_jump_since_the_previous_run_fail_the_gate(
        tmp_path: Path) -> None:
    first = run_all(str(write_config(tmp_path)), "2026-11-27")
    assert first["failed_telcos"] == []

    def truncated(rows: list[dict], columns: dict) -> list[dict]:
        return rows[: len(rows) // 4]

    def to_nfc(rows: list[dict], columns: dict) -> list[dict]:
        for row in rows:
            row[columns["full_name"]] = unicodedata.normalize("NFC", row[columns["full_name"]])
        return rows

    second_dir = tmp_path / "second"
    second_dir.mkdir()
    viettel = telcos_dir_with(second_dir, "viettel", truncated)
    vinaphone = telcos_dir_with(second_dir, "vinaphone", to_nfc)
    (viettel / "vinaphone.yaml").write_bytes((vinaphone / "vinaphone.yaml").read_bytes())
    config = write_config(second_dir, telcos_dir=viettel, output_dir=str(tmp_path / "runs"))
    second = run_all(str(config), RUN_DATE)

    assert second["failed_telcos"] == ["viettel", "vinaphone"]
    run_dir = Path(second["run_dir"])
    assert _gate(run_dir, "export.viettel")["previous_run"] == "2026-11-27"
    (drop,) = [f for f in _failed(_gate(run_dir, "export.viettel"))]
    assert drop["expectation"] == "expect_column_max_to_be_between"
    assert drop["column"] == "rows_read"
    assert "row count dropped" in drop["description"] and drop["observed_value"] == 1868 // 4
    (nfd,) = _failed(_gate(run_dir, "export.vinaphone"))
    assert nfd["column"] == "raw_name_not_nfc_share" and nfd["observed_value"] == 0.0
    assert {p.stem for p in (run_dir / "corrections").glob("*.csv")} == {"mobifone"}


def test_the_registry_suite_finds_a_repeated_citizen_id_and_a_malformed_one() -> None:
    """Uniqueness is checked on the ids' numbers; a malformed id fails its shape instead."""
    from datetime import date

    from expectations.registry import registry_suite

    def failed(ids: list[str | None]) -> dict[str, int]:
        citizens = pa.table({"citizen_id": pa.array(ids, pa.string()),
                             "legacy_id": pa.array([None] * len(ids), pa.string()),
                             "gender": pa.array(["M"] * len(ids), pa.string()),
                             "date_of_birth": pa.array([date(1990, 1, 1)] * len(ids))})
        outcome = gates.validate(registry_suite(), gates.to_frame(facts.registry_facts(
            citizens, as_of=date(2026, 11, 28))), key_columns=(), shown=citizens)
        return {f["description"]: f["unexpected_count"]
                for f in outcome.summary()["failed"]}

    assert failed(["001090000001", "001090000002", "079185000003"]) == {}
    # Both rows of the repeated id are unexpected (GX marks every member of a repeat).
    assert failed(["001090000001", "079185000003", "001090000001"]) == {
        "citizen_id is unique": 2}
    assert failed(["001090000001", "1090000001", None]) == {
        "citizen_id is a 12-digit CCCD": 1, "every citizen has a citizen_id": 1}


def test_validations_in_threads_of_one_process_give_each_its_own_verdict() -> None:
    """``simrecon run --workers 1`` gates the registry in one thread while the exports are
    gated in another: GX's per-process context must not mix them up."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import date

    from expectations.registry import registry_suite

    def verdict(n: int) -> list:
        ids = [f"{79085000000 + i:012d}" for i in range(1000)] + ["bad"] * n
        citizens = pa.table({"citizen_id": ids, "legacy_id": pa.nulls(len(ids), pa.string()),
                             "gender": ["F"] * len(ids),
                             "date_of_birth": [date(1990, 1, 1)] * len(ids)})
        frame = gates.to_frame(facts.registry_facts(citizens, as_of=date(2026, 11, 28)))
        outcome = gates.validate(registry_suite(), frame, key_columns=())
        return [(f["description"], f["unexpected_count"]) for f in outcome.summary()["failed"]]

    with ThreadPoolExecutor(4) as threads:
        verdicts = list(threads.map(verdict, [0, 1, 2, 3] * 3))
    assert verdicts == [[] if n == 0 else [("citizen_id is a 12-digit CCCD", n)]
                        for n in [0, 1, 2, 3] * 3]


def test_a_registry_that_breaks_its_suite_stops_the_run(tmp_path: Path) -> None:
    registry = pq.read_table(REPO / "data_samples" / "registry" / "citizens.parquet")
    births = registry["date_of_birth"].to_pylist()
    births[7] = "2030-01-01"
    broken = tmp_path / "citizens.parquet"
    pq.write_table(registry.set_column(registry.schema.get_field_index("date_of_birth"),
                                       "date_of_birth", pa.array(births, pa.string())), broken)
    config = write_config(tmp_path, registry=broken)
    with pytest.raises(RegistryError, match="no date of birth after the run date"):
        run_all(str(config), RUN_DATE)
    assert not (tmp_path / "runs" / RUN_DATE).exists()
    assert main(["run", "--config", str(config), "--run-date", RUN_DATE]) == 2


def test_a_results_defect_stops_the_run_before_publish(tmp_path: Path) -> None:
    from pipelines import stages
    from pipelines.storage.files import write_parquet
    from pipelines.storage.paths import RunPaths

    config = str(write_config(tmp_path))
    run_until_flagged(config, RUN_DATE, tuple(sorted(TELCOS)))
    # A defect of the run itself: three subscriptions counted twice.
    paths = RunPaths(tmp_path / "runs", RUN_DATE)
    part = pq.read_table(paths.results_part(0))
    write_parquet(pa.concat_tables([part, part.slice(0, 3)]), paths.results_part(0))
    total = RunResults(paths.staging).num_rows

    with pytest.raises(GateFailedError, match="counted twice"):
        stages.gate_results(config, RUN_DATE)
    failed = {f["expectation"]: f for f in _failed(_gate(paths.staging, "results"))}
    assert failed["expect_column_values_to_be_unique"]["unexpected_count"] == 6
    assert failed["expect_column_max_to_be_between"]["observed_value"] == total
    assert not (tmp_path / "runs" / RUN_DATE).exists()


def test_a_correction_list_breaking_its_contract_is_not_published(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.delivery import correction_lists

    real = correction_lists.correction_rows
    leaky = correction_lists.CORRECTION_SCHEMA.append(pa.field("full_name", pa.string()))

    def leaking(rows: pa.Table, *args: object) -> pa.Table:
        table = real(rows, *args)  # type: ignore[arg-type]
        if rows["telco"][0].as_py() == "mobifone":
            table = table.append_column("full_name", pa.array(["X"] * table.num_rows))
        return table

    class LeakyCsv(correction_lists.AtomicCsvWriter):
        def __init__(self, path: Path, schema: pa.Schema) -> None:
            super().__init__(path, leaky if path.stem == "mobifone" else schema)

    monkeypatch.setattr(correction_lists, "AtomicCsvWriter", LeakyCsv)
    monkeypatch.setattr(correction_lists, "correction_rows", leaking)
    outcome = run_all(str(write_config(tmp_path)), RUN_DATE)
    run_dir = Path(outcome["run_dir"])
    assert outcome["failed_telcos"] == ["mobifone"]
    assert not (run_dir / "corrections" / "mobifone.csv").exists()
    assert {p.stem for p in (run_dir / "corrections").glob("*.csv")} == TELCOS - {"mobifone"}
    failed = _failed(_gate(run_dir, "corrections.mobifone"))
    assert any("no registry data" in f["description"] for f in failed)


@given(st.lists(st.one_of(st.none(), st.text(alphabet="0123456789x ١２A", max_size=13),
                          st.from_regex(r"0[0-9]{9}", fullmatch=True),
                          st.from_regex(r"[0-9]{12}", fullmatch=True)), max_size=40))
@settings(max_examples=60, deadline=None)
def test_digit_shapes_are_checked_as_the_regular_expression_does(values: list) -> None:
    """matches answers as RE2 does (null for null), by length and ASCII digits."""
    column = pa.array(values, pa.string())
    for pattern in (facts.MSISDN_PATTERN, *facts.DOCUMENT_PATTERNS.values(), r"^[0-9]{9}$"):
        assert matches(column, pattern).to_pylist() == \
            pc.match_substring_regex(column, pattern).to_pylist()
