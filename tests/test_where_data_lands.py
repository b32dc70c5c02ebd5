"""Where data lands (issue 14, item 5): modes, folders, and what the published folder holds.

One run on a freshly generated world, then every file and folder it wrote is walked:
the published runs folder (``runs/``), the engineer-only folder (``runs-private/``:
the run's normalised and quarantined rows, the prepared registry snapshot) and the
history store. Checked: owner-only modes (0600/0700) by default and 0640/0750 for the
published run with ``outputs.group_readable``; the registry snapshot outside the
published folder; no published file holding registry-only data; masked IDs showing
three digits; a review-queue ``row_hash`` that cannot be recomputed without the key.

**Registry-only data**, as checked here: what the citizen registry holds and no telco
export carries, i.e. the citizen and legacy ID numbers of citizens that no export
names (every ID a telco sent, as sent or normalised, is export data) and the
registry's names that no export carries; and any registry column the exports do not
have (``citizen_id``, ``legacy_id``, ``date_of_death``). The published folder may name a
registry citizen only as the answer matching gave for a subscription (the linked,
suggested or best-candidate citizen of a row, in ``results/``): those IDs are the
outcome compliance staff act on, not a registry extract.
"""

from __future__ import annotations

import csv
import grp
import hashlib
import io
import json
import os
import re
import stat
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.config import load_config
from pipelines.correction_cycle import review
from pipelines.stages import run_all
from pipelines.stages.common import store_of
from pipelines.storage import modes
from pipelines.storage.files import write_csv, write_json, write_parquet
from pipelines.storage.xlsx import write_xlsx

from .conftest import REPO, write_config

RUN_DATE = "2026-11-28"
ID_TOKEN = re.compile(r"(?<![0-9])[0-9]{9}(?:[0-9]{3})?(?![0-9])")
REGISTRY_ONLY_COLUMNS = {"citizen_id", "legacy_id", "date_of_death"}


def _world(root: Path) -> dict:
    from data_samples.generator import generate_world

    world = generate_world(root / "world", seed=4242, n_citizens=1500, n_subscriptions=2500)
    telcos = root / "telcos"
    telcos.mkdir(exist_ok=True)
    for path in sorted((REPO / "config" / "telcos").glob("*.yaml")):
        mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
        mapping["source"] = str(world["paths"][mapping["telco"]])
        (telcos / path.name).write_text(yaml.safe_dump(mapping, allow_unicode=True),
                                        encoding="utf-8")
    return {"telcos": telcos, "registry": Path(world["paths"]["registry"]),
            "exports": [Path(world["paths"][t]) for t in ("viettel", "vinaphone",
                                                            "mobifone")]}


def _run(root: Path, world: dict, **extra: object) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    config = write_config(root, telcos_dir=world["telcos"], registry=world["registry"],
                          **extra)
    outcome = run_all(str(config), RUN_DATE)
    assert outcome["failed_telcos"] == []
    return {"config": config, "runs": root / "runs", "private": root / "runs-private",
            "run_dir": Path(outcome["run_dir"])}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return _world(tmp_path_factory.mktemp("where-data-lands"))


@pytest.fixture(scope="module")
def landed(world: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A run with the defaults, started under a permissive umask: the modes must not
    depend on it."""
    previous = os.umask(0o022)
    try:
        return _run(tmp_path_factory.mktemp("default"), world)
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _walk(*roots: Path) -> list[Path]:
    """Every file and folder under ``roots``, the roots included."""
    found = []
    for root in roots:
        found.append(root)
        found.extend(root.rglob("*"))
    return found


def _wrong_modes(paths: list[Path], file_mode: int, dir_mode: int) -> list[str]:
    wrong = []
    for path in paths:
        want = dir_mode if path.is_dir() else file_mode
        if _mode(path) != want:
            wrong.append(f"{path} {oct(_mode(path))} (want {oct(want)})")
    return wrong


# --- modes -----------------------------------------------------------------------------------
def test_every_file_and_folder_written_is_owner_only(landed: dict) -> None:
    written = _walk(landed["runs"], landed["private"])
    files = [p for p in written if p.is_file()]
    assert any(p.name == "report.html" for p in files)
    assert any(p.name == "history.sqlite" for p in files)
    assert any(p.match("*/registry/snapshot=*/*") for p in written)
    assert any(p.match(f"*/runs-private/{RUN_DATE}/normalised/*.parquet") for p in files)
    assert _wrong_modes(written, modes.FILE_MODE, modes.DIR_MODE) == []


def test_group_readable_opens_the_published_run_only(world: dict, tmp_path: Path) -> None:
    group = grp.getgrgid(os.getgid()).gr_name  # a group this user may give files to
    run = _run(tmp_path, world, outputs={"group_readable": True, "group": group})
    published = _walk(run["run_dir"])
    assert len(published) > 20
    assert _wrong_modes(published, modes.GROUP_FILE_MODE, modes.GROUP_DIR_MODE) == []
    assert all(p.stat().st_gid == os.getgid() for p in published)
    assert _mode(run["runs"]) == modes.GROUP_DIR_MODE, "the group can reach the run"
    # The rest stays owner-only: the history store (decisions, the review key), the
    # working folders, and everything engineer-only (raw rows, the registry).
    rest = [p for p in _walk(run["runs"], run["private"])
            if p != run["runs"] and not p.is_relative_to(run["run_dir"])]
    assert any(p.name == "history.sqlite" for p in rest)
    assert _wrong_modes(rest, modes.FILE_MODE, modes.DIR_MODE) == []


def test_the_writers_set_the_modes_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        table = pa.table({"a": ["x"]})
        written = [write_json({"a": 1}, tmp_path / "new" / "deeper" / "a.json"),
                   write_parquet(table, tmp_path / "p" / "a.parquet"),
                   write_csv(table, tmp_path / "c" / "a.csv"),
                   write_xlsx({"s": table}, tmp_path / "x" / "a.xlsx")]
        made = modes.make_dirs(tmp_path / "m" / "n")
    finally:
        os.umask(previous)
    assert [oct(_mode(p)) for p in written] == [oct(modes.FILE_MODE)] * 4
    for folder in (tmp_path / "new", tmp_path / "new" / "deeper", tmp_path / "p",
                   tmp_path / "m", made):
        assert _mode(folder) == modes.DIR_MODE, folder


def test_load_config_makes_the_process_umask_owner_only(sample_config: Path) -> None:
    previous = os.umask(0o022)
    try:
        load_config(sample_config)
        assert os.umask(0o022) == modes.UMASK
    finally:
        os.umask(previous)


def test_a_group_needs_group_readable(tmp_path: Path) -> None:
    from pipelines.config import ConfigError

    with pytest.raises(ConfigError, match="group_readable"):
        load_config(write_config(tmp_path, outputs={"group": "compliance"}))
    with pytest.raises(ConfigError, match="group"):
        load_config(write_config(tmp_path, outputs={"group_readable": True,
                                                    "group": "a b"}))


# --- folders ---------------------------------------------------------------------------------
def test_the_registry_snapshot_lands_outside_the_published_folder(landed: dict) -> None:
    config = load_config(landed["config"])
    assert config.prepared_registry_path == landed["private"] / "registry"
    assert list((landed["private"] / "registry").glob("snapshot=*/manifest.json"))
    assert not [p for p in landed["runs"].rglob("*") if "snapshot=" in p.name]
    assert not config.prepared_registry_path.is_relative_to(config.output_path)


def test_engineer_only_outputs_are_apart_and_vouched_for(landed: dict) -> None:
    run_dir, private = landed["run_dir"], landed["private"] / RUN_DATE
    assert not (run_dir / "normalised").exists() and not (run_dir / "quarantine").exists()
    assert list((private / "normalised").glob("*.parquet"))
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["engineering_manifest_sha256"] == hashlib.sha256(
        (private / "manifest.json").read_bytes()).hexdigest()


# --- what the published folder holds ---------------------------------------------------------
class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.cells.append(data.strip())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.cells.extend(v for _, v in attrs if v)


def _json_leaves(value: object) -> list[str]:
    if isinstance(value, dict):
        return [str(k) for k in value] + [s for v in value.values() for s in _json_leaves(v)]
    if isinstance(value, list):
        return [s for v in value for s in _json_leaves(v)]
    return [] if value is None else [str(value)]


def _cells(path: Path) -> tuple[list[str], set[str]]:
    """Every value a published file holds, as text, and its column names (tables)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        table = pq.read_table(path)
        cells = []
        for column in table.columns:
            if pa.types.is_list(column.type):
                column = pc.list_flatten(column)
            cells += [str(v) for v in column.to_pylist() if v is not None]
        return cells, set(table.column_names)
    if suffix == ".xlsx":
        cells = []
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith(".xml"):
                    xml = archive.read(name).decode("utf-8")
                    parser = _Text()
                    parser.feed(xml)
                    cells += parser.cells
        return cells, set()
    text = path.read_text(encoding="utf-8-sig")
    if suffix == ".csv":
        rows = list(csv.reader(io.StringIO(text)))
        return [c for row in rows for c in row], set(rows[0]) if rows else set()
    if suffix == ".json":
        return _json_leaves(json.loads(text)), set()
    parser = _Text()
    parser.feed(text)
    return parser.cells, set()


def test_the_scan_sees_a_value_in_every_format(tmp_path: Path) -> None:
    """The search below is only as good as its reading: a planted ID and name are found
    in each kind of file the published folder holds."""
    planted = {"id": "079084001234", "name": "Nguyễn Thị Planted"}
    table = pa.table({"citizen_id": [planted["id"]], "full_name": [planted["name"]],
                      "flags": pa.array([[planted["id"]]], pa.list_(pa.string()))})
    files = [write_parquet(table, tmp_path / "a.parquet"),
             write_csv(table.drop(["flags"]), tmp_path / "a.csv"),
             write_xlsx({"s": table.drop(["flags"])}, tmp_path / "a.xlsx"),
             write_json({"rows": [planted]}, tmp_path / "a.json")]
    (tmp_path / "a.html").write_text(
        f"<table><tr><td>{planted['name']}</td><td data-id=\"{planted['id']}\">x</td>"
        "</tr></table>", encoding="utf-8")
    for path in [*files, tmp_path / "a.html"]:
        cells, _ = _cells(path)
        assert planted["name"] in cells, path
        assert planted["id"] in {t for c in cells for t in ID_TOKEN.findall(c)}, path
    assert _cells(tmp_path / "a.parquet")[1] & REGISTRY_ONLY_COLUMNS == {"citizen_id"}


def _export_values(world: dict, private: Path) -> tuple[set[str], set[str]]:
    """ID tokens and names the telcos sent: in the raw exports and their normalised rows."""
    ids, names = set(), set()
    for path in world["exports"]:
        if path.suffix == ".parquet":
            for column in pq.read_table(path).columns:
                text = " ".join(str(v) for v in column.to_pylist() if v is not None)
                ids |= set(ID_TOKEN.findall(text))
        else:
            ids |= set(ID_TOKEN.findall(path.read_text(encoding="utf-8", errors="replace")))
    for path in (private / "normalised").glob("*.parquet"):
        rows = pq.read_table(path, columns=["id_number", "full_name"])
        ids |= {v for v in rows["id_number"].to_pylist() if v}
        names |= {v for v in rows["full_name"].to_pylist() if v}
    return ids, names


def test_no_published_file_holds_registry_only_data(world: dict, landed: dict) -> None:
    run_dir = landed["run_dir"]
    registry = pq.read_table(world["registry"]).to_pandas()
    sent_ids, sent_names = _export_values(world, landed["private"] / RUN_DATE)
    results = pq.read_table(run_dir / "results").to_pandas()
    answers = set()
    for column in ("matched_citizen_id", "holder_citizen_id", "suggested_citizen_id",
                   "candidate_citizen_id"):
        answers |= set(results[column].dropna())
    registry_ids = set(registry["citizen_id"].dropna()) | set(registry["legacy_id"].dropna())
    only_ids = registry_ids - sent_ids - answers
    only_names = {n for n in registry["full_name"].dropna() if n not in sent_names}
    assert len(only_ids) > 100 and len(only_names) > 100, "the world has non-subscribers"

    published = [p for p in run_dir.rglob("*") if p.is_file()]
    kinds = {p.suffix for p in published}
    assert {".csv", ".xlsx", ".html", ".json", ".parquet"} <= kinds
    for path in published:
        cells, columns = _cells(path)
        assert not columns & REGISTRY_ONLY_COLUMNS, (path, columns & REGISTRY_ONLY_COLUMNS)
        tokens = {t for c in cells for t in ID_TOKEN.findall(c)}
        assert not tokens & only_ids, (path, sorted(tokens & only_ids)[:3])
        assert not set(cells) & only_names, (path, sorted(set(cells) & only_names)[:3])


def test_masked_ids_show_three_digits(landed: dict) -> None:
    run_dir = landed["run_dir"]
    queue = pd.read_csv(run_dir / "review" / "queue.csv", dtype=str, encoding="utf-8-sig")
    assert len(queue) > 0
    masked = queue["id_number_masked"].dropna()
    assert masked.str.fullmatch(r"\*+[^*]{0,3}").all()
    assert (masked.str.len() == 12).any() and masked.str.endswith(tuple("0123456789")).any()
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    shown = re.findall(r"([0-9]*)\*{5,}([0-9]*)", html)
    assert shown, "the report shows masked IDs"
    assert all(head == "" and len(tail) <= 3 for head, tail in shown), shown[:3]


def test_the_review_queue_cannot_rebuild_a_masked_id(landed: dict) -> None:
    run_dir, private = landed["run_dir"], landed["private"] / RUN_DATE
    queue = pd.read_csv(run_dir / "review" / "queue.csv", dtype=str, encoding="utf-8-sig")
    assert "date_of_birth_as_sent" not in queue.columns
    assert queue["birth_year_as_sent"].dropna().str.fullmatch(r"[0-9]{4}").all()
    rows = pd.concat([pq.read_table(p).to_pandas()
                      for p in (private / "normalised").glob("*.parquet")])
    rows["source_row"] = rows["source_row"].astype(str)
    own = queue[["telco", "source_row", "row_hash"]].merge(
        rows, on=["telco", "source_row"], how="left", validate="one_to_one")
    assert own["id_number"].notna().any()
    identity = pa.Table.from_pandas(own[list(review.HASHED_FIELDS)], preserve_index=False)
    # The hash is over the row's own fields, with the deployment's key ...
    key = review.review_key(store_of(load_config(landed["config"])))
    assert review.row_hashes(identity, key).to_pylist() == own["row_hash"].tolist()
    # ... and without it nothing recomputes it: not the plain sha256 a reader would try.
    plain = review._legacy_row_hashes(identity)
    assert not set(plain) & set(own["row_hash"])
    assert not set(review.row_hashes(identity, os.urandom(32)).to_pylist()) \
        & set(own["row_hash"])
