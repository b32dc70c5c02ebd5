"""Review decisions: validated on import, kept forever, applied only to unchanged rows."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from pipelines.correction_cycle import review
from pipelines.storage.xlsx import write_xlsx


def _subscriptions(**changes: str) -> pa.Table:
    row = {"telco": "viettel", "msisdn": "0911111111", "msisdn_raw": "0911111111",
           "full_name": "Nguyễn Văn An", "date_of_birth": "1990-01-01", "gender": "M",
           "id_type": "CCCD", "id_number": "001090000001"}
    return pa.table({k: [changes.get(k, v)] for k, v in row.items()})


def _results(status: str = "REVIEW", flags: list[str] | None = None) -> pa.Table:
    return pa.table({"telco": ["viettel"], "msisdn": ["0911111111"],
                     "msisdn_raw": ["0911111111"], "status": [status],
                     "flags": pa.array([flags or ["NEEDS_REVIEW", "GENDER_MISMATCH"]],
                                       pa.list_(pa.string()))})


def _decide(tmp_path: Path, decision: str, row_hash: str, name: str = "q.csv") -> Path:
    frame = pd.DataFrame([{"telco": "viettel", "msisdn": "0911111111",
                           "msisdn_as_sent": "0911111111", "row_hash": row_hash,
                           "decision": decision, "comment": "đã kiểm tra"}])
    path = tmp_path / name
    if name.endswith(".xlsx"):
        write_xlsx({"queue": pa.Table.from_pandas(frame, preserve_index=False)}, path)
    else:
        frame.to_csv(path, index=False, encoding="utf-8-sig")
    return path


def _hashes(store: Path, rows: pa.Table | None = None) -> pa.Array:
    """The row hashes a run with this history store computes."""
    return review.row_hashes(_subscriptions() if rows is None else rows,
                             review.review_key(store))


def test_hash_covers_the_rows_own_identity_fields() -> None:
    key = b"k" * 32
    base = review.row_hashes(_subscriptions(), key)[0].as_py()
    assert len(base) == 64
    assert review.row_hashes(_subscriptions(), key)[0].as_py() == base
    for field, value in (("full_name", "Nguyễn Văn Ân"), ("id_number", "001090000002"),
                         ("date_of_birth", "1990-01-02")):
        assert review.row_hashes(_subscriptions(**{field: value}), key)[0].as_py() != base


def test_the_hash_cannot_be_recomputed_without_the_key(tmp_path: Path) -> None:
    """Whoever reads the queue knows every field but the ID number: without the key no
    guessed number can be checked against ``row_hash``, so the number stays hidden."""
    import hashlib

    store = tmp_path / "h.sqlite"
    key = review.review_key(store)
    assert len(key) == 32 and review.review_key(store) == key  # created once, then kept
    review._keys.clear()
    assert review.review_key(store) == key, "the key is read back from the store"
    assert review.review_key(tmp_path / "other.sqlite") != key, "per deployment"
    h = _hashes(store)[0].as_py()
    row = _subscriptions().to_pylist()[0]
    text = "\x1f".join(str(row[f]) for f in review.HASHED_FIELDS)
    assert hashlib.sha256(text.encode()).hexdigest() != h
    assert review.row_hashes(_subscriptions(), b"\0" * 32)[0].as_py() != h


def test_a_decision_under_the_former_plain_hash_still_applies(tmp_path: Path) -> None:
    import hashlib

    store = tmp_path / "h.sqlite"
    row = _subscriptions().to_pylist()[0]
    plain = hashlib.sha256("\x1f".join(str(row[f]) for f in review.HASHED_FIELDS)
                           .encode()).hexdigest()
    review.import_decisions(_decide(tmp_path, "CONFIRMED_HOLDER", plain), "Hà", store)
    out = review.apply_decisions(_results(), _subscriptions(), store).to_pylist()[0]
    assert out["status"] == "VERIFIED" and out["review_decision"] == "CONFIRMED_HOLDER"
    assert out["row_hash"] == _hashes(store)[0].as_py() != plain


@pytest.mark.parametrize("suffix", ["csv", "xlsx"])
def test_confirmed_holder_is_no_longer_flagged(tmp_path: Path, suffix: str) -> None:
    store = tmp_path / "h.sqlite"
    hashes = _hashes(store)
    outcome = review.import_decisions(
        _decide(tmp_path, "confirmed_holder", hashes[0].as_py(), f"q.{suffix}"), "Hà", store)
    assert outcome["imported"] == 1 and outcome["reviewer"] == "Hà"
    out = review.apply_decisions(_results(), _subscriptions(), store).to_pylist()[0]
    assert out["status"] == "VERIFIED" and out["flags"] == []
    assert out["review_decision"] == "CONFIRMED_HOLDER" and out["review_reviewer"] == "Hà"


def test_changed_data_voids_the_decision(tmp_path: Path) -> None:
    store = tmp_path / "h.sqlite"
    old = _hashes(store)[0].as_py()
    review.import_decisions(_decide(tmp_path, "CONFIRMED_HOLDER", old), "Hà", store)
    changed = _subscriptions(full_name="Trần Thị Bình")
    out = review.apply_decisions(_results(), changed, store).to_pylist()[0]
    assert out["status"] == "REVIEW" and "NEEDS_REVIEW" in out["flags"]
    assert out["review_decision"] is None


def test_not_holder_becomes_mismatch(tmp_path: Path) -> None:
    store = tmp_path / "h.sqlite"
    hashes = _hashes(store)
    review.import_decisions(_decide(tmp_path, "NOT_HOLDER", hashes[0].as_py()), "Hà", store)
    out = review.apply_decisions(_results(), _subscriptions(), store).to_pylist()[0]
    assert out["status"] == "MISMATCH"
    assert out["flags"] == ["NAME_MISMATCH", "GENDER_MISMATCH"]


def test_decisions_are_kept_and_the_latest_applies(tmp_path: Path) -> None:
    store = tmp_path / "h.sqlite"
    hashes = _hashes(store)
    h = hashes[0].as_py()
    review.import_decisions(_decide(tmp_path, "NOT_HOLDER", h), "Hà", store,
                            now=datetime(2026, 1, 1, tzinfo=UTC))
    review.import_decisions(_decide(tmp_path, "CONFIRMED_HOLDER", h), "Minh", store,
                            now=datetime(2026, 1, 2, tzinfo=UTC))
    import sqlite3

    with sqlite3.connect(store) as db:
        stored = db.execute("SELECT decision, reviewer FROM decisions ORDER BY rowid").fetchall()
    assert stored == [("NOT_HOLDER", "Hà"), ("CONFIRMED_HOLDER", "Minh")]
    out = review.apply_decisions(_results(), _subscriptions(), store).to_pylist()[0]
    assert out["review_decision"] == "CONFIRMED_HOLDER" and out["review_reviewer"] == "Minh"


def test_the_hash_is_computed_only_where_a_decision_can_use_it(tmp_path: Path) -> None:
    """A run of millions of rows hashes only its review rows and the rows of numbers a
    reviewer decided on: the others carry no ``row_hash``."""
    store = tmp_path / "h.sqlite"
    verified = review.apply_decisions(_results("VERIFIED", []), _subscriptions(), store)
    assert verified["row_hash"].to_pylist() == [None]
    queued = review.apply_decisions(_results(), _subscriptions(), store)
    assert queued["row_hash"].to_pylist() == _hashes(store).to_pylist()
    h = _hashes(store)[0].as_py()
    review.import_decisions(_decide(tmp_path, "NOT_HOLDER", h), "Hà", store)
    decided = review.apply_decisions(_results("VERIFIED", []), _subscriptions(), store)
    assert decided["row_hash"].to_pylist() == [h]
    assert decided["status"].to_pylist() == ["MISMATCH"]


def test_invalid_files_are_refused(tmp_path: Path) -> None:
    store = tmp_path / "h.sqlite"
    with pytest.raises(review.ReviewImportError, match="reviewer"):
        review.import_decisions(_decide(tmp_path, "NOT_HOLDER", "a" * 64), " ", store)
    with pytest.raises(review.ReviewImportError, match="not one of"):
        review.import_decisions(_decide(tmp_path, "PERHAPS", "a" * 64), "Hà", store)
    with pytest.raises(review.ReviewImportError, match="row_hash"):
        review.import_decisions(_decide(tmp_path, "NOT_HOLDER", "abc"), "Hà", store)
    (tmp_path / "cols.csv").write_text("telco,decision\nviettel,NOT_HOLDER\n", encoding="utf-8")
    with pytest.raises(review.ReviewImportError, match="missing column"):
        review.import_decisions(tmp_path / "cols.csv", "Hà", store)
    assert review.latest_decisions(store).empty


def test_cli_review_import(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pipelines.cli import main

    from .conftest import write_config

    config = write_config(tmp_path)
    good = _decide(tmp_path, "NEEDS_TELCO_CHECK", "b" * 64)
    assert main(["review", "import", str(good), "--reviewer", "Hà",
                 "--config", str(config)]) == 0
    assert '"imported": 1' in capsys.readouterr().out
    bad = _decide(tmp_path, "???", "b" * 64, "bad.csv")
    assert main(["review", "import", str(bad), "--reviewer", "Hà",
                 "--config", str(config)]) == 2
    assert (tmp_path / "runs" / "history.sqlite").exists()


def test_drop_folder_imports_and_moves_files(tmp_path: Path) -> None:
    store = tmp_path / "h.sqlite"
    drop = tmp_path / "drop"
    drop.mkdir()
    h = _hashes(store)[0].as_py()
    _decide(drop, "NOT_HOLDER", h, "le.thu.ha__queue.csv")
    _decide(drop, "NOT_HOLDER", h, "anonymous.csv")
    _decide(drop, "WHATEVER", h, "minh__bad.xlsx")
    done = review.import_drop_folder(drop, store)
    assert done == {"imported": 1, "refused": 2, "files": 3}
    assert (drop / "imported" / "le.thu.ha__queue.csv").is_file()
    assert (drop / "refused" / "minh__bad.xlsx.error.txt").is_file()
    assert not list(drop.glob("*.csv")) and not list(drop.glob("*.xlsx"))
    assert review.latest_decisions(store)["reviewer"].tolist() == ["le.thu.ha"]
