"""The document number a searched row carries, compared with a candidate citizen's.

A row is searched when its document leads to nobody (no number, a malformed one,
or a well-formed number not in the registry). The number it carries is still
evidence: a one-digit slip of the candidate's CCCD is strong evidence *for* the
candidate; a well-formed number that shares nothing with the candidate's CCCD is
strong evidence *against* (an invented identity that happens to share a name and
birth date with a citizen). Each (row, candidate) pair gets one readable level,
the strongest that holds, like the name and date-of-birth comparisons; the match
model (``matching.model``) gives each level its weight.

The CCCD is ``PPP G YY RRRRRR`` (province of birth registration, century+sex,
birth year, random; Decree 137/2015 Art. 13, no checksum), so beyond digit-level
closeness the embedded fields can agree or not: province code, century+sex digit
and birth year. The number is compared with the candidate's CCCD and with their
old CMND (when they have one on record); the closer of the two counts.

Vectorised: rapidfuzz's batch distance functions over the pair columns.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import process
from rapidfuzz.distance import OSA, Levenshtein

from matching.columns import ArrayLike, as_bool_mask, as_string_array, paired_codes

# Letters that a hand-typed or OCR'd number carries for a digit (O for 0, I for 1, ...).
LOOKALIKE_DIGITS = (("O", "0"), ("D", "0"), ("Q", "0"), ("I", "1"), ("L", "1"), ("Z", "2"),
                    ("S", "5"), ("G", "6"), ("T", "7"), ("B", "8"))


class DocLevel(IntEnum):
    """How the number a searched row carries compares with a candidate's own numbers."""

    SAME_AFTER_REPAIR = 11  # equal once lookalike letters are digits / a lost 0 restored
    ONE_SUBSTITUTION = 10  # one digit differs
    TRANSPOSITION = 9  # two adjacent digits swapped
    ONE_DROPPED_OR_ADDED = 8  # one digit missing or one too many
    TWO_EDITS = 7  # two of the slips above
    SAME_PROVINCE_AND_BIRTH = 6  # PPP, G and YY agree; the random part differs
    SAME_BIRTH_OTHER_PROVINCE = 5  # G and YY agree, the province code differs
    OTHER_BIRTH = 4  # a 12-digit number whose century/sex or year digits differ
    CMND_NOT_ON_RECORD = 3  # a 9-digit CMND; the citizen has no old CMND on record
    CMND_DIFFERENT = 2  # a 9-digit CMND; the citizen's is another
    DIFFERENT = 1  # a malformed number more than two slips from the citizen's
    MISSING = 0  # no number


DOC_LEVEL_LABELS: dict[DocLevel, str] = {
    DocLevel.SAME_AFTER_REPAIR: "the citizen's number once look-alike letters are read as "
                                "digits or a lost leading zero is restored",
    DocLevel.ONE_SUBSTITUTION: "the citizen's number with one digit different",
    DocLevel.TRANSPOSITION: "the citizen's number with two adjacent digits swapped",
    DocLevel.ONE_DROPPED_OR_ADDED: "the citizen's number with one digit missing or added",
    DocLevel.TWO_EDITS: "two typing slips from the citizen's number",
    DocLevel.SAME_PROVINCE_AND_BIRTH: "another number with the same province, century/sex "
                                      "and birth year digits",
    DocLevel.SAME_BIRTH_OTHER_PROVINCE: "another number: same century/sex and birth year "
                                        "digits, another province",
    DocLevel.OTHER_BIRTH: "another number: its century/sex or birth-year digits differ",
    DocLevel.CMND_NOT_ON_RECORD: "an old CMND; the citizen has none on record",
    DocLevel.CMND_DIFFERENT: "an old CMND other than the citizen's",
    DocLevel.DIFFERENT: "a malformed number unlike the citizen's",
    DocLevel.MISSING: "no number",
}
# Levels at which the number is (nearly) the candidate's own: "one typing error".
DOC_SLIP_LEVELS = (DocLevel.SAME_AFTER_REPAIR, DocLevel.ONE_SUBSTITUTION,
                   DocLevel.TRANSPOSITION, DocLevel.ONE_DROPPED_OR_ADDED)


def repaired_number(id_number: ArrayLike) -> pa.Array:
    """Lookalike letters mapped back to digits (``O``->0, ``I``->1, ``S``->5 ...)."""
    s = pc.utf8_upper(as_string_array(id_number))
    for letter, digit in LOOKALIKE_DIGITS:
        s = pc.replace_substring(s, letter, digit)
    return s


def _strings(values: pa.Array) -> list[str]:
    """Python strings for rapidfuzz ('' for null: never closer than its length)."""
    return pc.fill_null(values, "").to_pylist()


def _character_counts(values: pa.Array) -> np.ndarray:
    """(11, n) int16: how many of each digit 0-9 and of any other character each value
    holds. One substitution, insertion or deletion changes these counts by at most 2 in
    total (a transposition by 0), so two values whose counts differ by more than 4 are
    more than two edits apart (Levenshtein and OSA alike)."""
    values = values.cast(pa.string())
    n = len(values)
    _, offsets_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[values.offset:values.offset + n + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0]:offsets[-1]] \
        if data_buffer is not None else np.empty(0, np.uint8)
    # Digits are one byte in UTF-8 and never inside another character's bytes.
    digit = data - np.uint8(ord("0"))  # wraps around below "0"
    is_digit = digit < 10
    owner = np.repeat(np.arange(0, 10 * n, 10, dtype=np.int32), np.diff(offsets))
    counts = np.empty((11, n), dtype=np.int16)
    counts[:10] = np.bincount(owner[is_digit] + digit[is_digit],
                              minlength=10 * n).reshape(n, 10).T
    lengths = np.asarray(pc.fill_null(pc.utf8_length(values), 0), np.int16)
    counts[10] = lengths - counts[:10].sum(axis=0, dtype=np.int16)
    return counts


def character_counts(values: ArrayLike) -> np.ndarray:
    """The character counts :func:`compare_documents` filters pairs with (``(11, n)``),
    for a column of candidates' numbers made once and handed to several comparisons
    (``target_counts``)."""
    return _character_counts(as_string_array(values))


def _edit_level(written: pa.Array, written_at: np.ndarray, target: pa.Array,
                target_at: np.ndarray, counts: dict[int, np.ndarray] | None = None
                ) -> np.ndarray:
    """The slip level of each pair ``(written[written_at[i]], target[target_at[i]])``
    (``DocLevel`` value; 0 where more than two edits). What depends on one value alone
    (validity, character counts) is computed once per value and gathered per pair
    (``counts``: the character counts already made, by ``id`` of the array)."""
    n = len(written_at)
    level = np.zeros(n, dtype=np.int8)
    usable = as_bool_mask(pc.is_valid(written))[written_at] \
        & as_bool_mask(pc.is_valid(target))[target_at]
    if not usable.any():
        return level
    at = np.flatnonzero(usable)
    w_at, t_at = written_at[at], target_at[at]
    # Most pairs are two unrelated numbers: drop those whose characters alone show them
    # more than two edits apart before measuring the rest (exact, see _character_counts).
    counts = {} if counts is None else counts
    for values in (written, target):
        if id(values) not in counts:
            counts[id(values)] = _character_counts(values)
    a, b = counts[id(written)], counts[id(target)]
    gap = np.zeros(len(at), dtype=np.int16)
    for k in range(11):
        gap += np.abs(a[k][w_at] - b[k][t_at])
    near = gap <= 4
    if not near.all():
        at, w_at, t_at = at[near], w_at[near], t_at[near]
        if not len(at):
            return level
    w = written.take(pa.array(w_at, pa.int64()))
    t = target.take(pa.array(t_at, pa.int64()))
    ws, ts = _strings(w), _strings(t)
    lev = process.cpdist(ws, ts, scorer=Levenshtein.distance, score_cutoff=3, workers=-1,
                         dtype=np.int32)
    osa = process.cpdist(ws, ts, scorer=OSA.distance, score_cutoff=3, workers=-1,
                         dtype=np.int32)
    length_gap = np.abs(np.asarray(pc.utf8_length(w), np.int64)
                        - np.asarray(pc.utf8_length(t), np.int64))
    out = np.zeros(len(at), dtype=np.int8)
    out[osa <= 2] = DocLevel.TWO_EDITS
    out[(length_gap == 1) & (lev == 1)] = DocLevel.ONE_DROPPED_OR_ADDED
    out[(length_gap == 0) & (osa == 1) & (lev == 2)] = DocLevel.TRANSPOSITION
    out[(length_gap == 0) & (lev == 1)] = DocLevel.ONE_SUBSTITUTION
    out[lev == 0] = DocLevel.SAME_AFTER_REPAIR
    level[at] = out
    return level


def _equal_at(left: pa.Array, left_at: np.ndarray, right: pa.Array, right_at: np.ndarray
              ) -> np.ndarray:
    """``left[left_at[i]] == right[right_at[i]]`` (null: False), on integer codes."""
    lc, rc = paired_codes(left, left_at, right, right_at)
    return (lc == rc) & (lc >= 0)


def _digits(values: pa.Array, width: int) -> np.ndarray:
    return as_bool_mask(pc.match_substring_regex(values, f"^[0-9]{{{width}}}$"))


def compare_documents(
    id_number: ArrayLike,
    id_issue: ArrayLike,
    citizen_id: ArrayLike,
    legacy_id: ArrayLike,
    *,
    rows: np.ndarray | None = None,
    citizens: np.ndarray | None = None,
    target_counts: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Per (row, candidate) pair: the :class:`DocLevel` of the number the row carries.

    ``id_number``/``id_issue`` are the row's normalised number and issue (a number
    whose lost leading zero was restored is also compared as written, without it);
    ``citizen_id``/``legacy_id`` the candidate's CCCD and old CMND (null: none).
    ``rows``: the pairs' rows, when ``id_number``/``id_issue`` are given once per row
    (the row's side is then prepared once per row, not once per candidate);
    ``citizens``: the pairs' candidates, when ``citizen_id``/``legacy_id`` are given once
    per candidate. Either way each value is prepared once and the pairs gather integers.
    ``target_counts``: :func:`character_counts` of ``citizen_id`` and ``legacy_id``, when
    the caller already has them (a search task counts its citizens once, not once per
    batch of searched rows).
    """
    number = as_string_array(id_number)
    issue = as_string_array(id_issue)
    cid = as_string_array(citizen_id)
    legacy = as_string_array(legacy_id)
    if not len(number) == len(issue):
        raise ValueError("id_number and id_issue must have one length")
    if not len(cid) == len(legacy):
        raise ValueError("citizen_id and legacy_id must have one length")
    rows = np.arange(len(number)) if rows is None else np.asarray(rows, np.int64)
    citizens = np.arange(len(cid)) if citizens is None else np.asarray(citizens, np.int64)
    n = len(rows)
    if not n == len(citizens):
        raise ValueError("id_number, id_issue, citizen_id and legacy_id must have one length")
    written = repaired_number(number)
    restored = as_bool_mask(pc.equal(issue, "LEADING_ZERO_RESTORED"))
    as_sent = pc.if_else(pa.array(restored), pc.utf8_slice_codeunits(written, 1),
                         pa.scalar(None, pa.string()))
    nine, twelve_digits = _digits(written, 9)[rows], _digits(written, 12)[rows]
    has_number = as_bool_mask(pc.is_valid(number))[rows]

    level = np.zeros(n, dtype=np.int8)
    counts: dict[int, np.ndarray] = {}  # each array's character counts, made once
    if target_counts is not None:
        if not all(c.shape == (11, len(cid)) for c in target_counts):
            raise ValueError("target_counts must count citizen_id and legacy_id")
        counts[id(cid)], counts[id(legacy)] = target_counts
    for form in (written, as_sent):
        for target in (cid, legacy):
            level = np.maximum(level, _edit_level(form, rows, target, citizens, counts))

    far = level == 0
    twelve = twelve_digits & as_bool_mask(pc.is_valid(cid))[citizens]
    same_birth = _equal_at(pc.utf8_slice_codeunits(written, 3, 6), rows,
                           pc.utf8_slice_codeunits(cid, 3, 6), citizens)
    same_province = _equal_at(pc.utf8_slice_codeunits(written, 0, 3), rows,
                              pc.utf8_slice_codeunits(cid, 0, 3), citizens)
    has_legacy = as_bool_mask(pc.is_valid(legacy))[citizens]

    level[far & has_number] = DocLevel.DIFFERENT
    level[far & nine & has_legacy] = DocLevel.CMND_DIFFERENT
    level[far & nine & ~has_legacy] = DocLevel.CMND_NOT_ON_RECORD
    level[far & twelve] = DocLevel.OTHER_BIRTH
    level[far & twelve & same_birth] = DocLevel.SAME_BIRTH_OTHER_PROVINCE
    level[far & twelve & same_birth & same_province] = DocLevel.SAME_PROVINCE_AND_BIRTH
    level[~has_number] = DocLevel.MISSING
    return level
