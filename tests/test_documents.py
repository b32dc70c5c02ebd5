"""The number a searched row carries, compared with a candidate citizen's (issue 15)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from matching.documents import DocLevel, compare_documents

CID = "079084000999"  # TP.HCM, male, born 1984

CASES = [
    # written, id_issue, candidate CCCD, candidate CMND, level
    ("O79084000999", "NON_DIGIT", CID, None, DocLevel.SAME_AFTER_REPAIR),  # O for 0
    ("079084000990", None, CID, None, DocLevel.ONE_SUBSTITUTION),
    ("079084009099", None, CID, None, DocLevel.TRANSPOSITION),
    ("07908400999", "WRONG_LENGTH", CID, None, DocLevel.ONE_DROPPED_OR_ADDED),  # dropped
    ("0790840009999", "WRONG_LENGTH", CID, None, DocLevel.ONE_DROPPED_OR_ADDED),  # added
    ("0790840099", "WRONG_LENGTH", CID, None, DocLevel.TWO_EDITS),
    # 11 digits padded by normalisation although a digit was dropped mid-number: compared
    # as written too.
    ("007908400099", "LEADING_ZERO_RESTORED", CID, None, DocLevel.ONE_DROPPED_OR_ADDED),
    ("079084123456", None, CID, None, DocLevel.SAME_PROVINCE_AND_BIRTH),
    ("001084123456", None, CID, None, DocLevel.SAME_BIRTH_OTHER_PROVINCE),
    ("001185123456", None, CID, None, DocLevel.OTHER_BIRTH),
    ("123456789", None, CID, None, DocLevel.CMND_NOT_ON_RECORD),
    ("123456789", None, CID, "123456780", DocLevel.ONE_SUBSTITUTION),  # against the CMND
    ("123456789", None, CID, "987654321", DocLevel.CMND_DIFFERENT),
    ("ABCDEFX", "NON_DIGIT", CID, None, DocLevel.DIFFERENT),
    (None, None, CID, "987654321", DocLevel.MISSING),
]


@pytest.mark.parametrize(("written", "issue", "cid", "legacy", "level"), CASES)
def test_document_levels(written: str | None, issue: str | None, cid: str,
                         legacy: str | None, level: DocLevel) -> None:
    assert compare_documents([written], [issue], [cid], [legacy])[0] == level


def test_the_closer_of_the_two_numbers_counts() -> None:
    """A 9-digit number one slip from the citizen's old CMND is close even though it is
    nothing like their CCCD; a column of pairs is compared at once."""
    levels = compare_documents(["123456780", "079084000991"], [None, None],
                               [CID, CID], ["123456789", "123456789"])
    assert levels.tolist() == [DocLevel.ONE_SUBSTITUTION, DocLevel.ONE_SUBSTITUTION]


def test_lengths_must_agree() -> None:
    with pytest.raises(ValueError, match="one length"):
        compare_documents(["1"], [None, None], [CID], [None])


def test_character_counts_never_drop_a_pair_within_two_edits() -> None:
    """The cheap pre-filter of _edit_level (character counts) only drops pairs that are
    more than two edits apart: on random numbers, typed slips of them, letters and
    non-ASCII characters, the levels equal those measured on every pair."""
    import random

    from rapidfuzz.distance import OSA, Levenshtein

    from matching import documents

    rng = random.Random(20261204)
    alphabet = "0123456789" * 3 + "OISBÑă -"

    def slip(value: str) -> str:
        for _ in range(rng.randint(0, 3)):
            at = rng.randrange(len(value) + 1)
            kind = rng.choice("sidt")
            if kind == "s" and at < len(value):
                value = value[:at] + rng.choice(alphabet) + value[at + 1:]
            elif kind == "i":
                value = value[:at] + rng.choice(alphabet) + value[at:]
            elif kind == "d" and at < len(value):
                value = value[:at] + value[at + 1:]
            elif kind == "t" and at + 1 < len(value):
                value = value[:at] + value[at + 1] + value[at] + value[at + 2:]
        return value

    left, right = [], []
    for _ in range(20_000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.choice([8, 9, 11, 12, 13])))
        left.append(value)
        right.append(slip(value) if rng.random() < 0.6 else
                     "".join(rng.choice(alphabet) for _ in range(rng.choice([9, 12]))))
    each = np.arange(len(left))
    got = documents._edit_level(pa.array(left), each, pa.array(right), each)
    near = np.array([min(Levenshtein.distance(a, b), OSA.distance(a, b)) <= 2
                     for a, b in zip(left, right, strict=True)])
    assert (got[~near] == 0).all()  # (a pair the pre-filter dropped would be 0 here)
    assert (got[near] > 0).all() and near.sum() > 5_000


def test_pairs_by_index_compare_as_the_pairs_written_out() -> None:
    """compare_documents with ``rows``/``citizens`` (each side once, pairs as indexes, in
    any order and repeated) gives the levels of the same pairs written out one by one."""
    rng = np.random.default_rng(20261204)
    numbers = ["079084000991", "079084000919", "O79O84000991", "12345678", "123456780",
               "07908400099", None, "001190000001", "079184000991", "A1"]
    issues = [None, None, None, None, None, "LEADING_ZERO_RESTORED", None, None, None, None]
    cids = [CID, "079084000919", "001190000001", "079084123456", None, "079084000992"]
    legacies = [None, "123456780", None, "123456789", "12345678", None]
    rows = rng.integers(0, len(numbers), 2_000)
    citizens = rng.integers(0, len(cids), 2_000)
    by_index = compare_documents(numbers, issues, cids, legacies, rows=rows,
                                 citizens=citizens)
    written_out = compare_documents([numbers[r] for r in rows], [issues[r] for r in rows],
                                    [cids[c] for c in citizens],
                                    [legacies[c] for c in citizens])
    assert (by_index == written_out).all()
    assert len(set(by_index.tolist())) >= 6


def test_counts_made_once_give_the_same_levels() -> None:
    """``target_counts`` (a search task's citizens counted once, taken per batch) give the
    levels counted per call; counts of another column are refused."""
    from matching.documents import character_counts

    numbers = ["079084000991", "O79O84000991", "123456780", "07908400099", None, "A1"]
    issues = [None, None, None, "LEADING_ZERO_RESTORED", None, None]
    cids = pa.array([CID, "079084000919", None, "079184000991"])
    legacies = pa.array([None, "123456780", "12345678", None])
    rows, citizens = np.repeat(np.arange(6), 4), np.tile(np.arange(4), 6)
    counted = (character_counts(cids), character_counts(legacies))
    given = compare_documents(numbers, issues, cids, legacies, rows=rows, citizens=citizens,
                              target_counts=counted)
    assert given.tolist() == compare_documents(numbers, issues, cids, legacies, rows=rows,
                                               citizens=citizens).tolist()
    with pytest.raises(ValueError, match="target_counts"):
        compare_documents(numbers, issues, cids, legacies, rows=rows, citizens=citizens,
                          target_counts=(counted[0][:, :2], counted[1]))
