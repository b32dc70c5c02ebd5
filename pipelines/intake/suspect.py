"""Text that decodes but is not what the telco meant: mojibake, control characters.

**Mojibake.** A Vietnamese export once decoded as Windows-1252 (or 1258) and
saved again as UTF-8 is valid UTF-8, so no decoder complains: "Nguyễn" arrives as
"Nguyá»…n", "Đức" as "Ä\\x90á»©c", and every such row then fails to match. The
characters betray it: each UTF-8 byte became one Windows character, so a
character that stands for a UTF-8 lead byte (``Ã``, ``Ä``, ``á``…) is followed by
ones that stand for continuation bytes (``»``, ``…``, ``º``…), which never happens
in Vietnamese text. Such a value is *repairable* when taking its characters back
to Windows-1252 (or 1258) bytes gives valid UTF-8, and only one of the two code
pages gives a reading (undefined bytes travel as the C1 control of the same
number, as Windows does). A value where a byte was lost (``Ä`` without its
``\\x90``, a ``?`` or ``�`` in its place) has no exact reading.

ftfy does this repair for Windows-1252 but not for 1258, and on a value it
cannot fully undo it repairs the part it can and keeps the rest (``Văn Äức``):
a silent partial repair, which is what this reader must never do. So the two
code pages are taken back here with their own byte tables, all or nothing.

**Control characters.** C0 controls other than tab and line breaks, DEL and C1
controls have no place in a name, a number, a date or a code; a row holding one
is quarantined (``CONTROL_CHARACTER``) rather than silently cleaned.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from matching.columns import as_bool_mask, distinct_codes, take_codes
from pipelines.intake import encodings

CP1252, CP1258 = "windows-1252", "windows-1258"
BOTH = "windows-1252/1258"  # both code pages give the same reading
# Undefined bytes of each code page: Windows decodes them to the C1 control of the
# same number, and so do these tables.
_UNDEFINED = {CP1252: (0x81, 0x8D, 0x8F, 0x90, 0x9D),
              CP1258: (0x81, 0x8A, 0x8D, 0x8E, 0x8F, 0x90, 0x9A, 0x9D, 0x9E)}
_CONTROL = r"[\x{0}-\x{8}\x{B}\x{C}\x{E}-\x{1F}\x{7F}-\x{9F}]"


@cache
def _table(codepage: str) -> str:
    """The 256 characters the code page (with C1 controls for its holes) decodes to."""
    python = "cp1252" if codepage == CP1252 else "cp1258"
    return "".join(chr(b) if b in _UNDEFINED[codepage] else bytes([b]).decode(python)
                   for b in range(256))


@cache
def _encoding_map(codepage: str) -> object:
    return codecs.charmap_build(_table(codepage))


def _class(chars: set[str]) -> str:
    return "".join(f"\\x{{{ord(c):X}}}" for c in sorted(chars))


@cache
def _patterns() -> tuple[str, str]:
    """RE2 patterns: (a lead character followed by its continuation characters, in
    either code page; the same or a control character)."""
    lead2, lead3, cont = set(), set(), set()
    for codepage in (CP1252, CP1258):
        table = _table(codepage)
        lead2.update(table[b] for b in range(0xC2, 0xE0))
        lead3.update(table[b] for b in range(0xE0, 0xF0))
        cont.update(table[b] for b in range(0x80, 0xC0))
    pair = f"[{_class(lead2)}][{_class(cont)}]|[{_class(lead3)}][{_class(cont)}]{{2}}"
    return pair, f"{pair}|{_CONTROL}"


MOJIBAKE_PAIR = _patterns()[0]
SUSPECT = _patterns()[1]
CONTROL = _CONTROL


# UTF-8 of the characters that stand for continuation bytes: U+0080-U+00BF (C2 xx), the
# Windows-1252 letters Œœ Š š Ÿ Ž ž ƒ ˆ ˜ and the punctuation (E2 xx xx). Mojibake has at
# least one; clean Vietnamese text rarely any.
_CONTINUATION_BYTES = (b"\xc2", b"\xcb", b"\xe2")
_SECOND_BYTE = np.zeros((2, 256), dtype=bool)  # after C5 / C6
_SECOND_BYTE[0, [0x92, 0x93, 0xA0, 0xA1, 0xB8, 0xBD, 0xBE]] = True
_SECOND_BYTE[1, 0x92] = True


def _may_hold_suspect_bytes(data: bytes) -> bool:
    """A cheap byte-level test (memchr and SIMD counts): False means no control
    character and no mojibake pair can be in ``data``."""
    arr = np.frombuffer(data, dtype=np.uint8)
    below_space = arr[arr < 0x20]  # one pass; nearly all of them line ends
    if ((below_space != 0x0A) & (below_space != 0x0D) & (below_space != 0x09)).any():
        return True  # a C0 control
    if b"\x7f" in data or any(b in data for b in _CONTINUATION_BYTES):
        return True  # DEL, a C1 control or a continuation character
    # C5/C6 lead ũ, ơ, ư too (frequent): look at the byte after each
    lead = np.flatnonzero((arr[:-1] == 0xC5) | (arr[:-1] == 0xC6))
    return bool(_SECOND_BYTE[arr[lead] - 0xC5, arr[lead + 1]].any())


def chunk_is_suspect(data: pa.Buffer | bytes) -> bool:
    """Whether a chunk of UTF-8 bytes may hold mojibake or a control character: a byte
    test first, then one RE2 pass over the whole chunk; the columns are looked at only
    when it may."""
    raw = data.to_pybytes() if isinstance(data, pa.Buffer) else data
    if not raw or not _may_hold_suspect_bytes(raw):
        return False
    buffer = pa.py_buffer(raw)
    text = pa.LargeStringArray.from_buffers(
        1, pa.py_buffer(np.array([0, buffer.size], dtype=np.int64)), buffer)
    return bool(pc.match_substring_regex(text, SUSPECT)[0].as_py())


def control_characters(values: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Rows holding a control character, and the first one's code point (``U+0000``)."""
    hit = as_bool_mask(pc.match_substring_regex(values, CONTROL))
    if not hit.any():
        return hit, pa.nulls(len(values), pa.string())
    found = pc.struct_field(pc.extract_regex(pc.if_else(pa.array(hit), values, ""),
                                             f"(?P<c>{CONTROL})"), "c")
    distinct, codes = distinct_codes(found)
    names = pa.array([f"U+{ord(c):04X}" if c else None for c in distinct.to_pylist()],
                     pa.string())
    return hit, take_codes(names, codes)


# ---------------------------------------------------------------------------------------------
# Mojibake


@dataclass(frozen=True)
class Reading:
    """One suspect value: what it reads as (None: no single exact reading), the code
    page that gives it, and the smallest piece that shows the damage."""

    value: str
    repaired: str | None
    codepage: str | None
    evidence: str
    reason: str = ""


def _back(text: str, codepage: str) -> str | None:
    """``text`` taken back to the code page's bytes and read as UTF-8, or None."""
    try:
        raw = codecs.charmap_encode(text, "strict", _encoding_map(codepage))[0]
        return raw.decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None


@cache
def _pair_re() -> re.Pattern[str]:
    # Python's re has no \x{...}: the same classes with \U escapes.
    return re.compile(re.sub(r"\\x\{([0-9A-F]+)\}", lambda m: f"\\U{int(m[1], 16):08X}",
                             MOJIBAKE_PAIR))


def _plausible(text: str) -> bool:
    """What a repair may produce: Latin letters (Vietnamese included), combining
    marks, Latin-1 and general punctuation. Anything else was not mojibake."""
    return all(ord(c) < 0x250 or 0x300 <= ord(c) < 0x370 or 0x1E00 <= ord(c) < 0x1F00
               or 0x2000 <= ord(c) < 0x2070 or c == "\u20ab" for c in text)


def _vietnamese(text: str) -> bool:
    letters = encodings.vni_sequences()
    return any(c in letters and ord(c) > 0x7F
               for c in unicodedata.normalize("NFC", text))


def read_value(value: str) -> Reading | None:
    """The reading of one value the pair pattern matched; None when it is not mojibake
    after all (nothing reads back as Vietnamese)."""
    pieces = [m.group() for m in _pair_re().finditer(value)]
    if not pieces:
        return None
    readings = {cp: _back(value, cp) for cp in (CP1252, CP1258)}
    found = {cp: r for cp, r in readings.items() if r is not None and _plausible(r)}
    evidence = pieces[0]
    if len(set(found.values())) == 1:
        codepage = next(iter(found)) if len(found) == 1 else BOTH
        repaired = next(iter(found.values()))
        if _vietnamese(repaired):
            return Reading(value, unicodedata.normalize("NFC", repaired), codepage, evidence)
        return None
    if len(set(found.values())) > 1:
        return Reading(value, None, None, evidence, "it reads differently as Windows-1252 and "
                       "as Windows-1258")
    # No reading of the whole value: is it damaged mojibake, or text that only looks odd?
    damaged = any(_vietnamese(back) for piece in pieces for cp in (CP1252, CP1258)
                  if (back := _back(piece, cp)) is not None)
    if not damaged:
        return None
    words = [w for w in value.split(" ") if _pair_re().search(w)]
    worst = next((w for w in words if all(_back(w, cp) is None for cp in (CP1252, CP1258))),
                 pieces[0])
    return Reading(value, None, None, worst,
                   "a byte of it was lost or replaced: it has no exact reading")


@dataclass
class MojibakeScan:
    """Suspect values of one column: repairs to apply, and values with no exact reading."""

    repairs: dict[str, Reading] = field(default_factory=dict)
    unreadable: list[Reading] = field(default_factory=list)


def scan_column(values: pa.Array) -> tuple[np.ndarray, MojibakeScan]:
    """Rows of ``values`` the pair pattern matches, and their readings (per distinct value)."""
    hit = as_bool_mask(pc.match_substring_regex(values, MOJIBAKE_PAIR))
    scan = MojibakeScan()
    if not hit.any():
        return hit, scan
    for value in pc.unique(values.filter(pa.array(hit))).to_pylist():
        reading = read_value(value)
        if reading is None:
            continue
        if reading.repaired is None:
            scan.unreadable.append(reading)
        else:
            scan.repairs[value] = reading
    return hit, scan


def apply_repairs(values: pa.Array, repairs: dict[str, Reading]) -> tuple[pa.Array, np.ndarray]:
    """``values`` with every repaired value replaced, and which rows changed."""
    if not repairs:
        return values, np.zeros(len(values), dtype=bool)
    keys = pa.array(list(repairs), pa.string())
    fixed = pa.array([r.repaired for r in repairs.values()], pa.string())
    index = pc.index_in(values, value_set=keys)
    changed = as_bool_mask(pc.is_valid(index))
    return pc.if_else(pa.array(changed), pc.take(fixed, index), values), changed
