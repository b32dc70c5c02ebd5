"""Match stage: link every normalised subscription to the registry, compare and score.

Output (staging ``work/matched.parquet``): the normalised subscription plus
the linked citizen's id, how it was linked, the per-field comparison levels,
their Fellegi–Sunter weights, the match weight and probability, the band the
probability falls in (``VERIFY`` / ``REVIEW`` / ``MISMATCH``), and, for rows
whose document leads nowhere, the best candidate found by number variants and
blocking keys (``candidate_citizen_id``) and the citizen whose CCCD is one
typing error from the written one (``suggested_citizen_id``). docs/matching.md
explains the model and the bands.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching.candidates import (
    LINK_METHODS,
    BlockingParts,
    CandidatePairs,
    CandidatePlan,
    IdLinks,
    LinkMethod,
    best_candidates,
    blocking_parts,
    link_by_document,
    plan_candidates,
)
from matching.columns import as_bool_mask, take_labels
from matching.compare import DOB_AGREEING_LEVELS, compare_dates_of_birth, compare_genders
from matching.model import IdLevel, MatchModel, name_frequencies
from matching.names import NameComparison, NameComparisonSettings, NameLevel, compare_names
from pipelines.config import MatchingSettings

log = logging.getLogger("simrecon.match")

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_FILE = REPO_ROOT / "models" / "fellegi-sunter-v1.json"
BANDS = ("VERIFY", "REVIEW", "MISMATCH")


def name_settings(settings: MatchingSettings) -> NameComparisonSettings:
    return NameComparisonSettings(
        max_typo_edits=settings.name_max_typo_edits,
        partial_threshold=settings.name_partial_threshold,
    )


def model_path(settings: MatchingSettings) -> Path:
    """The configured model file; relative paths resolve against the repository root."""
    if not settings.model_file:
        return DEFAULT_MODEL_FILE
    path = Path(settings.model_file)
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> MatchModel:
    return MatchModel.load(path)


def load_model(settings: MatchingSettings) -> MatchModel:
    path = model_path(settings)
    if not path.exists():
        raise ValueError(f"{path}: match model file not found (matching.model_file)")
    return _load(str(path), path.stat().st_mtime)


def registry_name_tf(registry: pa.Table) -> np.ndarray:
    """Per citizen, the share of the registry with the same canonical name key.

    A prepared snapshot's shard carries it (``name_frequency``, counted over the whole
    registry when the snapshot was prepared), so a shard scores exactly like the whole
    registry; otherwise it is counted over ``registry`` itself.
    """
    if "name_frequency" in registry.column_names:
        return np.asarray(pc.fill_null(registry["name_frequency"], np.nan)
                          .to_numpy(zero_copy_only=False), dtype=np.float64)
    return name_frequencies(registry["full_name"].combine_chunks())[1]


def _registry_wide_ambiguity(links: IdLinks, registry: pa.Table) -> IdLinks:
    """A CMND is ambiguous when several citizens hold it. In a shard of a prepared
    snapshot the other holders may live in other shards: the snapshot's
    ``legacy_citizens`` (counted over the whole registry) says how many there are."""
    if "legacy_citizens" not in registry.column_names or registry.num_rows == 0:
        return links
    shared = np.asarray(pc.fill_null(registry["legacy_citizens"], 0)
                        .to_numpy(zero_copy_only=False)) > 1
    by_legacy = links.codes() == LINK_METHODS.index(LinkMethod.LEGACY_CMND)
    ambiguous = by_legacy & shared[np.where(by_legacy, links.registry_index, 0)]
    return IdLinks(registry_index=links.registry_index, method=links.method,
                   ambiguous=ambiguous, method_code=links.method_code)


def band_of(probability: np.ndarray, settings: MatchingSettings) -> np.ndarray:
    """VERIFY above ``verify_above``, MISMATCH below ``mismatch_below``, else REVIEW."""
    return np.asarray(BANDS, dtype=object)[band_codes(probability, settings)]


def band_codes(probability: np.ndarray, settings: MatchingSettings) -> np.ndarray:
    """:func:`band_of` as indices into ``BANDS`` (int8)."""
    code = np.full(len(probability), BANDS.index("REVIEW"), dtype=np.int8)
    code[probability >= settings.verify_above] = BANDS.index("VERIFY")
    code[probability < settings.mismatch_below] = BANDS.index("MISMATCH")
    return code


def _take(column: pa.Array | pa.ChunkedArray, index: np.ndarray) -> pa.Array:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return pc.take(column, pa.array(index, pa.int64()))


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


def _registry_keys(registry: pa.Table) -> BlockingParts:
    """What the registry's blocking keys are made of (``matching.candidates``)."""
    dob = registry["date_of_birth"].combine_chunks()
    return blocking_parts(registry["full_name"].combine_chunks(), dob,
                          registry["dob_precision"].combine_chunks(), pc.year(dob),
                          registry["gender"].combine_chunks())


@dataclass(frozen=True)
class SearchedPairs:
    """Candidate pairs of searched rows with their comparison levels (for scoring and EM)."""

    pairs: CandidatePairs
    names: NameComparison
    dob: np.ndarray
    gender: np.ndarray
    name_tf: np.ndarray


def search_candidates(subscriptions: pa.Table, rows: np.ndarray, registry: pa.Table,
                      settings: MatchingSettings, registry_tf: np.ndarray) -> SearchedPairs:
    """Candidates of ``rows`` (number variants and blocking keys) and their field levels."""
    plan = _plan(subscriptions, rows, registry, settings, _registry_keys(registry))
    return _compared(subscriptions, rows, registry, settings, registry_tf,
                     plan.pairs(0, len(rows)))


def _plan(subscriptions: pa.Table, rows: np.ndarray, registry: pa.Table,
          settings: MatchingSettings, registry_keys: BlockingParts) -> CandidatePlan:
    id_number = _take(subscriptions["id_number"], rows)
    valid = as_bool_mask(_take(subscriptions["id_valid"], rows))
    is_cccd = as_bool_mask(pc.equal(_take(subscriptions["id_type"], rows), "CCCD"))
    year, sex = _cccd_year_sex(id_number)
    return plan_candidates(
        full_name=_take(subscriptions["full_name"], rows),
        date_of_birth=_take(subscriptions["date_of_birth"], rows),
        dob_precision=_take(subscriptions["dob_precision"], rows),
        id_number=id_number, id_birth_year=year, id_sex=sex,
        registry_blocking=registry_keys,
        registry_citizen_id=registry["citizen_id"].combine_chunks(),
        near_miss=valid & is_cccd & settings.near_miss_search,
        max_block=settings.candidate_max_block,
    )


def _compared(subscriptions: pa.Table, rows: np.ndarray, registry: pa.Table,
              settings: MatchingSettings, registry_tf: np.ndarray, pairs: CandidatePairs,
              *, with_score: bool = True) -> SearchedPairs:
    """The field levels of candidate ``pairs`` (``pairs.row`` indexes ``rows``)."""
    at = rows[pairs.row]
    names = compare_names(_take(subscriptions["full_name"], at),
                          _take(registry["full_name"], pairs.citizen), name_settings(settings),
                          with_score=with_score)
    dob = compare_dates_of_birth(
        _take(subscriptions["date_of_birth"], at), _take(subscriptions["dob_precision"], at),
        _take(registry["date_of_birth"], pairs.citizen),
        _take(registry["dob_precision"], pairs.citizen))
    gender = compare_genders(_take(subscriptions["gender"], at),
                             _take(registry["gender"], pairs.citizen))
    return SearchedPairs(pairs=pairs, names=names, dob=dob, gender=gender,
                         name_tf=registry_tf[pairs.citizen])


# Candidate pairs compared at once: bounds memory (~250 bytes a pair while compared).
SEARCH_CHUNK_PAIRS = 4_000_000


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


def match(subscriptions: pa.Table, registry: pa.Table, settings: MatchingSettings,
          model: MatchModel | None = None) -> pa.Table:
    """Link, compare and score; see module docstring. ``model`` overrides the model file."""
    model = model or load_model(settings)
    names_cfg = name_settings(settings)
    n = subscriptions.num_rows
    links = link_by_document(
        subscriptions["id_type"].combine_chunks(),
        subscriptions["id_number"].combine_chunks(),
        subscriptions["id_valid"].combine_chunks(),
        registry["citizen_id"].combine_chunks(),
        registry["legacy_id"].combine_chunks(),
    )
    links = _registry_wide_ambiguity(links, registry)
    linked = links.registry_index >= 0
    take = pa.array(np.where(linked, links.registry_index, 0))
    nulls = pa.array(~linked)

    def registry_column(name: str) -> pa.Array:
        column = pc.take(registry[name].combine_chunks(), take) if registry.num_rows else \
            pa.nulls(n, registry.schema.field(name).type)
        return pc.if_else(nulls, pa.scalar(None, column.type), column)

    holder_name = registry_column("full_name")
    holder_dob = registry_column("date_of_birth")
    holder_dob_precision = registry_column("dob_precision")
    names = compare_names(subscriptions["full_name"].combine_chunks(), holder_name, names_cfg)
    dob_level = compare_dates_of_birth(
        subscriptions["date_of_birth"], subscriptions["dob_precision"],
        holder_dob, holder_dob_precision,
    )
    gender_level = compare_genders(subscriptions["gender"], registry_column("gender"))
    registry_tf = registry_name_tf(registry)
    name_tf = np.where(linked, registry_tf[np.where(linked, links.registry_index, 0)]
                       if registry.num_rows else np.nan, np.nan)
    method = links.codes()
    id_level = np.full(n, int(IdLevel.NONE), dtype=np.int8)
    id_level[method == LINK_METHODS.index(LinkMethod.CCCD)] = int(IdLevel.EXACT)
    id_level[method == LINK_METHODS.index(LinkMethod.LEGACY_CMND)] = int(IdLevel.LEGACY_CMND)
    scores = model.score(id_level=id_level, name_level=names.level, dob_level=dob_level,
                         gender_level=gender_level, name_tf=name_tf)
    weights = {
        "id_weight": scores.id_weight, "name_weight": scores.name_weight,
        "dob_weight": scores.dob_weight, "gender_weight": scores.gender_weight,
        "match_weight": scores.match_weight, "match_probability": scores.match_probability,
    }
    name_level, name_score = names.level.copy(), names.score.copy()

    # Candidate search for rows whose document leads to no citizen (passports excluded:
    # foreigners are not in the citizen registry).
    passport = as_bool_mask(pc.equal(subscriptions["id_type"], "PASSPORT"))
    searched = ~linked & ~passport
    candidate = np.full(n, -1, dtype=np.int64)
    suggested_index = np.full(n, -1, dtype=np.int64)
    candidate_probability = np.full(n, np.nan)
    candidate_margin = np.full(n, np.nan)
    candidate_count = np.zeros(n, dtype=np.int64)
    if settings.candidate_search and searched.any() and registry.num_rows:
        searched_rows = np.flatnonzero(searched)
        plan = _plan(subscriptions, searched_rows, registry, settings, _registry_keys(registry))
        for start, stop in _chunks(plan.pair_counts(), SEARCH_CHUNK_PAIRS):
            rows = searched_rows[start:stop]
            found = _compared(subscriptions, rows, registry, settings, registry_tf,
                              plan.pairs(start, stop), with_score=False)
            pairs, p_names, p_dob, p_gender = found.pairs, found.names, found.dob, found.gender
            p_scores = model.score(id_level=pairs.id_level, name_level=p_names.level,
                                   dob_level=p_dob, gender_level=p_gender,
                                   name_tf=found.name_tf)
            best = best_candidates(pairs, p_scores.match_weight, p_scores.match_probability,
                                   len(rows))
            clear = (best.citizen >= 0) & (best.probability >= settings.suggest_min_probability) \
                & (best.margin >= settings.suggest_min_margin_bits)
            candidate[rows[clear]] = best.citizen[clear]
            candidate_probability[rows] = np.where(best.citizen >= 0, best.probability, np.nan)
            candidate_margin[rows] = np.where(best.citizen >= 0, best.margin, np.nan)
            candidate_count[rows] = best.count
            # Explain each searched row by its best candidate (the document explains none).
            assert best.pair is not None
            first = best.pair[best.pair >= 0]  # the best pair of each row, rows ascending
            at = rows[pairs.row[first]]
            for key, values in (("id_weight", p_scores.id_weight),
                                ("name_weight", p_scores.name_weight),
                                ("dob_weight", p_scores.dob_weight),
                                ("gender_weight", p_scores.gender_weight),
                                ("match_weight", p_scores.match_weight),
                                ("match_probability", p_scores.match_probability)):
                weights[key][at] = values[first]
            name_level[at] = p_names.level[first]
            # The score of the best candidate only (scoring every pair would be wasted).
            name_score[at] = compare_names(
                _take(subscriptions["full_name"], at),
                _take(registry["full_name"], pairs.citizen[first]), names_cfg).score
            dob_level[at], gender_level[at] = p_dob[first], p_gender[first]
            id_level[at] = pairs.id_level[first]
            name_tf[at] = found.name_tf[first]
            # The number was mistyped: a well-formed CCCD one edit from the candidate's,
            # whose name and date of birth agree, so the telco only has to correct the
            # number. (A malformed number repaired from lookalike letters stays a candidate.)
            agree = (name_level[rows] >= int(NameLevel[settings.near_miss_min_name_level])) \
                & np.isin(dob_level[rows], [int(x) for x in DOB_AGREEING_LEVELS])
            well_formed_cccd = as_bool_mask(_take(subscriptions["id_valid"], rows)) \
                & as_bool_mask(pc.equal(_take(subscriptions["id_type"], rows), "CCCD"))
            by_number = clear & (best.id_level == int(IdLevel.ONE_EDIT)) & agree \
                & well_formed_cccd & (best.citizen >= 0)
            suggested_index[rows[by_number]] = best.citizen[by_number]

    explained = linked | (candidate_count > 0)
    # A CMND shared by several citizens (the Bà Rịa–Vũng Tàu / Đồng Nai collision) names
    # nobody in particular: its scores are kept, but it gets no band and no holder.
    judged = linked & ~links.ambiguous
    band = np.where(judged, band_codes(weights["match_probability"], settings), -1)
    holder = judged & (band == BANDS.index("VERIFY"))

    def citizen_ids(index: np.ndarray) -> pa.Array:
        has = index >= 0
        if not has.any():
            return pa.nulls(n, pa.string())
        ids_ = pc.take(registry["citizen_id"].combine_chunks(), pa.array(np.where(has, index, 0)))
        return pc.if_else(pa.array(has), ids_, pa.scalar(None, pa.string()))

    def float_column(values: np.ndarray, mask: np.ndarray) -> pa.Array:
        return pa.array(np.where(mask, values, 0.0), pa.float64(), mask=~mask)

    matched = subscriptions.append_column("matched_citizen_id", registry_column("citizen_id"))
    for name, column in (
        ("link_method", take_labels(method, LINK_METHODS)),
        ("link_ambiguous", pa.array(links.ambiguous)),
        ("name_level", pa.array(name_level, pa.int8())),
        ("name_score", pa.array(name_score, pa.float64())),
        ("dob_level", pa.array(dob_level, pa.int8())),
        ("gender_level", pa.array(gender_level, pa.int8())),
        ("id_level", pa.array(np.where(explained, id_level, 0), pa.int8(), mask=~explained)),
        ("name_frequency", float_column(np.nan_to_num(name_tf),
                                        explained & np.isfinite(name_tf))),
        *((key, float_column(values, explained)) for key, values in weights.items()),
        ("match_band", take_labels(band, BANDS)),
        ("holder_citizen_id", citizen_ids(np.where(holder, links.registry_index, -1))),
        ("candidate_citizen_id", citizen_ids(candidate)),
        ("candidate_probability", float_column(np.nan_to_num(candidate_probability),
                                               np.isfinite(candidate_probability))),
        # 999 bits: the best candidate has no runner-up.
        ("candidate_margin_bits", float_column(
            np.nan_to_num(candidate_margin, posinf=999.0),
            ~np.isnan(candidate_margin))),
        ("candidate_count", pa.array(candidate_count, pa.int32())),
        ("suggested_citizen_id", citizen_ids(suggested_index)),
        ("model_version", pa.repeat(pa.scalar(model.version, pa.string()), n)),
        ("holder_date_of_birth", holder_dob),
        ("holder_date_of_death", registry_column("date_of_death")),
    ):
        matched = matched.append_column(name, column)
    log.info("match: %d subscriptions, %d linked, %d in the review band, %d candidates, "
             "%d suggestions (model %s)", n, int(linked.sum()),
             int((band == BANDS.index("REVIEW")).sum()),
             int((candidate >= 0).sum()), int((suggested_index >= 0).sum()), model.version)
    return matched
