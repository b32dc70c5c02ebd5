"""Re-estimating the Fellegi–Sunter model from a registry and telco exports.

``simrecon model estimate`` calls :func:`estimate_from_config`. Why these
estimators (docs/matching.md, "Re-estimating"):

* **u** (chance agreement): comparison levels of random pairs of registry
  citizens, who are different people by construction.
* **m** (agreement of the same person): document-linked pairs (exact CCCD or
  unique CMND) whose *other* fields agree, per field, so that a field's m is
  never estimated from pairs selected by that same field.
* **ID-level priors**: the share of matches among pairs reached each way
  (document, one-edit number, blocking keys), by EM with m and u held fixed.

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
from matching.model import (
    FIELDS,
    IdLevel,
    MatchModel,
    estimate_lambda,
    level_distribution,
    name_frequencies,
    neutral_model,
)
from matching.names import NameLevel, compare_names
from pipelines.config import MatchingSettings, load_config
from pipelines.intake import ingest, normalise
from pipelines.reconcile.match import match, name_settings, search_candidates
from pipelines.registry.source import load_registry

log = logging.getLogger("simrecon.estimate")

DEFAULT_PRIORS = {"EXACT": 0.95, "LEGACY_CMND": 0.95, "ONE_EDIT": 0.5, "NONE": 0.05}
MIN_PAIRS_FOR_PRIOR = 20


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
                   source: str = "") -> MatchModel:
    """Estimate m, u and the ID-level priors from one run's subscriptions and registry."""
    u_levels = random_pair_levels(registry, settings, pairs=random_pairs, seed=seed)
    u = {f: level_distribution(u_levels[f], FIELDS[f]) for f in FIELDS}

    matched = match(subscriptions, registry, settings, model=neutral_model())
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
    no_prior = {lv.name: 0.5 for lv in IdLevel}
    flat = MatchModel(version=version, m=m, u=u, id_prior=no_prior)
    field_weight = flat.score(id_level=id_level, name_level=levels["name"],
                              dob_level=levels["dob"], gender_level=levels["gender"],
                              name_tf=tf).match_weight
    priors = dict(DEFAULT_PRIORS)
    counts: dict[str, int] = {}
    for level in (IdLevel.EXACT, IdLevel.LEGACY_CMND):
        w = field_weight[id_level == int(level)]
        counts[level.name] = int(w.size)
        if w.size >= MIN_PAIRS_FOR_PRIOR:
            priors[level.name] = estimate_lambda(w)

    searched = ~as_bool_mask(pc.is_valid(matched["matched_citizen_id"])) \
        & ~as_bool_mask(pc.equal(matched["id_type"], "PASSPORT"))
    _, registry_tf = name_frequencies(registry["full_name"].combine_chunks())
    found = search_candidates(subscriptions, np.flatnonzero(searched), registry, settings,
                              registry_tf)
    cand_weight = flat.score(id_level=found.pairs.id_level, name_level=found.names.level,
                             dob_level=found.dob, gender_level=found.gender,
                             name_tf=found.name_tf).match_weight
    for level in (IdLevel.ONE_EDIT, IdLevel.NONE):
        w = cand_weight[found.pairs.id_level == int(level)]
        counts[level.name] = int(w.size)
        if w.size >= MIN_PAIRS_FOR_PRIOR:
            priors[level.name] = estimate_lambda(w, start=DEFAULT_PRIORS[level.name])

    metadata = {
        "estimated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "registry_citizens": registry.num_rows,
        "subscriptions": subscriptions.num_rows,
        "random_pairs_for_u": len(u_levels["name"]),
        "linked_pairs_for_m": int(linked.sum()),
        "pairs_for_id_priors": counts,
        "method": "u: random registry pairs; m: document-linked pairs whose other fields "
                  "agree; id priors: EM on the pairs reached each way, m/u fixed",
    }
    return MatchModel(version=version, m=m, u=u, id_prior=priors, metadata=metadata)


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
    model = estimate_model(subscriptions, registry, config.matching, version=version,
                           random_pairs=random_pairs, seed=seed,
                           source=f"{Path(config_path).name} as of {run_date.isoformat()}")
    model.save(out)
    log.info("model %s estimated from %d subscriptions and %d citizens: %s", version,
             subscriptions.num_rows, registry.num_rows, out)
    return model
