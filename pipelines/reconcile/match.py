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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching.candidates import (
    LINK_METHODS,
    IdLinks,
    LinkMethod,
    link_by_document,
)
from matching.columns import as_bool_mask, as_string_array, take_labels
from matching.compare import compare_dates_of_birth, compare_genders
from matching.model import (
    IdLevel,
    MatchModel,
    RegistryStatistics,
    birth_date_frequencies,
    name_frequencies,
    name_year_frequencies,
    registry_statistics,
    typo_frequencies,
)
from matching.names import NameLevel, compare_names
from pipelines.config import MatchingSettings
from pipelines.reconcile import search
from pipelines.reconcile.model_file import load_model
from pipelines.reconcile.search import name_settings

log = logging.getLogger("simrecon.match")

BANDS = ("VERIFY", "REVIEW", "MISMATCH")


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


def registry_typo_tf(registry: pa.Table) -> np.ndarray:
    """Per citizen, the share of the registry one typo from their name (the prepared
    snapshot's ``name_typo_frequency``, else counted over ``registry`` itself)."""
    if "name_typo_frequency" in registry.column_names:
        return np.asarray(pc.fill_null(registry["name_typo_frequency"], np.nan)
                          .to_numpy(zero_copy_only=False), dtype=np.float64)
    return typo_frequencies(registry["full_name"])


def registry_name_year_tf(registry: pa.Table) -> np.ndarray:
    """Per citizen, the share of citizens born in their year with their name (the prepared
    snapshot's ``name_year_frequency``, else counted over ``registry`` itself)."""
    if "name_year_frequency" in registry.column_names:
        return np.asarray(pc.fill_null(registry["name_year_frequency"], np.nan)
                          .to_numpy(zero_copy_only=False), dtype=np.float64)
    return name_year_frequencies(registry["full_name"], registry["date_of_birth"])


def registry_birth_date_tf(registry: pa.Table, statistics: RegistryStatistics
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Per citizen, the chance another citizen shares their date of birth and birth year
    (the prepared snapshot's ``dob_frequency``/``year_frequency``, else counted over
    ``registry`` itself, taken as the whole registry)."""
    if "dob_frequency" in registry.column_names:
        return tuple(np.asarray(pc.fill_null(registry[c], np.nan)  # type: ignore[return-value]
                                .to_numpy(zero_copy_only=False), dtype=np.float64)
                     for c in ("dob_frequency", "year_frequency"))
    return birth_date_frequencies(registry["date_of_birth"], registry["dob_precision"],
                                  statistics.birth_dates)


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


def match(subscriptions: pa.Table, registry: pa.Table, settings: MatchingSettings,
          model: MatchModel | None = None, *, statistics: RegistryStatistics | None = None,
          previous_holder: pa.Array | None = None) -> pa.Table:
    """Link, compare and score; see module docstring. ``model`` overrides the model file.

    ``registry`` is the whole registry or, with ``statistics`` (the whole registry's, from
    the prepared snapshot), one shard of it. With ``settings.candidate_search`` the rows
    whose document leads nobody are searched in ``registry`` as one piece (the sharded
    run searches one registry shard at a time instead: ``pipelines.reconcile.search``);
    ``previous_holder`` is then, per subscription, its number's verified holder in the
    previous run (null: none)."""
    model = model or load_model(settings)
    names_cfg = name_settings(settings)
    if statistics is None:
        statistics = registry_statistics(registry["date_of_birth"], registry["dob_precision"])
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
    # A null index takes a null: the unlinked rows' holder fields, in one pass.
    take = pa.array(np.where(linked, links.registry_index, 0), pa.int64(), mask=~linked)

    def registry_column(name: str) -> pa.Array:
        if not registry.num_rows:
            return pa.nulls(n, registry.schema.field(name).type)
        return pc.take(registry[name].combine_chunks(), take)

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
    dob_tf, year_tf = registry_birth_date_tf(registry, statistics)
    name_year_tf = registry_name_year_tf(registry)
    at = np.where(linked, links.registry_index, 0)
    dob_tf = np.where(linked, dob_tf[at], np.nan) if registry.num_rows else None
    year_tf = np.where(linked, year_tf[at], np.nan) if registry.num_rows else None
    name_year_tf = np.where(linked, name_year_tf[at], np.nan) if registry.num_rows else None
    typo_tf = None
    if (linked & (names.level == int(NameLevel.ONE_TYPO))).any():
        registry_typo = registry_typo_tf(registry)
        typo_tf = np.where(linked, registry_typo[np.where(linked, links.registry_index, 0)],
                           np.nan)
    method = links.codes()
    id_level = np.full(n, int(IdLevel.NONE), dtype=np.int8)
    id_level[method == LINK_METHODS.index(LinkMethod.CCCD)] = int(IdLevel.EXACT)
    id_level[method == LINK_METHODS.index(LinkMethod.LEGACY_CMND)] = int(IdLevel.LEGACY_CMND)
    scores = model.score(id_level=id_level, name_level=names.level, dob_level=dob_level,
                         gender_level=gender_level, name_tf=name_tf,
                         birth_dates=statistics.birth_dates, typo_tf=typo_tf,
                         dob_tf=dob_tf, year_tf=year_tf, name_year_tf=name_year_tf)

    # A CMND shared by several citizens (the Bà Rịa–Vũng Tàu / Đồng Nai collision) names
    # nobody in particular: its scores are kept, but it gets no band and no holder.
    judged = linked & ~links.ambiguous
    band = np.where(judged, band_codes(scores.match_probability, settings), -1)
    holder = judged & (band == BANDS.index("VERIFY"))

    def citizen_ids(index: np.ndarray) -> pa.Array:
        has = index >= 0
        if not has.any():
            return pa.nulls(n, pa.string())
        return pc.take(registry["citizen_id"].combine_chunks(),
                       pa.array(np.where(has, index, 0), pa.int64(), mask=~has))

    def float_column(values: np.ndarray, mask: np.ndarray) -> pa.Array:
        return pa.array(np.where(mask, values, 0.0), pa.float64(), mask=~mask)

    def int8_column(values: np.ndarray, mask: np.ndarray) -> pa.Array:
        return pa.array(np.where(mask, values, 0), pa.int8(), mask=~mask)

    nothing = np.zeros(n, dtype=bool)  # the search's own evidence: not for a document link
    matched = subscriptions.append_column("matched_citizen_id", registry_column("citizen_id"))
    for name, column in (
        ("link_method", take_labels(method, LINK_METHODS)),
        ("link_ambiguous", pa.array(links.ambiguous)),
        ("name_level", pa.array(names.level, pa.int8())),
        ("name_score", pa.array(names.score, pa.float64())),
        ("dob_level", pa.array(dob_level, pa.int8())),
        ("gender_level", pa.array(gender_level, pa.int8())),
        ("id_level", int8_column(id_level, linked)),
        ("doc_level", int8_column(id_level, nothing)),
        ("history_level", int8_column(id_level, nothing)),
        ("others_level", int8_column(id_level, nothing)),
        ("name_frequency", float_column(np.nan_to_num(name_tf), linked & np.isfinite(name_tf))),
        ("id_weight", float_column(scores.id_weight, linked)),
        ("doc_weight", float_column(scores.id_weight, nothing)),
        ("name_weight", float_column(scores.name_weight, linked)),
        ("dob_weight", float_column(scores.dob_weight, linked)),
        ("gender_weight", float_column(scores.gender_weight, linked)),
        ("history_weight", float_column(scores.id_weight, nothing)),
        ("others_weight", float_column(scores.id_weight, nothing)),
        ("match_weight", float_column(scores.match_weight, linked)),
        ("match_probability", float_column(scores.match_probability, linked)),
        ("match_band", take_labels(band, BANDS)),
        ("holder_citizen_id", citizen_ids(np.where(holder, links.registry_index, -1))),
        ("candidate_citizen_id", pa.nulls(n, pa.string())),
        ("candidate_probability", pa.nulls(n, pa.float64())),
        ("candidate_margin_bits", pa.nulls(n, pa.float64())),
        ("candidate_count", pa.array(np.zeros(n, dtype=np.int32), pa.int32())),
        ("suggested_citizen_id", pa.nulls(n, pa.string())),
        ("model_version", pa.repeat(pa.scalar(model.version, pa.string()), n)),
        ("holder_date_of_birth", holder_dob),
        ("holder_date_of_death", registry_column("date_of_death")),
    ):
        matched = matched.append_column(name, column)

    # Candidate search for rows whose document leads to no citizen (passports excluded:
    # foreigners are not in the citizen registry).
    passport = as_bool_mask(pc.equal(subscriptions["id_type"], "PASSPORT"))
    searched = np.flatnonzero(~linked & ~passport)
    candidates = suggestions = 0
    if settings.candidate_search and searched.size and registry.num_rows:
        before = None if previous_holder is None else \
            pc.take(as_string_array(previous_holder), pa.array(searched))
        found = search.search(subscriptions.take(pa.array(searched)), registry, model,
                              settings, statistics, before)
        matched = search.apply_search(matched, searched, found)
        candidates = len(found) - found["candidate_citizen_id"].null_count
        suggestions = len(found) - found["suggested_citizen_id"].null_count
    log.info("match: %d subscriptions, %d linked, %d in the review band, %d candidates, "
             "%d suggestions (model %s)", n, int(linked.sum()),
             int((band == BANDS.index("REVIEW")).sum()), candidates, suggestions,
             model.version)
    return matched
