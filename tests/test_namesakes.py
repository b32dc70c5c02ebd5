"""The run's namesake prior (matching/namesakes.py): estimated without labels, it finds
how often the holders have a namesake, and leaves a run drawn like the registry alone."""

from __future__ import annotations

import numpy as np
import pytest

from matching.model import row_probability
from matching.namesakes import (
    NamesakeEvidence,
    estimate_prior,
    has_namesake,
    uniform_prior,
)

# Levels of agreement of a candidate: P(level | holder), P(level | a group of the
# registry, for a person outside it).
_M = np.array([0.05, 0.15, 0.3, 0.5])
_U = np.array([1e-5, 3e-6, 1e-6, 1e-7])
_CITIZENS = 1_000_000
_PI = 0.7  # share of holders in the registry


def _world(rng: np.random.Generator, rows: int, registry_share: float, holder_share: float,
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Searched rows as the search model sees them, drawn from it: a holder in the
    registry (with a namesake: ``holder_share``) shows one level; a person outside it
    agrees with one group of the registry (a pair of namesakes: ``registry_share`` of the
    citizens) by chance. Returns the weights of each row's candidates (uniform prior),
    which have a namesake, and whether the best is the holder."""
    groups_solo = (1 - registry_share) * _CITIZENS
    groups_pair = registry_share * _CITIZENS / 2
    outside = (1 - _PI) * (groups_solo + groups_pair) * _U.sum()
    holder = rng.random(rows) < _PI / (_PI + outside)
    pair = np.where(holder, rng.random(rows) < holder_share,
                    rng.random(rows) < groups_pair / (groups_solo + groups_pair))
    level = np.where(holder, rng.choice(4, rows, p=_M), rng.choice(4, rows, p=_U / _U.sum()))
    weight = np.log2(_PI / (1 - _PI) / _CITIZENS * _M / _U)[level]
    weights = np.full((rows, 2), np.nan)
    weights[:, 0] = weight
    weights[pair, 1] = weight[pair]  # namesakes: nothing in the row tells them apart
    namesake = np.zeros((rows, 2), bool)
    namesake[pair] = True
    # the best of a pair is its holder half the time
    best_is_holder = holder & (~pair | (rng.random(rows) < 0.5))
    return weights, namesake, best_is_holder


def test_estimates_how_often_holders_have_a_namesake() -> None:
    """Holders drawn with a namesake ten times as often as the registry's citizens: the
    estimate (from the weights alone) recovers the share, and the probabilities it gives
    match the observed share of right best candidates where the uniform prior's do not."""
    rng = np.random.default_rng(7)
    weights, namesake, right = _world(rng, 200_000, registry_share=0.02, holder_share=0.2)
    evidence = NamesakeEvidence()
    for lo in range(0, len(weights), 70_000):  # counted in batches: the same histogram
        evidence.add(weights[lo:lo + 70_000], namesake[lo:lo + 70_000])
    assert evidence.rows == len(weights)
    prior = estimate_prior(evidence, 0.02, pseudo_rows=200)
    assert prior.holder_share == pytest.approx(0.2, abs=0.015)
    assert prior.namesake_bits == pytest.approx(np.log2(10), abs=0.15)
    assert prior.other_bits < 0
    pair = namesake[:, 0]
    right = right[pair]
    adjusted = weights[pair] + prior.bits(namesake[pair])
    estimated = row_probability(adjusted[:, 0], adjusted)
    uniform = row_probability(weights[pair, 0], weights[pair])
    assert abs(estimated.mean() - right.mean()) < 0.01
    assert right.mean() - uniform.mean() > 0.03  # what the uniform prior got wrong


def _evidence(seed: int, rows: int, registry_share: float, holder_share: float
              ) -> NamesakeEvidence:
    weights, namesake, _ = _world(np.random.default_rng(seed), rows, registry_share,
                                  holder_share)
    evidence = NamesakeEvidence()
    evidence.add(weights, namesake)
    return evidence


def test_a_run_drawn_like_the_registry_keeps_the_uniform_prior() -> None:
    evidence = _evidence(11, 40_000, registry_share=0.05, holder_share=0.05)
    prior = estimate_prior(evidence, 0.05, pseudo_rows=200)
    assert abs(prior.namesake_bits) < 0.2 and abs(prior.other_bits) < 0.02


def test_few_rows_stay_near_the_uniform_prior_and_no_namesakes_change_nothing() -> None:
    evidence = _evidence(3, 30, registry_share=0.02, holder_share=0.5)
    small = estimate_prior(evidence, 0.02, pseudo_rows=200)
    large = estimate_prior(evidence, 0.02, pseudo_rows=0)
    assert 0 < small.namesake_bits < large.namesake_bits
    assert estimate_prior(evidence, 0.0, pseudo_rows=200) == uniform_prior(0.0, 30)
    assert estimate_prior(NamesakeEvidence(), 0.02, pseudo_rows=200).namesake_bits == 0


def test_a_namesake_is_a_shared_name_and_birth_date_block() -> None:
    assert has_namesake(np.array([0, 1, 2, 5])).tolist() == [False, False, True, True]
