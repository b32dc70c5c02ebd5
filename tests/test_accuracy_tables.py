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
