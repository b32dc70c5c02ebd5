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

The ID number: a pair is proposed by the document (exact CCCD, old CMND), by
a one-edit variant of a mistyped number, or by blocking keys without any ID
help. Its weight is the log prior odds that a pair proposed that way is a
match (Splink's "prior per blocking rule"; equal to ``λ·m/u`` of an ID
comparison), estimated from the data by EM with the field weights held fixed.

The model is a JSON file (``models/``), versioned, re-estimated by
``simrecon model estimate`` (see docs/matching.md). Everything here is
vectorised: lookup tables indexed by level arrays.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching.compare import DobLevel, GenderLevel
from matching.names import NameLevel, canonical_name_key

MODEL_FORMAT = "simrecon-fellegi-sunter/1"


class IdLevel(IntEnum):
    """How the candidate citizen was reached through the document number."""

    EXACT = 3  # the written CCCD is the citizen's citizen_id
    LEGACY_CMND = 2  # the written old CMND is the citizen's legacy_id
    ONE_EDIT = 1  # one digit substituted / two adjacent swapped from the citizen's CCCD
    NONE = 0  # found by blocking keys (date of birth, name), not by the number


ID_LEVEL_LABELS: dict[IdLevel, str] = {
    IdLevel.EXACT: "CCCD found in the registry",
    IdLevel.LEGACY_CMND: "old CMND found in the registry",
    IdLevel.ONE_EDIT: "CCCD one typing error from the citizen's",
    IdLevel.NONE: "no usable number: found by date of birth and name",
}

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
class MatchModel:
    """m/u probabilities per field level, ID-level priors, term-frequency settings.

    ``m`` and ``u`` map field -> level name -> probability. ``id_prior`` maps
    an :class:`IdLevel` name to the prior match probability of pairs proposed
    that way. ``tf_floor`` bounds the term-frequency u from below (a name
    seen once in a small registry is not evidence of infinite strength).
    """

    version: str
    m: Mapping[str, Mapping[str, float]]
    u: Mapping[str, Mapping[str, float]]
    id_prior: Mapping[str, float]
    tf_floor: float = 1e-6
    max_name_tf_weight: float = 20.0
    metadata: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, enum in FIELDS.items():
            for side in (self.m, self.u):
                missing = [lv.name for lv in enum if lv.name not in side.get(name, {})
                           and lv.name != _MISSING]
                if missing:
                    raise ValueError(f"model {self.version}: {name} lacks levels {missing}")
        for level in IdLevel:
            p = self.id_prior.get(level.name)
            if p is None or not 0 < p < 1:
                raise ValueError(f"model {self.version}: id_prior[{level.name}] must be in (0, 1)")

    # -- weights -------------------------------------------------------------------
    def level_weights(self, field_name: str) -> np.ndarray:
        """log2(m/u) per level value (index = level int); MISSING weighs 0 (no evidence)."""
        enum = FIELDS[field_name]
        table = np.zeros(max(int(v) for v in enum) + 1)
        for level in enum:
            if level.name == _MISSING:
                continue
            table[int(level)] = np.log2(self.m[field_name][level.name]
                                        / self.u[field_name][level.name])
        return table

    def id_weights(self) -> np.ndarray:
        table = np.zeros(max(int(v) for v in IdLevel) + 1)
        for level in IdLevel:
            table[int(level)] = _log2_odds(self.id_prior[level.name])
        return table

    def name_weights(self, level: np.ndarray, name_tf: np.ndarray | None) -> np.ndarray:
        """Name weight per pair; at the equal-key levels u is the name's frequency."""
        level = np.asarray(level, dtype=np.int64)
        weight = self.level_weights("name")[level]
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

    def score(self, *, id_level: np.ndarray, name_level: np.ndarray, dob_level: np.ndarray,
              gender_level: np.ndarray, name_tf: np.ndarray | None = None) -> MatchScores:
        """Weights and probability of each pair from its levels (vectorised lookups)."""
        id_w = self.id_weights()[np.asarray(id_level, dtype=np.int64)]
        name_w = self.name_weights(name_level, name_tf)
        dob_w = self.level_weights("dob")[np.asarray(dob_level, dtype=np.int64)]
        gender_w = self.level_weights("gender")[np.asarray(gender_level, dtype=np.int64)]
        total = id_w + name_w + dob_w + gender_w
        probability = 1.0 / (1.0 + np.exp2(-np.clip(total, -60, 60)))
        return MatchScores(id_weight=id_w, name_weight=name_w, dob_weight=dob_w,
                           gender_weight=gender_w, match_weight=total,
                           match_probability=probability)

    # -- file ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        weights = {f: {lv.name: round(float(self.level_weights(f)[int(lv)]), 4)
                       for lv in sorted(FIELDS[f], key=int, reverse=True)} for f in FIELDS}
        return {
            "format": MODEL_FORMAT,
            "version": self.version,
            "m": {f: dict(v) for f, v in self.m.items()},
            "u": {f: dict(v) for f, v in self.u.items()},
            "id_prior": dict(self.id_prior),
            "tf_floor": self.tf_floor,
            "max_name_tf_weight": self.max_name_tf_weight,
            "weights_for_reading": {
                **weights,
                "id": {lv.name: round(float(self.id_weights()[int(lv)]), 4)
                       for lv in sorted(IdLevel, key=int, reverse=True)},
            },
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> MatchModel:
        if data.get("format") != MODEL_FORMAT:
            raise ValueError(f"not a {MODEL_FORMAT} model file (format={data.get('format')!r})")
        return cls(version=str(data["version"]), m=data["m"], u=data["u"],
                   id_prior=data["id_prior"], tf_floor=float(data.get("tf_floor", 1e-6)),
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
                      id_prior={lv.name: 0.5 for lv in IdLevel}, tf_floor=1.0)


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
