"""What the report and ``summary.json`` need of a run's results, computed a shard at a
time and merged, so no step ever holds every result.

``of_results`` takes one shard's results (or any slice of rows whose groups it
holds whole) and returns its partial aggregates; ``merge`` adds partials up. Every
figure is exact after merging:

* counts (by telco, status, flag; score bins; province of birth registration) add up;
* the citizens with the most subscriptions: every subscription of a holder lies in
  the holder's shard (``pipelines/reconcile/sharding.py``), so the run's top holders
  are among the shards' own top holders;
* points of sale: rows are counted per shard and the sets a distinct count needs
  (bulk days, bulk documents) are kept per shard and united; a point of sale's rows lie
  in every shard, so each shard writes its bulk rows' tables by buckets of (telco, point
  of sale) (``Aggregates.write``) and :func:`merge_points_of_sale` unites them a bucket
  at a time, keeping the top points of sale as it goes, then adds up the row counts of
  those alone: never every shard's tables at once.

``flagged_keys`` gives the compact form of a shard's flagged rows (telco, source_row,
number, flags as bits) that the correction lists classify and the report's flagged
table samples. Holder keys in the partials are not masked: they stay in the run's
private working folder; the report masks what it shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from matching.flags import FLAGS
from pipelines.reconcile.sharding import concat, shard_of
from pipelines.reporting import provinces
from pipelines.schema import STATUSES
from pipelines.storage.files import AtomicParquetWriter, write_json, write_parquet

NO_CCCD = "no CCCD"
SCORE_BIN_BITS = 2
SCORE_RANGE = (-40, 50)  # bits; weights beyond fall in the end bins
SCORE_BINS = (SCORE_RANGE[1] - SCORE_RANGE[0]) // SCORE_BIN_BITS + 2  # + below and above
BANDS = ("VERIFY", "REVIEW", "MISMATCH", "no score")
FLAG_BITS = {flag: 1 << i for i, flag in enumerate(FLAGS)}
# Flags a telco can act on; NEEDS_REVIEW is the compliance team's own business.
TELCO_ACTIONABLE_EXCLUDES = ("NEEDS_REVIEW",)
TELCO_ACTIONABLE_BITS = sum(bit for flag, bit in FLAG_BITS.items()
                            if flag not in TELCO_ACTIONABLE_EXCLUDES)

HOLDER_SCHEMA = pa.schema([
    ("holder", pa.string()), ("kind", pa.string()), ("subscriptions", pa.int64()),
    ("active", pa.int64()), ("telcos", pa.int64()), ("by_telco", pa.string()),
    ("excess_flagged", pa.int64())])
_HOLDER_ORDER = [("active", "descending"), ("subscriptions", "descending"),
                 ("holder", "ascending")]
POS_ROWS_SCHEMA = pa.schema([("telco", pa.string()), ("point_of_sale", pa.string()),
                             ("rows", pa.int64())])
POS_BULK_SCHEMA = pa.schema([("telco", pa.string()), ("point_of_sale", pa.string()),
                             ("bulk_rows", pa.int64()), ("first", pa.date32()),
                             ("last", pa.date32())])
POS_DAYS_SCHEMA = pa.schema([("telco", pa.string()), ("point_of_sale", pa.string()),
                             ("day", pa.date32())])
POS_DOCS_SCHEMA = pa.schema([("telco", pa.string()), ("point_of_sale", pa.string()),
                             ("document", pa.string())])
POINTS_OF_SALE_SCHEMA = pa.schema([
    ("telco", pa.string()), ("point_of_sale", pa.string()), ("bulk_rows", pa.int64()),
    ("days", pa.int64()), ("distinct_documents", pa.int64()), ("all_rows", pa.int64()),
    ("bulk_pct", pa.float64()), ("first_activation", pa.date32()),
    ("last_activation", pa.date32())])
FLAGGED_SCHEMA = pa.schema([("telco", pa.string()), ("source_row", pa.int64()),
                            ("number", pa.string()), ("flags", pa.int32())])
POS_TABLES = {"pos_rows": POS_ROWS_SCHEMA, "pos_bulk": POS_BULK_SCHEMA,
              "pos_days": POS_DAYS_SCHEMA, "pos_docs": POS_DOCS_SCHEMA}


@dataclass
class Aggregates:
    """Partial (or merged) aggregates of a run's results."""

    rows: int = 0
    telcos: dict[str, dict] = field(default_factory=dict)
    score_counts: np.ndarray = field(
        default_factory=lambda: np.zeros((len(STATUSES) + 1, SCORE_BINS), dtype=np.int64))
    unscored: int = 0
    bands: dict[str, int] = field(default_factory=dict)  # "status|band" -> rows
    provinces: dict[str, dict] = field(default_factory=dict)
    holders: pa.Table = field(default_factory=HOLDER_SCHEMA.empty_table)
    pos_rows: pa.Table = field(default_factory=POS_ROWS_SCHEMA.empty_table)
    pos_bulk: pa.Table = field(default_factory=POS_BULK_SCHEMA.empty_table)
    pos_days: pa.Table = field(default_factory=POS_DAYS_SCHEMA.empty_table)
    pos_docs: pa.Table = field(default_factory=POS_DOCS_SCHEMA.empty_table)
    # Merged aggregates: the top points of sale (merge_points_of_sale), not the tables.
    points_of_sale: pa.Table | None = None

    def write(self, folder: Path, pos_buckets: int = 1) -> None:
        """Into ``folder``: ``counts.json``, ``holders.parquet``, the points of sale's row
        counts, and their bulk rows' tables in row groups by bucket of (telco, point of
        sale) out of ``pos_buckets`` (the same for every shard of a run:
        :func:`merge_points_of_sale` reads one bucket of every shard at a time)."""
        write_parquet(self.holders, folder / "holders.parquet")
        write_parquet(self.pos_rows, folder / "pos_rows.parquet")
        for name in BULK_TABLES:
            _write_by_bucket(getattr(self, name), folder / f"{name}.parquet", pos_buckets)
        write_json({"rows": self.rows, "telcos": self.telcos,
                    "score_counts": self.score_counts.tolist(), "unscored": self.unscored,
                    "bands": self.bands, "provinces": self.provinces},
                   folder / "counts.json")

    @classmethod
    def read(cls, folder: Path) -> Aggregates:
        """The counts and top holders of a folder :meth:`write` wrote (the points of
        sale's tables stay on disk for :func:`merge_points_of_sale`)."""
        counts = json.loads((folder / "counts.json").read_text(encoding="utf-8"))
        return cls(rows=counts["rows"], telcos=counts["telcos"],
                   score_counts=np.asarray(counts["score_counts"], dtype=np.int64),
                   unscored=counts["unscored"], bands=counts["bands"],
                   provinces=counts["provinces"],
                   holders=pq.read_table(folder / "holders.parquet").cast(HOLDER_SCHEMA))


def listed_rows(folders: Iterable[Path], telco: str) -> int:
    """The rows of ``telco`` its correction list holds (``listed``), added up over the
    shards' partial aggregates in ``folders``: their counts only, not their tables (a
    list's gate needs this one figure; merging the points-of-sale tables cost it half its
    time)."""
    return sum(json.loads((folder / "counts.json").read_text(encoding="utf-8"))["telcos"]
               .get(telco, {}).get("listed", 0) for folder in folders)


# --- flags as bits ------------------------------------------------------------------------


def flags_array(results: pa.Table) -> pa.ListArray:
    flags = results["flags"].combine_chunks()
    if isinstance(flags, pa.ChunkedArray):  # no chunk to combine (empty table)
        flags = pa.array([], results.schema.field("flags").type)
    return flags


def flag_bits(flags: pa.ListArray) -> np.ndarray:
    """Each row's flags as one int32 of ``FLAG_BITS`` (vectorised)."""
    flat = pc.list_flatten(flags)
    bits = np.zeros(len(flags), dtype=np.int32)
    if len(flat):
        code = np.asarray(pc.index_in(flat, value_set=pa.array(FLAGS)).to_numpy(
            zero_copy_only=False), dtype=np.float64)
        known = ~np.isnan(code)
        parents = np.asarray(pc.list_parent_indices(flags).to_numpy(), dtype=np.int64)
        np.bitwise_or.at(bits, parents[known], (1 << code[known].astype(np.int64))
                         .astype(np.int32))
    return bits


def bits_to_flags(bits: np.ndarray) -> pa.ListArray:
    """The inverse of :func:`flag_bits`: list<string> in ``FLAGS`` order."""
    bits = np.asarray(bits, dtype=np.int64)
    matrix = ((bits[:, None] >> np.arange(len(FLAGS))) & 1).astype(bool)
    _, cols = np.nonzero(matrix)
    offsets = np.zeros(len(bits) + 1, dtype=np.int32)
    np.cumsum(matrix.sum(axis=1), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets),
                                    pa.array(np.asarray(FLAGS, dtype=object)[cols],
                                             pa.string()))


def flagged_keys(results: pa.Table) -> pa.Table:
    """The flagged rows of ``results``, compact: telco, source_row, the number the flag
    history keys them by (canonical, else as sent), and their flags as bits."""
    bits = flag_bits(flags_array(results))
    chosen = pa.array(bits != 0)
    number = pc.coalesce(results["msisdn"], results["msisdn_raw"], pa.scalar("", pa.string()))
    return pa.table({"telco": pc.filter(results["telco"], chosen),
                     "source_row": pc.filter(results["source_row"], chosen),
                     "number": pc.filter(number, chosen),
                     "flags": pa.array(bits[bits != 0], pa.int32())}, schema=FLAGGED_SCHEMA)


# --- one shard's partial aggregates ---------------------------------------------------------


def value_counts(column: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    """How many times each value occurs (nulls left out)."""
    if len(column) == 0:
        return {}
    counted = pc.value_counts(column)
    return {str(v): int(c) for v, c in zip(counted.field("values").to_pylist(),
                                            counted.field("counts").to_pylist(), strict=True)}


def of_results(results: pa.Table, *, top: int = 20,
               provinces_file: str | Path | None = None) -> Aggregates:
    """The partial aggregates of ``results`` (one shard's, or any set of rows that holds
    every row of its holders)."""
    flags = flags_array(results)
    bits = flag_bits(flags)
    return Aggregates(
        rows=results.num_rows,
        telcos=_telco_counts(results, bits),
        **_score_counts(results),
        provinces=province_counts(results, bits, provinces_file),
        holders=top_holder_candidates(results, bits, top),
        **_point_of_sale_partials(results, bits),
    )


def _telco_counts(results: pa.Table, bits: np.ndarray) -> dict[str, dict]:
    out: dict[str, dict] = {}
    if not results.num_rows:
        return out
    # Telcos and statuses as integer codes (not a million Python strings compared per telco).
    telco = pc.dictionary_encode(results["telco"]).combine_chunks()
    names = telco.dictionary.to_pylist()
    telco_code = np.asarray(pc.fill_null(telco.indices, -1).to_numpy(zero_copy_only=False),
                            dtype=np.int64)
    status_code = np.asarray(pc.fill_null(pc.index_in(results["status"],
                                                      value_set=pa.array(STATUSES)), -1)
                             .to_numpy(zero_copy_only=False), dtype=np.int64)
    for code, name in sorted(enumerate(names), key=lambda item: item[1]):
        mine = telco_code == code
        mine_bits = bits[mine]
        mine_status = status_code[mine]
        out[name] = {
            "subscriptions": int(mine.sum()),
            "by_status": dict(zip(STATUSES, _per_status(mine_status), strict=True)),
            "by_flag": {f: int(((mine_bits & b) != 0).sum()) for f, b in FLAG_BITS.items()},
            "flagged": int((mine_bits != 0).sum()),
            "listed": int(((mine_bits & TELCO_ACTIONABLE_BITS) != 0).sum()),
            # The report's filter counters (telco x flag x status) state true totals.
            "flagged_by_status": dict(zip(STATUSES, _per_status(mine_status[mine_bits != 0]),
                                          strict=True)),
            "by_flag_status": {f"{f}|{s}": n for f, b in FLAG_BITS.items()
                               for s, n in zip(STATUSES,
                                               _per_status(mine_status[(mine_bits & b) != 0]),
                                               strict=True) if n},
        }
    return out


def _per_status(codes: np.ndarray) -> list[int]:
    """Rows per status of ``codes`` (index into ``STATUSES``; -1, no status, not counted)."""
    return [int(n) for n in np.bincount(codes + 1, minlength=len(STATUSES) + 1)[1:]]


def _score_counts(results: pa.Table) -> dict:
    """Rows per status per bin of the match weight (bits), rows without a score, and
    rows per status and probability band."""
    lo, _ = SCORE_RANGE
    weights = np.asarray(results["match_weight"].to_numpy(zero_copy_only=False)
                         if results.num_rows else np.zeros(0), dtype=float)
    status = np.asarray(pc.fill_null(pc.index_in(results["status"],
                                                 value_set=pa.array(STATUSES)),
                                     len(STATUSES)).to_numpy(zero_copy_only=False)
                        if results.num_rows else np.zeros(0), dtype=np.int64)
    scored = ~np.isnan(weights)
    bins = np.clip(np.floor((weights[scored] - lo) / SCORE_BIN_BITS).astype(np.int64) + 1,
                   0, SCORE_BINS - 1)
    counts = np.bincount(status[scored] * SCORE_BINS + bins,
                         minlength=(len(STATUSES) + 1) * SCORE_BINS).reshape(-1, SCORE_BINS)
    bands: dict[str, int] = {}
    if results.num_rows:
        grouped = pa.table({"status": results["status"],
                            "band": pc.fill_null(results["match_band"], "no score")}
                           ).group_by(["status", "band"]).aggregate([([], "count_all")])
        for s, b, n in zip(*(grouped[c].to_pylist() for c in ("status", "band", "count_all")),
                           strict=True):
            bands[f"{s}|{b}"] = int(n)
    return {"score_counts": counts.astype(np.int64), "unscored": int((~scored).sum()),
            "bands": bands}


def province_counts(results: pa.Table, bits: np.ndarray,
                    provinces_file: str | Path | None = None) -> dict[str, dict]:
    """Subscriptions, flagged subscriptions and flags by the province of the ID's birth
    registration (the linked citizen's CCCD, else a CCCD as sent): old code, ``unknown
    province`` or ``no CCCD``."""
    if results.num_rows == 0:
        return {}
    sent_cccd = pc.if_else(pc.equal(results["id_type"], "CCCD"), results["id_number"],
                           pa.scalar(None, pa.string()))
    code = provinces.birth_province_code(pc.coalesce(results["holder_citizen_id"], sent_cccd))
    _, _, known = provinces.locate(code, provinces_file or None)
    key = pc.if_else(pc.is_null(code), pa.scalar(NO_CCCD),
                     pc.fill_null(known, provinces.UNKNOWN))
    encoded = pc.dictionary_encode(key)
    distinct = encoded.dictionary.to_pylist()
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    subs = np.bincount(codes, minlength=len(distinct))
    flagged = np.bincount(codes, weights=(bits != 0), minlength=len(distinct))
    out = {}
    for i, name in enumerate(distinct):
        out[name] = {"subscriptions": int(subs[i]), "flagged": int(flagged[i]), "flags": {}}
    for flag, bit in FLAG_BITS.items():
        per = np.bincount(codes, weights=(bits & bit) != 0, minlength=len(distinct))
        for i in np.flatnonzero(per):
            out[distinct[i]]["flags"][flag] = int(per[i])
    return out


def top_holder_candidates(results: pa.Table, bits: np.ndarray, top: int) -> pa.Table:
    """Holders (linked citizen, else the CCCD/CMND as sent) with the most active
    subscriptions across telcos: the ``top`` of these rows, holder keys unmasked."""
    documents = pc.if_else(pc.is_in(results["id_type"], value_set=pa.array(["CCCD", "CMND"])),
                           results["id_number"], pa.scalar(None, pa.string()))
    holder = pc.coalesce(results["holder_citizen_id"], documents)
    excess = (bits & FLAG_BITS["EXCESS_SUBSCRIPTIONS"]) != 0
    base = pa.table({
        "holder": holder, "row": pa.array(np.arange(results.num_rows, dtype=np.int64)),
        "telco": results["telco"],
        "active": pc.cast(pc.fill_null(pc.equal(results["line_status"], "ACTIVE"), False),
                          pa.int64()),
        "excess": pa.array(excess.astype(np.int64))})
    base = base.filter(pc.fill_null(pc.greater(pc.utf8_length(base["holder"]), 0), False))
    if base.num_rows == 0 or top <= 0:
        return HOLDER_SCHEMA.empty_table()
    base = base.filter(_maybe_top(base, top))
    # The kind of holder only for the rows of the few holders that can be at the top.
    kept = results.select(["holder_citizen_id", "id_type"]).take(base["row"])
    kind = pc.if_else(pc.is_valid(kept["holder_citizen_id"]), pa.scalar("citizen (CCCD)"),
                      pc.binary_join_element_wise(pa.scalar("as sent: "),
                                                  pc.fill_null(kept["id_type"], ""), ""))
    base = base.drop_columns(["row"]).append_column("kind", kind)
    grouped = base.group_by("holder").aggregate([
        ([], "count_all"), ("active", "sum"), ("telco", "count_distinct"), ("excess", "sum"),
        ("kind", "min")])
    grouped = grouped.rename_columns({"count_all": "subscriptions", "active_sum": "active"})
    grouped = grouped.take(pc.sort_indices(grouped, _HOLDER_ORDER)[:top])
    chosen = base.filter(pc.is_in(base["holder"], value_set=grouped["holder"]))
    per_telco = chosen.group_by(["holder", "telco"]).aggregate([([], "count_all")])
    split: dict[str, list[tuple[str, int]]] = {}
    for h, t, n in zip(per_telco["holder"].to_pylist(), per_telco["telco"].to_pylist(),
                       per_telco["count_all"].to_pylist(), strict=True):
        split.setdefault(h, []).append((t, n))
    by_telco = [", ".join(f"{t} {n}" for t, n in sorted(split.get(h, [])))
                for h in grouped["holder"].to_pylist()]
    return pa.table({
        "holder": grouped["holder"], "kind": grouped["kind_min"],
        "subscriptions": grouped["subscriptions"], "active": grouped["active"],
        "telcos": grouped["telco_count_distinct"], "by_telco": by_telco,
        "excess_flagged": grouped["excess_sum"]}, schema=HOLDER_SCHEMA)


def _maybe_top(base: pa.Table, top: int) -> pa.Array:
    """The rows of the holders that can be among the ``top`` by (active, subscriptions):
    those counting at least the ``top``-th holder's pair, ties kept (the holder's name
    decides among them later). Counted with integer codes, so the string group-by runs
    on a handful of holders, not on every holder of the shard."""
    encoded = pc.dictionary_encode(base["holder"]).combine_chunks()
    code = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    active = np.asarray(base["active"].to_numpy(), dtype=np.int64)
    subscriptions = np.bincount(code, minlength=len(encoded.dictionary))
    actives = np.bincount(code, weights=active, minlength=len(encoded.dictionary)
                          ).astype(np.int64)
    if len(subscriptions) <= top:
        return pa.array(np.ones(len(code), dtype=bool))
    order = np.lexsort((-subscriptions, -actives))
    a, s = actives[order[top - 1]], subscriptions[order[top - 1]]
    kept = (actives > a) | ((actives == a) & (subscriptions >= s))
    return pa.array(kept[code])


def _point_of_sale_partials(results: pa.Table, bits: np.ndarray) -> dict[str, pa.Table]:
    keys = ["telco", "point_of_sale"]
    sold = results.select([*keys, "activation_date", "id_number"]).filter(
        pc.is_valid(results["point_of_sale"]))
    bulk_mask = ((bits & FLAG_BITS["BULK_ACTIVATION"]) != 0)
    bulk = results.select([*keys, "activation_date", "id_number"]).filter(pa.array(bulk_mask))
    rows = sold.group_by(keys).aggregate([([], "count_all")]).rename_columns(
        [*keys, "rows"]) if sold.num_rows else POS_ROWS_SCHEMA.empty_table()
    if not bulk.num_rows:
        return {"pos_rows": rows.cast(POS_ROWS_SCHEMA), "pos_bulk": POS_BULK_SCHEMA.empty_table(),
                "pos_days": POS_DAYS_SCHEMA.empty_table(),
                "pos_docs": POS_DOCS_SCHEMA.empty_table()}
    grouped = bulk.group_by(keys).aggregate([
        ([], "count_all"), ("activation_date", "min"), ("activation_date", "max")])
    days = bulk.group_by([*keys, "activation_date"]).aggregate([]).rename_columns(
        [*keys, "day"])
    documents = bulk.filter(pc.is_valid(bulk["id_number"])).group_by(
        [*keys, "id_number"]).aggregate([]).rename_columns([*keys, "document"])
    return {
        "pos_rows": rows.cast(POS_ROWS_SCHEMA),
        "pos_bulk": pa.table({"telco": grouped["telco"],
                              "point_of_sale": grouped["point_of_sale"],
                              "bulk_rows": grouped["count_all"],
                              "first": grouped["activation_date_min"],
                              "last": grouped["activation_date_max"]}, schema=POS_BULK_SCHEMA),
        "pos_days": days.select([*keys, "day"]).cast(POS_DAYS_SCHEMA),
        "pos_docs": documents.select([*keys, "document"]).cast(POS_DOCS_SCHEMA),
    }


# --- merging --------------------------------------------------------------------------------


def merge(parts: Iterable[Aggregates], *, top: int = 20) -> Aggregates:
    """The sum of partial aggregates (see the module docstring), but for the points of
    sale, which :func:`merge_points_of_sale` merges from the partials' files."""
    out = Aggregates()
    holders = []
    for part in parts:
        out.rows += part.rows
        for telco, counts in part.telcos.items():
            mine = out.telcos.setdefault(telco, {
                "subscriptions": 0, "by_status": dict.fromkeys(STATUSES, 0),
                "by_flag": dict.fromkeys(FLAGS, 0), "flagged": 0, "listed": 0,
                "flagged_by_status": dict.fromkeys(STATUSES, 0), "by_flag_status": {}})
            for key in ("subscriptions", "flagged", "listed"):
                mine[key] += counts[key]
            for group in ("by_status", "by_flag", "flagged_by_status", "by_flag_status"):
                for name, n in counts.get(group, {}).items():
                    mine[group][name] = mine[group].get(name, 0) + n
        out.score_counts = out.score_counts + part.score_counts
        out.unscored += part.unscored
        for key, n in part.bands.items():
            out.bands[key] = out.bands.get(key, 0) + n
        for key, counts in part.provinces.items():
            mine = out.provinces.setdefault(key, {"subscriptions": 0, "flagged": 0,
                                                  "flags": {}})
            mine["subscriptions"] += counts["subscriptions"]
            mine["flagged"] += counts["flagged"]
            for flag, n in counts["flags"].items():
                mine["flags"][flag] = mine["flags"].get(flag, 0) + n
        holders.append(part.holders)
    merged = concat(holders, HOLDER_SCHEMA)
    out.holders = merged.take(pc.sort_indices(merged, _HOLDER_ORDER)[:top])
    return out


_POS_ORDER = [("bulk_rows", "descending"), ("telco", "ascending"),
              ("point_of_sale", "ascending")]


_KEYS = ["telco", "point_of_sale"]
# Subscriptions of a run per bucket of its points of sale's bulk tables: a bucket holds
# at most the bulk rows of this many (all of them, where every row were bulk).
POS_BUCKET_ROWS = 4_000_000


def pos_buckets(rows: int) -> int:
    """How many buckets a run of ``rows`` subscriptions writes its points of sale's bulk
    tables in (the same for every shard): the merge holds one bucket of the run at a
    time and reads every shard's file once per bucket, so a small run has one."""
    return max(1, -(-int(rows) // POS_BUCKET_ROWS))


class _Buckets:
    """One shard's bucketed table: its row groups by bucket (each holds one bucket: the
    ``bucket`` column's statistics say which), read a bucket at a time through one open
    file (a filtered dataset read per bucket and shard cost ~5 ms each)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.file, self.schema = pq.ParquetFile(path), schema
        column = self.file.schema_arrow.get_field_index("bucket")
        self.groups: dict[int, list[int]] = {}
        for group in range(self.file.num_row_groups):
            statistics = self.file.metadata.row_group(group).column(column).statistics
            self.groups.setdefault(int(statistics.min), []).append(group)

    def read(self, bucket: int) -> pa.Table:
        groups = self.groups.get(bucket)
        return self.file.read_row_groups(groups, columns=self.schema.names) if groups \
            else self.schema.empty_table()
# The tables of bulk rows only (small): written by bucket, merged a bucket at a time.
BULK_TABLES = ("pos_bulk", "pos_days", "pos_docs")
_RANKED_SCHEMA = pa.schema([POS_BULK_SCHEMA.field(n) for n in POS_BULK_SCHEMA.names] + [
    ("days", pa.int64()), ("distinct_documents", pa.int64())])


def _ranked(tables: dict[str, pa.Table], top: int) -> pa.Table:
    """The ``top`` points of sale by ``BULK_ACTIVATION`` rows of partial bulk tables that
    hold every bulk row of each point of sale they name (several partials' united),
    with their bulk days and distinct documents."""
    bulk, days, docs = tables["pos_bulk"], tables["pos_days"], tables["pos_docs"]
    if bulk.num_rows == 0:
        return _RANKED_SCHEMA.empty_table()
    bulk = bulk.group_by(_KEYS).aggregate([
        ("bulk_rows", "sum"), ("first", "min"), ("last", "max")]).rename_columns(
        [*_KEYS, "bulk_rows", "first", "last"])
    days = days.group_by([*_KEYS, "day"]).aggregate([]).group_by(_KEYS) \
        .aggregate([([], "count_all")]).rename_columns([*_KEYS, "days"])
    docs = docs.group_by([*_KEYS, "document"]).aggregate([]).group_by(_KEYS) \
        .aggregate([([], "count_all")]).rename_columns([*_KEYS, "distinct_documents"])
    table = bulk.join(days, _KEYS).join(docs, _KEYS, join_type="left outer")
    table = table.take(pc.sort_indices(table, _POS_ORDER)[:top])
    return table.set_column(table.schema.get_field_index("distinct_documents"),
                            "distinct_documents",
                            pc.fill_null(table["distinct_documents"], 0)) \
        .select(_RANKED_SCHEMA.names).cast(_RANKED_SCHEMA)


def _with_rows(ranked: pa.Table, rows: pa.Table) -> pa.Table:
    """``ranked`` points of sale with every row they sold (``rows``: partial counts of
    at least these points of sale, added up here), in :data:`POINTS_OF_SALE_SCHEMA`."""
    if ranked.num_rows == 0:
        return POINTS_OF_SALE_SCHEMA.empty_table()
    rows = rows.group_by(_KEYS).aggregate([("rows", "sum")]).rename_columns([*_KEYS, "rows"])
    table = ranked.join(rows, _KEYS)
    table = table.take(pc.sort_indices(table, _POS_ORDER))
    bulk_rows = table["bulk_rows"]
    return pa.table({
        "telco": table["telco"], "point_of_sale": table["point_of_sale"],
        "bulk_rows": bulk_rows, "days": table["days"],
        "distinct_documents": table["distinct_documents"], "all_rows": table["rows"],
        "bulk_pct": pc.round(pc.multiply(pc.divide(pc.cast(bulk_rows, pa.float64()),
                                                   table["rows"]), 100.0), 1),
        "first_activation": table["first"], "last_activation": table["last"],
    }, schema=POINTS_OF_SALE_SCHEMA)


def top_points_of_sale(aggregates: Aggregates, top: int) -> pa.Table:
    """Points of sale with the most ``BULK_ACTIVATION`` rows, with their dealer-days: the
    merged aggregates' (:func:`merge_points_of_sale`), or those of one partial that
    holds every row of its points of sale (a run's results in memory)."""
    if aggregates.points_of_sale is not None:
        return aggregates.points_of_sale.slice(0, top)
    ranked = _ranked({name: getattr(aggregates, name) for name in BULK_TABLES}, top)
    return _with_rows(ranked, aggregates.pos_rows)


def _bucket_of(table: pa.Table, buckets: int) -> np.ndarray:
    """Each row's bucket of (telco, point of sale)."""
    if buckets <= 1 or not table.num_rows:
        return np.zeros(table.num_rows, np.int32)
    key = pc.binary_join_element_wise(table["telco"], pc.fill_null(table["point_of_sale"], ""),
                                      "\x1f")
    return shard_of(key, buckets)


def _write_by_bucket(table: pa.Table, path: Path, buckets: int) -> None:
    """``table`` with its ``bucket``, each bucket in row groups of its own (the
    ``bucket`` column's statistics tell a reader which: :class:`_Buckets`)."""
    bucket = _bucket_of(table, buckets)
    order = np.argsort(bucket, kind="stable")
    table = table.take(pa.array(order)).append_column("bucket", pa.array(bucket[order]))
    bucket = bucket[order]
    with AtomicParquetWriter(path, table.schema) as writer:
        for b in np.unique(bucket):
            start, stop = np.searchsorted(bucket, [b, b + 1])
            writer.write(table.slice(int(start), int(stop - start)))
        writer.close(table.schema)


def merge_folders(folders: Sequence[Path], pos_buckets: int, top: int) -> Aggregates:
    """The run's aggregates from the partials :meth:`Aggregates.write` wrote in
    ``folders`` with ``pos_buckets``: :func:`merge` of their counts and holders, with
    :func:`merge_points_of_sale`."""
    merged = merge((Aggregates.read(folder) for folder in folders), top=top)
    merged.points_of_sale = merge_points_of_sale(folders, pos_buckets, top)
    return merged


def merge_points_of_sale(folders: Sequence[Path], buckets: int, top: int) -> pa.Table:
    """The run's ``top`` points of sale from the partials :meth:`Aggregates.write` wrote
    in ``folders`` with ``buckets``. The ranking needs only the bulk rows' tables: they
    are united one bucket of every folder at a time (a point of sale is in one bucket,
    so its bulk figures are complete there) and each bucket's top kept; then each
    folder's row counts are read for those points of sale alone. Memory: one bucket of
    the bulk tables, one folder's row counts."""
    files = {name: [_Buckets(folder / f"{name}.parquet", POS_TABLES[name])
                    for folder in folders] for name in BULK_TABLES}
    best = []
    for b in range(max(buckets, 1)):
        tables = {name: concat([part.read(b) for part in parts], POS_TABLES[name])
                  for name, parts in files.items()}
        best.append(_ranked(tables, top))
    ranked = concat(best, _RANKED_SCHEMA)
    ranked = ranked.take(pc.sort_indices(ranked, _POS_ORDER)[:top])
    if not ranked.num_rows:
        return POINTS_OF_SALE_SCHEMA.empty_table()
    wanted = pc.field("point_of_sale").isin(pc.unique(ranked["point_of_sale"]))
    rows = concat([pq.read_table(folder / "pos_rows.parquet", filters=wanted)
                   for folder in folders], POS_ROWS_SCHEMA)
    return _with_rows(ranked, rows.join(ranked.select(_KEYS), _KEYS))
