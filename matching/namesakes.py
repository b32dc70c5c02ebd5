"""Holders with a namesake: the part of the search prior the run itself estimates.

Why: the search prior gives every citizen the same chance, ``π / N``, of being a
searched row's holder (``matching.model.SearchModel``). When the holders of the
searched rows share their canonical name and date of birth with another citizen more
often than citizens at large do, a tie between two namesakes (nothing in the row tells
them apart) is less often "neither of them" than that prior says, and a candidate
without a namesake a little more often. How much more often is a fact about the
exports, not about the registry, and it changes from run to run, so it is estimated
from the run's own searched rows (EM, unlabelled) against the registry's own share of
citizens with a namesake, counted from the candidate search's blocks: a run whose
holders are drawn like the registry gets factors of 1 (0 bits).

The prior of a citizen with a namesake is multiplied by ``t / s`` and of one without by
``(1 - t) / (1 - s)``: ``s`` the registry's share of citizens with a namesake, ``t`` the
share among the holders of the run's searched rows who are in the registry. The two
factors average to 1 over the registry, so the share of holders in the registry (π)
is unchanged. ``t`` is the fixed point of: the expected share of namesakes among the
holders, given every row's candidates and the factors; pulled towards ``s`` by
``pseudo_rows`` rows, so a small run keeps the uniform prior.

The evidence is a histogram, not a list of rows: per row, the odds of its candidates
with and without a namesake summed (log2, in 1/8-bit bins), so it is bounded whatever
the size of the run and the same whatever the order rows are counted in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# A citizen has a namesake when another citizen shares their canonical name key and
# full date of birth: the candidate search's "dc" block (matching.candidates) of 2 or
# more citizens.
NAMESAKE_BLOCK_FAMILY = "dc"

# Histogram of the rows' summed odds: log2 in [-LIMIT, LIMIT], BINS_PER_BIT bins per bit,
# plus bin 0 for "no such candidate". Beyond ±40 bits a row's share is 0 or 1 to 1e-12.
LIMIT_BITS = 40
BINS_PER_BIT = 8
_BINS = 2 * LIMIT_BITS * BINS_PER_BIT + 2  # "none", then the bins


def has_namesake(block_size: np.ndarray) -> np.ndarray:
    """Per citizen: another citizen shares their canonical name and date of birth
    (``block_size``: the size of the citizen's ``NAMESAKE_BLOCK_FAMILY`` block)."""
    return np.asarray(block_size) >= 2


def _bin(odds_log2: np.ndarray) -> np.ndarray:
    known = np.isfinite(odds_log2)
    clipped = np.clip(np.where(known, odds_log2, 0.0), -LIMIT_BITS, LIMIT_BITS)
    return np.where(known, 1 + np.rint((clipped + LIMIT_BITS) * BINS_PER_BIT).astype(np.int64),
                    0)


def _centre(bins: np.ndarray) -> np.ndarray:
    """The odds a bin stands for (0 for bin 0: no such candidate)."""
    return np.where(bins > 0, np.exp2((bins - 1) / BINS_PER_BIT - LIMIT_BITS), 0.0)


def _summed_log2(weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row, log2 of the summed odds ``2^weight`` of the entries in ``mask``
    (-inf where none): the largest first, so nothing overflows."""
    masked = np.where(mask, weights, -np.inf)
    top = masked.max(axis=1, initial=-np.inf)
    finite = np.isfinite(top)
    rel = np.where(mask & finite[:, None], np.exp2(np.clip(masked - np.where(finite, top, 0)
                                                           [:, None], -1000, 0)), 0.0)
    return np.where(finite, top + np.log2(np.maximum(rel.sum(axis=1), 1e-300)), -np.inf)


@dataclass
class NamesakeEvidence:
    """Counts of searched rows by their candidates' summed odds (see module docstring)."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(_BINS * _BINS, np.int64))

    def add(self, weights: np.ndarray, namesake: np.ndarray) -> None:
        """Count rows: ``weights`` (rows, k) their best candidates' weights (bits, NaN
        where a row has fewer), ``namesake`` (rows, k) which of them have a namesake."""
        weights = np.asarray(weights, np.float64)
        known = ~np.isnan(weights)
        if not weights.size:
            return
        namesake = np.asarray(namesake, bool) & known
        with_ = _bin(_summed_log2(weights, namesake))
        without = _bin(_summed_log2(weights, known & ~namesake))
        rows = known.any(axis=1)
        self.counts += np.bincount((with_ * _BINS + without)[rows], minlength=_BINS * _BINS)

    def merge(self, other: NamesakeEvidence) -> None:
        self.counts += other.counts

    @property
    def rows(self) -> int:
        return int(self.counts.sum())


@dataclass(frozen=True)
class NamesakePrior:
    """The factors a run puts on the search prior (log2: bits added to a candidate's
    weight), with what they were estimated from."""

    registry_share: float  # s: citizens of the registry with a namesake
    holder_share: float  # t: holders of the searched rows with a namesake (estimated)
    namesake_bits: float  # log2(t / s)
    other_bits: float  # log2((1 - t) / (1 - s))
    rows: int  # searched rows with a candidate counted
    holders: float  # of them, expected with their holder among their candidates

    def bits(self, namesake: np.ndarray) -> np.ndarray:
        """The prior's bits for candidates with (True) or without a namesake."""
        return np.where(np.asarray(namesake, bool), self.namesake_bits, self.other_bits)

    def to_dict(self) -> dict:
        return {"registry_share": self.registry_share, "holder_share": self.holder_share,
                "namesake_bits": self.namesake_bits, "other_bits": self.other_bits,
                "rows": self.rows, "holders": self.holders}


def uniform_prior(registry_share: float = 0.0, rows: int = 0) -> NamesakePrior:
    """No factor: every citizen as likely a holder as another."""
    return NamesakePrior(registry_share=registry_share, holder_share=registry_share,
                         namesake_bits=0.0, other_bits=0.0, rows=rows, holders=0.0)


def estimate_prior(evidence: NamesakeEvidence, registry_share: float, *,
                   pseudo_rows: float, iterations: int = 500, tolerance: float = 1e-10
                   ) -> NamesakePrior:
    """The fixed point of ``t`` (module docstring) over the rows counted in ``evidence``,
    against ``registry_share`` (s). Without namesakes in the registry, or without rows,
    the prior stays uniform."""
    s = float(registry_share)
    cells = np.flatnonzero(evidence.counts)
    if not 0.0 < s < 1.0 or not len(cells):
        return uniform_prior(s if 0.0 <= s <= 1.0 else 0.0, evidence.rows)
    n = evidence.counts[cells].astype(np.float64)
    with_odds, without_odds = _centre(cells // _BINS), _centre(cells % _BINS)
    t = s
    holders = 0.0
    for _ in range(iterations):
        a, b = t / s, (1.0 - t) / (1.0 - s)
        named, other = a * with_odds, b * without_odds
        total = 1.0 + named + other
        in_group = float((n * named / total).sum())
        holders = float((n * (named + other) / total).sum())
        updated = (in_group + pseudo_rows * s) / (holders + pseudo_rows)
        done = abs(updated - t) < tolerance
        t = updated
        if done:
            break
    t = min(max(t, 1e-9), 1.0 - 1e-9)
    return NamesakePrior(registry_share=s, holder_share=t,
                         namesake_bits=float(np.log2(t / s)),
                         other_bits=float(np.log2((1.0 - t) / (1.0 - s))),
                         rows=evidence.rows, holders=holders)
