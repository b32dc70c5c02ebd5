"""One telco's flag keys, held compactly and classified against its previous run.

The one statement of the classification rules (``history.classify`` is its adapter for
pandas keys). Pandas frames with a Python string per key and column took gigabytes for
a national telco (millions of keys, and as many again from its previous run); here a
key is two integers: the listed row its number comes from (the number itself stays in
one Arrow string array) and its flag's code (its index in ``matching.flags.FLAGS``,
i.e. its bit in ``aggregates.FLAG_BITS``). Matching with the previous run's keys
(``history.previous_keys``, Arrow) is an integer search: both sides' numbers are
dictionary-encoded together, so a key is ``number id * len(FLAGS) + flag code``. The
outcome: new or persisting, the streak's runs and first run date, and the previous keys
now resolved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching.flags import FLAGS

FLAG_NAMES = pa.array(FLAGS, pa.string())
RESOLVED_SCHEMA = pa.schema([("telco", pa.string()), ("msisdn", pa.string()),
                             ("flag", pa.string()), ("first_seen", pa.string())])
KEYS_SCHEMA = pa.schema([("telco", pa.string()), ("msisdn", pa.string()),
                         ("flag", pa.string()), ("runs", pa.int64()),
                         ("first_seen", pa.date32())])


@dataclass(frozen=True)
class TelcoKeys:
    """One key per flag in ``bits`` of each row: ``row`` indexes ``numbers`` (one per
    row, the number the history keys it by), ``flag`` is the flag's code."""

    telco: str
    numbers: pa.Array
    row: np.ndarray
    flag: np.ndarray

    @classmethod
    def of_rows(cls, telco: str, numbers: pa.Array | pa.ChunkedArray,
                bits: np.ndarray) -> TelcoKeys:
        """The keys of rows with flag ``bits`` (int, one per row), row-major."""
        bits = np.asarray(bits, dtype=np.int64)
        if isinstance(numbers, pa.ChunkedArray):
            numbers = numbers.combine_chunks()
        per_flag = [np.flatnonzero(bits & (1 << code)) for code in range(len(FLAGS))]
        row = np.concatenate([np.zeros(0, np.int64), *per_flag])
        flag = np.concatenate([np.zeros(0, np.int8),
                               *(np.full(len(r), c, np.int8) for c, r in enumerate(per_flag))])
        order = np.lexsort((flag, row))
        return cls(telco, numbers, row[order], flag[order])

    def __len__(self) -> int:
        return len(self.row)


@dataclass(frozen=True)
class Classes:
    """Per key of a ``TelcoKeys``: persisting or new, its streak's runs and first date."""

    persisting: np.ndarray
    runs: np.ndarray
    first_seen: np.ndarray  # datetime64[D]


def classify(keys: TelcoKeys, previous: pa.Table, run_date: str) -> tuple[Classes, pa.Table]:
    """(``keys`` classified against ``previous``, the telco's latest earlier run's keys
    from ``history.previous_keys``; those keys not in ``keys``, resolved, sorted by key,
    in ``RESOLVED_SCHEMA``)."""
    today = np.datetime64(run_date, "D")
    n = len(keys)
    classes = Classes(np.zeros(n, dtype=bool), np.ones(n, dtype=np.int64),
                      np.full(n, today))
    if previous.num_rows == 0:
        return classes, RESOLVED_SCHEMA.empty_table()
    width = len(FLAGS)
    numbers = pa.concat_arrays([keys.numbers.cast(pa.string()),
                                previous["msisdn"].combine_chunks().cast(pa.string())])
    ids = np.asarray(pc.dictionary_encode(numbers).indices.to_numpy(), dtype=np.int64)
    key = ids[: len(keys.numbers)][keys.row] * width + keys.flag
    code = np.asarray(pc.fill_null(pc.index_in(previous["flag"], value_set=FLAG_NAMES), -1)
                      .to_numpy(), dtype=np.int64)
    old_key = np.where(code >= 0, ids[len(keys.numbers):] * width + code, -1)
    del ids, numbers
    order = np.argsort(old_key, kind="stable")
    place = np.minimum(np.searchsorted(old_key[order], key), len(order) - 1)
    hit = old_key[order][place] == key
    matched = order[place[hit]]
    classes.persisting[hit] = True
    classes.runs[hit] = np.asarray(previous["runs"].to_numpy(), dtype=np.int64)[matched] + 1
    first = np.asarray(pc.cast(previous["first_seen"], pa.date32()).to_numpy(),
                       dtype="datetime64[D]")[matched]
    classes.first_seen[hit] = np.where(np.isnat(first), today, first)
    seen = np.zeros(previous.num_rows, dtype=bool)
    seen[matched] = True
    gone = previous.filter(pa.array(~seen))
    resolved = pa.table({
        "telco": pa.repeat(pa.scalar(keys.telco, pa.string()), gone.num_rows),
        "msisdn": gone["msisdn"], "flag": gone["flag"],
        # a first date missing in the store reads "None", as the pandas lists wrote it
        "first_seen": pc.fill_null(gone["first_seen"], "None")}, schema=RESOLVED_SCHEMA)
    return classes, resolved.sort_by([("msisdn", "ascending"), ("flag", "ascending")])


def all_new(keys: TelcoKeys, run_date: str) -> Classes:
    """Every key new (no history store)."""
    n = len(keys)
    return Classes(np.zeros(n, dtype=bool), np.ones(n, dtype=np.int64),
                   np.full(n, np.datetime64(run_date, "D")))


def unique_keys(keys: TelcoKeys, classes: Classes) -> pa.Table:
    """Each key once (rows sharing a number share its keys, and their classes), sorted
    by ``(msisdn, flag)`` as text, in ``KEYS_SCHEMA``: what the flag history records.

    One integer sort does both: a key's rank is its number's rank among the distinct
    numbers (only those are sorted as text) times the flags, plus its flag's rank."""
    encoded = pc.dictionary_encode(keys.numbers.cast(pa.string()))
    rank = np.empty(len(encoded.dictionary), dtype=np.int64)
    rank[np.asarray(pc.sort_indices(encoded.dictionary).to_numpy(), dtype=np.int64)] = \
        np.arange(len(rank))
    number_rank = rank[np.asarray(encoded.indices.to_numpy(), dtype=np.int64)]
    del rank
    flag_rank = np.argsort(np.argsort(np.asarray(FLAGS, dtype=object), kind="stable"))
    _, first = np.unique(number_rank[keys.row] * len(FLAGS) + flag_rank[keys.flag],
                         return_index=True)
    del number_rank
    return pa.table({
        "telco": pa.repeat(pa.scalar(keys.telco, pa.string()), len(first)),
        "msisdn": pc.take(encoded, pa.array(keys.row[first])).cast(pa.string()),
        "flag": pc.take(FLAG_NAMES, pa.array(keys.flag[first])),
        "runs": pa.array(classes.runs[first], pa.int64()),
        "first_seen": pa.array(classes.first_seen[first], pa.date32())}, schema=KEYS_SCHEMA)


def per_row(keys: TelcoKeys, classes: Classes, rows: int,
            run_date: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row (``rows`` of them): any key persisting, the longest streak, the earliest
    first date (a row without keys: new, 1, ``run_date``)."""
    persisting = np.zeros(rows, dtype=bool)
    runs = np.ones(rows, dtype=np.int64)
    first_seen = np.full(rows, np.datetime64(run_date, "D"))
    if len(keys):
        np.logical_or.at(persisting, keys.row, classes.persisting)
        np.maximum.at(runs, keys.row, classes.runs)
        np.minimum.at(first_seen, keys.row, classes.first_seen)
    return persisting, runs, first_seen
