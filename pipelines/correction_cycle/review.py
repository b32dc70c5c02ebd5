"""The review queue: people decide the unclear cases, and their decisions stick.

Each run writes ``review/queue.csv`` and ``review/queue.xlsx`` (compliance only,
never sent to a telco): every ``REVIEW`` subscription and every subscription a
reviewer sent back for a telco check (``NEEDS_TELCO_CHECK``), with the evidence
(the subscription's own fields, the field-by-field comparison levels, the
match probability; ID numbers masked) and empty ``decision`` / ``comment``
columns. ``simrecon review import FILE --reviewer NAME`` validates a filled-in
queue and records the decisions, with who and when, in the same store as the
flag history (SQLite or PostgreSQL, ``pipelines/correction_cycle/history.py``); decisions are only
ever added, never overwritten.

Each queue row carries ``row_hash``: HMAC-SHA256 of the subscription's own
identity fields as the telco sent them, keyed with a per-deployment secret kept
in the history store (``review_key``). The next runs apply a decision only to a
row with the same telco, number and hash, so a decision is never applied to a
row whose data changed since (a new name or document goes back to review).

Why keyed: a plain sha256 over fields that include the 12-digit ID number could
be reversed by a reader of the queue (or of ``results/``) who tries every number
whose province, century/sex and birth-year digits fit the row beside it: a few
million hashes. Without the key nothing can be recomputed. For the same reason
the queue shows the birth year as sent, not the full date (with the name and the
province a full date narrows a person down). Decisions recorded under the former
plain hash still apply: a row with no keyed match is also tried with that hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from matching.columns import as_bool_mask
from matching.compare import DOB_LEVEL_LABELS, GENDER_LEVEL_LABELS
from matching.ids import mask_id
from matching.names import NAME_LEVEL_LABELS
from pipelines.correction_cycle import history

CONFIRMED_HOLDER = "CONFIRMED_HOLDER"
NOT_HOLDER = "NOT_HOLDER"
NEEDS_TELCO_CHECK = "NEEDS_TELCO_CHECK"
DECISIONS = (CONFIRMED_HOLDER, NOT_HOLDER, NEEDS_TELCO_CHECK)

# The subscription's own identity fields: a change in any of them voids a decision.
HASHED_FIELDS = ("telco", "msisdn_raw", "full_name", "date_of_birth", "gender", "id_type",
                 "id_number")
# Flags about whether the holder is who the telco says; a confirmed holder loses them.
IDENTITY_FLAGS = ("NEEDS_REVIEW", "NAME_MISMATCH", "DOB_MISMATCH", "GENDER_MISMATCH")
QUEUE_COLUMNS = (
    "telco", "source_file", "source_row", "msisdn", "msisdn_as_sent", "full_name_as_sent",
    "birth_year_as_sent", "gender_as_sent", "id_type", "id_number_masked", "status",
    "flags", "name_comparison", "dob_comparison", "gender_comparison", "match_probability",
    "previous_decision", "row_hash", "decision", "comment",
)
IMPORT_REQUIRED = ("telco", "msisdn", "msisdn_as_sent", "row_hash", "decision", "comment")


class ReviewImportError(ValueError):
    """A review file cannot be imported; the message lists every problem with its line."""


REVIEW_KEY = "review_row_hash"
_keys: dict[str, bytes] = {}


def install_key(store: history.Store, key: bytes) -> None:
    """Put ``key`` in a store that has none yet: moving a deployment to a new history
    store (SQLite to PostgreSQL), the key must travel with the decisions. A store that
    already has another key is refused (changing it would void every decision)."""
    if len(key) < 32:
        raise ValueError("a review key is at least 32 bytes")
    with history.engine(store).begin() as conn:
        found = _stored_key(conn)
        if found is None:
            _insert_key(conn, key.hex())
        elif bytes.fromhex(found) != key:
            raise ValueError("this history store already has another review key")
    _keys.pop(str(history.store_url(store)), None)


def review_key(store: history.Store) -> bytes:
    """The deployment's secret key of ``row_hash`` (32 random bytes), created in the
    history store on first use and the same for every run and worker after that (a
    key that changed would void every recorded decision)."""
    cache = str(history.store_url(store))
    if cache in _keys:
        return _keys[cache]
    db = history.engine(store)
    with db.connect() as conn:
        found = _stored_key(conn)
    if found is None:
        try:
            with db.begin() as conn:
                _insert_key(conn, secrets.token_hex(32))
        except IntegrityError:  # another task created it first: use theirs
            pass
        with db.connect() as conn:
            found = _stored_key(conn)
        if found is None:
            raise RuntimeError("the review key could not be stored in the history store")
    _keys[cache] = bytes.fromhex(found)
    return _keys[cache]


def _stored_key(conn: Connection) -> str | None:
    """The stored review key (hex), if any."""
    table = history.SECRETS
    return conn.execute(select(table.c.value).where(table.c.name == REVIEW_KEY)).scalar()


def _insert_key(conn: Connection, value: str) -> None:
    conn.execute(insert(history.SECRETS).values(
        name=REVIEW_KEY, value=value, created_at=datetime.now(UTC).isoformat(timespec="seconds")))


def _identity_texts(rows: pa.Table) -> list[str]:
    parts = [pc.fill_null(pc.cast(rows[f], pa.string()), "") for f in HASHED_FIELDS]
    return pc.binary_join_element_wise(*parts, "\x1f").to_pylist()


def row_hashes(rows: pa.Table, key: bytes) -> pa.Array:
    """HMAC-SHA256 (hex) of each row's ``HASHED_FIELDS`` (nulls as empty text) with
    ``key`` (``review_key``): stable across runs, not recomputable without the key."""
    return pa.array([hmac.new(key, v.encode("utf-8"), hashlib.sha256).hexdigest()
                     for v in _identity_texts(rows)], pa.string())


def _legacy_row_hashes(rows: pa.Table) -> list[str]:
    """The plain sha256 recorded with decisions made before ``row_hash`` was keyed."""
    return [hashlib.sha256(v.encode("utf-8")).hexdigest() for v in _identity_texts(rows)]


def _number(rows: pa.Table) -> pa.ChunkedArray | pa.Array:
    return pc.coalesce(rows["msisdn"], rows["msisdn_raw"], pa.scalar("", pa.string()))


def latest_decisions(store: history.Store) -> pd.DataFrame:
    """The latest decision per (telco, msisdn, row_hash); every earlier one stays stored."""
    columns = ["telco", "msisdn", "row_hash", "decision", "comment", "reviewer", "decided_at"]
    if not history.exists(store):
        return pd.DataFrame(columns=columns)
    table = history.DECISIONS
    with history.engine(store).connect() as conn:
        frame = pd.read_sql(select(*(table.c[c] for c in [*columns, "id"])), conn)
    frame = frame.sort_values(["decided_at", "id"])
    return frame.drop_duplicates(["telco", "msisdn", "row_hash"], keep="last")[columns]


def apply_decisions(results: pa.Table, subscriptions: pa.Table,
                    store: history.Store) -> pa.Table:
    """Add ``row_hash``/``review_*`` columns and apply the stored decisions.

    ``subscriptions``: the matched rows ``results`` were flagged from (same rows, same
    order), for the fields ``row_hash`` covers. The hash is computed only where it is
    used: rows going to the review queue and rows of a number with a stored decision.

    ``CONFIRMED_HOLDER`` on a ``REVIEW``/``MISMATCH`` row: the identity flags go and
    the row is ``VERIFIED``. ``NOT_HOLDER``: ``MISMATCH``, ``NEEDS_REVIEW`` replaced by
    ``NAME_MISMATCH`` unless a name or date-of-birth flag already says so.
    ``NEEDS_TELCO_CHECK``: unchanged, the row stays in the queue.
    """
    n = results.num_rows
    decisions = latest_decisions(store)
    number = _number(results)
    has_decision = np.zeros(n, dtype=bool)
    if len(decisions):
        key = pc.binary_join_element_wise(results["telco"], number, "\x1f")
        decided_keys = pa.array((decisions["telco"] + "\x1f" + decisions["msisdn"]).tolist(),
                                pa.string())
        has_decision = as_bool_mask(pc.is_in(key, value_set=decided_keys))
    needed = has_decision | as_bool_mask(pc.equal(results["status"], "REVIEW"))
    hashes = pa.nulls(n, pa.string())
    if needed.any():
        at = np.flatnonzero(needed)
        computed = row_hashes(subscriptions.take(pa.array(at)), review_key(store))
        hashes = pc.replace_with_mask(hashes, pa.array(needed),
                                      pc.cast(computed, pa.string()))
    # Only a row of a number with a stored decision can match one: the join is theirs.
    rows = np.flatnonzero(has_decision)
    take = pa.array(rows, pa.int64())
    keys = pd.DataFrame({"telco": pc.take(results["telco"], take).to_pylist(),
                         "msisdn": pc.take(number, take).to_pylist(),
                         "row_hash": pc.take(hashes, take).to_pylist()}, dtype=object)
    joined = keys.merge(decisions, on=["telco", "msisdn", "row_hash"], how="left")
    joined = _legacy_matches(joined, keys, decisions, subscriptions, rows)
    decision = joined["decision"].to_numpy(dtype=object)
    found = np.flatnonzero(pd.notna(decision))
    chosen = rows[found]
    out = results
    if len(chosen):
        status = results["status"].take(pa.array(chosen)).to_pylist()
        flags = results["flags"].take(pa.array(chosen)).to_pylist()
        for j, i in enumerate(found):  # decided rows only: a reviewer's handful
            if decision[i] == CONFIRMED_HOLDER and status[j] in ("REVIEW", "MISMATCH"):
                flags[j] = [f for f in flags[j] if f not in IDENTITY_FLAGS]
                status[j] = "VERIFIED"
            elif decision[i] == NOT_HOLDER and status[j] in ("REVIEW", "MISMATCH", "VERIFIED"):
                kept = [f for f in flags[j] if f != "NEEDS_REVIEW"]
                if not {"NAME_MISMATCH", "DOB_MISMATCH"} & set(kept):
                    kept.insert(0, "NAME_MISMATCH")
                flags[j] = kept
                status[j] = "MISMATCH"
        chosen_mask = np.zeros(n, dtype=bool)
        chosen_mask[chosen] = True
        all_status = pc.replace_with_mask(results["status"].combine_chunks(),
                                          pa.array(chosen_mask), pa.array(status, pa.string()))
        all_flags = results["flags"].combine_chunks()
        replaced = _replace_lists(all_flags, chosen, flags)
        out = out.set_column(out.schema.get_field_index("status"), "status", all_status)
        out = out.set_column(out.schema.get_field_index("flags"), "flags", replaced)
    extra = {"row_hash": hashes}
    for column in ("decision", "reviewer", "decided_at"):
        values = pa.nulls(n, pa.string())
        if len(chosen) and column in joined:
            mine = [v if isinstance(v, str) else None for v in joined[column]]
            mask = np.zeros(n, dtype=bool)
            mask[rows] = True
            values = pc.replace_with_mask(values, pa.array(mask), pa.array(mine, pa.string()))
        extra[f"review_{column}"] = values
    for name, values in extra.items():
        out = out.append_column(name, values)
    return out


def _legacy_matches(joined: pd.DataFrame, keys: pd.DataFrame, decisions: pd.DataFrame,
                    subscriptions: pa.Table, rows: np.ndarray) -> pd.DataFrame:
    """Rows of a decided number (``keys``, the rows ``rows`` of ``subscriptions``) that no
    keyed hash matched, tried with the plain hash decisions were recorded under before
    the key (so none is asked again)."""
    if not len(decisions):
        return joined
    retry = np.flatnonzero(joined["decision"].isna().to_numpy())
    if not len(retry):
        return joined
    legacy = keys.iloc[retry].copy()
    legacy["row_hash"] = _legacy_row_hashes(subscriptions.take(pa.array(rows[retry])))
    found = legacy.merge(decisions, on=["telco", "msisdn", "row_hash"], how="left")
    found.index = joined.index[retry]
    columns = [c for c in decisions.columns if c not in ("telco", "msisdn", "row_hash")]
    hit = found["decision"].notna()
    joined.loc[found.index[hit], columns] = found.loc[hit, columns]
    return joined


def _replace_lists(lists: pa.ListArray, at: np.ndarray, values: list[list[str]]) -> pa.ListArray:
    """``lists`` with the rows ``at`` replaced by ``values`` (vectorised over the rest)."""
    lengths = np.asarray(pc.list_value_length(lists).to_numpy(zero_copy_only=False),
                         dtype=np.int64)
    lengths = np.nan_to_num(lengths).astype(np.int64)
    keep = np.ones(len(lists), dtype=bool)
    keep[at] = False
    parents = np.asarray(pc.list_parent_indices(lists).to_numpy(), dtype=np.int64)
    flat = pc.list_flatten(lists)
    old_flat = flat.filter(pa.array(keep[parents])) if len(flat) else flat
    old_parents = parents[keep[parents]]
    new_parents = np.repeat(at, [len(v) for v in values]).astype(np.int64)
    new_flat = pa.array([f for v in values for f in v], flat.type)
    all_parents = np.concatenate([old_parents, new_parents])
    order = np.argsort(all_parents, kind="stable")
    merged = pa.concat_arrays([old_flat, new_flat]).take(pa.array(order))
    counts = np.bincount(all_parents, minlength=len(lists))
    offsets = np.zeros(len(lists) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), merged)


def _labels(values: pa.ChunkedArray, labels: dict, linked: np.ndarray) -> pa.Array:
    size = max(int(level) for level in labels) + 1
    lookup = pa.array([labels.get(i, "") for i in range(size)], pa.string())
    text = pc.take(lookup, pc.cast(values, pa.int32()))
    return pc.if_else(pa.array(linked & np.asarray(pc.is_valid(values), dtype=bool)), text,
                      pa.scalar("not compared"))


def _birth_year(dates: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The year of each date of birth as sent (ISO text or a date), null when unknown."""
    text = pc.cast(dates, pa.string())
    year = pc.utf8_slice_codeunits(text, 0, 4)
    return pc.if_else(pc.match_substring_regex(year, r"^[0-9]{4}$"), year,
                      pa.scalar(None, pa.string()))


def queue(results: pa.Table, subscriptions: pa.Table) -> pa.Table:
    """The review queue of a run: ``REVIEW`` rows and rows awaiting a telco check.

    ``subscriptions`` is the matched table aligned with ``results`` (same rows,
    same order), for the subscriber's own name, date of birth and gender.
    """
    decided = pc.fill_null(pc.equal(results["review_decision"], NEEDS_TELCO_CHECK), False)
    wanted = pc.or_(pc.equal(results["status"], "REVIEW"), decided)
    rows = results.filter(wanted)
    own = subscriptions.filter(wanted)
    linked = np.asarray(pc.is_valid(rows["matched_citizen_id"]), dtype=bool)
    n = rows.num_rows
    table = pa.table({
        "telco": rows["telco"], "source_file": rows["source_file"],
        "source_row": rows["source_row"], "msisdn": rows["msisdn"],
        "msisdn_as_sent": rows["msisdn_raw"], "full_name_as_sent": own["full_name"],
        "birth_year_as_sent": _birth_year(own["date_of_birth"]),
        "gender_as_sent": own["gender"], "id_type": rows["id_type"],
        "id_number_masked": mask_id(rows["id_number"]),
        "status": rows["status"], "flags": pc.binary_join(rows["flags"], "|"),
        "name_comparison": _labels(rows["name_level"], NAME_LEVEL_LABELS, linked),
        "dob_comparison": _labels(rows["dob_level"], DOB_LEVEL_LABELS, linked),
        "gender_comparison": _labels(rows["gender_level"], GENDER_LEVEL_LABELS, linked),
        "match_probability": rows["match_probability"] if "match_probability"
        in rows.column_names else pa.nulls(n, pa.float64()),
        "previous_decision": rows["review_decision"],
        "row_hash": rows["row_hash"],
        "decision": pa.nulls(n, pa.string()), "comment": pa.nulls(n, pa.string()),
    })
    return table.sort_by([("telco", "ascending"), ("source_row", "ascending")])


def instructions() -> pa.Table:
    """The ``decisions`` sheet of the queue workbook: what each decision does."""
    return pa.table({"decision": list(DECISIONS), "meaning": [
        "the subscriber is the document's holder: no longer flagged while the data is unchanged",
        "the subscriber is not the holder: MISMATCH (SIM không chính chủ)",
        "the telco must check the record: stays in the queue"]})


def _read(path: Path) -> pd.DataFrame:
    if path.suffix.lower() == ".xlsx":
        frame = pd.read_excel(path, sheet_name="queue", dtype=str, engine="openpyxl")
        frame.index = frame.index + 2  # spreadsheet line: header is line 1
    elif path.suffix.lower() == ".csv":
        frame = pd.read_csv(path, dtype=str, encoding="utf-8-sig", keep_default_na=False,
                            na_values=[""])
        frame.index = frame.index + 2
    else:
        raise ReviewImportError(f"{path}: a review file is .csv or .xlsx")
    return frame


def import_decisions(path: Path | str, reviewer: str, store: history.Store,
                     now: datetime | None = None) -> dict:
    """Validate a filled-in queue and record its decisions (all or none).

    Rows without a decision are skipped. Raises ``ReviewImportError`` listing
    every problem (line and column) when anything is wrong.
    """
    path = Path(path)
    if not reviewer.strip():
        raise ReviewImportError("a reviewer name is required (--reviewer)")
    if not path.is_file():
        raise ReviewImportError(f"{path}: file not found")
    frame = _read(path)
    missing = [c for c in IMPORT_REQUIRED if c not in frame.columns]
    if missing:
        raise ReviewImportError(f"{path}: missing column(s) {missing}")
    frame["decision"] = frame["decision"].str.strip().str.upper()
    decided = frame[frame["decision"].notna() & (frame["decision"] != "")]
    problems = []
    for line, row in decided.iterrows():
        if row["decision"] not in DECISIONS:
            problems.append(f"line {line}: decision {row['decision']!r} is not one of "
                            f"{', '.join(DECISIONS)}")
        if not isinstance(row["row_hash"], str) or len(row["row_hash"]) != 64 \
                or any(c not in "0123456789abcdef" for c in row["row_hash"]):
            problems.append(f"line {line}: row_hash is missing or altered")
        if not isinstance(row["telco"], str) or not row["telco"]:
            problems.append(f"line {line}: telco is empty")
    if problems:
        raise ReviewImportError(f"{path}: nothing imported; " + "; ".join(problems))
    stamp = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    number = decided["msisdn"].fillna(decided["msisdn_as_sent"]).fillna("")
    records = [{"telco": t, "msisdn": m, "row_hash": h, "decision": d,
                "comment": c if isinstance(c, str) else "", "reviewer": reviewer.strip(),
                "decided_at": stamp, "source_file": path.name}
               for t, m, h, d, c in zip(decided["telco"], number, decided["row_hash"],
                                        decided["decision"], decided["comment"], strict=True)]
    with history.engine(store).begin() as conn:  # all or none
        history.insert_rows(conn, history.DECISIONS, records)
    counts = decided["decision"].value_counts().to_dict()
    return {"imported": len(records), "skipped": int(len(frame) - len(decided)),
            "by_decision": {k: int(v) for k, v in counts.items()}, "reviewer": reviewer.strip(),
            "decided_at": stamp}


def import_drop_folder(folder: Path, store: history.Store) -> dict:
    """Import every filled-in queue dropped in ``folder`` (run by the DAG's flag task).

    The reviewer is the file name's part before ``__`` (``le.thu.ha__queue.xlsx``).
    An imported file moves to ``imported/``; a refused one to ``refused/`` with the
    reasons beside it in ``<name>.error.txt``, so nothing is imported twice or lost.
    """
    folder = Path(folder)
    done = {"imported": 0, "refused": 0, "files": 0}
    if not folder.is_dir():
        return done
    for path in sorted(p for p in folder.iterdir()
                       if p.is_file() and p.suffix.lower() in (".csv", ".xlsx")):
        reviewer = path.name.split("__", 1)[0] if "__" in path.name else ""
        done["files"] += 1
        try:
            if not reviewer:
                raise ReviewImportError(f"{path.name}: name the file <reviewer>__<anything>")
            outcome = import_decisions(path, reviewer, store)
            target = folder / "imported"
            done["imported"] += outcome["imported"]
        except ReviewImportError as exc:
            target = folder / "refused"
            target.mkdir(exist_ok=True)
            (target / f"{path.name}.error.txt").write_text(f"{exc}\n", encoding="utf-8")
            done["refused"] += 1
        target.mkdir(exist_ok=True)
        path.replace(target / path.name)
    return done
