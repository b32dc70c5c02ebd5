"""Finding the registry citizen a subscription's document points to, or candidates for it.

The ID number dominates identity (surname + date of birth is a weak key in
Vietnam: ~38% of people are Nguyễn), so the link is by document number:
CCCD against ``citizen_id``, old CMND against ``legacy_id``. When the
document leads nowhere (NO_ID, INVALID_ID, ID_NOT_FOUND), candidates come
from variants of the number one typing slip away (one digit substituted, two
adjacent digits swapped, one digit dropped or added), lookalike letters mapped
back to digits, the number's verified holder in the previous run, and blocking
keys (date of birth + given name / surname / canonical name, birth year +
canonical name, birth year + sex from a malformed CCCD + given name). The search
runs one registry shard at a time: registry-wide block sizes (for
``max_block``) come with the shard, so a shard finds exactly the pairs the whole
registry would.
Every candidate is scored by the same Fellegi–Sunter model
(``matching.model``); only a clearly best one is reported. All joins are
vectorised (Arrow lookups for document numbers, int64 blocking keys joined by
sorting): no Python loop per row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching import ids
from matching.columns import as_bool_mask, as_string_array, distinct_codes
from matching.documents import repaired_number
from matching.names import BlockingNameKeys, blocking_name_keys


class LinkMethod:
    CCCD = "CCCD"
    LEGACY_CMND = "LEGACY_CMND"


LINK_METHODS = (LinkMethod.CCCD, LinkMethod.LEGACY_CMND)


@dataclass(frozen=True)
class IdLinks:
    """Per subscription: registry row index (-1 when none) and how it was found."""

    registry_index: np.ndarray  # int64, -1 = not linked
    method: np.ndarray  # object: LinkMethod value or None
    ambiguous: np.ndarray  # bool: CMND shared by several citizens (known collision)
    # int8 per row: index into LINK_METHODS, -1 = not linked (``method`` as integers)
    method_code: np.ndarray | None = None

    def codes(self) -> np.ndarray:
        if self.method_code is not None:
            return self.method_code
        code = np.full(len(self.method), -1, dtype=np.int8)
        for value, name in enumerate(LINK_METHODS):
            code[self.method == name] = value
        return code


def _index_in(keys: pa.Array, universe: pa.Array) -> np.ndarray:
    """Per key, the index of its first occurrence in ``universe`` (-1: none).

    A few keys against a large universe (the searched rows against the whole
    registry): the keys are hashed and the universe probed once, instead of hashing
    the whole universe for every lookup.
    """
    if isinstance(universe, pa.ChunkedArray):
        universe = universe.combine_chunks()
    if len(universe) > 4 * len(keys) and len(universe) > 10_000:
        rows = np.flatnonzero(as_bool_mask(pc.is_in(universe, value_set=pc.unique(keys))))
        if rows.size == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        index = pc.index_in(keys, value_set=universe.take(pa.array(rows, pa.int64())))
        found = np.asarray(pc.fill_null(index, -1).to_numpy(zero_copy_only=False), np.int64)
        return np.where(found >= 0, rows[np.maximum(found, 0)], -1)
    index = pc.index_in(keys, value_set=universe)
    return np.asarray(pc.fill_null(index, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


def numbers_of_width(values: pa.Array, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, int64 values) of the values that are exactly ``width`` ASCII digits: the
    ones that can equal a ``width``-digit registry number."""
    values = as_string_array(values)
    rows = np.flatnonzero(as_bool_mask(
        pc.match_substring_regex(values, f"^[0-9]{{{width}}}$")))
    if not rows.size:
        return rows.astype(np.int64), np.empty(0, np.int64)
    return rows, np.asarray(pc.cast(values.take(pa.array(rows, pa.int64())), pa.int64()),
                            dtype=np.int64)


def known_numbers(universe: pa.Array, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``width``-digit numbers of ``universe`` as sorted distinct int64 values, and
    the index of each one's first occurrence in ``universe``: what the variants are
    looked up in (:func:`numbers_found`), made once per registry part."""
    numbers, known = numbers_of_width(universe, width)
    if not numbers.size:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    order = np.argsort(known, kind="stable")  # equal numbers: the first occurrence first
    known = known[order]
    first = np.r_[True, known[1:] != known[:-1]]
    return known[first], numbers[order[first]]


def numbers_found(positions: np.ndarray, ordered: np.ndarray,
                   known: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(variant, universe index) of every variant (``ordered``: the values of numbers of
    one width, sorted; ``positions``: where each stands among the variants) found among
    ``known`` (values and their index in the universe, one per number, in any order:
    e.g. :func:`known_numbers`, the first occurrence), at that index: what
    :func:`_index_in` of the digit strings finds, since a string equals a
    ``width``-digit number exactly where it is ``width`` ASCII digits of the same
    value."""
    none = np.empty(0, np.int64)
    values, citizens = known
    if not len(values) or not len(ordered):
        return none, none
    lo = np.searchsorted(ordered, values, side="left")
    count = np.searchsorted(ordered, values, side="right") - lo
    total = int(count.sum())
    at = np.repeat(lo - (np.cumsum(count) - count), count) + np.arange(total)
    return positions[at], np.repeat(citizens, count)


def link_by_document(
    id_type: pa.Array,
    id_number: pa.Array,
    id_valid: pa.Array,
    registry_citizen_id: pa.Array,
    registry_legacy_id: pa.Array,
) -> IdLinks:
    """Exact link: CCCD -> citizen_id, CMND -> legacy_id (vectorised hash lookups)."""
    n = len(id_number)
    valid = as_bool_mask(id_valid)
    is_cccd = as_bool_mask(pc.equal(id_type, "CCCD")) & valid
    is_cmnd = as_bool_mask(pc.equal(id_type, "CMND")) & valid

    index = np.full(n, -1, dtype=np.int64)
    code = np.full(n, -1, dtype=np.int8)
    for value, (wanted, universe) in enumerate(((is_cccd, registry_citizen_id),
                                                (is_cmnd, registry_legacy_id))):
        if not wanted.any():
            continue
        rows = np.flatnonzero(wanted)
        found = _index_in(pc.take(id_number, pa.array(rows)), universe)
        hit = found >= 0
        index[rows[hit]] = found[hit]
        code[rows[hit]] = value
    method = np.asarray((*LINK_METHODS, None), dtype=object)[code]

    counts = pc.value_counts(pc.drop_null(registry_legacy_id))
    shared = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    ambiguous = is_cmnd & np.asarray(
        pc.is_in(id_number, value_set=shared).to_numpy(zero_copy_only=False), dtype=bool
    )
    return IdLinks(registry_index=index, method=method, ambiguous=ambiguous, method_code=code)


# --- Candidate search without a usable document ----------------------------------------
@dataclass(frozen=True)
class CandidatePairs:
    """Candidate (subscription row, registry row) pairs and how each was reached."""

    row: np.ndarray  # int64 index into the searched subscriptions
    citizen: np.ndarray  # int64 registry row
    id_level: np.ndarray  # int8 IdLevel: ONE_EDIT when a number variant led there, else NONE


def _date_text(dates: pa.Array, precision: pa.Array, *, day: bool) -> pa.Array:
    """ISO date (day precision only) or the year, as text; null where not applicable."""
    if day:
        is_day = pc.equal(pc.fill_null(precision, "day"), "day")
        text = pc.strftime(dates, format="%Y-%m-%d")
        return pc.if_else(is_day, text, pa.scalar(None, pa.string()))
    return pc.cast(pc.year(dates), pa.string())


def _keys(family: str, *parts: pa.Array) -> pa.Array:
    """``family|part1|part2``; null when any part is null (no key, no block)."""
    return pc.binary_join_element_wise(pa.scalar(family), *parts, "|",
                                       null_handling="emit_null")


def blocking_keys(full_name: pa.Array, date_of_birth: pa.Array, dob_precision: pa.Array,
                  birth_year: pa.Array, sex: pa.Array) -> pa.Table:
    """Every blocking key of each row (``row``, ``key``); same recipe for both sides.

    Families: date of birth + given name, date of birth + surname, date of birth
    + canonical (order/diacritic/Văn-Thị-free) name, birth year + canonical name
    (year-only dates), and birth year + sex + given name, where ``birth_year``
    and ``sex`` may come from the century/sex and year digits of a malformed CCCD.
    Surname + date of birth alone is weak in Vietnam (Nguyễn ≈ 38%), so every
    family still goes through the full model before anything is suggested.
    """
    full_name, date_of_birth, dob_precision, birth_year, sex = (
        c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c
        for c in (full_name, date_of_birth, dob_precision, birth_year, sex))
    names = blocking_name_keys(full_name)
    given, surname, canonical = names.given, names.surname, names.canonical
    day = _date_text(date_of_birth, dob_precision, day=True)
    year = _date_text(date_of_birth, dob_precision, day=False)
    birth_year = pc.cast(birth_year, pa.string())
    families = (
        _keys("dg", day, given), _keys("ds", day, surname), _keys("dc", day, canonical),
        _keys("yc", year, canonical), _keys("ysg", birth_year, pc.cast(sex, pa.string()), given),
    )
    n = len(full_name)
    rows = np.tile(np.arange(n, dtype=np.int64), len(families))
    keys = pa.concat_arrays([k.cast(pa.string()) for k in families])
    table = pa.table({"row": rows, "key": keys})
    return table.filter(pc.is_valid(table["key"]))


def _block_join(left: pa.Table, right: pa.Table, max_block: int) -> tuple[np.ndarray, np.ndarray]:
    """Hash join on ``key``; registry blocks larger than ``max_block`` are skipped."""
    if left.num_rows == 0 or right.num_rows == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    sizes = pc.value_counts(right["key"])
    small = pc.filter(sizes.field("values"), pc.less_equal(sizes.field("counts"), max_block))
    right = right.filter(pc.is_in(right["key"], value_set=small))
    joined = right.rename_columns(["citizen", "key"]).join(left, "key", join_type="inner",
                                                           use_threads=True)
    return (np.asarray(joined["row"].to_numpy(), np.int64),
            np.asarray(joined["citizen"].to_numpy(), np.int64))


# The same keys in integer form. A string key per family and row costs five strings
# per registry citizen; here the name parts are coded once per distinct name against
# the registry's own dictionaries, dates are integers, and a key is one int64:
# family | date or year (offset) | name code. Equal keys exactly where the strings are.
_FAMILY_SHIFT, _TIME_SHIFT, _TIME_OFFSET = 60, 33, 1 << 26
_CODE_LIMIT = 1 << _TIME_SHIFT
_FAMILIES = ("dg", "ds", "dc", "yc", "ysg")  # blocking_keys' order
_FAMILY_PARTS = (("day", "given"), ("day", "surname"), ("day", "canonical"),
                 ("year", "canonical"), ("birth_year", "given_sex"))


@dataclass(frozen=True)
class BlockingParts:
    """What each row's blocking keys are made of (see :func:`blocking_parts`)."""

    names: BlockingNameKeys  # given / surname / canonical key of each distinct name
    name_code: np.ndarray  # int64 per row: its distinct name (-1: no name)
    day: np.ndarray  # int64 days since 1970 where the date has day precision
    has_day: np.ndarray  # bool
    year: np.ndarray  # int64 year of the date, any precision
    has_year: np.ndarray
    birth_year: np.ndarray  # int64 (of the date, or read from a malformed CCCD)
    has_birth_year: np.ndarray
    sex: pa.Array  # string per row

    def __len__(self) -> int:
        return len(self.name_code)


def _int64(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Integers (0 where null) and where they are known."""
    known = as_bool_mask(pc.is_valid(values))
    return np.asarray(pc.fill_null(values, 0).to_numpy(zero_copy_only=False),
                      dtype=np.int64), known


def blocking_years(date_of_birth: pa.Array, birth_year: pa.Array
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(year, has_year, birth_year, has_birth_year): the years a row's blocking keys
    carry (the day keys' year is ``year`` too). Every key holds one of them, so a row
    meets through its keys only the citizens born in these years."""
    year, has_year = _int64(pc.year(pc.cast(date_of_birth, pa.date32())))
    by, has_by = _int64(pc.cast(birth_year, pa.int64()))
    return year, has_year, by, has_by


def blocking_parts(full_name: pa.Array, date_of_birth: pa.Array, dob_precision: pa.Array,
                   birth_year: pa.Array, sex: pa.Array) -> BlockingParts:
    """The parts of :func:`blocking_keys` of each row, for :func:`plan_candidates`."""
    full_name, sex = (c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c
                      for c in (full_name, sex))
    distinct, name_code = distinct_codes(pc.cast(full_name, pa.string()))
    dates = pc.cast(date_of_birth, pa.date32())
    day, has_day = _int64(pc.cast(dates, pa.int32()))
    has_day &= as_bool_mask(pc.equal(pc.fill_null(dob_precision, "day"), "day"))
    year, has_year, by, has_by = blocking_years(dates, birth_year)
    return BlockingParts(names=blocking_name_keys(distinct), name_code=name_code,
                         day=day, has_day=has_day, year=year, has_year=has_year,
                         birth_year=by, has_birth_year=has_by,
                         sex=pc.cast(sex, pa.string()))


def _codes_in(values: pa.Array, dictionary: pa.Array) -> np.ndarray:
    """Index of each value in ``dictionary`` (distinct, non-null); -1: null or absent."""
    return np.asarray(pc.fill_null(pc.index_in(values, value_set=dictionary), -1).to_numpy(),
                      dtype=np.int64)


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` by sorting (its hashing path is slow on packed integer keys)."""
    values = np.sort(values)
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


def _per_row(codes: np.ndarray, name_code: np.ndarray) -> np.ndarray:
    if not len(codes):
        return np.full(len(name_code), -1, dtype=np.int64)
    return np.where(name_code >= 0, codes[np.maximum(name_code, 0)], -1)


class _Coder:
    """Integer blocking keys against one registry's dictionaries of name parts and sexes,
    so the registry's keys do not depend on the rows searched."""

    def __init__(self, dictionaries: dict[str, pa.Array], sexes: pa.Array) -> None:
        self.dictionaries, self.sexes = dictionaries, sexes

    @classmethod
    def of(cls, registry: BlockingParts) -> _Coder:
        return cls({part: pc.unique(pc.drop_null(getattr(registry.names, part)))
                    for part in ("given", "surname", "canonical")},
                   pc.unique(pc.drop_null(registry.sex)))

    def keys(self, parts: BlockingParts, family: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, keys) of one family; rows without that key are left out."""
        time_name, part = _FAMILY_PARTS[family]
        time, known = getattr(parts, time_name), getattr(parts, f"has_{time_name}")
        if part == "given_sex":
            given = _per_row(_codes_in(parts.names.given, self.dictionaries["given"]),
                             parts.name_code)
            sex = _codes_in(parts.sex, self.sexes)
            code = np.where((given >= 0) & (sex >= 0), given * (len(self.sexes) + 1) + sex, -1)
        else:
            code = _per_row(_codes_in(getattr(parts.names, part), self.dictionaries[part]),
                            parts.name_code)
        shifted = time + _TIME_OFFSET
        # Dates are years 1-9999 (date parsing accepts no other): far inside the offset.
        ok = known & (code >= 0) & (shifted >= 0) & (shifted < 1 << (_FAMILY_SHIFT - _TIME_SHIFT))
        if ok.any() and code[ok].max() >= _CODE_LIMIT:
            raise ValueError("too many distinct names for integer blocking keys")
        rows = np.flatnonzero(ok)
        return rows, (np.int64(family) << _FAMILY_SHIFT) | (shifted[rows] << _TIME_SHIFT) \
            | code[rows]


@dataclass(frozen=True)
class _BlockPlan:
    """The searched rows' keys and, per key, its registry block (``lo``, ``count``: a
    range of ``citizens``, the registry rows sorted by key; 0 where the block is larger
    than the limit or absent)."""

    rows: np.ndarray  # int64 searched row of each key
    lo: np.ndarray
    count: np.ndarray
    citizens: np.ndarray

    def pairs(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(row, citizen) pairs of the searched rows ``start`` ≤ row < ``stop``."""
        at = np.flatnonzero((self.rows >= start) & (self.rows < stop) & (self.count > 0))
        count = self.count[at]
        total = int(count.sum())
        if total == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        first = np.repeat(self.lo[at] - (np.cumsum(count) - count), count) + np.arange(total)
        return np.repeat(self.rows[at], count), self.citizens[first]

    def pair_counts(self, n_rows: int) -> np.ndarray:
        """Block pairs per searched row (before duplicates across families are merged)."""
        return np.bincount(self.rows, weights=self.count, minlength=n_rows).astype(np.int64)


BLOCK_FAMILIES = _FAMILIES


def registry_block_sizes(parts: BlockingParts) -> np.ndarray:
    """(citizens, families) int32: how many citizens share each citizen's key of each
    blocking family (0: no key), over the registry given. Counted over the whole registry
    when its snapshot is prepared, they let a shard skip exactly the blocks larger than
    ``max_block`` that the whole registry would."""
    coder = _Coder.of(parts)
    sizes = np.zeros((len(parts), len(_FAMILIES)), dtype=np.int32)
    for family in range(len(_FAMILIES)):
        rows, keys = coder.keys(parts, family)
        if not len(keys):
            continue
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        lengths = np.diff(np.r_[starts, len(ordered)])
        sizes[rows[order], family] = np.repeat(lengths, lengths).astype(np.int32)
    return sizes


def index_block_sizes(block_keys: np.ndarray, block_citizens: np.ndarray,
                      citizens: int) -> np.ndarray:
    """:func:`registry_block_sizes` read off a :class:`RegistryIndex` of the same
    ``citizens`` (its ``block_keys``, ``block_citizens``): the keys are sorted with the
    family in their high bits and a citizen has at most one key per family, so a block's
    size is its run's length, and the keys are not made a second time."""
    sizes = np.zeros((citizens, len(_FAMILIES)), dtype=np.int32)
    if len(block_keys):
        starts = np.flatnonzero(np.r_[True, block_keys[1:] != block_keys[:-1]])
        lengths = np.diff(np.r_[starts, len(block_keys)])
        sizes[block_citizens, (block_keys >> _FAMILY_SHIFT).astype(np.int64)] = \
            np.repeat(lengths, lengths).astype(np.int32)
    return sizes


@dataclass(frozen=True)
class RegistryIndex:
    """A registry (shard)'s half of :func:`plan_candidates`, independent of the rows
    searched: made once when the snapshot is prepared (:func:`registry_index`), instead of
    once per search task. Every family's integer blocking keys, sorted (the family is in
    the key's high bits), with the citizen (row) of each, ascending within a key; the
    dictionaries the keys' name codes index; and per width (12: CCCD, 9: CMND) the
    :func:`known_numbers` the number variants are looked up in."""

    dictionaries: dict[str, pa.Array]  # given, surname, canonical name keys
    sexes: pa.Array
    block_keys: np.ndarray  # int64, sorted
    block_citizens: np.ndarray  # int64 row of each key
    numbers: dict[int, tuple[np.ndarray, np.ndarray]]

    @property
    def coder(self) -> _Coder:
        return _Coder(self.dictionaries, self.sexes)


def registry_index(parts: BlockingParts, citizen_id: pa.Array,
                   legacy_id: pa.Array | None = None) -> RegistryIndex:
    """:class:`RegistryIndex` of a registry (shard): ``parts`` its :func:`registry_parts`,
    ``citizen_id``/``legacy_id`` its CCCD and old CMND numbers."""
    coder = _Coder.of(parts)
    rows, keys = [], []
    for family in range(len(_FAMILIES)):
        family_rows, family_keys = coder.keys(parts, family)
        rows.append(family_rows)
        keys.append(family_keys)
    all_keys = np.concatenate(keys) if keys else np.empty(0, np.int64)
    order = np.argsort(all_keys, kind="stable")
    legacy = legacy_id if legacy_id is not None else pa.nulls(len(citizen_id), pa.string())
    return RegistryIndex(
        dictionaries=coder.dictionaries, sexes=coder.sexes, block_keys=all_keys[order],
        block_citizens=(np.concatenate(rows) if rows else np.empty(0, np.int64))[order],
        numbers={12: known_numbers(citizen_id, 12), 9: known_numbers(legacy, 9)})


def _plan_blocks(sub: BlockingParts, index: RegistryIndex, max_block: int,
                 reg_sizes: np.ndarray | None = None) -> _BlockPlan:
    """Every family's keys of the searched rows, each with its block of the registry
    (a binary search in the index's sorted keys). ``reg_sizes``:
    :func:`registry_block_sizes` of the whole registry (default: the blocks as found in
    the index)."""
    coder = index.coder
    s_rows, s_keys = [], []
    for family in range(len(_FAMILIES)):
        rows, keys = coder.keys(sub, family)
        s_rows.append(rows)
        s_keys.append(keys)
    sub_rows, sub_keys = np.concatenate(s_rows), np.concatenate(s_keys)
    reg_keys, reg_rows = index.block_keys, index.block_citizens
    lo = np.searchsorted(reg_keys, sub_keys, side="left")
    count = np.searchsorted(reg_keys, sub_keys, side="right") - lo
    if reg_sizes is None:
        count[count > max_block] = 0  # the whole registry block holds the key: size is exact
    elif len(reg_rows):
        first = reg_rows[np.minimum(lo, len(reg_rows) - 1)]
        size = reg_sizes[first, (sub_keys >> _FAMILY_SHIFT).astype(np.int64)]
        count[(count > 0) & (size > max_block)] = 0
    return _BlockPlan(rows=sub_rows, lo=lo, count=count, citizens=reg_rows)


@dataclass(frozen=True)
class CandidatePlan:
    """The candidates of a set of searched rows, ready to be drawn a range of rows at a
    time (the pairs of all rows at once can outgrow memory: tens to hundreds per row)."""

    n_rows: int
    id_rows: np.ndarray  # pairs reached through the number (ONE_EDIT)
    id_citizens: np.ndarray
    blocks: _BlockPlan | None  # integer keys
    block_rows: np.ndarray  # pairs of string keys (when given a key table)
    block_citizens: np.ndarray

    def pair_counts(self) -> np.ndarray:
        """An upper bound of the pairs of each row (duplicates not merged yet)."""
        counts = np.bincount(self.id_rows, minlength=self.n_rows) \
            + np.bincount(self.block_rows, minlength=self.n_rows)
        if self.blocks is not None:
            counts += self.blocks.pair_counts(self.n_rows)
        return counts

    def all_pairs(self) -> CandidatePairs:
        """The pairs of every row (see :meth:`pairs`)."""
        return self.pairs(0, self.n_rows)

    def pairs(self, start: int, stop: int) -> CandidatePairs:
        """The unique pairs of rows ``start`` ≤ row < ``stop``, numbered from ``start``;
        ONE_EDIT wins over NONE; sorted by row, then citizen."""
        in_range = (self.id_rows >= start) & (self.id_rows < stop)
        rows_parts = [self.id_rows[in_range]]
        cit_parts = [self.id_citizens[in_range]]
        in_range = (self.block_rows >= start) & (self.block_rows < stop)
        rows_parts.append(self.block_rows[in_range])
        cit_parts.append(self.block_citizens[in_range])
        if self.blocks is not None:
            b_rows, b_cit = self.blocks.pairs(start, stop)
            rows_parts.append(b_rows)
            cit_parts.append(b_cit)
        n_id = len(rows_parts[0])
        rows = np.concatenate(rows_parts) - start
        cit = np.concatenate(cit_parts)
        if rows.size == 0:
            return CandidatePairs(rows, cit, np.zeros(0, dtype=np.int8))
        # Unique pairs, the number's (ONE_EDIT) first: one sort of one int64 per pair,
        # row | citizen | 0 for ONE_EDIT, 1 for NONE.
        if max(int(rows.max()), int(cit.max())) >= 1 << 31:
            raise ValueError("too many rows for candidate pairs")
        none = np.ones(len(rows), dtype=np.int64)
        none[:n_id] = 0
        key = _sorted_unique((rows << 32 | cit) << 1 | none)
        pair = key >> 1
        first = np.ones(len(key), dtype=bool)
        first[1:] = pair[1:] != pair[:-1]
        key = key[first]
        level = (1 - (key & 1)).astype(np.int8)  # IdLevel.ONE_EDIT = 1, NONE = 0
        return CandidatePairs(key >> 33, (key >> 1) & 0xFFFFFFFF, level)


def _slips(numbers: pa.Array) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows, (m, L) digit matrix) of the slip variants of each length (see
    :func:`slip_variants`), duplicates not removed."""
    s = as_string_array(numbers)
    lengths = np.asarray(pc.fill_null(pc.utf8_length(s), 0), dtype=np.int64)
    digits_only = as_bool_mask(pc.match_substring_regex(s, r"^[0-9]+$"))
    for width, delta in ((13, -1), (10, -1), (11, 1), (8, 1)):
        rows = np.flatnonzero(digits_only & (lengths == width))
        if not rows.size:
            continue
        digits = ids.digit_matrix(s.take(pa.array(rows)), width)
        if delta < 0:  # drop position k
            keep = np.ones(width, dtype=bool)
            cand = []
            for k in range(width):
                keep[:] = True
                keep[k] = False
                cand.append(digits[:, keep])
            block = np.stack(cand, axis=1)  # (rows, width, width - 1)
        else:  # insert digit d before position k
            cand = [np.insert(digits, k, d, axis=1) for k in range(width + 1) for d in range(10)]
            block = np.stack(cand, axis=1)  # (rows, 10 (width + 1), width + 1)
        per_row = block.shape[1]
        yield np.repeat(rows, per_row), block.reshape(-1, block.shape[2])


def slip_variants(numbers: pa.Array) -> pa.Table:
    """Every number one dropped or one added digit away, for the lengths a document
    number can have after such a slip: 13 and 10 digits lose one (-> CCCD, CMND), 11 and
    8 digits gain one (-> CCCD, CMND). Columns ``row``, ``variant``; duplicates of a row
    removed. (Substitutions and swaps: ``ids.near_miss_variants``.)"""
    slips = list(_slips(numbers))
    if not slips:
        return pa.table({"row": pa.array([], pa.int64()), "variant": pa.array([], pa.string())})
    table = pa.table({"row": np.concatenate([rows for rows, _ in slips]),
                      "variant": pa.concat_arrays([ids.digit_strings(m) for _, m in slips])})
    return table.group_by(["row", "variant"], use_threads=False).aggregate([]) \
        .sort_by([("row", "ascending"), ("variant", "ascending")])


@dataclass(frozen=True)
class SearchedSide:
    """What :func:`plan_candidates` derives from the searched rows alone (their number
    variants, repaired numbers, blocking parts); the candidate search's routing looks the
    same variants up over the whole registry's numbers."""

    variant_rows: np.ndarray  # int64 searched row of each variant
    # Per width (12: a CCCD, 9: a CMND; numbers one slip away): the positions of the
    # variants of that many digits, ordered by their value, and those values (int64).
    variant_sorted: dict[int, tuple[np.ndarray, np.ndarray]]
    repaired: pa.Array  # lookalike letters read as digits
    repaired_changed: np.ndarray  # bool: the repair changed the number
    parts: BlockingParts | None  # None: string keys wanted instead


def _sorted_by_value(values: np.ndarray, widths: np.ndarray
                     ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """:attr:`SearchedSide.variant_sorted` of the variants' values and widths."""
    out = {}
    for width in (12, 9):
        at = np.flatnonzero(widths == width)
        # Equal values in any order: every variant of a value is drawn, and the pairs are
        # made unique and sorted afterwards (CandidatePlan.pairs).
        order = at[np.argsort(values[at])]
        out[width] = (order, values[order])
    return out


def searched_side(*, full_name: pa.Array, date_of_birth: pa.Array, dob_precision: pa.Array,
                  id_number: pa.Array, id_birth_year: pa.Array, id_sex: pa.Array,
                  near_miss: np.ndarray, id_issue: pa.Array | None = None,
                  integer_keys: bool = True) -> SearchedSide:
    """The searched rows' half of :func:`plan_candidates` (see there)."""
    id_number = as_string_array(id_number)
    rows_parts, value_parts, width_parts = [], [], []
    searched = np.flatnonzero(near_miss)
    if searched.size:
        numbers = pc.take(id_number, pa.array(searched))
        if id_issue is not None:  # slips of the number as sent, before a 0 was restored
            restored = pc.equal(pc.take(as_string_array(id_issue), pa.array(searched)),
                                "LEADING_ZERO_RESTORED")
            as_sent = pc.if_else(restored, pc.utf8_slice_codeunits(numbers, 1), numbers)
        else:
            as_sent = numbers
        # Substitutions and swaps of a 12- or 9-digit number; a dropped or added digit of
        # the others. A 12-digit variant can only be a CCCD, a 9-digit one a CMND. As
        # integers: a string per variant (~130 a number) was most of this step's time.
        rows, values, widths = ids.near_miss_values(numbers)
        rows_parts.append(rows)
        value_parts.append(values)
        width_parts.append(widths)
        for rows, matrix in _slips(as_sent):
            rows_parts.append(rows)
            value_parts.append(ids.digit_values(matrix))
            width_parts.append(np.full(len(rows), matrix.shape[1], dtype=np.int64))
        rows_parts = [searched[r] for r in rows_parts]
    repaired = repaired_number(id_number)
    none = np.empty(0, np.int64)
    return SearchedSide(
        variant_rows=np.concatenate(rows_parts) if rows_parts else none,
        variant_sorted=_sorted_by_value(
            np.concatenate(value_parts) if value_parts else none,
            np.concatenate(width_parts) if width_parts else none),
        repaired=repaired,
        repaired_changed=as_bool_mask(pc.not_equal(repaired, pc.utf8_upper(id_number))),
        parts=blocking_parts(full_name, date_of_birth, dob_precision, id_birth_year, id_sex)
        if integer_keys else None)


def plan_candidates(
    *,
    full_name: pa.Array,
    date_of_birth: pa.Array,
    dob_precision: pa.Array,
    id_number: pa.Array,
    id_birth_year: pa.Array,
    id_sex: pa.Array,
    registry_blocking: pa.Table | BlockingParts | RegistryIndex,
    registry_citizen_id: pa.Array,
    near_miss: np.ndarray,
    max_block: int = 200,
    registry_block_sizes: np.ndarray | None = None,
    registry_legacy_id: pa.Array | None = None,
    id_issue: pa.Array | None = None,
    previous_holder: pa.Array | None = None,
) -> CandidatePlan:
    """Candidates of rows whose document leads nowhere: number variants, the number's
    previous holder and blocking keys.

    ``near_miss`` marks rows whose number gets variants one typing slip away: one digit
    substituted or two adjacent swapped (12 digits against ``registry_citizen_id``, 9
    against ``registry_legacy_id``), one dropped (13, 10) or added (11 as sent, i.e.
    before a lost leading zero was restored, 8); every row with lookalike letters is also
    tried with them mapped back to digits. Pairs are unique; ONE_EDIT wins over NONE.
    ``registry_blocking``: the registry's :func:`registry_index` (integer keys, made
    once per registry shard), its :func:`blocking_parts` (the index is then made here),
    or its :func:`blocking_keys` table (``citizen``, ``key``); ``registry_block_sizes``: the
    whole registry's :func:`registry_block_sizes` when ``registry_blocking`` is one shard
    of it. ``previous_holder``: per row, the citizen_id of the number's verified holder
    in the previous run (null: none). For many rows against a large registry,
    draw them a chunk of rows at a time (:meth:`CandidatePlan.pairs`);
    :meth:`CandidatePlan.all_pairs` draws every row's at once.
    """
    if isinstance(registry_blocking, BlockingParts):
        registry_blocking = registry_index(registry_blocking, registry_citizen_id,
                                           registry_legacy_id)
    integer_keys = isinstance(registry_blocking, RegistryIndex)
    side = searched_side(full_name=full_name, date_of_birth=date_of_birth,
                         dob_precision=dob_precision, id_number=id_number,
                         id_birth_year=id_birth_year, id_sex=id_sex, near_miss=near_miss,
                         id_issue=id_issue, integer_keys=integer_keys)
    registry_citizen_id = as_string_array(registry_citizen_id)
    rows_parts, cit_parts = [], []
    if len(side.variant_rows):
        for size, universe in ((12, registry_citizen_id), (9, registry_legacy_id)):
            if isinstance(registry_blocking, RegistryIndex):
                known = registry_blocking.numbers[size]
            elif universe is None:
                continue
            else:
                known = known_numbers(universe, size)
            variant, citizen = numbers_found(*side.variant_sorted[size], known)
            rows_parts.append(side.variant_rows[variant])
            cit_parts.append(citizen)
    by_repair = _index_in(side.repaired, registry_citizen_id)
    hit = side.repaired_changed & (by_repair >= 0)
    rows_parts.append(np.flatnonzero(hit))
    cit_parts.append(by_repair[hit])

    none = np.empty(0, np.int64)
    blocks, b_rows, b_cit = None, none, none
    if integer_keys:
        sub_parts = side.parts
        assert sub_parts is not None
        if len(sub_parts) and len(registry_citizen_id):
            blocks = _plan_blocks(sub_parts, registry_blocking, max_block, registry_block_sizes)
    else:  # string keys (``blocking_keys``), e.g. computed elsewhere
        sub_keys = blocking_keys(full_name, date_of_birth, dob_precision, id_birth_year,
                                 id_sex)
        b_rows, b_cit = _block_join(sub_keys, registry_blocking, max_block)
    if previous_holder is not None:  # the number's verified holder last time
        before = _index_in(as_string_array(previous_holder), registry_citizen_id)
        had = before >= 0
        b_rows = np.concatenate([b_rows, np.flatnonzero(had)])
        b_cit = np.concatenate([b_cit, before[had]])
    return CandidatePlan(n_rows=len(full_name),
                         id_rows=np.concatenate(rows_parts).astype(np.int64),
                         id_citizens=np.concatenate(cit_parts).astype(np.int64),
                         blocks=blocks, block_rows=b_rows.astype(np.int64),
                         block_citizens=b_cit.astype(np.int64))


def plan_routed(parts: BlockingParts, index: RegistryIndex, *, max_block: int,
                registry_block_sizes: np.ndarray | None, id_rows: np.ndarray,
                id_citizens: np.ndarray, other_rows: np.ndarray,
                other_citizens: np.ndarray) -> CandidatePlan:
    """The candidates of searched rows within one part of the registry whose number
    look-ups were made elsewhere, over the whole registry (``id_*``: pairs found through
    a number one slip away or repaired, ONE_EDIT; ``other_*``: the number's previous
    holder, NONE): those pairs and the rows' blocks in the part's ``index``. The same
    pairs :func:`plan_candidates` finds when the part is the whole registry."""
    blocks = _plan_blocks(parts, index, max_block, registry_block_sizes) \
        if len(parts) and len(index.block_keys) else None
    return CandidatePlan(n_rows=len(parts), id_rows=np.asarray(id_rows, np.int64),
                         id_citizens=np.asarray(id_citizens, np.int64), blocks=blocks,
                         block_rows=np.asarray(other_rows, np.int64),
                         block_citizens=np.asarray(other_citizens, np.int64))


@dataclass(frozen=True)
class BestCandidates:
    """Per searched row: the best candidate (-1 none), its weight, the runner-up gap."""

    citizen: np.ndarray
    id_level: np.ndarray
    probability: np.ndarray
    margin: np.ndarray  # bits between best and second best (inf when alone)
    count: np.ndarray
    pair: np.ndarray | None = None  # index of the best pair (-1 none)


def best_candidates(pairs: CandidatePairs, weight: np.ndarray, probability: np.ndarray,
                    n_rows: int) -> BestCandidates:
    """The highest-weight candidate per row and how far ahead of the next one it is."""
    citizen = np.full(n_rows, -1, dtype=np.int64)
    level = np.zeros(n_rows, dtype=np.int8)
    prob = np.zeros(n_rows)
    margin = np.zeros(n_rows)
    count = np.bincount(pairs.row, minlength=n_rows).astype(np.int64)
    pair = np.full(n_rows, -1, dtype=np.int64)
    if pairs.row.size == 0:
        return BestCandidates(citizen, level, prob, margin, count, pair)
    order = np.lexsort((-weight, pairs.row))
    rows, w = pairs.row[order], weight[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = rows[1:] != rows[:-1]
    second = np.zeros(len(rows), dtype=bool)
    second[1:] = first[:-1] & ~first[1:]
    best_at = order[first]
    citizen[rows[first]] = pairs.citizen[best_at]
    level[rows[first]] = pairs.id_level[best_at]
    prob[rows[first]] = probability[best_at]
    margin[rows[first]] = np.inf
    margin[rows[second]] = w[np.flatnonzero(second) - 1] - w[second]
    pair[rows[first]] = best_at
    return BestCandidates(citizen, level, prob, margin, count, pair)


def registry_parts(full_name: pa.Array, date_of_birth: pa.Array, dob_precision: pa.Array,
                   gender: pa.Array) -> BlockingParts:
    """What a registry's blocking keys are made of (birth year and sex from the date of
    birth and the gender on record)."""
    full_name, date_of_birth, dob_precision, gender = (
        c.combine_chunks() if isinstance(c, pa.ChunkedArray) else c
        for c in (full_name, date_of_birth, dob_precision, gender))
    return blocking_parts(full_name, date_of_birth, dob_precision, pc.year(date_of_birth),
                          gender)
