"""Onboarding a telco: ``simrecon mapping check`` and the warnings a run logs at ingest.

A mapping that quietly disables a rule (no line status: EXCESS_SUBSCRIPTIONS can never
fire) is said out loud, before the first run and in every run; a coded field's default
works without a vocabulary, checked against the canonical codes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from pipelines.cli import main
from pipelines.config import ConfigError, FlagSettings, load_config, load_telco_mapping
from pipelines.intake.mapping_check import check_mapping, rule_warnings
from pipelines.stages import ingest_telco, normalise_telco
from pipelines.stages.run import plan_run

from .conftest import REPO, write_config

RUN_DATE = "2026-11-28"
VIETTEL_CSV = REPO / "data_samples" / "exports" / "viettel_subscribers.csv"


def _telco(tmp_path: Path, drop: tuple[str, ...] = (), **changes: object) -> Path:
    """A telcos folder holding one Viettel-like mapping without the ``drop`` fields."""
    mapping = yaml.safe_load((REPO / "config" / "telcos" / "viettel.yaml").read_text("utf-8"))
    mapping["source"] = str(VIETTEL_CSV)
    for name in drop:
        mapping["columns"].pop(name)
        mapping["vocabularies"].pop(name, None)
    mapping.update(changes)
    folder = tmp_path / "telcos"
    folder.mkdir(exist_ok=True)
    (folder / "viettel.yaml").write_text(yaml.safe_dump(mapping, allow_unicode=True), "utf-8")
    return folder


def test_mapping_check_warns_that_excess_subscriptions_cannot_fire(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, telcos_dir=_telco(tmp_path, drop=("line_status",)))
    code = main(["mapping", "check", "--config", str(config), "--telco", "viettel",
                 "--rows", "50", "--run-date", RUN_DATE])
    out = capsys.readouterr().out
    assert code == 0
    assert "WARNING EXCESS_SUBSCRIPTIONS cannot fire: line_status is neither mapped nor " \
        "defaulted" in out
    assert "line_status        not provided (empty)" in out
    assert "encoding: utf-8" in out and "rows read: 50" in out
    assert "'%d/%m/%Y' " in out  # which date formats read the rows
    # ID numbers are masked, before and after normalisation; few rows are shown.
    numbers = [line.split(",")[5] for line in VIETTEL_CSV.read_text("utf-8").splitlines()[1:51]]
    assert not any(number in out for number in numbers if len(number) >= 9)
    assert sum(line.startswith("      ") for line in out.splitlines()) <= 3 * 10


def test_a_complete_mapping_has_no_rule_warning(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, telcos_dir=_telco(tmp_path))
    assert main(["mapping", "check", "--config", str(config), "--rows", "20"]) == 0
    assert "rules: every flag rule can fire" in capsys.readouterr().out


def test_vocabulary_coverage_names_values_the_mapping_does_not_define(tmp_path: Path) -> None:
    lines = VIETTEL_CSV.read_text("utf-8").splitlines()[:21]
    lines[3] = lines[3].replace(",Nam,", ",Khác,").replace(",Nữ,", ",Khác,")
    export = tmp_path / "export.csv"
    export.write_text("\n".join(lines) + "\n", "utf-8")
    config = load_config(write_config(tmp_path, telcos_dir=_telco(tmp_path,
                                                                  source=str(export))))
    report = check_mapping(config, "viettel", rows=20)
    assert report.unknown_values["gender"] == {"Khác": 1}
    assert report.quarantine["UNKNOWN_VOCABULARY_VALUE"] == 1
    assert "  gender: values the mapping does not define: 'Khác' x1" in report.lines()


def test_an_unusable_export_is_reported_and_exits_1(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, telcos_dir=_telco(tmp_path,
                                                      source=str(tmp_path / "missing.csv")))
    assert main(["mapping", "check", "--config", str(config)]) == 1
    assert "UNUSABLE" in capsys.readouterr().out


def test_a_default_line_status_needs_no_vocabulary_and_lets_the_rule_fire(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import pyarrow.parquet as pq

    folder = _telco(tmp_path, drop=("line_status",), defaults={"line_status": "ACTIVE"})
    config = write_config(tmp_path, telcos_dir=folder)
    mapping = load_telco_mapping(folder / "viettel.yaml")
    assert not [w for w in rule_warnings(mapping, FlagSettings()) if "EXCESS" in w]
    plan_run(str(config), RUN_DATE)
    ingest_telco(str(config), RUN_DATE, "viettel")
    normalise_telco(str(config), RUN_DATE, "viettel")
    paths = tmp_path / "runs-private" / ".staging" / RUN_DATE / "normalised" / "viettel.parquet"
    assert set(pq.read_table(paths, columns=["line_status"])["line_status"].to_pylist()) \
        == {"ACTIVE"}


def test_a_run_logs_the_same_warnings_at_ingest(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    import json

    config = write_config(tmp_path, telcos_dir=_telco(tmp_path, drop=("line_status",
                                                                       "point_of_sale")))
    plan_run(str(config), RUN_DATE)
    with caplog.at_level(logging.WARNING, logger="simrecon.stages"):
        stats = ingest_telco(str(config), RUN_DATE, "viettel")
    logged = [r.getMessage() for r in caplog.records]
    assert any("EXCESS_SUBSCRIPTIONS cannot fire" in m for m in logged)
    assert any("BULK_ACTIVATION cannot fire" in m for m in logged)
    assert stats["mapping_warnings"] == [m.split(": ", 1)[1] for m in logged
                                         if m.startswith("mapping viettel: ")]
    written = json.loads((tmp_path / "runs" / ".work" / RUN_DATE / "stats"
                          / "viettel.ingest.json").read_text("utf-8"))
    assert written["mapping_warnings"] == stats["mapping_warnings"]


@pytest.mark.parametrize(("defaults", "message"), [
    ({"line_status": "ALIVE"}, "defaults.line_status is 'ALIVE'"),
    ({"gender": "X"}, "defaults.gender is 'X'"),
    ({"nickname": "x"}, "unknown canonical field(s) in defaults"),
])
def test_a_coded_default_must_be_a_canonical_value(tmp_path: Path, defaults: dict,
                                                   message: str) -> None:
    drop = tuple(k for k in defaults if k in ("line_status", "gender"))
    folder = _telco(tmp_path, drop=drop, defaults=defaults)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_telco_mapping(folder / "viettel.yaml")


def test_rule_warnings_cover_the_rules_that_read_optional_fields() -> None:
    mapping = load_telco_mapping(REPO / "config" / "telcos" / "viettel.yaml")
    data = mapping.model_dump()
    for name in ("line_status", "point_of_sale", "gender"):
        data["columns"].pop(name)
        data["vocabularies"].pop(name, None)
    data["defaults"] = {"line_status": "CANCELLED", "gender": "M"}
    data["vocabularies"]["id_type"] = {"CCCD": "CCCD"}
    changed = type(mapping).model_validate(data)
    warnings = "\n".join(rule_warnings(changed, FlagSettings()))
    for expected in ("EXCESS_SUBSCRIPTIONS cannot fire", "DUPLICATE_MSISDN cannot fire",
                     "BULK_ACTIVATION cannot fire", "GENDER_MISMATCH fires for every holder",
                     "LEGACY_ID cannot fire", "FOREIGN_DOCUMENT"):
        assert expected in warnings
