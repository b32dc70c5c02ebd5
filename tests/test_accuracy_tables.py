"""The accuracy benchmark's reliability table (benchmarks/accuracy.py, issue 15)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.accuracy import reliability


def test_reliability_bins_gap_ece_and_sampling_noise() -> None:
    """Each bin: rows, mean probability, observed share, gap and the standard deviation
    the observed share would have if the probabilities were exact (to read a gap against
    the noise of a small bin); the ECE weighs the gaps by rows."""
    probability = np.array([0.45] * 200 + [0.95] * 100)
    right = np.array([True] * 110 + [False] * 90 + [True] * 100)
    table = reliability(probability, right)
    low, high = table["bins"]
    assert (low["rows"], high["rows"]) == (200, 100)
    assert low["observed"] == pytest.approx(0.55)
    assert low["gap"] == pytest.approx(0.10)
    assert low["sigma"] == pytest.approx(np.sqrt(0.45 * 0.55 / 200))
    assert high["sigma"] == pytest.approx(np.sqrt(0.95 * 0.05 / 100))
    assert table["ece"] == pytest.approx((200 * 0.10 + 100 * 0.05) / 300)


def test_what_the_bin_target_can_show_when_every_probability_is_exact() -> None:
    """A bin of 100 coin flips (p = 0.5) lands outside ±0.03 whenever 46 or fewer, or 54
    or more, come right: 48.4% of the time (binomial), however exact the model; a bin of
    near-certain rows never. The draws are seeded: the same figures twice."""
    probability = np.array([0.5] * 100 + [0.9995] * 1000)
    right = np.ones(len(probability), dtype=bool)
    table = reliability(probability, right)
    assert table["bin_out_if_exact"]["0.5-0.6"] == pytest.approx(0.484, abs=0.03)
    assert table["bin_out_if_exact"]["0.999-1"] == 0.0
    assert table["chance_bins_within_if_exact"] == pytest.approx(0.516, abs=0.03)
    assert reliability(probability, right) == table
