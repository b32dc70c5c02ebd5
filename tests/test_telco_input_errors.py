"""A malformed export stops only its telco, with an error naming file, line or column."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.config import load_telco_mapping
from pipelines.errors import RunIncompleteError, TelcoInputError
from pipelines.intake.ingest import ingest
from pipelines.results.dataset import RunResults
from pipelines.stages import check_run, run_all

from .conftest import REPO, write_config

VIETTEL_CSV = REPO / "data_samples" / "exports" / "viettel_subscribers.csv"


def _telcos_dir(tmp_path: Path, broken_viettel: bytes | None = None,
                viettel_overrides: dict | None = None) -> Path:
    """Copies of the bundled mappings with absolute sources; viettel may point at a bad file."""
    folder = tmp_path / "telcos"
    folder.mkdir()
    for source in sorted((REPO / "config" / "telcos").glob("*.yaml")):
        mapping = yaml.safe_load(source.read_text(encoding="utf-8"))
        mapping["source"] = str(load_telco_mapping(source).source_path())
        if mapping["telco"] == "viettel":
            if broken_viettel is not None:
                bad = tmp_path / "viettel_broken.csv"
                bad.write_bytes(broken_viettel)
                mapping["source"] = str(bad)
            mapping.update(viettel_overrides or {})
        (folder / source.name).write_text(yaml.safe_dump(mapping, allow_unicode=True),
                                          encoding="utf-8")
    return folder


def _viettel_lines() -> list[bytes]:
    return VIETTEL_CSV.read_bytes().splitlines(keepends=True)


def _mapping(folder: Path):
    return load_telco_mapping(folder / "viettel.yaml")


def test_missing_required_column_names_the_column(tmp_path: Path) -> None:
    lines = _viettel_lines()
    header = lines[0].decode("utf-8-sig").rstrip("\r\n").split(",")
    drop = header.index("SO_GIAY_TO")
    rebuilt = [",".join(c for i, c in enumerate(line.decode("utf-8-sig").rstrip("\r\n")
                                                .split(",")) if i != drop) + "\n"
               for line in lines[:50]]
    folder = _telcos_dir(tmp_path, "".join(rebuilt).encode("utf-8"))
    with pytest.raises(TelcoInputError) as error:
        ingest(_mapping(folder))
    message = str(error.value)
    assert "SO_GIAY_TO" in message and "id_number" in message
    assert "viettel_broken.csv" in message and "line 1" in message


def test_undecodable_bytes_name_the_line(tmp_path: Path) -> None:
    lines = _viettel_lines()[:40]
    lines[17] = lines[17].replace(b",", b",\xff\xfe", 1)
    folder = _telcos_dir(tmp_path, b"".join(lines))
    with pytest.raises(TelcoInputError) as error:
        ingest(_mapping(folder))
    assert "line 18" in str(error.value) and "utf-8" in str(error.value)


def test_wrong_delimiter_is_diagnosed(tmp_path: Path) -> None:
    text = b"".join(_viettel_lines()[:30]).decode("utf-8-sig").replace(",", ";")
    folder = _telcos_dir(tmp_path, text.encode("utf-8"))
    with pytest.raises(TelcoInputError) as error:
        ingest(_mapping(folder))
    assert "delimiter" in str(error.value) and "';'" in str(error.value)


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    folder = _telcos_dir(tmp_path, b"")
    with pytest.raises(TelcoInputError, match="empty"):
        ingest(_mapping(folder))


def test_malformed_row_is_quarantined_not_lost(tmp_path: Path) -> None:
    lines = _viettel_lines()[:101]
    lines[10] = b"0912345678,only,three fields\n"
    folder = _telcos_dir(tmp_path, b"".join(lines))
    result = ingest(_mapping(folder))
    assert result.rows_in_file == 100
    assert result.rows.num_rows == 99
    assert result.quarantine.num_rows == 1
    row = result.quarantine.to_pylist()[0]
    assert row["source_row"] == 10 and row["reason"] == "MALFORMED_ROW"
    assert "three fields" in row["raw_record"]
    assert 10 not in result.rows["source_row"].to_pylist()
    assert result.rows["source_row"].to_pylist()[9] == 11


def test_bad_telco_stops_alone_and_others_are_published(tmp_path: Path) -> None:
    lines = _viettel_lines()[:20]
    lines[5] = b"\xc3\x28" + lines[5]
    config = write_config(tmp_path, telcos_dir=_telcos_dir(tmp_path, b"".join(lines)))
    outcome = run_all(str(config), "2026-11-28")
    assert outcome["failed_telcos"] == ["viettel"]
    run_dir = Path(outcome["run_dir"])
    assert sorted(p.name for p in (run_dir / "corrections").glob("*.csv")) == \
        ["mobifone.csv", "vinaphone.csv"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "line 6" in summary["failed_telcos"]["viettel"]
    results = RunResults(run_dir).read()
    assert set(results["telco"].to_pylist()) == {"mobifone", "vinaphone"}
    assert "viettel" in (run_dir / "report.html").read_text(encoding="utf-8")
    with pytest.raises(RunIncompleteError, match="viettel"):
        check_run(str(config), "2026-11-28")


def test_unknown_vocabulary_value_is_quarantined_with_reason(tmp_path: Path) -> None:
    lines = _viettel_lines()[:60]
    header = lines[0].decode("utf-8-sig").rstrip("\r\n").split(",")
    gender_col = header.index("GIOI_TINH")
    fields = lines[7].decode("utf-8").rstrip("\r\n").split(",")
    if len(fields) == len(header):
        fields[gender_col] = "Khác?"
        lines[7] = (",".join(fields) + "\n").encode("utf-8")
    config = write_config(tmp_path, telcos_dir=_telcos_dir(tmp_path, b"".join(lines)))
    outcome = run_all(str(config), "2026-11-28")
    run_dir = Path(outcome["run_dir"])
    private = tmp_path / "runs-private" / run_dir.name  # engineer-only: raw rows
    quarantine = pq.read_table(private / "quarantine" / "viettel.normalise.parquet").to_pylist()
    assert any(q["source_row"] == 7 and q["reason"] == "UNKNOWN_VOCABULARY_VALUE"
               and "gender" in q["detail"] for q in quarantine)
    summary = json.loads((run_dir / "summary.json").read_text())
    viettel = summary["telcos"]["viettel"]
    assert viettel["rows_in_file"] == 59
    assert viettel["rows_normalised"] + viettel["quarantined_at_normalise"] == 59
