"""Least data: every file a telco receives holds only its own rows and never registry data;
the report and the review queue mask ID numbers.

Checked over every list of a run on a freshly generated world (another seed
than the bundled samples): the CSV, every sheet of the XLSX, the resolved and
resend sections, the delivery manifest, and the delivered copies.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.results.dataset import RunResults
from pipelines.stages import run_all

from .conftest import REPO, write_config

RUN_DATE = "2026-11-28"
# Columns that would carry registry data or a citizen id the telco did not send.
FORBIDDEN_COLUMNS = {"full_name", "date_of_birth", "gender", "matched_citizen_id",
                     "suggested_citizen_id", "holder_citizen_id", "candidate_citizen_id",
                     "citizen_id", "legacy_id", "date_of_death", "row_hash", "name_level",
                     "dob_level", "match_probability"}
ID_TOKEN = re.compile(r"(?<![0-9])[0-9]{9}(?:[0-9]{3})?(?![0-9])")


@pytest.fixture(scope="module")
def world_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from data_samples.generator import generate_world

    root = tmp_path_factory.mktemp("least-data")
    world = generate_world(root / "world", seed=4242, n_citizens=1500, n_subscriptions=2500)
    telcos = root / "telcos"
    telcos.mkdir()
    for path in sorted((REPO / "config" / "telcos").glob("*.yaml")):
        mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
        mapping["source"] = str(world["paths"][mapping["telco"]])
        (telcos / path.name).write_text(yaml.safe_dump(mapping, allow_unicode=True),
                                        encoding="utf-8")
    config = write_config(root, telcos_dir=telcos, registry=Path(world["paths"]["registry"]),
                          correction_cycle={"delivery": {"default": {"kind": "local",
                                                                     "path": "outbox"}}})
    run_dir = Path(run_all(str(config), RUN_DATE)["run_dir"])
    return {"run_dir": run_dir, "registry": Path(world["paths"]["registry"]),
            "outbox": root / "outbox" / RUN_DATE}


def _telco_files(folder: Path, telco: str) -> list[Path]:
    return [folder / f"{telco}.csv", folder / f"{telco}.xlsx", folder / "resolved" / f"{telco}.csv",
            folder / "resend" / f"{telco}.csv", folder / f"{telco}.manifest.json"]


def _frames(path: Path) -> list[pd.DataFrame]:
    if path.suffix == ".xlsx":
        return [f for name, f in pd.read_excel(path, sheet_name=None, dtype=str).items()
                if name != "reason_codes"]
    if path.suffix == ".csv":
        return [pd.read_csv(path, dtype=str, encoding="utf-8-sig", keep_default_na=False)]
    return []


def _text(path: Path) -> str:
    if path.suffix == ".xlsx":
        return "\n".join(f.fillna("").to_csv(index=False) for f in _frames(path))
    if path.suffix == ".json":  # the manifest: counts and file names (sha256 left out)
        manifest = json.loads(path.read_text(encoding="utf-8"))
        return json.dumps({**manifest, "files": [f["path"] for f in manifest["files"]]})
    return path.read_text(encoding="utf-8-sig")


def test_every_list_holds_only_own_rows_and_no_registry_data(world_run: dict) -> None:
    run_dir = world_run["run_dir"]
    registry = pq.read_table(world_run["registry"]).to_pandas()
    names = {n for n in registry["full_name"] if isinstance(n, str) and len(n) > 8}
    results = RunResults(run_dir).read().to_pandas()
    telcos = sorted(p.stem for p in (run_dir / "corrections").glob("*.csv"))
    assert telcos == ["mobifone", "viettel", "vinaphone"]
    checked = 0
    for telco in telcos:
        own = pq.read_table(run_dir.parent.with_name("runs-private") / run_dir.name
                            / "normalised" / f"{telco}.parquet").to_pandas()
        sent_ids = set(own["id_number"].dropna())
        sent_numbers = set(own["msisdn"].dropna()) | set(own["msisdn_raw"].dropna())
        others = results[results["telco"] != telco]
        other_numbers = set(others["msisdn"].dropna()) - sent_numbers
        for folder in (run_dir / "corrections", world_run["outbox"]):
            for path in _telco_files(folder, telco):
                assert path.is_file(), path
                for frame in _frames(path):
                    assert not FORBIDDEN_COLUMNS & set(frame.columns), (path, frame.columns)
                    if "telco" in frame and len(frame):
                        assert set(frame["telco"]) == {telco}, path
                    if "msisdn" in frame:
                        assert not set(frame["msisdn"]) & other_numbers, path
                text = _text(path)
                assert not [n for n in names if n in text], path
                # Any ID-shaped number is one the telco itself sent (never a registry id).
                stray = {t for t in ID_TOKEN.findall(text) if t not in sent_ids}
                stray -= {n.lstrip("+") for n in sent_numbers}
                assert not stray, (path, sorted(stray)[:5])
                checked += 1
    assert checked == 2 * 3 * 5


def test_report_and_review_queue_mask_ids(world_run: dict) -> None:
    run_dir = world_run["run_dir"]
    results = RunResults(run_dir).read().to_pandas()
    ids = {i for i in results["id_number"].dropna() if len(i) >= 9}
    ids |= set(results["matched_citizen_id"].dropna())
    ids |= set(results["suggested_citizen_id"].dropna())
    for path in (run_dir / "report.html", run_dir / "review" / "queue.csv",
                 run_dir / "review" / "queue.xlsx"):
        text = _text(path) if path.suffix != ".html" else path.read_text(encoding="utf-8")
        leaked = {t for t in ID_TOKEN.findall(text) if t in ids}
        assert not leaked, (path.name, len(leaked))
    queue = pd.read_csv(run_dir / "review" / "queue.csv", dtype=str, encoding="utf-8-sig")
    assert len(queue) > 0
    assert queue["id_number_masked"].dropna().str.fullmatch(r"\*{5,}[^*]{0,3}").all()
