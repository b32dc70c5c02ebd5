"""Fellegi–Sunter match model: a weight per comparison level, a probability per pair.

Why: a threshold on one similarity number cannot say *why* a subscription was
judged, and treats "Nguyễn Văn An" agreeing like a rare name agreeing. Here
every field's level (``matching.names.NameLevel``, ``compare.DobLevel``,
``compare.GenderLevel``, :class:`IdLevel`) carries a weight
``log2(m / u)``: ``m`` = P(level | same person), ``u`` = P(level | different
people). The weights add up (with the prior of the way the pair was found) to a
match weight, and ``p = 1 / (1 + 2**-weight)``. Each row keeps its weights, so
a report can draw the waterfall.

Term frequency: at the name levels where the canonical name keys are equal,
``u`` is the frequency of that canonical key in the registry instead of the
level's average, so a common name agreeing carries fewer bits than a rare one.

The ID number: a pair linked by the document (exact CCCD, old CMND) starts from
the log prior odds that a document link is the holder (Splink's "prior per
blocking rule"), estimated by EM with the field weights held fixed.

A searched row (its document leads nobody) is scored against every candidate
citizen by a different prior and more evidence (:class:`SearchModel`): the prior
odds that any one citizen of the registry is the row's holder, ``π / (1 - π) / N``
(``π`` the share of such rows whose holder is in the registry, per kind of row,
estimated by EM; ``N`` the registry's size, from the prepared snapshot), so the
probabilities stay calibrated as the registry grows; the number the row carries
compared with the candidate's (``matching.documents``); the number's history (its
verified holder in the previous run); and whether other subscriptions of the run
carry the same number. A row's candidates compete: the probability of the best is
its odds over one plus the odds of all its candidates (the holder is at most one
of them, or nobody in the registry).

The model is a JSON file (``models/``), versioned, re-estimated by
``simrecon model estimate`` (see docs/matching.md). Everything here is
vectorised: lookup tables indexed by level arrays.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from matching.columns import as_bool_mask
from matching.compare import DobLevel, GenderLevel
from matching.documents import DocLevel
from matching.names import NameLevel, canonical_name_key, sequence_and_canonical_keys

MODEL_FORMAT = "simrecon-fellegi-sunter/2"


class IdLevel(IntEnum):
    """How the candidate citizen was reached through the document number."""

    EXACT = 3  # the written CCCD is the citizen's citizen_id
    LEGACY_CMND = 2  # the written old CMND is the citizen's legacy_id
    ONE_EDIT = 1  # one digit substituted / two adjacent swapped from the citizen's CCCD
    NONE = 0  # found by blocking keys (date of birth, name), not by the number


ID_LEVEL_LABELS: dict[IdLevel, str] = {
    IdLevel.EXACT: "CCCD found in the registry",
    IdLevel.LEGACY_CMND: "old CMND found in the registry",
    IdLevel.ONE_EDIT: "number leads nobody; prior that any one citizen is the holder "
                      "(found through a one-slip variant of the number)",
    IdLevel.NONE: "number leads nobody; prior that any one citizen is the holder "
                  "(found by date of birth and name)",
}
# ID levels of a document link; the other two are searched pairs (SearchModel's prior).
LINK_ID_LEVELS = (IdLevel.EXACT, IdLevel.LEGACY_CMND)


class SearchKind(IntEnum):
    """What a searched row carries: the prior share of holders in the registry differs."""

    CMND_NOT_FOUND = 3  # a well-formed old CMND no citizen holds
    CCCD_NOT_FOUND = 2  # a well-formed CCCD no citizen holds
    MALFORMED = 1  # a number that is not a well-formed CCCD/CMND
    NO_NUMBER = 0


class HistoryLevel(IntEnum):
    """The subscription number's verified holder in the previous published run."""

    SAME_HOLDER = 2  # the candidate was this number's holder
    OTHER_HOLDER = 1  # someone else was
    MISSING = 0  # no verified holder of this number in the previous run


HISTORY_LEVEL_LABELS: dict[HistoryLevel, str] = {
    HistoryLevel.SAME_HOLDER: "this number's verified holder in the previous run",
    HistoryLevel.OTHER_HOLDER: "the number's verified holder in the previous run was "
                               "someone else",
    HistoryLevel.MISSING: "no verified holder in the previous run",
}


class OthersLevel(IntEnum):
    """Other subscriptions of the same run carrying the same (unfound) number."""

    OTHER_NAMES = 3  # some under another name
    SAME_NAME = 2  # all under the same name
    ALONE = 1  # no other subscription carries it
    MISSING = 0  # no number


OTHERS_LEVEL_LABELS: dict[OthersLevel, str] = {
    OthersLevel.OTHER_NAMES: "the same number is on other subscriptions under other names",
    OthersLevel.SAME_NAME: "the same number is on other subscriptions under this name",
    OthersLevel.ALONE: "no other subscription carries this number",
    OthersLevel.MISSING: "no number",
}

# Evidence only a searched pair has, estimated by EM over the searched rows' candidates.
SEARCH_FIELDS: dict[str, type[IntEnum]] = {"document": DocLevel, "history": HistoryLevel,
                                           "others": OthersLevel}

# The comparison fields and their level enums, in waterfall order.
FIELDS: dict[str, type[IntEnum]] = {"name": NameLevel, "dob": DobLevel, "gender": GenderLevel}
# Name levels at which the canonical keys are equal: there the term frequency replaces u.
TF_NAME_LEVELS: tuple[NameLevel, ...] = (
    NameLevel.EXACT, NameLevel.FOLDED, NameLevel.REORDERED, NameLevel.DROPPED_MIDDLE,
    NameLevel.SURNAME_VARIANT,
)
_MISSING = "MISSING"


def _log2_odds(p: float) -> float:
    return float(np.log2(p / (1.0 - p)))


def _check_levels(version: str, name: str, enum: type[IntEnum],
                  sides: tuple[Mapping[str, Mapping[str, float]], ...]) -> None:
    for side in sides:
        missing = [lv.name for lv in enum if lv.name not in side.get(name, {})
                   and lv.name != _MISSING]
        if missing:
            raise ValueError(f"model {version}: {name} lacks levels {missing}")
        bad = [k for k, v in side.get(name, {}).items() if not 0 < float(v) <= 1]
        if bad:
            raise ValueError(f"model {version}: {name} probabilities out of (0, 1]: {bad}")


def _weight_table(enum: type[IntEnum], m: Mapping[str, float], u: Mapping[str, float]
                  ) -> np.ndarray:
    """log2(m/u) per level value (index = level int); MISSING weighs 0 (no evidence)."""
    table = np.zeros(max(int(v) for v in enum) + 1)
    for level in enum:
        if level.name != _MISSING:
            table[int(level)] = np.log2(m[level.name] / u[level.name])
    return table


@dataclass(frozen=True)
class SearchModel:
    """What scores a searched row's candidates, besides name, date of birth and gender.

    ``holder_in_registry`` maps a :class:`SearchKind` name to π, the share of such rows
    whose holder is a registry citizen; the prior odds of one citizen are
    ``π / (1 - π) / N``. ``m``/``u`` map each of :data:`SEARCH_FIELDS` to its levels'
    probabilities among true and false candidates (``others`` is a property of the
    row: among rows whose holder is in the registry and rows whose holder is not).
    """

    holder_in_registry: Mapping[str, float]
    m: Mapping[str, Mapping[str, float]]
    u: Mapping[str, Mapping[str, float]]
    # Candidates of a row summed in its probability (the best ones: shard-independent).
    top_candidates: int = 8

    def check(self, version: str) -> None:
        for kind in SearchKind:
            p = self.holder_in_registry.get(kind.name)
            if p is None or not 0 < p < 1:
                raise ValueError(f"model {version}: search holder_in_registry[{kind.name}] "
                                 "must be in (0, 1)")
        for name, enum in SEARCH_FIELDS.items():
            _check_levels(version, name, enum, (self.m, self.u))
        if self.top_candidates < 2:
            raise ValueError(f"model {version}: search top_candidates must be >= 2")

    def level_weights(self, field_name: str) -> np.ndarray:
        return _weight_table(SEARCH_FIELDS[field_name], self.m[field_name], self.u[field_name])

    def prior_weights(self, citizens: int) -> np.ndarray:
        """log2 prior odds that one given citizen of ``citizens`` is the holder, per kind."""
        table = np.zeros(max(int(v) for v in SearchKind) + 1)
        for kind in SearchKind:
            table[int(kind)] = _log2_odds(self.holder_in_registry[kind.name]) \
                - float(np.log2(max(citizens, 1)))
        return table

    def to_dict(self) -> dict:
        return {"holder_in_registry": dict(self.holder_in_registry),
                "m": {f: dict(v) for f, v in self.m.items()},
                "u": {f: dict(v) for f, v in self.u.items()},
                "top_candidates": self.top_candidates}

    @classmethod
    def from_dict(cls, data: Mapping) -> SearchModel:
        return cls(holder_in_registry=data["holder_in_registry"], m=data["m"], u=data["u"],
                   top_candidates=int(data.get("top_candidates", 8)))


def neutral_search_model() -> SearchModel:
    """Every search weight 0 and π = 1/2: for computing levels before any estimate."""
    flat = {f: {lv.name: 0.5 for lv in enum if lv.name != _MISSING}
            for f, enum in SEARCH_FIELDS.items()}
    return SearchModel(holder_in_registry={k.name: 0.5 for k in SearchKind}, m=flat, u=flat)


@dataclass(frozen=True)
class MatchScores:
    """Per pair: each field's weight (bits), the total and the probability."""

    id_weight: np.ndarray
    name_weight: np.ndarray
    dob_weight: np.ndarray
    gender_weight: np.ndarray
    match_weight: np.ndarray
    match_probability: np.ndarray


@dataclass(frozen=True)
class SearchScores:
    """Per searched pair: :class:`MatchScores`' weights plus the search evidence. The
    ``id_weight`` is the prior that one citizen is the holder; ``match_probability``
    is the pair's alone (the row's candidates compete: see ``row_probabilities``)."""

    id_weight: np.ndarray
    doc_weight: np.ndarray
    name_weight: np.ndarray
    dob_weight: np.ndarray
    gender_weight: np.ndarray
    history_weight: np.ndarray
    others_weight: np.ndarray
    match_weight: np.ndarray
    match_probability: np.ndarray


def probability_of(weight: np.ndarray) -> np.ndarray:
    """``1 / (1 + 2^-weight)``, clipped to stay finite."""
    return 1.0 / (1.0 + np.exp2(-np.clip(weight, -60, 60)))


def row_probability(best: np.ndarray, top: np.ndarray) -> np.ndarray:
    """The probability that a row's best candidate is its holder: its odds over one
    (nobody in the registry) plus the odds of the row's best candidates.

    ``best``: the best weight (bits) per row; ``top``: (rows, k) weights of the row's k
    best candidates, best first, NaN where the row has fewer. Summed from the smallest
    odds up, relative to the best, in a fixed order: the same inputs give the same bits.
    """
    best = np.asarray(best, dtype=np.float64)
    top = np.asarray(top, dtype=np.float64)
    total = np.exp2(np.clip(-best, -1000, 1000))  # "nobody", relative to the best
    for j in range(top.shape[1] - 1, -1, -1):
        column = top[:, j]
        total = total + np.where(np.isnan(column), 0.0,
                                 np.exp2(np.clip(np.nan_to_num(column) - best, -1000, 0)))
    return 1.0 / total


@dataclass(frozen=True)
class BirthDateAgreement:
    """The chance that two different citizens share a date of birth, or a birth year,
    counted over the registry when its snapshot is prepared (``pipelines.registry``).
    When given, they are ``u`` of the date-of-birth levels EXACT and
    SAME_YEAR_ONE_SIDE_YEAR_ONLY instead of the model's averages, so the evidence of a
    birth date follows the registry actually searched."""

    same_date: float
    same_year: float


@dataclass(frozen=True)
class MatchModel:
    """m/u probabilities per field level, ID-level priors, term-frequency settings.

    ``m`` and ``u`` map field -> level name -> probability. ``id_prior`` maps
    an :data:`LINK_ID_LEVELS` name to the prior match probability of a document
    link. ``search`` scores the candidates of rows whose document leads nobody.
    ``tf_floor`` bounds the term-frequency u from below (a name seen once in a
    small registry is not evidence of infinite strength).
    """

    version: str
    m: Mapping[str, Mapping[str, float]]
    u: Mapping[str, Mapping[str, float]]
    id_prior: Mapping[str, float]
    search: SearchModel = field(default_factory=lambda: neutral_search_model())
    tf_floor: float = 1e-6
    max_name_tf_weight: float = 20.0
    metadata: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, enum in FIELDS.items():
            _check_levels(self.version, name, enum, (self.m, self.u))
        for level in LINK_ID_LEVELS:
            p = self.id_prior.get(level.name)
            if p is None or not 0 < p < 1:
                raise ValueError(f"model {self.version}: id_prior[{level.name}] must be in (0, 1)")
        self.search.check(self.version)

    # -- weights -------------------------------------------------------------------
    def level_weights(self, field_name: str) -> np.ndarray:
        """log2(m/u) per level value (index = level int); MISSING weighs 0 (no evidence)."""
        return _weight_table(FIELDS[field_name], self.m[field_name], self.u[field_name])

    def id_weights(self) -> np.ndarray:
        """Prior log odds of a document link per ID level (0 for the searched levels,
        whose prior is :meth:`SearchModel.prior_weights`)."""
        table = np.zeros(max(int(v) for v in IdLevel) + 1)
        for level in LINK_ID_LEVELS:
            table[int(level)] = _log2_odds(self.id_prior[level.name])
        return table

    def name_weights(self, level: np.ndarray, name_tf: np.ndarray | None,
                     typo_tf: np.ndarray | None = None, *,
                     name_year_tf: np.ndarray | None = None,
                     dob_level: np.ndarray | None = None) -> np.ndarray:
        """Name weight per pair; at the equal-key levels u is the name's frequency (among
        citizens born the same year, ``name_year_tf``, where the dates of birth are in
        the same year), at ONE_TYPO the share of citizens one typo from the name
        (``typo_frequencies``)."""
        level = np.asarray(level, dtype=np.int64)
        if name_tf is not None and name_year_tf is not None and dob_level is not None:
            same_year = np.isin(np.asarray(dob_level, np.int64),
                                [int(v) for v in SAME_YEAR_DOB_LEVELS])
            year_tf = np.asarray(name_year_tf, dtype=np.float64)
            name_tf = np.where(same_year & np.isfinite(year_tf), year_tf, name_tf)
        weight = self.level_weights("name")[level]
        if typo_tf is not None:
            typo = np.asarray(typo_tf, dtype=np.float64)
            use = (level == int(NameLevel.ONE_TYPO)) & np.isfinite(typo) & (typo > 0)
            if use.any():
                weight[use] = np.minimum(
                    np.log2(self.m["name"][NameLevel.ONE_TYPO.name]
                            / np.maximum(typo[use], self.tf_floor)),
                    self.max_name_tf_weight)
        if name_tf is None:
            return weight
        tf = np.asarray(name_tf, dtype=np.float64)
        use = np.isin(level, [int(v) for v in TF_NAME_LEVELS]) & np.isfinite(tf) & (tf > 0)
        if use.any():
            m = np.array([self.m["name"].get(lv.name, 1.0) if lv.name != _MISSING else 1.0
                          for lv in sorted(NameLevel, key=int)])[level[use]]
            tf_weight = np.log2(m / np.maximum(tf[use], self.tf_floor))
            weight[use] = np.minimum(tf_weight, self.max_name_tf_weight)
        return weight

    def dob_weights(self, level: np.ndarray, birth_dates: BirthDateAgreement | None = None,
                    dob_tf: np.ndarray | None = None,
                    year_tf: np.ndarray | None = None) -> np.ndarray:
        """Date-of-birth weight per pair. With the registry's :class:`BirthDateAgreement`
        a same date weighs ``log2(m / same_date)`` and a year agreeing with a year-only
        date ``log2(1 / same_year)`` (its m is the share of pairs with a year-only side,
        equally likely for the same and for different people); with the citizen's own
        ``dob_tf``/``year_tf`` (:func:`birth_date_frequencies`) the chance for *that*
        date or year replaces the average (a date in the years most citizens were born
        in is shared more often)."""
        table = self.level_weights("dob")
        if birth_dates is not None:
            table = table.copy()
            floor = self.tf_floor
            table[int(DobLevel.EXACT)] = np.log2(
                self.m["dob"][DobLevel.EXACT.name] / max(birth_dates.same_date, floor))
            table[int(DobLevel.SAME_YEAR_ONE_SIDE_YEAR_ONLY)] = np.log2(
                1.0 / max(birth_dates.same_year, floor))
        level = np.asarray(level, dtype=np.int64)
        weight = table[level]
        for value, tf, m in ((DobLevel.EXACT, dob_tf, self.m["dob"][DobLevel.EXACT.name]),
                             (DobLevel.SAME_YEAR_ONE_SIDE_YEAR_ONLY, year_tf, 1.0)):
            if tf is None:
                continue
            tf = np.asarray(tf, dtype=np.float64)
            use = (level == int(value)) & np.isfinite(tf) & (tf > 0)
            if use.any():
                weight[use] = np.log2(m / np.maximum(tf[use], self.tf_floor))
        return weight

    def score(self, *, id_level: np.ndarray, name_level: np.ndarray, dob_level: np.ndarray,
              gender_level: np.ndarray, name_tf: np.ndarray | None = None,
              birth_dates: BirthDateAgreement | None = None,
              typo_tf: np.ndarray | None = None, dob_tf: np.ndarray | None = None,
              year_tf: np.ndarray | None = None,
              name_year_tf: np.ndarray | None = None) -> MatchScores:
        """Weights and probability of each document-linked pair (vectorised lookups)."""
        id_w = self.id_weights()[np.asarray(id_level, dtype=np.int64)]
        name_w = self.name_weights(name_level, name_tf, typo_tf, name_year_tf=name_year_tf,
                                   dob_level=dob_level)
        dob_w = self.dob_weights(dob_level, birth_dates, dob_tf, year_tf)
        gender_w = self.level_weights("gender")[np.asarray(gender_level, dtype=np.int64)]
        total = id_w + name_w + dob_w + gender_w
        return MatchScores(id_weight=id_w, name_weight=name_w, dob_weight=dob_w,
                           gender_weight=gender_w, match_weight=total,
                           match_probability=probability_of(total))

    def score_search(self, *, citizens: int, kind: np.ndarray, doc_level: np.ndarray,
                     name_level: np.ndarray, dob_level: np.ndarray, gender_level: np.ndarray,
                     history_level: np.ndarray, others_level: np.ndarray,
                     name_tf: np.ndarray | None = None,
                     birth_dates: BirthDateAgreement | None = None,
                     typo_tf: np.ndarray | None = None, dob_tf: np.ndarray | None = None,
                     year_tf: np.ndarray | None = None,
                     name_year_tf: np.ndarray | None = None) -> SearchScores:
        """Weights of each (searched row, candidate) pair: the prior that one of
        ``citizens`` is the holder, the row's number against the candidate's, name, date
        of birth, gender, the number's history and the same number elsewhere."""
        search = self.search
        id_w = search.prior_weights(citizens)[np.asarray(kind, dtype=np.int64)]
        doc_w = search.level_weights("document")[np.asarray(doc_level, dtype=np.int64)]
        name_w = self.name_weights(name_level, name_tf, typo_tf, name_year_tf=name_year_tf,
                                   dob_level=dob_level)
        dob_w = self.dob_weights(dob_level, birth_dates, dob_tf, year_tf)
        gender_w = self.level_weights("gender")[np.asarray(gender_level, dtype=np.int64)]
        history_w = search.level_weights("history")[np.asarray(history_level, dtype=np.int64)]
        others_w = search.level_weights("others")[np.asarray(others_level, dtype=np.int64)]
        total = id_w + doc_w + name_w + dob_w + gender_w + history_w + others_w
        return SearchScores(id_weight=id_w, doc_weight=doc_w, name_weight=name_w,
                            dob_weight=dob_w, gender_weight=gender_w, history_weight=history_w,
                            others_weight=others_w, match_weight=total,
                            match_probability=probability_of(total))

    # -- file ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        weights = {f: {lv.name: round(float(self.level_weights(f)[int(lv)]), 4)
                       for lv in sorted(FIELDS[f], key=int, reverse=True)} for f in FIELDS}
        search_weights = {f: {lv.name: round(float(self.search.level_weights(f)[int(lv)]), 4)
                              for lv in sorted(SEARCH_FIELDS[f], key=int, reverse=True)}
                          for f in SEARCH_FIELDS}
        return {
            "format": MODEL_FORMAT,
            "version": self.version,
            "m": {f: dict(v) for f, v in self.m.items()},
            "u": {f: dict(v) for f, v in self.u.items()},
            "id_prior": {k: v for k, v in self.id_prior.items()
                         if k in {lv.name for lv in LINK_ID_LEVELS}},
            "search": self.search.to_dict(),
            "tf_floor": self.tf_floor,
            "max_name_tf_weight": self.max_name_tf_weight,
            "weights_for_reading": {
                **weights,
                "id": {lv.name: round(float(self.id_weights()[int(lv)]), 4)
                       for lv in LINK_ID_LEVELS},
                **search_weights,
                "search_prior_at_1M_citizens": {
                    kind.name: round(float(self.search.prior_weights(1_000_000)[int(kind)]), 4)
                    for kind in sorted(SearchKind, key=int, reverse=True)},
            },
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> MatchModel:
        if data.get("format") != MODEL_FORMAT:
            raise ValueError(f"not a {MODEL_FORMAT} model file (format={data.get('format')!r}): "
                             "re-estimate it with `simrecon model estimate`")
        return cls(version=str(data["version"]), m=data["m"], u=data["u"],
                   id_prior=data["id_prior"], search=SearchModel.from_dict(data["search"]),
                   tf_floor=float(data.get("tf_floor", 1e-6)),
                   max_name_tf_weight=float(data.get("max_name_tf_weight", 20.0)),
                   metadata=data.get("metadata", {}))

    def save(self, path: Path | str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n",
                              encoding="utf-8")

    @classmethod
    def load(cls, path: Path | str) -> MatchModel:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ValueError(f"{path}: match model file not found") from exc
        return cls.from_dict(data)


def neutral_model(version: str = "neutral") -> MatchModel:
    """Every weight 0 and every prior 1/2: for computing levels before any estimate."""
    flat = {f: {lv.name: 0.5 for lv in enum if lv.name != _MISSING} for f, enum in FIELDS.items()}
    return MatchModel(version=version, m=flat, u=flat,
                      id_prior={lv.name: 0.5 for lv in LINK_ID_LEVELS},
                      search=neutral_search_model(), tf_floor=1.0)


# --- Term frequencies ----------------------------------------------------------------------
def name_frequencies(registry_names: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Per registry citizen: canonical name key, and the share of citizens with that key."""
    keys = canonical_name_key(registry_names)
    n = max(len(keys), 1)
    counts = pc.value_counts(keys)
    values, freq = counts.field("values"), counts.field("counts")
    index = pc.index_in(keys, value_set=values)
    per_row = pc.take(freq, index)
    tf = np.asarray(pc.fill_null(per_row, 0).to_numpy(zero_copy_only=False), dtype=np.float64) / n
    tf[tf == 0] = np.nan  # no key (name missing): no term frequency
    return keys, tf


# Citizens' worth of pull towards a name's registry-wide frequency when it is counted
# within one birth year (a small year, a rare name).
NAME_YEAR_PRIOR_CITIZENS = 100.0
# Date-of-birth levels at which both dates are in the same year: there the name's
# frequency among citizens born that year is the chance of an unrelated namesake.
SAME_YEAR_DOB_LEVELS = (DobLevel.EXACT, DobLevel.SAME_YEAR_ONE_SIDE_YEAR_ONLY,
                        DobLevel.DAY_MONTH_SWAPPED)


def name_year_frequencies(registry_names: pa.Array | pa.ChunkedArray,
                          dates: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per registry citizen: the share of citizens born in their year who carry their
    canonical name, pulled towards the name's share in the whole registry by
    :data:`NAME_YEAR_PRIOR_CITIZENS` citizens. Names follow the generations (Văn and Thị
    in the old, a second middle name in the young), so "shares the name and the birth
    year" is not the product of the two shares. NaN without a name or a date."""
    keys, tf = name_frequencies(registry_names)
    if isinstance(dates, pa.ChunkedArray):
        dates = dates.combine_chunks()
    year = pc.year(dates)
    table = pa.table({"key": keys, "year": year})
    by_pair = table.group_by(["key", "year"], use_threads=False).aggregate([([], "count_all")])
    by_year = table.group_by(["year"], use_threads=False).aggregate([([], "count_all")])
    join = pc.binary_join_element_wise
    pair_key = join(keys, pc.cast(year, pa.string()), "|")
    at = pc.index_in(pair_key, value_set=join(by_pair["key"], pc.cast(by_pair["year"],
                                                                        pa.string()), "|")
                     .combine_chunks())
    pair_count = np.asarray(pc.fill_null(pc.take(by_pair["count_all"], at), 0)
                            .to_numpy(zero_copy_only=False), np.float64)
    at = pc.index_in(year, value_set=by_year["year"].combine_chunks())
    year_count = np.asarray(pc.fill_null(pc.take(by_year["count_all"], at), 0)
                            .to_numpy(zero_copy_only=False), np.float64)
    k = NAME_YEAR_PRIOR_CITIZENS
    out = (pair_count + k * tf) / (year_count + k)
    known = as_bool_mask(pc.is_valid(keys)) & as_bool_mask(pc.is_valid(year)) & np.isfinite(tf)
    return np.where(known, out, np.nan)


def typo_frequencies(registry_names: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per registry citizen: the share of citizens whose name is one typing error from
    theirs (written-order canonical keys one edit apart, canonical keys not equal): ``u``
    of the ONE_TYPO name level for that citizen. Short Vietnamese given names sit one
    letter apart (Dũng, Hùng, Tùng; Minh, Bình, Linh): a typo-level agreement with
    "Nguyễn Văn Tùng" is much weaker evidence than one with a name whose neighbours are
    rare.

    Vectorised, once per distinct key: two keys one edit apart share a key with one
    character deleted (or one is the other with one deleted); those candidate pairs are
    confirmed with rapidfuzz. Half a neighbour is added to every count. NaN where the
    name has no key.
    """
    if isinstance(registry_names, pa.ChunkedArray):
        registry_names = registry_names.combine_chunks()
    sequence, canonical = sequence_and_canonical_keys(registry_names)
    distinct = pa.table({"sequence": sequence, "canonical": canonical}).filter(
        pc.is_valid(sequence)).group_by(["sequence", "canonical"], use_threads=False) \
        .aggregate([([], "count_all")])
    share = typo_shares(distinct["sequence"].combine_chunks(),
                        distinct["canonical"].combine_chunks(),
                        np.asarray(distinct["count_all"], dtype=np.float64), len(sequence))
    return per_name(share, distinct["sequence"], distinct["canonical"], sequence, canonical)


def _typo_candidates(variant: pa.Array, key: np.ndarray, left_rows: int,
                     canon: np.ndarray) -> np.ndarray:
    """Codes ``a * n + b`` (either way round) of the keys ``a`` (of the first
    ``left_rows`` rows) and ``b`` (of any row) sharing a variant, their canonical keys
    not equal; sorted, unique.

    An equi-join on the variants' dictionary codes, by sorting (NumPy): Arrow's hash
    join of the strings hashed the left side twice, and was two thirds of the
    registry-wide typo shares' CPU."""
    code = np.asarray(pc.dictionary_encode(variant).indices, np.int64)
    order = np.argsort(code, kind="stable")
    ordered = code[order]
    left_code = code[:left_rows]
    low = np.searchsorted(ordered, left_code, "left")
    counts = np.searchsorted(ordered, left_code, "right") - low
    total = int(counts.sum())
    # pair i of left row r: row order[low[r] + (i - first pair of r)]
    first = np.repeat(np.cumsum(counts) - counts, counts)
    a = np.repeat(key[:left_rows], counts)
    b = key[order[np.repeat(low, counts) + np.arange(total) - first]]
    keep = canon[a] != canon[b]
    a, b = a[keep], b[keep]
    return np.unique(np.concatenate([a * len(canon) + b, b * len(canon) + a]))


# Candidate pairs confirmed by rapidfuzz at once (their strings are Python objects).
TYPO_CONFIRM_PAIRS = 1 << 20


def typo_shares(sequence: pa.Array, canonical: pa.Array, count: np.ndarray,
                citizens: int) -> np.ndarray:
    """:func:`typo_frequencies` of each distinct (sequence key, canonical key) pair of a
    registry (non-null sequence keys), given how many of its ``citizens`` carry it: the
    counts are all it needs, so a registry read in batches is counted, not held.

    Two keys one edit apart are equal, or lose the same position to one deletion
    (substitution), or one is the other less one character: so the candidates are
    found one deleted position at a time (the keys themselves beside their deletions
    at that position), never every deletion of every key at once, and confirmed in
    slices of ``TYPO_CONFIRM_PAIRS``: memory is a few copies of the keys, not of the
    keys times their length."""
    values = sequence
    canon = np.asarray(pc.dictionary_encode(canonical).indices, np.int64)
    freq = count
    n = max(citizens, 1)
    out = np.zeros(len(values))
    if len(values) > 1:
        lengths = np.asarray(pc.utf8_length(values), dtype=np.int64)
        ids = np.arange(len(values), dtype=np.int64)

        def at_position(pos: int) -> np.ndarray:
            """Keys less their character ``pos``, against each other and the keys."""
            has = lengths > pos
            chosen = values.filter(pa.array(has))
            deleted = pc.binary_join_element_wise(
                pc.utf8_slice_codeunits(chosen, 0, pos), pc.utf8_slice_codeunits(chosen, pos + 1),
                "")
            return _typo_candidates(pa.concat_arrays([deleted, values]),
                                    np.concatenate([ids[has], ids]), len(deleted), canon)

        # Positions in two threads (Arrow's hashing and NumPy release the GIL).
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="typo-shares") as threads:
            found = [_typo_candidates(values, ids, len(values), canon),  # equal keys
                     *threads.map(at_position, range(int(lengths.max())))]
        pair = np.unique(np.concatenate(found))
        del found
        for start in range(0, len(pair), TYPO_CONFIRM_PAIRS):
            part = pair[start:start + TYPO_CONFIRM_PAIRS]
            a, b = part // len(values), part % len(values)
            close = process.cpdist(values.take(pa.array(a)).to_pylist(),
                                   values.take(pa.array(b)).to_pylist(),
                                   scorer=Levenshtein.distance, score_cutoff=1, workers=-1)
            near = np.asarray(close) <= 1
            np.add.at(out, a[near], freq[b[near]])
    return (out + 0.5) / n  # half a neighbour when none is seen: never certainty


def per_name(share: np.ndarray, distinct_sequence: pa.Array | pa.ChunkedArray,
             distinct_canonical: pa.Array | pa.ChunkedArray, sequence: pa.Array,
             canonical: pa.Array) -> np.ndarray:
    """Each row's value of its (sequence, canonical) pair from ``typo_shares``; NaN where
    the pair is not among them (no name)."""
    known = pc.binary_join_element_wise(distinct_sequence, distinct_canonical, "\x1f")
    at = pc.index_in(pc.binary_join_element_wise(sequence, canonical, "\x1f"),
                     value_set=known.combine_chunks() if isinstance(known, pa.ChunkedArray)
                     else known)
    per_row = np.asarray(pc.fill_null(at, -1).to_numpy(zero_copy_only=False), np.int64)
    return np.where(per_row >= 0, share[np.maximum(per_row, 0)], np.nan)


# --- Estimation ----------------------------------------------------------------------------
def level_distribution(levels: np.ndarray, enum: type[IntEnum], *, alpha: float = 0.5,
                       floor: float = 1e-7) -> dict[str, float]:
    """Smoothed share of each (non-missing) level: (count + alpha) / (n + alpha·k)."""
    known = [lv for lv in enum if lv.name != _MISSING]
    levels = np.asarray(levels, dtype=np.int64)
    levels = levels[np.isin(levels, [int(lv) for lv in known])]
    counts = {lv.name: float((levels == int(lv)).sum()) for lv in known}
    total = sum(counts.values()) + alpha * len(known)
    return {k: max((v + alpha) / total, floor) for k, v in counts.items()}


def estimate_lambda(weights_without_prior: np.ndarray, *, start: float = 0.5,
                    iterations: int = 200, bounds: tuple[float, float] = (1e-4, 0.9999)) -> float:
    """EM for the share of matches among pairs whose field weights are known.

    With m and u fixed, the E step gives each pair's posterior; the M step sets
    λ to their mean. One parameter: stable even with a few dozen pairs.
    """
    w = np.asarray(weights_without_prior, dtype=np.float64)
    if w.size == 0:
        return float(np.clip(start, *bounds))
    lam = start
    likelihood_ratio = np.exp2(np.clip(w, -60, 60))
    for _ in range(iterations):
        posterior = lam * likelihood_ratio / (lam * likelihood_ratio + (1 - lam))
        new = float(np.clip(posterior.mean(), *bounds))
        if abs(new - lam) < 1e-9:
            break
        lam = new
    return lam


# --- Birth dates -------------------------------------------------------------------------
# Below this many citizens the chance of sharing a birth date is not estimated from the
# registry (too few pairs share one): the model's own u is used.
MIN_CITIZENS_FOR_BIRTH_DATES = 1000


def _pair_share(values: pa.Array) -> tuple[float, int]:
    """Share of pairs of distinct rows with equal (non-null) values, and the row count."""
    values = pc.drop_null(values)
    if len(values) < 2:
        return 0.0, len(values)
    return pair_share_of_counts(pc.value_counts(values).field("counts").to_numpy())


def pair_share_of_counts(counts: np.ndarray) -> tuple[float, int]:
    """:func:`_pair_share` from how many rows hold each distinct value."""
    counts = np.asarray(counts, dtype=np.float64)
    n = int(counts.sum())
    if n < 2:
        return 0.0, n
    return float((counts * (counts - 1)).sum() / (n * (n - 1.0))), n


def birth_date_agreement(dates: pa.Array | pa.ChunkedArray,
                         precision: pa.Array | pa.ChunkedArray) -> BirthDateAgreement | None:
    """The chance that two different citizens share a date of birth (day-precision dates)
    and a birth year, over a whole registry; None for a registry too small to tell."""
    if isinstance(dates, pa.ChunkedArray):
        dates = dates.combine_chunks()
    if isinstance(precision, pa.ChunkedArray):
        precision = precision.combine_chunks()
    day = pc.equal(pc.fill_null(precision, "day"), "day")
    return agreement_of_shares(_pair_share(pc.filter(pc.cast(dates, pa.date32()), day)),
                               _pair_share(pc.year(dates)))


def agreement_of_shares(dates: tuple[float, int], years: tuple[float, int]
                        ) -> BirthDateAgreement | None:
    """:func:`birth_date_agreement` from the pair shares (and counts) of day-precision
    dates and of years (``pair_share_of_counts``)."""
    (same_date, n_day), (same_year, _) = dates, years
    if n_day < MIN_CITIZENS_FOR_BIRTH_DATES or same_date <= 0 or same_year <= 0:
        return None
    return BirthDateAgreement(same_date=same_date, same_year=same_year)


def birth_date_frequencies(dates: pa.Array | pa.ChunkedArray,
                           precision: pa.Array | pa.ChunkedArray,
                           agreement: BirthDateAgreement | None
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Per citizen of a whole registry: the chance that another citizen shares their
    date of birth (day precision only) and their birth year, ``count / (N + 1 /
    average)``: the registry's own count, pulled towards the average
    (:func:`birth_date_agreement`) by one expected citizen, so a date seen once in a small
    registry is not taken as unique. NaN without an average (a registry too small)."""
    if isinstance(dates, pa.ChunkedArray):
        dates = dates.combine_chunks()
    if isinstance(precision, pa.ChunkedArray):
        precision = precision.combine_chunks()
    n = len(dates)
    nothing = np.full(n, np.nan)
    if agreement is None or n == 0:
        return nothing, nothing.copy()

    def per_row(values: pa.Array, average: float) -> np.ndarray:
        counts = pc.value_counts(pc.drop_null(values))
        at = pc.index_in(values, value_set=counts.field("values"))
        count = np.asarray(pc.fill_null(pc.take(counts.field("counts"), at), 0)
                           .to_numpy(zero_copy_only=False), np.float64)
        return np.where(count > 0, count / (n + 1.0 / average), np.nan)

    day = pc.equal(pc.fill_null(precision, "day"), "day")
    day_dates = pc.if_else(day, pc.cast(dates, pa.date32()), pa.scalar(None, pa.date32()))
    return per_row(day_dates, agreement.same_date), per_row(pc.year(dates), agreement.same_year)


@dataclass(frozen=True)
class RegistryStatistics:
    """What scoring needs to know about the whole registry, counted once when its
    snapshot is prepared (so a shard scores like the whole): its size, for the search
    prior, and the chance that two citizens share a birth date or year."""

    citizens: int
    birth_dates: BirthDateAgreement | None
    # Citizens who share their canonical name and date of birth with another
    # (matching.namesakes): the registry's side of the run's namesake prior. None in a
    # snapshot prepared before it was counted (the run then counts it itself).
    with_namesake: int | None = None

    def to_dict(self) -> dict:
        dates = self.birth_dates
        return {"citizens": self.citizens,
                "same_birth_date": None if dates is None else dates.same_date,
                "same_birth_year": None if dates is None else dates.same_year,
                "citizens_with_namesake": self.with_namesake}

    @classmethod
    def from_dict(cls, data: Mapping) -> RegistryStatistics:
        same_date, same_year = data.get("same_birth_date"), data.get("same_birth_year")
        dates = None if same_date is None or same_year is None else \
            BirthDateAgreement(same_date=float(same_date), same_year=float(same_year))
        namesakes = data.get("citizens_with_namesake")
        return cls(citizens=int(data["citizens"]), birth_dates=dates,
                   with_namesake=None if namesakes is None else int(namesakes))


def registry_statistics(date_of_birth: pa.Array | pa.ChunkedArray,
                        dob_precision: pa.Array | pa.ChunkedArray) -> RegistryStatistics:
    """:class:`RegistryStatistics` of a whole registry (its date-of-birth columns)."""
    return RegistryStatistics(citizens=len(date_of_birth),
                              birth_dates=birth_date_agreement(date_of_birth, dob_precision))


# --- Estimating the search model ---------------------------------------------------------------
def _distribution(levels: np.ndarray, weight: np.ndarray, enum: type[IntEnum], *,
                  alpha: float, floor: float = 1e-7) -> dict[str, float]:
    """Weighted, smoothed share of each (non-missing) level."""
    known = [lv for lv in enum if lv.name != _MISSING]
    total = float(weight[np.isin(levels, [int(lv) for lv in known])].sum())
    out = {}
    for lv in known:
        count = float(weight[levels == int(lv)].sum())
        out[lv.name] = max((count + alpha) / (total + alpha * len(known)), floor)
    return out


def _row_posteriors(row: np.ndarray, weight: np.ndarray, n_rows: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, the probability it is its row's holder (its odds over one plus the odds
    of every candidate of the row); per row, the probability its holder is among them."""
    best = np.full(n_rows, -np.inf)
    np.maximum.at(best, row, weight)
    base = np.where(np.isfinite(best), best, 0.0)
    scaled = np.exp2(np.clip(weight - base[row], -1000, 0))
    total = np.exp2(np.clip(-base, -1000, 1000))
    np.add.at(total, row, scaled)
    pair = scaled / total[row]
    inside = np.zeros(n_rows)
    np.add.at(inside, row, pair)
    return pair, inside


# A genuine holder's own CCCD, however mistyped, stays within two slips of it (or keeps
# its digits once look-alike letters are read): a well-formed CCCD that shares only its
# birth digits, or less, with a citizen's is someone else's number or an invented one.
# Unlabelled data cannot learn this m (an invented identity copying a citizen's name,
# date of birth and sex looks like that citizen in every other field), so EM holds it
# at this value; the u of these levels is estimated.
FAR_NUMBER_LEVELS = ("SAME_PROVINCE_AND_BIRTH", "SAME_BIRTH_OTHER_PROVINCE", "OTHER_BIRTH")
FAR_NUMBER_M = 1e-6
# Levels through which the number itself makes a citizen a candidate (its one-slip
# variants are looked up): among candidates they are over-represented by construction,
# so their u is the chance that any one citizen who is not the holder is that close to
# the number (estimated per searched row with a number and per registry citizen, like
# the prior's 1/N), not their share among candidates.
VARIANT_LEVELS = ("SAME_AFTER_REPAIR", "ONE_SUBSTITUTION", "TRANSPOSITION",
                  "ONE_DROPPED_OR_ADDED")
# Likewise the number's previous holder is a candidate because of the history itself.
HISTORY_ROUTE_LEVELS = ("SAME_HOLDER",)


def estimate_search_model(*, row: np.ndarray, kind: np.ndarray, others: np.ndarray,
                          field_weight: np.ndarray, doc_level: np.ndarray,
                          history_level: np.ndarray, citizens: int, start: SearchModel,
                          iterations: int = 500, alpha: float = 0.5,
                          tolerance: float = 1e-7,
                          far_number_m: float = FAR_NUMBER_M) -> tuple[SearchModel, dict]:
    """EM for the search model over the candidate pairs of every searched row.

    ``row``, ``field_weight`` (name + date of birth + gender, bits), ``doc_level`` and
    ``history_level`` are per pair; ``kind`` and ``others`` per searched row (every row,
    with candidates or not). Each iteration scores the pairs with the current model, gives
    each its posterior of being its row's holder (the row's candidates compete; the
    holder may be nobody in the registry), and sets π per kind to the mean posterior
    that a row's holder is among its candidates, the document and history levels' m and
    u to their shares among true and false candidates (weighted by the posteriors), and
    the others levels' m and u to their shares among rows whose holder is and is not
    among the candidates. Name, date of birth and gender weights stay fixed, and so does
    the m of the far-number levels (:data:`FAR_NUMBER_LEVELS`, ``far_number_m``). The u
    of :data:`VARIANT_LEVELS` and :data:`HISTORY_ROUTE_LEVELS` is per citizen (see
    there). π is smoothed (one pseudo-row each way per kind).
    """
    row = np.asarray(row, np.int64)
    kind = np.asarray(kind, np.int64)
    others = np.asarray(others, np.int64)
    doc_level = np.asarray(doc_level, np.int64)
    history_level = np.asarray(history_level, np.int64)
    field_weight = np.asarray(field_weight, np.float64)
    n_rows = len(kind)
    with_number = max(int((kind != int(SearchKind.NO_NUMBER)).sum()), 1)
    had = np.zeros(n_rows, dtype=bool)
    had[row[history_level != int(HistoryLevel.MISSING)]] = True
    with_history = max(int(had.sum()), 1)
    model = start
    change, done = np.inf, 0
    while done < iterations and change >= tolerance:
        done += 1
        weight = field_weight + model.prior_weights(citizens)[kind[row]] \
            + model.level_weights("document")[doc_level] \
            + model.level_weights("history")[history_level] \
            + model.level_weights("others")[others[row]]
        pair, inside = _row_posteriors(row, weight, n_rows)
        holder = {}
        for k in SearchKind:
            mine = kind == int(k)
            holder[k.name] = float((inside[mine].sum() + 1.0) / (mine.sum() + 2.0))
        m_doc = _distribution(doc_level, pair, DocLevel, alpha=alpha)
        held = sum(m_doc[k] for k in FAR_NUMBER_LEVELS)
        m_doc = {k: far_number_m if k in FAR_NUMBER_LEVELS
                 else v * (1 - far_number_m * len(FAR_NUMBER_LEVELS)) / (1 - held)
                 for k, v in m_doc.items()}
        m = {"document": m_doc,
             "history": _distribution(history_level, pair, HistoryLevel, alpha=alpha),
             "others": _distribution(others, inside, OthersLevel, alpha=alpha)}
        u_doc = _distribution(doc_level, 1 - pair, DocLevel, alpha=alpha)
        for name in VARIANT_LEVELS:
            false = float((1 - pair)[doc_level == int(DocLevel[name])].sum())
            u_doc[name] = (false + alpha) / (with_number * max(citizens, 1))
        u_history = _distribution(history_level, 1 - pair, HistoryLevel, alpha=alpha)
        for name in HISTORY_ROUTE_LEVELS:
            false = float((1 - pair)[history_level == int(HistoryLevel[name])].sum())
            u_history[name] = (false + alpha) / (with_history * max(citizens, 1))
        u = {"document": u_doc,
             "history": u_history,
             "others": _distribution(others, 1 - inside, OthersLevel, alpha=alpha)}
        new = SearchModel(holder_in_registry=holder, m=m, u=u,
                          top_candidates=start.top_candidates)
        change = max(
            max(abs(_log2_odds(holder[k]) - _log2_odds(model.holder_in_registry[k]))
                for k in holder),
            *(float(np.max(np.abs(new.level_weights(f) - model.level_weights(f))))
              for f in SEARCH_FIELDS))
        model = new
    counts = {"searched_rows": n_rows, "candidate_pairs": len(row), "iterations": done,
              "last_change_bits": float(change)}
    return model, counts
