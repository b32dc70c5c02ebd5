"""The benchmark world's re-keying (benchmarks/world.py): a part's CCCDs must map one to
one, or an assembled 30M registry carries duplicate citizen_ids (it did: 230 of them,
which registry preparation rightly refused)."""

from __future__ import annotations

import pyarrow as pa

from benchmarks.world import _first_digit

# Every second and third digit, with and without separators, as the generator writes them.
NUMBERS = [f"0{a}{b}0000000{c}{c}" for a in range(10) for b in range(10) for c in range(10)]
SPACED = [f"0{a} {b}00 000 00{c}{c}" for a in range(10) for b in range(10) for c in range(2)]


def test_every_part_rekeys_one_to_one_and_keeps_the_rest_of_the_number() -> None:
    for k in (1, 9, 10, 13, 20, 29, 99):
        for numbers in (NUMBERS, SPACED):
            out = _first_digit(pa.array(numbers), k).to_pylist()
            assert len(set(out)) == len(numbers), k
            for before, after in zip(numbers, out, strict=True):
                digits_before = [c for c in before if c.isdigit()]
                digits_after = [c for c in after if c.isdigit()]
                assert digits_after[0] == str(k % 10)
                assert digits_after[1] == str((int(digits_before[1]) + k // 10) % 10)
                assert digits_after[2:] == digits_before[2:], (k, before, after)

