"""The group and date rules of matching.flags, on small hand-made columns."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa

from matching import flags


def test_excess_counts_only_active_rows_across_telcos() -> None:
    holders = pa.array(["A"] * 10 + ["B"] * 9 + [None] * 12)
    counted = np.array([True] * 10 + [True] * 9 + [True] * 12)
    counted[0] = False  # A then has 9 counted rows: at the limit, not above
    assert not flags.excess_subscriptions(holders, counted, 9).any()
    counted[0] = True
    hit = flags.excess_subscriptions(holders, counted, 9)
    assert hit[:10].all() and not hit[10:].any()


def test_bulk_activation_needs_many_rows_on_few_documents() -> None:
    pos = pa.array(["P1"] * 20 + ["P2"] * 20 + ["P1"])
    day = pa.array([date(2025, 1, 2)] * 40 + [date(2025, 1, 3)], pa.date32())
    docs = pa.array(["d1", "d2"] * 10 + [f"x{i}" for i in range(20)] + ["d1"])
    hit = flags.bulk_activation(pos, day, docs, min_activations=20, max_distinct_documents=3)
    assert hit[:20].all() and not hit[20:].any()


def test_duplicate_msisdn_ignores_uncounted_rows() -> None:
    numbers = pa.array(["0912345678", "0912345678", "0987654321", "0987654321", None, None])
    counted = np.array([True, True, True, False, True, True])
    assert flags.duplicate_msisdn(numbers, counted).tolist() == [True, True, False, False,
                                                                  False, False]


def test_underage_uses_completed_years_and_is_conservative_for_year_only() -> None:
    birth = pa.array([date(2012, 5, 10), date(2012, 5, 10), date(2012, 1, 1), None], pa.date32())
    activation = pa.array([date(2026, 5, 9), date(2026, 5, 10), date(2026, 1, 1),
                           date(2026, 1, 1)], pa.date32())
    assert flags.underage_at_activation(birth, activation, 14).tolist() == [True, False, False,
                                                                             False]


def test_flag_lists_keep_taxonomy_order() -> None:
    masks = {"INVALID_MSISDN": np.array([True, False, True]),
             "NO_ID": np.array([True, False, False])}
    lists = flags.build_flag_lists(masks, 3)
    assert lists.to_pylist() == [["NO_ID", "INVALID_MSISDN"], [], ["INVALID_MSISDN"]]


def test_status_precedence() -> None:
    t = np.array([True, False, False, False, False])
    status = flags.decide_status(
        foreign_document=t,
        unregistered=np.array([True, True, False, False, False]),
        mismatch=np.array([True, True, True, False, False]),
        review=np.array([True, True, True, True, False]),
    )
    assert status.tolist() == ["FOREIGN_DOCUMENT", "UNREGISTERED", "MISMATCH", "REVIEW",
                               "VERIFIED"]
