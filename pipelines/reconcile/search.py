"""Candidate search for the rows whose document leads nobody, one birth-year partition
of the registry at a time.

A row is searched when its document links no citizen (NO_ID, INVALID_ID,
ID_NOT_FOUND; passports excepted): a few per cent of a run. The search never holds
the whole registry:

1. :func:`searched_rows` keeps what the search needs of those rows (compact), with
   what only the whole run knows: the kind of number (:class:`SearchKind`), whether
   other subscriptions carry the same number (:class:`OthersLevel`) and the number's
   verified holder in the previous published run.
2. :func:`batch_routes` finds, over the whole registry's numbers, the citizens each
   row's number one slip away, repaired number or previous holder leads to, and routes
   each row to the partitions of the registry's search layout those citizens and the
   row's birth years are in (``pipelines.registry.search_index``: every blocking key
   carries a birth date or year).
3. :func:`search_routed` finds and scores the routed rows' candidates within ONE
   partition (those pairs plus the rows' blocks) and keeps per row what the final
   choice needs: the best candidate with its explanation, the best ``top_candidates``
   weights, and how many there were. (:func:`search_shard` does 2 and 3 at once for a
   registry table searched whole.)
4. :func:`rank` combines the partitions' outputs into each row's best candidates;
   the run's namesake prior (``matching.namesakes``) is estimated from every row's
   ranked candidates; :func:`decide` then gives the final per-row columns
   (``candidate_citizen_id``, ``candidate_probability``, ``candidate_margin_bits``,
   ``candidate_count``, ``suggested_citizen_id``, the explanation's levels and
   weights). :func:`choose` does the three for rows searched at once.

Everything registry-wide (block sizes for ``candidate_max_block``, name frequencies,
the registry's size and birth-date statistics) is counted when the snapshot is
prepared, each citizen is in one partition, ties are broken by the citizen's row in the
source registry, and sums run in a fixed order, so the result is the same whatever the
number of shards, partitions or batches. Memory: the searched rows are cut into batches
of ``matching.search_batch_rows`` rows; a routing task holds one batch, a search task one
partition and one batch at a time (candidate pairs compared ``SEARCH_CHUNK_PAIRS`` at a
time), never the run; :func:`choose_candidates` folds the parts one batch at a time,
twice (rank and count the evidence; decide with the prior).

The thin I/O steps at the end (:func:`route_search_batch`, :func:`search_partition`,
:func:`choose_candidates`) run them in a run's working folder
(``pipelines.reconcile.shard_steps``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from matching.candidates import (
    BLOCK_FAMILIES,
    CandidatePairs,
    RegistryIndex,
    blocking_parts,
    blocking_years,
    numbers_of_width,
    plan_candidates,
    plan_routed,
    registry_block_sizes,
    registry_index,
    registry_parts,
    searched_side,
)
from matching.columns import as_bool_mask, as_string_array
from matching.compare import (
    DOB_AGREEING_LEVELS,
    compare_dates_of_birth_at,
    compare_genders_at,
)
from matching.documents import DocLevel, character_counts, compare_documents
from matching.model import (
    HistoryLevel,
    MatchModel,
    OthersLevel,
    RegistryStatistics,
    SearchKind,
    birth_date_frequencies,
    name_frequencies,
    name_year_frequencies,
    probability_of,
    registry_statistics,
    row_probability,
    typo_frequencies,
)
from matching.names import (
    NameComparison,
    NameComparisonSettings,
    NameLevel,
    canonical_name_key,
    compare_names,
    compare_names_at,
)
from matching.namesakes import (
    NAMESAKE_BLOCK_FAMILY,
    NamesakeEvidence,
    NamesakePrior,
    estimate_prior,
    has_namesake,
    uniform_prior,
)
from pipelines.config import MatchingSettings, RunConfig
from pipelines.intake.normalise import NORMALISED_SCHEMA
from pipelines.reconcile.model_file import load_model
from pipelines.reconcile.run_state import shard_plan, snapshot_of_run
from pipelines.reconcile.sharding import row_positions
from pipelines.registry.search_index import find_numbers, partition_of_year
from pipelines.registry.snapshot import Snapshot
from pipelines.results.dataset import RunResults
from pipelines.storage.files import (
    AtomicParquetWriter,
    arrow_schema,
    read_arrow,
    read_json,
    write_arrow,
    write_json,
    write_parquet,
)
from pipelines.storage.paths import RunPaths

log = logging.getLogger("simrecon.search")

# What the search reads of a searched row (besides what searched_rows adds).
SEARCHED_COLUMNS = ("telco", "source_row", "msisdn", "full_name", "date_of_birth",
                    "dob_precision", "gender", "id_type", "id_number", "id_valid", "id_issue")
# Candidate pairs compared at once: bounds memory (~300 bytes a pair while compared).
SEARCH_CHUNK_PAIRS = 4_000_000
BLOCK_COLUMNS = tuple(f"block_{family}" for family in BLOCK_FAMILIES)
# The block whose size says whether a citizen has a namesake (matching.namesakes).
NAMESAKE_BLOCK = f"block_{NAMESAKE_BLOCK_FAMILY}"

# The per-row columns the search decides (they replace those of the document match).
LEVEL_COLUMNS = ("id_level", "doc_level", "name_level", "dob_level", "gender_level",
                 "history_level", "others_level")
WEIGHT_COLUMNS = ("id_weight", "doc_weight", "name_weight", "dob_weight", "gender_weight",
                  "history_weight", "others_weight", "match_weight", "match_probability")
RESULT_SCHEMA = pa.schema([
    *((c, pa.int8()) for c in LEVEL_COLUMNS),
    ("name_score", pa.float64()),
    ("name_frequency", pa.float64()),
    *((c, pa.float64()) for c in WEIGHT_COLUMNS),
    ("candidate_citizen_id", pa.string()),
    ("candidate_probability", pa.float64()),
    ("candidate_margin_bits", pa.float64()),
    ("candidate_count", pa.int32()),
    ("suggested_citizen_id", pa.string()),
])
# What one shard keeps per searched row with a candidate in it.
PART_SCHEMA = pa.schema([
    ("row", pa.int64()),
    ("count", pa.int64()),
    ("top_weight", pa.list_(pa.float64())),
    ("top_registry_row", pa.list_(pa.int64())),
    ("top_namesake", pa.list_(pa.bool_())),  # the candidate has a namesake (namesakes.py)
    ("citizen_id", pa.string()),
    ("registry_row", pa.int64()),
    *((c, pa.int8()) for c in LEVEL_COLUMNS),
    ("name_score", pa.float64()),
    ("name_frequency", pa.float64()),
    *((c, pa.float64()) for c in WEIGHT_COLUMNS),
])


def name_settings(settings: MatchingSettings) -> NameComparisonSettings:
    return NameComparisonSettings(
        max_typo_edits=settings.name_max_typo_edits,
        partial_threshold=settings.name_partial_threshold,
    )


def _np(values: pa.Array | pa.ChunkedArray, fill: object, dtype: type) -> np.ndarray:
    return np.asarray(pc.fill_null(values, fill).to_numpy(zero_copy_only=False), dtype=dtype)


def _take(column: pa.Array | pa.ChunkedArray, index: np.ndarray) -> pa.Array:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return pc.take(column, pa.array(index, pa.int64()))


# --- the searched rows --------------------------------------------------------------------
def search_kinds(id_type: pa.Array, id_number: pa.Array, id_valid: pa.Array) -> np.ndarray:
    """:class:`SearchKind` of each searched row (int8)."""
    has = as_bool_mask(pc.is_valid(id_number))
    valid = as_bool_mask(id_valid)
    kind = np.full(len(id_number), int(SearchKind.MALFORMED), dtype=np.int8)
    kind[has & valid & as_bool_mask(pc.equal(id_type, "CCCD"))] = SearchKind.CCCD_NOT_FOUND
    kind[has & valid & as_bool_mask(pc.equal(id_type, "CMND"))] = SearchKind.CMND_NOT_FOUND
    kind[~has] = SearchKind.NO_NUMBER
    return kind


def _documents(id_type: pa.Array, id_number: pa.Array) -> pa.Array:
    """``type:number`` of each row (null without a number)."""
    return pc.binary_join_element_wise(pc.fill_null(as_string_array(id_type), "?"),
                                       as_string_array(id_number), ":")


def document_tallies(id_type: pa.Array, id_number: pa.Array, full_name: pa.Array
                     ) -> pa.Table:
    """Rows per (document, canonical name) among the rows given that carry a number:
    what :func:`others_levels` needs, compact, and summable over parts of the run."""
    has = as_bool_mask(pc.is_valid(id_number))
    names = pc.fill_null(canonical_name_key(full_name), "")
    table = pa.table({"document": _documents(id_type, id_number),
                      "name": names}).filter(pa.array(has))
    return table.group_by(["document", "name"], use_threads=False) \
        .aggregate([([], "count_all")]).rename_columns(["document", "name", "rows"])


def _per_document(tallies: Iterable[pa.Table]) -> pa.Table:
    """(document, rows, names) of the run from :func:`document_tallies` of its parts."""
    merged = pa.concat_tables(tallies).group_by(["document", "name"], use_threads=False) \
        .aggregate([("rows", "sum")])
    return merged.group_by("document", use_threads=False) \
        .aggregate([("rows_sum", "sum"), ("name", "count")]) \
        .rename_columns(["document", "rows", "names"])


def _others_of(id_type: pa.Array, id_number: pa.Array, per_document: pa.Table) -> np.ndarray:
    """:class:`OthersLevel` of each row, looked up in :func:`_per_document`."""
    level = np.full(len(id_number), int(OthersLevel.MISSING), dtype=np.int8)
    has = as_bool_mask(pc.is_valid(id_number))
    if not has.any():
        return level
    at = pc.index_in(_documents(id_type, id_number).filter(pa.array(has)),
                     value_set=per_document["document"])
    rows = np.asarray(pc.take(per_document["rows"], at), np.int64)
    names = np.asarray(pc.take(per_document["names"], at), np.int64)
    level[has] = np.where(rows > 1, np.where(names > 1, OthersLevel.OTHER_NAMES,
                                             OthersLevel.SAME_NAME), OthersLevel.ALONE)
    return level


def others_levels(id_type: pa.Array, id_number: pa.Array, full_name: pa.Array) -> np.ndarray:
    """:class:`OthersLevel` of each row, over the rows given: every searched row of the run
    (a number that leads nobody leads nobody on any row, so every subscription carrying
    it is among them)."""
    per_document = _per_document([document_tallies(id_type, id_number, full_name)])
    return _others_of(id_type, id_number, per_document)


def _cccd_year_sex(id_number: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Birth year and sex from the century/sex and year digits (Decree 137/2015 Art. 13)
    of any number that starts with six digits: a malformed CCCD still carries them."""
    head = pc.if_else(pc.match_substring_regex(id_number, r"^[0-9]{6}"),
                      id_number, pa.scalar(None, pa.string()))
    g = pc.cast(pc.utf8_slice_codeunits(head, 3, 4), pa.int32())
    yy = pc.cast(pc.utf8_slice_codeunits(head, 4, 6), pa.int32())
    year = pc.add(pc.add(1900, pc.multiply(pc.divide(g, 2), 100)), yy)
    sex = pc.if_else(pc.equal(pc.bit_wise_and(g, 1), 1), "F", "M")
    return year, sex


def searched_rows(rows: pa.Table, previous_holder: pa.Array | None = None,
                  per_document: pa.Table | None = None) -> pa.Table:
    """The searched rows (every one of the run, every telco) as the search reads them:
    :data:`SEARCHED_COLUMNS` plus ``search_kind``, ``others_level`` and
    ``previous_holder`` (the number's verified holder in the previous run, or null).
    ``per_document``: the whole run's tallies (:func:`_per_document`) when ``rows`` is
    only a part of the run's searched rows."""
    table = rows.select(list(SEARCHED_COLUMNS)).combine_chunks()
    if previous_holder is None:
        previous_holder = pa.nulls(table.num_rows, pa.string())
    kinds = search_kinds(table["id_type"], table["id_number"], table["id_valid"])
    if per_document is None:
        others = others_levels(table["id_type"], table["id_number"], table["full_name"])
    else:
        others = _others_of(table["id_type"], table["id_number"], per_document)
    return (table.append_column("search_kind", pa.array(kinds, pa.int8()))
            .append_column("others_level", pa.array(others, pa.int8()))
            .append_column("previous_holder", as_string_array(previous_holder)))


# --- one part of the registry ---------------------------------------------------------------
def registry_search_table(registry: pa.Table) -> pa.Table:
    """The registry columns the search reads. A prepared shard has them all (counted
    over the whole registry); a plain registry table given whole gets them here."""
    n = registry.num_rows
    table = registry
    if "registry_row" not in table.column_names:
        table = table.append_column("registry_row", pa.array(np.arange(n, dtype=np.int64)))
    if "name_frequency" not in table.column_names:
        tf = name_frequencies(registry["full_name"].combine_chunks())[1]
        table = table.append_column("name_frequency", pa.array(tf, pa.float64()))
    if "name_typo_frequency" not in table.column_names:
        table = table.append_column("name_typo_frequency", pa.array(
            typo_frequencies(registry["full_name"]), pa.float64()))
    if "name_year_frequency" not in table.column_names:
        table = table.append_column("name_year_frequency", pa.array(
            name_year_frequencies(registry["full_name"], registry["date_of_birth"]),
            pa.float64()))
    if "dob_frequency" not in table.column_names:
        agreement = registry_statistics(registry["date_of_birth"],
                                        registry["dob_precision"]).birth_dates
        dob_tf, year_tf = birth_date_frequencies(registry["date_of_birth"],
                                                 registry["dob_precision"], agreement)
        table = (table.append_column("dob_frequency", pa.array(dob_tf, pa.float64()))
                 .append_column("year_frequency", pa.array(year_tf, pa.float64())))
    if not set(BLOCK_COLUMNS) <= set(table.column_names):
        sizes = registry_block_sizes(registry_parts(
            table["full_name"], table["date_of_birth"], table["dob_precision"],
            table["gender"]))
        for k, column in enumerate(BLOCK_COLUMNS):
            if column not in table.column_names:
                table = table.append_column(column, pa.array(sizes[:, k], pa.int32()))
    if "legacy_id" not in table.column_names:
        table = table.append_column("legacy_id", pa.nulls(n, pa.string()))
    return table.combine_chunks()


@dataclass(frozen=True)
class PairLevels:
    """Candidate pairs of a chunk of searched rows with everything the model scores."""

    pairs: CandidatePairs  # pairs.row indexes the searched rows
    kind: np.ndarray
    doc: np.ndarray
    names: NameComparison
    dob: np.ndarray
    gender: np.ndarray
    history: np.ndarray
    others: np.ndarray
    name_tf: np.ndarray
    typo_tf: np.ndarray
    dob_tf: np.ndarray
    year_tf: np.ndarray
    name_year_tf: np.ndarray


def _candidates_of(citizen: np.ndarray, n_citizens: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct citizens of some pairs, ascending, and each pair's index among them
    (a mark per citizen of the shard, no sort)."""
    seen = np.zeros(n_citizens, dtype=bool)
    seen[citizen] = True
    distinct = np.flatnonzero(seen)
    position = np.cumsum(seen) - 1
    return distinct, position[citizen]


@dataclass(frozen=True)
class CitizenSide:
    """What the comparisons need of a registry table's citizens that depends on them
    alone, made once per search task (not once per batch of searched rows): the
    character counts of their numbers (:func:`matching.documents.character_counts`)."""

    citizen_id_counts: np.ndarray  # (11, citizens)
    legacy_id_counts: np.ndarray

    @classmethod
    def of(cls, citizens: pa.Table) -> CitizenSide:
        return cls(character_counts(citizens["citizen_id"]),
                   character_counts(citizens["legacy_id"]))


def _levels(searched: pa.Table, shard: pa.Table, pairs: CandidatePairs,
            settings: MatchingSettings, side: CitizenSide | None = None) -> PairLevels:
    """Every field's level of each pair. Each side's values are read once per searched
    row and once per candidate citizen, and the pairs gather integers: taking a pair's
    strings from both sides and reading them again cost more than comparing them
    (``side``: the shard's :class:`CitizenSide`, when made already)."""
    row, cit = pairs.row, pairs.citizen
    distinct, at = _candidates_of(cit, shard.num_rows)
    cand = shard.select(["full_name", "date_of_birth", "dob_precision", "gender",
                         "citizen_id", "legacy_id"]).take(pa.array(distinct, pa.int64()))
    names = compare_names_at(searched["full_name"], row, cand["full_name"], at,
                             name_settings(settings), with_score=False)
    dob = compare_dates_of_birth_at(
        searched["date_of_birth"], searched["dob_precision"], row,
        cand["date_of_birth"], cand["dob_precision"], at)
    gender = compare_genders_at(searched["gender"], row, cand["gender"], at)
    doc = compare_documents(searched["id_number"].combine_chunks(),
                            searched["id_issue"].combine_chunks(),
                            cand["citizen_id"].combine_chunks(),
                            cand["legacy_id"].combine_chunks(), rows=row, citizens=at,
                            target_counts=None if side is None else
                            (side.citizen_id_counts[:, distinct],
                             side.legacy_id_counts[:, distinct]))
    # The number's previous holder: only the pairs of rows that have one are compared.
    history = np.full(len(row), int(HistoryLevel.MISSING), dtype=np.int8)
    held = np.flatnonzero(as_bool_mask(pc.is_valid(searched["previous_holder"]))[row])
    if held.size:
        same = as_bool_mask(pc.equal(_take(searched["previous_holder"], row[held]),
                                     _take(cand["citizen_id"], at[held])))
        history[held] = np.where(same, HistoryLevel.SAME_HOLDER, HistoryLevel.OTHER_HOLDER)
    kind = _np(searched["search_kind"], 0, np.int64)[row]
    others = _np(searched["others_level"], 0, np.int64)[row]

    def per_pair(column: str) -> np.ndarray:
        return _np(shard[column], np.nan, np.float64)[cit]

    return PairLevels(pairs=pairs, kind=kind, doc=doc, names=names, dob=dob, gender=gender,
                      history=history, others=others, name_tf=per_pair("name_frequency"),
                      typo_tf=per_pair("name_typo_frequency"),
                      dob_tf=per_pair("dob_frequency"), year_tf=per_pair("year_frequency"),
                      name_year_tf=per_pair("name_year_frequency"))


def _chunks(counts: np.ndarray, budget: int) -> list[tuple[int, int]]:
    """Consecutive row ranges of at most ``budget`` pairs each (a row never split)."""
    ends = np.cumsum(counts)
    bounds, start = [], 0
    while start < len(counts):
        base = ends[start - 1] if start else 0
        stop = int(np.searchsorted(ends, base + budget, side="right"))
        stop = max(stop, start + 1)
        bounds.append((start, stop))
        start = stop
    return bounds


def _side_inputs(searched: pa.Table, settings: MatchingSettings) -> dict:
    number = searched["id_number"]
    year, sex = _cccd_year_sex(number)
    return dict(full_name=searched["full_name"], date_of_birth=searched["date_of_birth"],
                dob_precision=searched["dob_precision"], id_number=number, id_birth_year=year,
                id_sex=sex, id_issue=searched["id_issue"],
                near_miss=as_bool_mask(pc.is_valid(number)) & settings.near_miss_search)


def pair_levels(searched: pa.Table, shard: pa.Table, settings: MatchingSettings,
                index: RegistryIndex | None = None) -> Iterator[PairLevels]:
    """Every candidate pair of the searched rows within ``shard``
    (:func:`registry_search_table`), with their levels, a chunk of rows at a time
    (``index``: the shard's :class:`RegistryIndex`, made here if not given)."""
    if not searched.num_rows or not shard.num_rows:
        return
    if index is None:
        index = registry_index(
            registry_parts(shard["full_name"], shard["date_of_birth"],
                           shard["dob_precision"], shard["gender"]),
            shard["citizen_id"], shard["legacy_id"])
    sizes = np.stack([_np(shard[c], 0, np.int32) for c in BLOCK_COLUMNS], axis=1)
    plan = plan_candidates(
        **_side_inputs(searched, settings), registry_blocking=index,
        registry_citizen_id=shard["citizen_id"], registry_legacy_id=shard["legacy_id"],
        max_block=settings.candidate_max_block, registry_block_sizes=sizes,
        previous_holder=searched["previous_holder"])
    for start, stop in _chunks(plan.pair_counts(), SEARCH_CHUNK_PAIRS):
        pairs = plan.pairs(start, stop)
        pairs = CandidatePairs(pairs.row + start, pairs.citizen, pairs.id_level)
        if pairs.row.size:
            yield _levels(searched, shard, pairs, settings)


def _lists(values: np.ndarray, row_of: np.ndarray, n_rows: int, dtype: pa.DataType
           ) -> pa.Array:
    """Values grouped by ``row_of`` (ascending) into one list per row 0..n_rows-1."""
    counts = np.bincount(row_of, minlength=n_rows)
    offsets = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values, dtype))


def _scored(found: PairLevels, searched: pa.Table, shard: pa.Table, model: MatchModel,
            settings: MatchingSettings, statistics: RegistryStatistics,
            shard_registry_row: np.ndarray, in_registry_order: bool) -> pa.Table:
    """One chunk of pairs scored and cut to what :func:`choose` needs: one
    :data:`PART_SCHEMA` row per searched row with a candidate among them."""
    pairs = found.pairs
    scores = model.score_search(
        citizens=statistics.citizens, kind=found.kind, doc_level=found.doc,
        name_level=found.names.level, dob_level=found.dob, gender_level=found.gender,
        history_level=found.history, others_level=found.others, name_tf=found.name_tf,
        birth_dates=statistics.birth_dates, typo_tf=found.typo_tf, dob_tf=found.dob_tf,
        year_tf=found.year_tf, name_year_tf=found.name_year_tf)
    registry_row = shard_registry_row[pairs.citizen]
    namesake = has_namesake(_np(shard[NAMESAKE_BLOCK], 0, np.int64))[pairs.citizen]
    # Best first within each row; equal weights: the earlier citizen in the source.
    order, rank = _ranked(pairs.row, scores.match_weight, registry_row, in_registry_order)
    rows = pairs.row[order]
    first = rank == 0
    starts = np.flatnonzero(first)
    kept = order[rank < model.search.top_candidates]
    best = order[first]
    best_rows = rows[first]
    counts = np.diff(np.r_[starts, len(rows)])
    local = np.searchsorted(best_rows, pairs.row[kept])
    score = compare_names(_take(searched["full_name"], best_rows),
                          _take(shard["full_name"], pairs.citizen[best]),
                          name_settings(settings)).score
    columns = {
        "row": pa.array(best_rows, pa.int64()),
        "count": pa.array(counts, pa.int64()),
        "top_weight": _lists(scores.match_weight[kept], local, len(best_rows), pa.float64()),
        "top_registry_row": _lists(registry_row[kept], local, len(best_rows), pa.int64()),
        "top_namesake": _lists(namesake[kept], local, len(best_rows), pa.bool_()),
        "citizen_id": _take(shard["citizen_id"], pairs.citizen[best]),
        "registry_row": pa.array(registry_row[best], pa.int64()),
        "id_level": pairs.id_level[best], "doc_level": found.doc[best],
        "name_level": found.names.level[best], "dob_level": found.dob[best],
        "gender_level": found.gender[best], "history_level": found.history[best],
        "others_level": found.others[best],
        "name_score": pa.array(score, pa.float64()),
        "name_frequency": pa.array(found.name_tf[best], pa.float64()),
        **{c: getattr(scores, c)[best] for c in WEIGHT_COLUMNS},
    }
    return pa.table({f.name: pa.array(columns[f.name], f.type)
                     if isinstance(columns[f.name], np.ndarray) else columns[f.name]
                     for f in PART_SCHEMA}, schema=PART_SCHEMA)


def _registry_rows(shard: pa.Table) -> tuple[np.ndarray, bool]:
    """Each citizen's row in the source registry, and whether the shard keeps the source
    order (each row's pairs, sorted by citizen, are then in registry order)."""
    registry_row = _np(shard["registry_row"], 0, np.int64)
    return registry_row, bool((registry_row[1:] > registry_row[:-1]).all())


def search_shard(searched: pa.Table, shard: pa.Table, model: MatchModel,
                 settings: MatchingSettings, statistics: RegistryStatistics,
                 index: RegistryIndex | None = None) -> pa.Table:
    """Each searched row's candidates within a registry table searched whole (numbers
    looked up in it too), scored (see module docstring); one row (:data:`PART_SCHEMA`)
    per searched row with a candidate in it.

    ``shard``: :func:`registry_search_table` of the table; ``statistics``: the whole
    registry's (its size is the search prior's N); ``index``: the table's
    :class:`RegistryIndex` (made here if None)."""
    shard = registry_search_table(shard)
    registry_row, in_order = _registry_rows(shard)
    parts = [_scored(found, searched, shard, model, settings, statistics, registry_row,
                     in_order)
             for found in pair_levels(searched, shard, settings, index)]
    return pa.concat_tables(parts) if parts else PART_SCHEMA.empty_table()


# --- the final choice ---------------------------------------------------------------------
def _ranked(row: np.ndarray, weight: np.ndarray, registry_row: np.ndarray,
            in_registry_order: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The order of entries best first within each row (equal weights: the earlier
    citizen in the source registry), and each entry's rank within its row then.

    What ``np.lexsort((registry_row, -weight, row))`` gives, in stable sorts from the
    least to the most significant key: by citizen, by weight, by row (lexsort, or a
    rank of the weights through ``np.unique``, sorted the floats with an unstable sort
    that took most of the ranking; a stable sort of weights that repeat a great deal is
    several times faster). ``in_registry_order``: the entries of each row already come
    in ascending ``registry_row`` (a shard's pairs, sorted by row and citizen, when the
    shard keeps the source order): the first sort is then skipped."""
    if not len(row):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if in_registry_order:
        order = np.argsort(-weight, kind="stable")
    else:
        order = np.argsort(registry_row, kind="stable")
        order = order[np.argsort(-weight[order], kind="stable")]
    order = order[np.argsort(row[order], kind="stable")]
    rows = row[order]
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    rank = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
    return order, rank


# Top entries gathered from the parts before they are ranked and cut to the top k: one
# sort of many entries instead of one per part (sorting dominated choose_candidates).
_COMPACT_ENTRIES = 4_000_000


@dataclass
class _Choice:
    """The shards' outputs folded so far: per row, its best candidate (``best``: one
    :data:`PART_SCHEMA` row per row with a candidate), its k best weights (flat
    ``row``/``weight``/``registry_row`` triples, best first within each row once
    :meth:`compact` ran) and how many candidates it has. Parts are gathered and ranked
    together every ``_COMPACT_ENTRIES`` top entries and at the end."""

    top_k: int
    count: np.ndarray
    best: list[pa.Table] = field(default_factory=list)
    top_row: list[np.ndarray] = field(default_factory=list)
    top_weight: list[np.ndarray] = field(default_factory=list)
    top_registry_row: list[np.ndarray] = field(default_factory=list)
    top_namesake: list[np.ndarray] = field(default_factory=list)
    pending: int = 0

    def fold(self, part: pa.Table) -> None:
        part = part.cast(PART_SCHEMA)
        if not part.num_rows:
            return
        row = _np(part["row"], 0, np.int64)
        np.add.at(self.count, row, _np(part["count"], 0, np.int64))
        self.best.append(part)
        self.top_row.append(row[np.asarray(pc.list_parent_indices(part["top_weight"]),
                                           np.int64)])
        self.top_weight.append(np.asarray(pc.list_flatten(part["top_weight"]), np.float64))
        self.top_registry_row.append(np.asarray(pc.list_flatten(part["top_registry_row"]),
                                                np.int64))
        self.top_namesake.append(np.asarray(pc.list_flatten(part["top_namesake"]), bool))
        self.pending += len(self.top_row[-1])
        if self.pending > _COMPACT_ENTRIES:
            self.compact()

    def compact(self) -> np.ndarray:
        """Rank what was gathered; keep each row's best part row and top k entries.
        Returns each kept entry's rank within its row."""
        both = pa.concat_tables(self.best) if self.best else PART_SCHEMA.empty_table()
        order, rank = _ranked(_np(both["row"], 0, np.int64),
                              _np(both["match_weight"], 0.0, np.float64),
                              _np(both["registry_row"], 0, np.int64))
        self.best = [both.take(pa.array(order[rank == 0], pa.int64()))]
        t_row, t_weight, t_reg, t_namesake = (
            np.concatenate(v) if v else np.empty(0, dtype) for v, dtype
            in ((self.top_row, np.int64), (self.top_weight, np.float64),
                (self.top_registry_row, np.int64), (self.top_namesake, bool)))
        order, rank = _ranked(t_row, t_weight, t_reg)
        keep = rank < self.top_k
        at = order[keep]
        self.top_row, self.top_weight, self.top_registry_row, self.top_namesake = \
            [t_row[at]], [t_weight[at]], [t_reg[at]], [t_namesake[at]]
        self.pending = 0
        return rank[keep]


# What :func:`rank` keeps of a row's best candidate until the run's prior is known.
BEST_COLUMNS = ("citizen_id", *LEVEL_COLUMNS, "name_score", "name_frequency", *WEIGHT_COLUMNS)


@dataclass(frozen=True)
class Ranked:
    """The search's findings for some searched rows before the run's namesake prior
    (``matching.namesakes``) is applied: per row (in the order searched), its best
    candidate's columns (``best``: :data:`BEST_COLUMNS`, null without a candidate), the
    weights of its best ``top_candidates`` candidates (``top``, best first, NaN where it
    has fewer), which of them have a namesake, and how many candidates it has."""

    best: pa.Table
    top: np.ndarray  # (rows, k) float64
    namesake: np.ndarray  # (rows, k) bool
    count: np.ndarray  # int64

    def to_table(self) -> pa.Table:
        """As one table (a working file between the two passes of choose_candidates)."""
        k = self.top.shape[1]
        known = ~np.isnan(self.top)
        top = pa.FixedSizeListArray.from_arrays(
            pa.array(np.where(known, self.top, 0.0).ravel(), pa.float64(),
                     mask=~known.ravel()), k)
        namesake = pa.FixedSizeListArray.from_arrays(pa.array(self.namesake.ravel(),
                                                              pa.bool_()), k)
        return (self.best.append_column("candidate_count", pa.array(self.count, pa.int64()))
                .append_column("top_weight", top).append_column("top_namesake", namesake))

    @classmethod
    def from_table(cls, table: pa.Table) -> Ranked:
        top = table["top_weight"].combine_chunks()
        k = top.type.list_size
        flat = _np(pc.list_flatten(top), np.nan, np.float64).reshape(-1, k)
        namesake = _np(pc.list_flatten(table["top_namesake"].combine_chunks()), False,
                       bool).reshape(-1, k)
        return cls(best=table.select(list(BEST_COLUMNS)), top=flat, namesake=namesake,
                   count=_np(table["candidate_count"], 0, np.int64))


def rank(searched: pa.Table, parts: Iterable[pa.Table], model: MatchModel) -> Ranked:
    """The shards' :func:`search_shard` outputs for ``searched``, folded one at a time
    in any order (memory: the searched rows, one part and the running choice), into each
    row's best candidate and best weights (:class:`Ranked`)."""
    n = searched.num_rows
    top_k = model.search.top_candidates
    state = _Choice(top_k, np.zeros(n, dtype=np.int64))
    for part in parts:
        state.fold(part)
    rank_of = state.compact()
    best = state.best[0]
    best_row = _np(best["row"], 0, np.int64)
    top = np.full((n, top_k), np.nan)
    top[state.top_row[0], rank_of] = state.top_weight[0]  # best first within each row
    namesake = np.zeros((n, top_k), dtype=bool)
    namesake[state.top_row[0], rank_of] = state.top_namesake[0]
    has = np.zeros(n, dtype=bool)
    has[best_row] = True
    at = np.full(n, -1, dtype=np.int64)
    at[best_row] = np.arange(best.num_rows)
    columns = []
    for name in BEST_COLUMNS:
        kind = PART_SCHEMA.field(name).type
        if not best.num_rows:
            columns.append(pa.nulls(n, kind))
            continue
        values = pc.take(best[name], pa.array(np.maximum(at, 0), pa.int64()))
        columns.append(pc.if_else(pa.array(has), values, pa.scalar(None, kind)).cast(kind))
    return Ranked(best=pa.table(columns, names=list(BEST_COLUMNS)), top=top,
                  namesake=namesake, count=state.count)


def namesake_evidence(ranked: Ranked) -> NamesakeEvidence:
    """What the run's namesake prior is estimated from, for these rows."""
    evidence = NamesakeEvidence()
    evidence.add(ranked.top, ranked.namesake)
    return evidence


def namesake_prior(evidence: NamesakeEvidence, registry_share: float | None,
                   settings: MatchingSettings) -> NamesakePrior:
    """The run's namesake prior (``matching.namesakes``); uniform when switched off or
    when the registry's share is unknown."""
    if not settings.namesake_prior or registry_share is None:
        return uniform_prior(rows=evidence.rows)
    return estimate_prior(evidence, registry_share, pseudo_rows=settings.namesake_prior_rows)


def decide(searched: pa.Table, ranked: Ranked, prior: NamesakePrior,
           settings: MatchingSettings) -> pa.Table:
    """The search's columns of every searched row (:data:`RESULT_SCHEMA`, in the order
    of ``searched``): each row's best candidate with the run's namesake prior in its
    weight (``id_weight`` is the prior), the row's probability (its candidates compete),
    the margin over the next and whether it is offered, or a suggested correction."""
    n = searched.num_rows
    top = ranked.top
    has = ~np.isnan(top[:, 0])
    top = top + np.where(np.isnan(top), 0.0, prior.bits(ranked.namesake))
    probability = np.full(n, np.nan)
    probability[has] = row_probability(top[has, 0], top[has])
    margin = np.full(n, np.nan)
    runner_up = np.max(np.where(np.isnan(top[has, 1:]), -np.inf, top[has, 1:]), axis=1,
                       initial=-np.inf)
    margin[has] = top[has, 0] - runner_up  # inf: no runner-up
    best = ranked.best
    prior_bits = np.where(has, top[:, 0] - ranked.top[:, 0], 0.0)

    def column(name: str) -> pa.Array:
        return best[name].combine_chunks()

    def floats(values: np.ndarray) -> pa.Array:
        known = ~np.isnan(values)
        return pa.array(np.where(known, values, 0.0), pa.float64(), mask=~known)

    def shifted(name: str) -> np.ndarray:
        return _np(column(name), np.nan, np.float64) + prior_bits

    clear = has & (probability >= settings.suggest_min_probability) \
        & (margin >= settings.suggest_min_margin_bits)
    citizen = column("citizen_id")
    candidate = pc.if_else(pa.array(clear), citizen, pa.scalar(None, pa.string()))
    name_level = _np(column("name_level"), NameLevel.MISSING, np.int64)
    dob_level = _np(column("dob_level"), 0, np.int64)
    doc_level = _np(column("doc_level"), DocLevel.MISSING, np.int64)
    # The number was mistyped: a well-formed CCCD one digit or one swap from the
    # candidate's, whose name and date of birth agree, so the telco only has to correct
    # the number. (A malformed number, or one further away, stays a candidate.)
    well_formed_cccd = as_bool_mask(searched["id_valid"]) \
        & as_bool_mask(pc.equal(searched["id_type"], "CCCD"))
    by_number = clear & well_formed_cccd \
        & np.isin(doc_level, [int(DocLevel.ONE_SUBSTITUTION), int(DocLevel.TRANSPOSITION)]) \
        & (name_level >= int(NameLevel[settings.near_miss_min_name_level])) \
        & np.isin(dob_level, [int(x) for x in DOB_AGREEING_LEVELS])
    suggested = pc.if_else(pa.array(by_number), citizen, pa.scalar(None, pa.string()))

    # Without a candidate a row keeps what the document match gave it (nothing compared).
    missing_levels = {"name_level": int(NameLevel.MISSING), "dob_level": 0, "gender_level": 0}
    columns: dict[str, pa.Array] = {}
    for name in LEVEL_COLUMNS:
        values = column(name)
        if name in missing_levels:
            values = pc.fill_null(values, pa.scalar(missing_levels[name], pa.int8()))
        columns[name] = values
    columns["name_score"] = pc.fill_null(column("name_score"), np.nan)
    columns["name_frequency"] = column("name_frequency")
    for name in WEIGHT_COLUMNS:
        columns[name] = column(name)
    match_weight = shifted("match_weight")
    columns.update({
        "id_weight": floats(shifted("id_weight")),
        "match_weight": floats(match_weight),
        "match_probability": floats(np.where(has, probability_of(match_weight), np.nan)),
        "candidate_citizen_id": candidate,
        "candidate_probability": floats(probability),
        # 999 bits: the best candidate has no runner-up.
        "candidate_margin_bits": floats(np.where(np.isinf(margin), 999.0, margin)),
        "candidate_count": pa.array(ranked.count, pa.int32()),
        "suggested_citizen_id": suggested,
    })
    return pa.table([columns[f.name].cast(f.type) for f in RESULT_SCHEMA], schema=RESULT_SCHEMA)


def choose(searched: pa.Table, parts: Iterable[pa.Table], model: MatchModel,
           settings: MatchingSettings, registry_share: float | None = None) -> pa.Table:
    """:func:`rank` and :func:`decide` for rows that are the whole run (a registry
    searched whole): the namesake prior estimated from them alone. ``registry_share``:
    the registry's share of citizens with a namesake (None: the prior stays uniform)."""
    ranked = rank(searched, parts, model)
    prior = namesake_prior(namesake_evidence(ranked), registry_share, settings)
    return decide(searched, ranked, prior, settings)


def registry_namesake_share(block_sizes: pa.Array | pa.ChunkedArray) -> tuple[int, int]:
    """Citizens with a namesake, and citizens, of a registry table (its
    :data:`NAMESAKE_BLOCK` column)."""
    return int(has_namesake(_np(block_sizes, 0, np.int64)).sum()), len(block_sizes)


def apply_search(matched: pa.Table, rows: np.ndarray, found: pa.Table) -> pa.Table:
    """``matched`` (the document match's output) with the search's columns of ``rows``
    replaced by ``found`` (:func:`choose`'s output, one row per entry of ``rows``)."""
    if not len(rows):
        return matched
    at = np.full(matched.num_rows, -1, dtype=np.int64)
    at[rows] = np.arange(len(rows))
    use = pa.array(at >= 0)
    index = pa.array(np.maximum(at, 0), pa.int64())
    for name in RESULT_SCHEMA.names:
        i = matched.schema.get_field_index(name)
        kind = matched.schema.field(i).type
        replaced = pc.if_else(use, pc.take(found[name], index).cast(kind),
                              matched[name].combine_chunks())
        matched = matched.set_column(i, name, replaced)
    return matched


def search(rows: pa.Table, registry: pa.Table, model: MatchModel, settings: MatchingSettings,
           statistics: RegistryStatistics | None = None,
           previous_holder: pa.Array | None = None) -> pa.Table:
    """:func:`choose` over one registry table taken as a single shard (a small registry,
    tests, the model estimate): the same result as the sharded steps."""
    searched = searched_rows(rows, previous_holder)
    table = registry_search_table(registry)
    statistics = statistics or registry_statistics(registry["date_of_birth"],
                                                   registry["dob_precision"])
    part = search_shard(searched, table, model, settings, statistics)
    namesakes, citizens = registry_namesake_share(table[NAMESAKE_BLOCK])
    return choose(searched, [part], model, settings, namesakes / max(citizens, 1))


# --- the run's steps (thin I/O) -----------------------------------------------------------
def previous_holder_table(output_dir: Path, run_date: str, msisdn: pa.Array) -> pa.Table:
    """(msisdn, holder): the numbers among ``msisdn`` that had exactly one verified holder
    (``holder_citizen_id``) in the latest run published in ``output_dir`` before
    ``run_date``. Reads only those numbers' rows of that run (a filter pushed down to its
    results)."""
    none = pa.table({"msisdn": pa.array([], pa.string()), "holder": pa.array([], pa.string())})
    previous = RunResults.latest(output_dir, before=run_date)
    wanted = pc.unique(pc.drop_null(as_string_array(msisdn)))
    if previous is None or not len(wanted) \
            or not {"msisdn", "holder_citizen_id"} <= set(previous.schema.names):
        return none
    rows = previous.read(columns=["msisdn", "holder_citizen_id"],
                         filter=pc.field("msisdn").isin(wanted)
                         & pc.field("holder_citizen_id").is_valid())
    if not rows.num_rows:
        return none
    grouped = rows.group_by("msisdn").aggregate([("holder_citizen_id", "min"),
                                                 ("holder_citizen_id", "max")])
    one = grouped.filter(pc.equal(grouped["holder_citizen_id_min"],
                                  grouped["holder_citizen_id_max"]))
    return pa.table({"msisdn": one["msisdn"].cast(pa.string()),
                     "holder": one["holder_citizen_id_min"].cast(pa.string())})


def _holders_of(msisdn: pa.Array, holders: pa.Table) -> pa.Array:
    return pc.take(holders["holder"], pc.index_in(as_string_array(msisdn),
                                                  value_set=holders["msisdn"]))


def previous_holders(output_dir: Path, run_date: str, msisdn: pa.Array) -> pa.Array:
    """Per number, its verified holder in the latest run published in ``output_dir``
    before ``run_date`` (:func:`previous_holder_table`); null when it had none, or
    several."""
    return _holders_of(msisdn, previous_holder_table(output_dir, run_date, msisdn))


def _unlinked() -> pc.Expression:
    return pc.field("matched_citizen_id").is_null() & (
        pc.field("id_type").is_null() | (pc.field("id_type") != "PASSPORT"))


_UNLINKED_COLUMNS = ("matched_citizen_id", "id_type")  # what _unlinked reads


def _normalised(columns: Sequence[str]) -> pa.Schema:
    return pa.schema([NORMALISED_SCHEMA.field(c) for c in columns])


def _searched_of_shard(paths: RunPaths, k: int, columns: Sequence[str]) -> pa.Table:
    """Subscription shard ``k``'s rows whose document led nobody, in (telco, source_row)
    order (``columns``, typed as normalised)."""
    return read_arrow(paths.matched_shard(k), columns, _unlinked(), _UNLINKED_COLUMNS) \
        .cast(_normalised(columns)) \
        .sort_by([("telco", "ascending"), ("source_row", "ascending")])


# The smallest batch collect_searched makes to give the routing a second task.
MIN_SPLIT_BATCH_ROWS = 10_000


def collect_searched(config: RunConfig, paths: RunPaths) -> list[dict]:
    """Every row of the run whose document led nobody (all telcos, all shards), shard
    after shard and in (telco, source_row) order within each, as :func:`searched_rows`
    gives them; cut into batches of ``matching.search_batch_rows`` rows, each written
    once to ``paths.searched_batch(b)``, with ``paths.search_plan`` (atomically:
    concurrent writers write the same rows). Returns the routing tasks, one per batch
    (:func:`search_tasks`).

    Memory: one shard's searched rows and one batch, plus what spans the run, compact:
    the rows per (document, name) of the searched rows that carry a number, and the
    previous run's holders of the searched numbers. A first pass over the shards counts
    those and keeps each shard's searched rows in a working file, a second writes the
    batches from those files."""
    plan = shard_plan(paths)
    tallies, numbers, shard_rows = [], [], []
    for k in range(plan["shards"]):
        part = _searched_of_shard(paths, k, SEARCHED_COLUMNS)
        write_parquet(part, paths.unlinked_rows(k))  # read back in the second pass
        tallies.append(document_tallies(part["id_type"], part["id_number"], part["full_name"]))
        numbers.append(pc.unique(pc.drop_null(part["msisdn"].combine_chunks())))
        shard_rows.append(part.num_rows)
    per_document = _per_document(tallies) if tallies else None
    holders = previous_holder_table(
        paths.output_dir, paths.run_date,
        pa.concat_arrays(numbers) if numbers else pa.array([], pa.string()))
    del tallies, numbers
    total = sum(shard_rows)
    # At least two routing tasks when there are rows enough, so a small run's routing
    # keeps two workers busy (results do not depend on the batches).
    size = min(config.matching.search_batch_rows,
               max(MIN_SPLIT_BATCH_ROWS, -(-total // 2)))
    batches = max(1, -(-total // size))
    pending: list[pa.Table] = []
    written = with_holder = 0

    def flush(rows: pa.Table) -> None:
        nonlocal written
        write_parquet(rows, paths.searched_batch(written))
        written += 1

    for k in range(plan["shards"]):
        rows = pq.read_table(paths.unlinked_rows(k))
        before = _holders_of(rows["msisdn"], holders)
        with_holder += len(before) - before.null_count
        pending.append(searched_rows(rows, before, per_document))
        held = sum(t.num_rows for t in pending)
        if held >= size:
            table = pa.concat_tables(pending).combine_chunks()
            full = held // size * size
            for start in range(0, full, size):
                flush(table.slice(start, size))
            pending = [table.slice(full)] if held > full else []
    if pending or not written:
        flush(pa.concat_tables(pending) if pending
              else searched_rows(_normalised(SEARCHED_COLUMNS).empty_table()))
    if written != batches:
        raise RuntimeError(f"search: {written} batches written, {batches} planned")
    for k in range(plan["shards"]):
        paths.unlinked_rows(k).unlink()
    write_json({"rows": total, "batch_rows": size, "batches": batches,
                "shard_rows": shard_rows}, paths.search_plan)
    log.info("search: %d rows whose document leads nobody (%d batch(es)), %d with a "
             "verified holder of their number in the previous run", total, batches,
             with_holder)
    return search_tasks(batches)


def search_tasks(batches: int) -> list[dict]:
    """One routing task per batch of searched rows (:func:`route_search_batch`),
    JSON-serialisable (mapped tasks)."""
    return [{"batch": b} for b in range(batches)]


def partition_tasks(snapshot_partitions: Sequence[int]) -> list[dict]:
    """One search task per partition of the registry's search layout that holds citizens
    (:func:`search_partition`), JSON-serialisable (mapped tasks)."""
    return [{"partition": int(p)} for p in snapshot_partitions]


def search_plan(config: RunConfig, paths: RunPaths) -> dict:
    """``paths.search_plan``, made by :func:`collect_searched` if it is not there yet."""
    if not paths.search_plan.exists():
        collect_searched(config, paths)
    return read_json(paths.search_plan)  # type: ignore[return-value]


# What a batch's routes say of a row in one partition: a citizen found through a number
# (ONE_EDIT), the number's previous holder (NONE), or only that the row's birth years
# lead there (ROUTE: no citizen yet; the partition's blocks decide).
ROUTE, HOLDER, ONE_EDIT = -1, 0, 1
ROUTES_SCHEMA = pa.schema([("partition", pa.int32()), ("row", pa.int32()),
                           ("position", pa.int32()), ("level", pa.int8())])
# Rows per row group of a batch's routes and of a partition's part: a reader's filter
# (one partition's routes, one batch's rows of a part) skips the other groups.
SEARCH_ROW_GROUP = 1 << 16


def batch_routes(searched: pa.Table, settings: MatchingSettings, numbers: Path,
                 partitions: int) -> pa.Table:
    """Where a batch's rows are searched (:data:`ROUTES_SCHEMA`, sorted by partition,
    row, position): every citizen found through the row's number one slip away, its
    repaired number or its previous holder (looked up in the registry's ``numbers``,
    ``registry.search_index``), and the partitions of the birth years its blocking keys
    carry (its date of birth's year, and the year its CCCD number encodes)."""
    inputs = _side_inputs(searched, settings)
    side = searched_side(**inputs, integer_keys=False)
    # Every number to look up, in one pass over the registry's numbers: the variants,
    # the repaired numbers that differ from the number as sent, the previous holders.
    variant_rows = side.variant_rows
    rows_12, values_12 = numbers_of_width(side.repaired, 12)
    repaired = side.repaired_changed[rows_12]
    rows_12, values_12 = rows_12[repaired], values_12[repaired]
    holder_rows, holder_values = numbers_of_width(searched["previous_holder"], 12)
    owner_rows = np.concatenate([variant_rows, rows_12, holder_rows])
    owner_level = np.concatenate([np.full(len(variant_rows) + len(rows_12), ONE_EDIT, np.int8),
                                  np.full(len(holder_rows), HOLDER, np.int8)])
    extra = np.concatenate([values_12, holder_values])
    order = np.argsort(extra, kind="stable")
    found = find_numbers(numbers, [
        (12, *side.variant_sorted[12]), (9, *side.variant_sorted[9]),
        (12, len(variant_rows) + order, extra[order])])
    # The years the rows' blocking keys carry: their date of birth's, their CCCD's.
    year, has_year, cccd_year, has_cccd_year = blocking_years(inputs["date_of_birth"],
                                                              inputs["id_birth_year"])
    n = searched.num_rows
    every = np.arange(n, dtype=np.int32)
    routes = pa.table({
        "partition": np.concatenate([found.partition,
                                     partition_of_year(year, has_year, partitions),
                                     partition_of_year(cccd_year, has_cccd_year, partitions)]),
        "row": np.concatenate([owner_rows[found.at].astype(np.int32), every, every]),
        "position": np.concatenate([found.position, np.full(2 * n, -1, np.int32)]),
        "level": np.concatenate([owner_level[found.at], np.full(2 * n, ROUTE, np.int8)]),
    }, schema=ROUTES_SCHEMA)
    routes = routes.filter(pc.greater_equal(routes["partition"], 0))
    return routes.group_by(ROUTES_SCHEMA.names, use_threads=False).aggregate([]) \
        .sort_by([(c, "ascending") for c in ROUTES_SCHEMA.names]).cast(ROUTES_SCHEMA)


def route_search_batch(config: RunConfig, paths: RunPaths, batch: int) -> dict:
    """One batch's routes (:func:`batch_routes`) to ``paths.search_routes(batch)`` (one
    mapped task each). Memory: the batch, its number variants and one row group of the
    registry's numbers."""
    snapshot = snapshot_of_run(paths)
    batches = search_plan(config, paths)["batches"]
    if not 0 <= batch < batches:
        raise ValueError(f"batch {batch} is not one of the run's {batches} search batches")
    searched = pq.read_table(paths.searched_batch(batch))
    if config.matching.candidate_search and searched.num_rows:
        routes = batch_routes(searched, config.matching, snapshot.search_numbers,
                              snapshot.search_partitions)
    else:
        routes = ROUTES_SCHEMA.empty_table()
    write_parquet(routes, paths.search_routes(batch), row_group_rows=SEARCH_ROW_GROUP)
    by_number = int(pc.sum(pc.greater_equal(routes["level"], ONE_EDIT)).as_py() or 0)
    log.info("search: batch %d: %d searched rows, %d citizens found through their "
             "numbers, routed to %d partition(s)", batch, searched.num_rows, by_number,
             len(pc.unique(routes["partition"])))
    return {"batch": batch, "searched": searched.num_rows, "by_number": by_number}


def _routed_levels(searched: pa.Table, routes: pa.Table, citizens: pa.Table,
                   index: RegistryIndex, settings: MatchingSettings,
                   side: CitizenSide | None = None) -> Iterator[PairLevels]:
    """The pairs of a batch's rows routed to one partition (``searched``: those rows;
    ``routes``: their entries, ``row`` renumbered to them), with their levels, a chunk
    of rows at a time (``side``: the partition's :class:`CitizenSide`)."""
    inputs = _side_inputs(searched, settings)
    parts = blocking_parts(inputs["full_name"], inputs["date_of_birth"],
                           inputs["dob_precision"], inputs["id_birth_year"], inputs["id_sex"])
    row = _np(routes["row"], 0, np.int64)
    position = _np(routes["position"], 0, np.int64)
    level = _np(routes["level"], ROUTE, np.int64)
    by_number, held = level == ONE_EDIT, level == HOLDER
    sizes = np.stack([_np(citizens[c], 0, np.int32) for c in BLOCK_COLUMNS], axis=1)
    plan = plan_routed(parts, index, max_block=settings.candidate_max_block,
                       registry_block_sizes=sizes, id_rows=row[by_number],
                       id_citizens=position[by_number], other_rows=row[held],
                       other_citizens=position[held])
    for start, stop in _chunks(plan.pair_counts(), SEARCH_CHUNK_PAIRS):
        pairs = plan.pairs(start, stop)
        pairs = CandidatePairs(pairs.row + start, pairs.citizen, pairs.id_level)
        if pairs.row.size:
            yield _levels(searched, citizens, pairs, settings, side)


def search_routed(searched: pa.Table, routes: pa.Table, citizens: pa.Table,
                  index: RegistryIndex, model: MatchModel, settings: MatchingSettings,
                  statistics: RegistryStatistics) -> Iterator[pa.Table]:
    """The candidates of searched rows within one partition of the registry's search
    layout (``citizens``: :func:`registry_search_table` of it, in registry order;
    ``index``: its index; ``routes``: the rows' entries for it from
    :func:`batch_routes`, ``row`` numbering ``searched``), scored: :data:`PART_SCHEMA`
    tables, a chunk of rows at a time, in row order. The partition's
    :class:`CitizenSide` is made once here for all the rows."""
    registry_row, in_order = _registry_rows(citizens)
    side = CitizenSide.of(citizens)
    for found in _routed_levels(searched, routes, citizens, index, settings, side):
        yield _scored(found, searched, citizens, model, settings, statistics, registry_row,
                      in_order)


def search_partition(config: RunConfig, paths: RunPaths, partition: int) -> dict:
    """Every batch's rows routed to one partition of the registry's search layout,
    scored against its citizens, to ``paths.search_part(partition)`` (one mapped task
    each; ``row`` counts from the first batch's first row).

    The rows routed here from every batch are searched together: the partition's side of
    the work (its blocks, its citizens' keys) is then done once per task, not once per
    batch, which made the search grow with the square of the run (batches × partition).
    Memory: the partition, one batch being read, and the rows routed here (about the
    searched rows × 1-2 years / partitions: ~100k at 30M subscriptions)."""
    snapshot = snapshot_of_run(paths)
    if partition not in snapshot.search_present:
        raise ValueError(f"partition {partition} is not one of the snapshot's search "
                         f"partitions {snapshot.search_present}")
    plan = search_plan(config, paths)
    model = load_model(config.matching)
    searched_rows_total = with_candidates = 0
    with AtomicParquetWriter(paths.search_part(partition), PART_SCHEMA,
                             row_group_rows=SEARCH_ROW_GROUP) as writer:
        if config.matching.candidate_search and plan["rows"]:
            citizens = registry_search_table(
                pq.read_table(snapshot.search_citizens(partition)))
            index = snapshot.search_index(partition)
            routed, routes_of, rows_of = [], [], []  # per batch, in batch order
            for b in range(plan["batches"]):
                routes = pq.read_table(paths.search_routes(b),
                                       filters=pc.field("partition") == partition)
                if not routes.num_rows:
                    continue
                rows, local = np.unique(_np(routes["row"], 0, np.int64), return_inverse=True)
                routed.append(pq.read_table(paths.searched_batch(b)).take(
                    pa.array(rows, pa.int64())))
                routes_of.append(routes.set_column(1, "row", pa.array(
                    (searched_rows_total + local).astype(np.int32))))
                rows_of.append(b * plan["batch_rows"] + rows)  # the run's row numbers
                searched_rows_total += len(rows)
            if routed:
                rows = np.concatenate(rows_of)
                for part in search_routed(pa.concat_tables(routed), pa.concat_tables(routes_of),
                                          citizens, index, model, config.matching,
                                          snapshot.statistics):
                    at = _np(part["row"], 0, np.int64)
                    part = part.set_column(0, "row", pa.array(rows[at], pa.int64()))
                    with_candidates += part.num_rows
                    writer.write(part)
        writer.close(PART_SCHEMA)
    log.info("search: partition %d: %d routed rows, %d with candidates", partition,
             searched_rows_total, with_candidates)
    return {"partition": partition, "routed": searched_rows_total,
            "rows_with_candidates": with_candidates}


CANDIDATE_KEYS = ("telco", "source_row")


def write_candidates(config: RunConfig, paths: RunPaths, k: int, searched: pa.Table,
                     found: pa.Table) -> int:
    """Subscription shard ``k``'s searched rows' (telco, source_row) and search columns
    (``found``'s, one row per row of ``searched``, typed as the matched shard's) in
    (telco, source_row) order, to ``paths.candidates(k)``: only the few columns the search
    decides, read and written, not every column of the shard (``flag_shard`` puts them
    in place). Returns the rows with a candidate."""
    schema = arrow_schema(paths.matched_shard(k))
    rows = read_arrow(paths.matched_shard(k), CANDIDATE_KEYS, _unlinked(), _UNLINKED_COLUMNS)
    rows = rows.sort_by([(c, "ascending") for c in CANDIDATE_KEYS])
    at = row_positions(rows, searched) if searched.num_rows else np.zeros(0, np.int64)
    if rows.num_rows != searched.num_rows or (at < 0).any():
        raise RuntimeError(f"shard {k}: the searched rows changed under the search "
                           "(rerun the whole date)")
    columns = {c: rows[c] for c in CANDIDATE_KEYS}
    with_candidate = 0
    if config.matching.candidate_search and rows.num_rows:
        mine = found.take(pa.array(at))
        columns.update({name: mine[name].cast(schema.field(name).type)
                        for name in RESULT_SCHEMA.names})
        with_candidate = int(pc.sum(pc.greater(mine["candidate_count"], 0)).as_py() or 0)
    table = pa.table(columns)
    # Without the search the rows keep what the document match gave them: no row.
    write_parquet(table if config.matching.candidate_search else table.slice(0, 0),
                  paths.candidates(k))
    return with_candidate


def _ranked_batches(config: RunConfig, paths: RunPaths, search: dict,
                    partitions: Sequence[int]) -> NamesakeEvidence:
    """First pass: per batch, its rows' best candidates (:func:`rank` over the batch's
    rows of every partition's part, read one at a time: row groups of other batches are
    skipped) to ``paths.search_ranked``; returns the evidence for the namesake prior."""
    model = load_model(config.matching)
    size = search["batch_rows"]
    evidence = NamesakeEvidence()
    for b in range(search["batches"]):
        searched = pq.read_table(paths.searched_batch(b))
        lo = b * size
        wanted = (pc.field("row") >= lo) & (pc.field("row") < lo + size)

        def parts(lo: int = lo, wanted: pc.Expression = wanted) -> Iterator[pa.Table]:
            for p in partitions:
                part = pq.read_table(paths.search_part(p), filters=wanted)
                yield part.set_column(0, "row", pc.subtract(part["row"], lo))

        ranked = rank(searched, parts(), model)
        evidence.merge(namesake_evidence(ranked))
        write_arrow(ranked.to_table(), paths.search_ranked(b))
    return evidence


def registry_namesakes(snapshot_partitions: Sequence[Path]) -> float:
    """The registry's share of citizens with a namesake, over its search partitions (one
    column of one partition read at a time)."""
    namesakes = citizens = 0
    for path in snapshot_partitions:
        found, total = registry_namesake_share(
            pq.read_table(path, columns=[NAMESAKE_BLOCK])[NAMESAKE_BLOCK])
        namesakes, citizens = namesakes + found, citizens + total
    return namesakes / max(citizens, 1)


def _registry_share(snapshot: Snapshot, partitions: Sequence[int]) -> float:
    """The registry's share of citizens with a namesake: counted when the snapshot was
    prepared, or (a snapshot prepared before that) over its search partitions."""
    statistics = snapshot.statistics
    if statistics.with_namesake is not None:
        return statistics.with_namesake / max(statistics.citizens, 1)
    return registry_namesakes([snapshot.search_citizens(p) for p in partitions])


def _found(config: RunConfig, search: dict, paths: RunPaths, prior: NamesakePrior
           ) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Second pass: per batch, in order, its searched rows and their final columns
    (:func:`decide` with the run's namesake prior)."""
    for b in range(search["batches"]):
        searched = pq.read_table(paths.searched_batch(b))
        ranked = Ranked.from_table(read_arrow(paths.search_ranked(b)))
        yield searched, decide(searched, ranked, prior, config.matching)


def choose_candidates(config: RunConfig, paths: RunPaths) -> dict:
    """Fold every partition's part into the searched rows' final columns, a batch at
    a time, and write the search's columns of those rows back per subscription shard, in
    (telco, source_row) order (``paths.candidates``, :func:`write_candidates`).
    Memory: one batch's parts folded, and one subscription shard's searched rows."""
    plan, snapshot = shard_plan(paths), snapshot_of_run(paths)
    search = search_plan(config, paths)
    partitions = snapshot.search_present
    missing = [f"batch {b}" for b in range(search["batches"])
               if not paths.search_routes(b).exists()] \
        + [f"partition {p}" for p in partitions if not paths.search_part(p).exists()]
    if missing:
        raise RuntimeError(f"run {paths.run_date}: the candidate search did not run for "
                           f"{', '.join(missing)} (route_search_batch, search_partition)")
    if len(search["shard_rows"]) != plan["shards"]:
        raise RuntimeError(f"run {paths.run_date}: the searched rows were collected for "
                           "another shard plan (rerun the whole date)")
    evidence = _ranked_batches(config, paths, search, partitions)
    share = _registry_share(snapshot, partitions) if evidence.rows else None
    prior = namesake_prior(evidence, share, config.matching)
    write_json(prior.to_dict(), paths.search_prior)
    log.info("search: namesake prior from %d rows with a candidate: %.4f of their holders "
             "have a namesake (registry %.4f): %+.2f bits with, %+.2f bits without",
             prior.rows, prior.holder_share, prior.registry_share, prior.namesake_bits,
             prior.other_bits)
    found = _found(config, search, paths, prior)
    pending: list[tuple[pa.Table, pa.Table]] = []
    counts = {"searched": search["rows"], "with_candidate": 0, "candidates": 0,
              "suggestions": 0}
    for k, wanted in enumerate(search["shard_rows"]):
        # The searched rows come shard after shard: shard k's are the next ``wanted``.
        while sum(s.num_rows for s, _ in pending) < wanted:
            pending.append(next(found))
        # (No batch pending means no searched row in this shard: empty tables then.)
        searched_all = pa.concat_tables([s for s, _ in pending]) if pending else pa.table({})
        chosen_all = pa.concat_tables([f for _, f in pending]) if pending \
            else RESULT_SCHEMA.empty_table()
        searched, chosen = searched_all.slice(0, wanted), chosen_all.slice(0, wanted)
        counts["with_candidate"] += write_candidates(config, paths, k, searched, chosen)
        counts["candidates"] += wanted - chosen["candidate_citizen_id"].null_count
        counts["suggestions"] += wanted - chosen["suggested_citizen_id"].null_count
        pending = [(searched_all.slice(wanted), chosen_all.slice(wanted))] \
            if searched_all.num_rows > wanted else []
    log.info("search: %(searched)d rows searched, %(with_candidate)d with a candidate, "
             "%(candidates)d offered, %(suggestions)d suggestions", counts)
    return counts
