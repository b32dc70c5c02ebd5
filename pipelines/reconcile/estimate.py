"""Re-estimating the Fellegi–Sunter model from a registry and telco exports.

``simrecon model estimate`` calls :func:`estimate_from_config`. Why these
estimators (docs/matching.md, "Re-estimating"):

* **u** (chance agreement): comparison levels of random pairs of registry
  citizens, who are different people by construction.
* **m** (agreement of the same person): document-linked pairs (exact CCCD or
  unique CMND) whose *other* fields agree, per field, so that a field's m is
  never estimated from pairs selected by that same field.
* **Document-link priors**: the share of matches among exact-CCCD and old-CMND
  links, by EM with m and u held fixed.
* **The search model** (rows whose document leads nobody): by EM over every
  candidate of every searched row, name/date/gender weights held fixed, the share
  of such rows whose holder is in the registry (per kind of number) and the m and u
  of the search's own evidence: the number against the candidate's, the number's
  history, the same number on other subscriptions (``matching.model``,
  ``estimate_search_model``). The registry's size enters the prior as ``N`` when
  scoring, so the model holds for a registry of any size.

Nothing is written to the run folders; logs carry counts only.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching.columns import as_bool_mask
from matching.compare import (
    DOB_AGREEING_LEVELS,
    DobLevel,
    GenderLevel,
    compare_dates_of_birth,
    compare_genders,
)
from matching.documents import DocLevel
from matching.model import (
    FIELDS,
    SEARCH_FIELDS,
    IdLevel,
    MatchModel,
    SearchKind,
    SearchModel,
    estimate_lambda,
    estimate_search_model,
    level_distribution,
    neutral_model,
    registry_statistics,
)
from matching.names import NameLevel, compare_names
from pipelines.config import MatchingSettings, load_config
from pipelines.intake import ingest, normalise
from pipelines.reconcile import search
from pipelines.reconcile.match import match, name_settings
from pipelines.registry.source import load_registry

log = logging.getLogger("simrecon.estimate")

DEFAULT_PRIORS = {"EXACT": 0.95, "LEGACY_CMND": 0.95}
MIN_PAIRS_FOR_PRIOR = 20


def _search_start() -> SearchModel:
    """Where EM starts: a slip of the number is for the candidate, another number
    against; holders mostly in the registry. (EM moves far from it; the start only picks
    which of the two classes is "the holder".)"""
    slips = {DocLevel.SAME_AFTER_REPAIR, DocLevel.ONE_SUBSTITUTION, DocLevel.TRANSPOSITION,
             DocLevel.ONE_DROPPED_OR_ADDED, DocLevel.TWO_EDITS}
    levels = [lv for lv in DocLevel if lv != DocLevel.MISSING]
    m_doc = {lv.name: (0.9 / len(slips)) if lv in slips else 0.1 / (len(levels) - len(slips))
             for lv in levels}
    u_doc = {lv.name: 1e-4 if lv in slips else (1 - 1e-4 * len(slips))
             / (len(levels) - len(slips)) for lv in levels}
    flat = {f: {lv.name: 1.0 / (len(enum) - 1) for lv in enum if lv.name != "MISSING"}
            for f, enum in SEARCH_FIELDS.items()}
    return SearchModel(
        holder_in_registry={k.name: 0.8 for k in SearchKind},
        m={"document": m_doc, "history": {"SAME_HOLDER": 0.9, "OTHER_HOLDER": 0.1},
           "others": flat["others"]},
        u={"document": u_doc, "history": {"SAME_HOLDER": 1e-4, "OTHER_HOLDER": 1 - 1e-4},
           "others": flat["others"]})


def random_pair_levels(registry: pa.Table, settings: MatchingSettings, *, pairs: int,
                       seed: int) -> dict[str, np.ndarray]:
    """Levels of ``pairs`` random pairs of distinct registry citizens (non-matches)."""
    n = registry.num_rows
    rng = np.random.default_rng(seed)
    left = rng.integers(0, n, pairs)
    right = rng.integers(0, n, pairs)
    keep = left != right
    left, right = pa.array(left[keep]), pa.array(right[keep])

    def side(column: str, index: pa.Array) -> pa.Array:
        return pc.take(registry[column].combine_chunks(), index)

    return {
        "name": compare_names(side("full_name", left), side("full_name", right),
                              name_settings(settings)).level,
        "dob": compare_dates_of_birth(side("date_of_birth", left), side("dob_precision", left),
                                      side("date_of_birth", right),
                                      side("dob_precision", right)),
        "gender": compare_genders(side("gender", left), side("gender", right)),
    }


def _agree(field: str, level: np.ndarray) -> np.ndarray:
    if field == "name":
        return level >= int(NameLevel.ONE_TYPO)
    if field == "dob":
        return np.isin(level, [int(x) for x in DOB_AGREEING_LEVELS])
    return level != int(GenderLevel.DIFFERENT)


def estimate_model(subscriptions: pa.Table, registry: pa.Table, settings: MatchingSettings, *,
                   version: str, random_pairs: int = 300_000, seed: int = 1,
                   source: str = "", previous_holder: pa.Array | None = None) -> MatchModel:
    """Estimate m, u, the document-link priors and the search model from one run's
    subscriptions and the whole registry (``previous_holder``: per subscription, its
    number's verified holder in the previous run, if any)."""
    u_levels = random_pair_levels(registry, settings, pairs=random_pairs, seed=seed)
    u = {f: level_distribution(u_levels[f], FIELDS[f]) for f in FIELDS}
    statistics = registry_statistics(registry["date_of_birth"], registry["dob_precision"])

    no_search = settings.model_copy(update={"candidate_search": False})
    matched = match(subscriptions, registry, no_search, model=neutral_model(),
                    statistics=statistics)
    linked = as_bool_mask(pc.is_valid(matched["matched_citizen_id"])) \
        & ~as_bool_mask(matched["link_ambiguous"])
    levels = {
        "name": np.asarray(matched["name_level"], dtype=np.int64)[linked],
        "dob": np.asarray(matched["dob_level"], dtype=np.int64)[linked],
        "gender": np.asarray(matched["gender_level"], dtype=np.int64)[linked],
    }
    agree = {f: _agree(f, lv) for f, lv in levels.items()}
    m = {}
    for f in FIELDS:
        others = np.logical_and.reduce([agree[g] for g in FIELDS if g != f])
        m[f] = level_distribution(levels[f][others], FIELDS[f])
    # A DOB "missing" on the subscription side is a rule breach, not a level to learn.
    m["dob"].pop(DobLevel.MISSING.name, None)

    id_level = np.asarray(pc.fill_null(matched["id_level"], 0), dtype=np.int64)[linked]
    tf = np.asarray(pc.fill_null(matched["name_frequency"], np.nan), dtype=np.float64)[linked]
    table = search.registry_search_table(registry)
    at = np.asarray(pc.fill_null(pc.index_in(matched["matched_citizen_id"],
                                             value_set=table["citizen_id"]), 0), np.int64)
    typo = np.asarray(table["name_typo_frequency"], np.float64)[at][linked]
    dob_tf = np.asarray(table["dob_frequency"], np.float64)[at][linked]
    year_tf = np.asarray(table["year_frequency"], np.float64)[at][linked]
    name_year_tf = np.asarray(table["name_year_frequency"], np.float64)[at][linked]
    flat = MatchModel(version=version, m=m, u=u, id_prior={k: 0.5 for k in DEFAULT_PRIORS})
    field_weight = flat.score(id_level=id_level, name_level=levels["name"],
                              dob_level=levels["dob"], gender_level=levels["gender"],
                              name_tf=tf, birth_dates=statistics.birth_dates,
                              typo_tf=typo, dob_tf=dob_tf, year_tf=year_tf,
                              name_year_tf=name_year_tf).match_weight
    priors = dict(DEFAULT_PRIORS)
    counts: dict[str, int] = {}
    for level in (IdLevel.EXACT, IdLevel.LEGACY_CMND):
        w = field_weight[id_level == int(level)]
        counts[level.name] = int(w.size)
        if w.size >= MIN_PAIRS_FOR_PRIOR:
            priors[level.name] = estimate_lambda(w)

    # The search model: EM over every candidate of every searched row.
    searched_at = np.flatnonzero(~as_bool_mask(pc.is_valid(matched["matched_citizen_id"]))
                                 & ~as_bool_mask(pc.equal(matched["id_type"], "PASSPORT")))
    before = None if previous_holder is None else pc.take(previous_holder,
                                                          pa.array(searched_at))
    searched = search.searched_rows(subscriptions.take(pa.array(searched_at)), before)
    pairs = {k: [] for k in ("row", "field", "doc", "history")}
    for found in search.pair_levels(searched, table, settings):
        scores = flat.score(id_level=np.zeros(len(found.pairs.row), np.int64),
                            name_level=found.names.level, dob_level=found.dob,
                            gender_level=found.gender, name_tf=found.name_tf,
                            birth_dates=statistics.birth_dates, typo_tf=found.typo_tf,
                            dob_tf=found.dob_tf, year_tf=found.year_tf,
                            name_year_tf=found.name_year_tf)
        pairs["row"].append(found.pairs.row)
        pairs["field"].append(scores.match_weight)
        pairs["doc"].append(found.doc)
        pairs["history"].append(found.history)
    joined = {k: np.concatenate(v) if v else np.empty(0) for k, v in pairs.items()}
    search_model, search_counts = estimate_search_model(
        row=joined["row"], field_weight=joined["field"], doc_level=joined["doc"],
        history_level=joined["history"],
        kind=np.asarray(searched["search_kind"], np.int64),
        others=np.asarray(searched["others_level"], np.int64),
        citizens=registry.num_rows, start=_search_start())

    metadata = {
        "estimated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "registry_citizens": registry.num_rows,
        "subscriptions": subscriptions.num_rows,
        "random_pairs_for_u": len(u_levels["name"]),
        "linked_pairs_for_m": int(linked.sum()),
        "pairs_for_link_priors": counts,
        "search": search_counts,
        "method": "u: random registry pairs; m: document-linked pairs whose other fields "
                  "agree; link priors: EM on the document links, m/u fixed; search: EM "
                  "over every candidate of every searched row (holder share per kind, "
                  "document/history/others m and u), name/date/gender weights fixed",
    }
    return MatchModel(version=version, m=m, u=u, id_prior=priors, search=search_model,
                      metadata=metadata)


def load_subscriptions(config_path: str, run_date: date) -> pa.Table:
    """Ingest and normalise every telco in memory (quarantined rows are left out)."""
    config = load_config(config_path)
    tables = []
    for mapping in config.telcos():
        rows = ingest.ingest(mapping).rows
        tables.append(normalise.normalise(rows, mapping, run_date=run_date).rows)
    return pa.concat_tables(tables) if tables else normalise.NORMALISED_SCHEMA.empty_table()


def estimate_from_config(config_path: str, run_date: date, out: Path, *, version: str,
                         random_pairs: int = 300_000, seed: int = 1) -> MatchModel:
    """The ``simrecon model estimate`` command: estimate from a configuration, write JSON."""
    config = load_config(config_path)
    subscriptions = load_subscriptions(config_path, run_date)
    registry = load_registry(config.registry_path)
    previous = search.previous_holders(config.output_path, run_date.isoformat(),
                                       subscriptions["msisdn"])
    model = estimate_model(subscriptions, registry, config.matching, version=version,
                           random_pairs=random_pairs, seed=seed,
                           source=f"{Path(config_path).name} as of {run_date.isoformat()}",
                           previous_holder=previous)
    model.save(out)
    log.info("model %s estimated from %d subscriptions and %d citizens: %s", version,
             subscriptions.num_rows, registry.num_rows, out)
    return model
