"""Decode telco exports: UTF-8, UTF-16, Windows-1258 and the legacy TCVN3 and VNI encodings.

Old billing systems still write Vietnamese in 8-bit encodings. Decoding one of
them with the wrong table never fails: it silently turns "Nguyễn Văn Đức" into
"NguyÔn V¨n §øc", and the registry match then fails for every row. So the
encoding is either declared in the telco's YAML or detected here, and a file
whose encoding cannot be established with a clear margin is refused, never
guessed (``EncodingUndetectedError``).

* The TCVN3 and VNI byte tables are data (``pipelines/data/tcvn3.csv``,
  ``pipelines/data/vni_windows.csv``), taken from published converters and
  cross-checked (see the files' headers).
* Decoding is whole-text: ``codecs.charmap_decode`` with a 256-entry table
  (as Python's own code pages), then NFC. VNI writes a toned vowel as base
  letter + diacritic byte(s); each diacritic byte becomes its Unicode
  combining mark(s) and NFC composes the letter, so no per-row or
  per-character Python loop runs.
* The 8-bit decoders (Windows-1258, TCVN3, VNI) return NFC, because their
  decomposed output is an artefact of the encoding. UTF-8/UTF-16 text is
  returned as sent (the normalise stage applies NFC, and the export gate
  watches the share of names the telco sends in NFD).
* Detection (``auto``): a BOM decides; else strict UTF-8; else each 8-bit
  candidate is scored by the share of its words (those touched by a non-ASCII
  byte) that are well-formed Vietnamese syllables, and the best must reach
  ``MIN_SCORE`` and beat the runner-up by ``MIN_MARGIN``.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

UTF8, UTF16, CP1258, TCVN3, VNI, AUTO = (
    "utf-8", "utf-16", "windows-1258", "tcvn3", "vni", "auto")
DECLARABLE = (UTF8, UTF16, CP1258, TCVN3, VNI, AUTO)
LEGACY = (CP1258, TCVN3, VNI)
_ALIASES = {
    "utf8": UTF8, "utf8sig": UTF8,
    "utf16": UTF16, "utf16le": UTF16, "utf16be": UTF16,
    "windows1258": CP1258, "cp1258": CP1258,
    "tcvn3": TCVN3, "tcvn": TCVN3, "abc": TCVN3, "tcvn57121": TCVN3, "tcvn5712": TCVN3,
    "vni": VNI, "vniwindows": VNI,
    "auto": AUTO,
}

# Detection thresholds: the winner must look like Vietnamese and clearly beat the rest.
MIN_SCORE = 0.80
MIN_MARGIN = 0.30
_SAMPLE_WORDS = 200_000  # words (touched by a non-ASCII byte) scored at most

_BOMS = (
    (codecs.BOM_UTF8, UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, UTF16, "utf-16-le"),
    (codecs.BOM_UTF16_BE, UTF16, "utf-16-be"),
)


BOMS = _BOMS


class EncodingProblem(ValueError):
    """Base of the decoding errors; ``ingest`` turns them into ``TelcoInputError``."""


class UndecodableError(EncodingProblem):
    """The bytes are not valid in the (declared or evident) encoding, at ``line``/``offset``."""

    def __init__(self, encoding: str, line: int, offset: int, problem: str) -> None:
        self.encoding, self.line, self.offset, self.problem = encoding, line, offset, problem
        super().__init__(f"line {line}: {problem} (byte offset {offset})")

    def shifted(self, lines: int, offset: int) -> UndecodableError:
        """The same error in a piece that starts ``lines`` lines and ``offset`` bytes
        into the file."""
        return UndecodableError(self.encoding, self.line + lines, self.offset + offset,
                                self.problem)


class EncodingUndetectedError(EncodingProblem):
    """``auto`` could not establish the encoding with confidence; ``scores`` per candidate."""

    def __init__(self, scores: dict[str, float], words: int) -> None:
        self.scores = scores
        shown = ", ".join(f"{name} {score:.2f}" for name, score in _ranked(scores)) or "none"
        super().__init__(
            f"cannot establish the encoding with confidence: not UTF-8, and of the candidates "
            f"{list(LEGACY)} none reads as Vietnamese with a clear margin (share of well-formed "
            f"Vietnamese words over {words} non-ASCII words: {shown}; need >= {MIN_SCORE:.2f} "
            f"and {MIN_MARGIN:.2f} ahead of the next); declare csv.encoding in the telco's YAML")


@dataclass(frozen=True)
class Decoded:
    """Decoded text, the encoding used, whether a BOM was dropped, and detection scores."""

    text: str
    encoding: str
    bom: bool = False
    scores: dict[str, float] = field(default_factory=dict)


def canonical_encoding(name: str) -> str:
    """``"UTF8"``, ``"cp1258"``, ``"ABC"``… -> one of ``DECLARABLE``; ValueError otherwise."""
    key = re.sub(r"[-_\s]", "", name).lower()
    if key not in _ALIASES:
        raise ValueError(f"unknown encoding {name!r}; use one of {list(DECLARABLE)}")
    return _ALIASES[key]


# ---------------------------------------------------------------------------------------------
# Byte tables (data files) and the 8-bit decoders


def _data_rows(name: str) -> list[dict[str, str]]:
    text = resources.files("pipelines").joinpath(f"data/{name}").read_text("utf-8")
    return list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))


@cache
def tcvn3_table() -> dict[int, str]:
    """Byte -> Unicode character for TCVN3 (ABC): every byte 0x80-0xFF and the 12 control
    bytes TCVN 5712 VN1 uses for upper-case letters; other bytes are ASCII."""
    rows = _data_rows("tcvn3.csv")
    table = {int(r["byte"], 16): chr(int(r["codepoint"][2:], 16)) for r in rows}
    if len(table) != len(rows) or not set(range(0x80, 0x100)) <= set(table) \
            or any(0x09 <= b <= 0x0D or b == 0 for b in table):
        raise ValueError("tcvn3.csv must list every byte 0x80-0xFF once and no line-end byte")
    return table


@cache
def vni_sequences() -> dict[str, bytes]:
    """Vietnamese letter -> its VNI-Windows byte sequence, as published."""
    return {chr(int(r["codepoint"][2:], 16)): bytes.fromhex(r["bytes"])
            for r in _data_rows("vni_windows.csv")}


@cache
def vni_byte_meanings() -> dict[int, str]:
    """What each VNI byte >= 0x80 means: a whole letter, or the combining mark(s) it adds.

    Derived from ``vni_sequences`` and checked for consistency: a diacritic byte
    must add the same marks to every base it follows, and no byte may be both
    a letter and a diacritic. NFC of base + marks then yields the letter.
    """
    letters: dict[int, str] = {}
    marks: dict[int, str] = {}
    sequences = vni_sequences()
    for char, raw in sequences.items():
        if len(raw) == 1 and raw[0] >= 0x80:
            letters[raw[0]] = char
    for char, raw in sequences.items():
        if len(raw) != 2:
            continue
        base = letters.get(raw[0], chr(raw[0]))
        full, start = unicodedata.normalize("NFD", char), unicodedata.normalize("NFD", base)
        if not full.startswith(start):
            raise ValueError(f"vni_windows.csv: {char!r} does not start with its base {base!r}")
        added = full[len(start):]
        if marks.setdefault(raw[1], added) != added:
            raise ValueError(f"vni_windows.csv: byte {raw[1]:02X} has two meanings")
    if set(letters) & set(marks):
        raise ValueError("vni_windows.csv: a byte is both a letter and a diacritic")
    return {**letters, **marks}


_PRIVATE_USE = 0xE000  # placeholders for bytes that stand for more than one character


@cache
def _charmap(encoding: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A 256-character decoding table for ``codecs.charmap_decode`` (C speed, whole text).

    A byte meaning several characters (a VNI diacritic byte that adds two
    marks) decodes to a private-use placeholder, expanded afterwards.
    """
    meanings = tcvn3_table() if encoding == TCVN3 else vni_byte_meanings()
    table = [chr(b) for b in range(256)]  # ASCII, and Latin-1 for bytes outside the table
    expand = []
    for byte, meaning in sorted(meanings.items()):
        if len(meaning) == 1:
            table[byte] = meaning
        else:
            placeholder = chr(_PRIVATE_USE + len(expand))
            table[byte] = placeholder
            expand.append((placeholder, meaning))
    return "".join(table), tuple(expand)


def _decode_8bit(data: bytes, encoding: str) -> str:
    table, expand = _charmap(encoding)
    # One byte, one table character: a placeholder can only come from its own byte.
    text = codecs.charmap_decode(data, "strict", table)[0]
    for placeholder, meaning in expand:
        if placeholder in text:
            text = text.replace(placeholder, meaning)
    return unicodedata.normalize("NFC", text)


def decode_tcvn3(data: bytes) -> str:
    """TCVN3 (ABC) bytes -> NFC text. Every byte has a meaning, so this never fails."""
    return _decode_8bit(data, TCVN3)


def decode_vni(data: bytes) -> str:
    """VNI-Windows bytes -> NFC text; bytes outside the VNI letter table stay Latin-1."""
    return _decode_8bit(data, VNI)


def decode_windows_1258(data: bytes) -> str:
    """Windows-1258 -> NFC (the code page writes most toned vowels as letter + combining tone).

    Raises ``UnicodeDecodeError`` on the five bytes the code page leaves undefined.
    """
    return unicodedata.normalize("NFC", data.decode("cp1258"))


_DECODERS = {CP1258: decode_windows_1258, TCVN3: decode_tcvn3, VNI: decode_vni}


# ---------------------------------------------------------------------------------------------
# Plausibility of Vietnamese text

_TONES = frozenset("\u0300\u0301\u0303\u0309\u0323")
_ONSET = r"(?:ngh|ng|nh|ch|gh|gi|kh|ph|th|tr|qu|[bcdđghklmnprstvx])?"
# Vowel nuclei (with their glides) a Vietnamese syllable can have, tone removed.
_NUCLEUS_LIST = """a ă â e ê i o ô ơ u ư y ai ao au ay âu ây eo êu ia iê iu oa oă oe oi oo ôi ơi
ua uâ uê ui uô uơ uy ưa ưi ươ ưu yê oai oao oay oeo uây uôi ươi ươu uya uyê uyu iêu yêu"""
_NUCLEI = sorted(_NUCLEUS_LIST.split(), key=len, reverse=True)
_CODA = r"(?:ch|ng|nh|[cmnpt])?"
_SYLLABLE = re.compile(rf"{_ONSET}(?:{'|'.join(_NUCLEI)}){_CODA}")
# A "word" at byte level: letters and non-ASCII (or TCVN upper-case control) bytes,
# containing at least one of the latter, which is where candidate decodings differ.
_HIGH = rb"\x01-\x06\x11-\x17\x80-\xff"
_WORD_BYTES = re.compile(rb"[A-Za-z" + _HIGH + rb"]*[" + _HIGH + rb"][A-Za-z" + _HIGH + rb"]*")


@cache
def _vietnamese_letters() -> frozenset[str]:
    letters = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    letters.update(vni_sequences())
    return frozenset(letters)


def is_vietnamese_word(word: str) -> bool:
    """A well-formed Vietnamese syllable (NFC), lower, upper or title case, at most one tone.

    Used only to score candidate decodings: a wrong table yields punctuation
    (``V¨n``), case flips mid-word (``NguyÔn``) or impossible vowel clusters.
    """
    if not word or not set(word) <= _vietnamese_letters():
        return False
    if not (word.islower() or word.isupper() or (word[0].isupper() and word[1:].islower())):
        return False
    decomposed = unicodedata.normalize("NFD", word.lower())
    if sum(ch in _TONES for ch in decomposed) > 1:
        return False
    base = unicodedata.normalize("NFC", "".join(ch for ch in decomposed if ch not in _TONES))
    return _SYLLABLE.fullmatch(base) is not None


def _ranked(scores: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def _words(data: bytes) -> tuple[Counter[bytes], dict[bytes, int]]:
    """Byte-level words that contain a non-ASCII byte (bounded sample), with first offsets."""
    counts: Counter[bytes] = Counter()
    first: dict[bytes, int] = {}
    for match in itertools.islice(_WORD_BYTES.finditer(data), _SAMPLE_WORDS):
        word = match.group()
        counts[word] += 1
        first.setdefault(word, match.start())
    return counts, first


def _decode_word(word: bytes, encoding: str) -> str | None:
    try:
        if encoding == UTF8:
            return word.decode("utf-8")
        return _DECODERS[encoding](word)
    except UnicodeDecodeError:
        return None


def _score(counts: Counter[bytes], encoding: str) -> tuple[float, bytes | None]:
    """Weighted share of well-formed words, and the most frequent ill-formed one."""
    total = sum(counts.values())
    good = 0
    worst: bytes | None = None
    for word, n in counts.most_common():
        text = _decode_word(word, encoding)
        if text is not None and is_vietnamese_word(text):
            good += n
        elif worst is None:
            worst = word
    return (good / total if total else 0.0), worst


def score_candidates(data: bytes, candidates: tuple[str, ...] = LEGACY) -> dict[str, float]:
    """Share of well-formed Vietnamese words per candidate decoding of ``data``."""
    counts, _ = _words(data)
    return {name: round(_score(counts, name)[0], 4) for name in candidates}


# ---------------------------------------------------------------------------------------------
# Entry point


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _utf8_error(data: bytes, exc: UnicodeDecodeError, declared: str) -> UndecodableError:
    bad = data[exc.start:exc.end].hex(" ")
    return UndecodableError(UTF8, _line_of(data, exc.start), exc.start,
                            f"bytes {bad} are not valid {declared}")


def _strict_utf8(data: bytes, skip: int, declared: str) -> Decoded:
    try:
        return Decoded(data[skip:].decode("utf-8"), UTF8, bom=skip > 0)
    except UnicodeDecodeError as exc:
        exc.start += skip
        exc.end += skip
        raise _utf8_error(data, exc, declared) from exc


def _utf16(data: bytes) -> Decoded:
    with_bom = [(len(bom), codec) for bom, _, codec in _BOMS[1:] if data.startswith(bom)]
    if with_bom:
        skip, codec = with_bom[0]
    else:  # no BOM: ASCII characters leave their zero byte on the high side
        skip = 0
        even_zeros, odd_zeros = data[0::2].count(0), data[1::2].count(0)
        codec = "utf-16-be" if even_zeros > odd_zeros else "utf-16-le"
    try:
        return Decoded(data[skip:].decode(codec), UTF16, bom=skip > 0)
    except UnicodeDecodeError as exc:
        start = exc.start + skip
        line = data[skip:start].decode(codec, errors="replace").count("\n") + 1
        raise UndecodableError(UTF16, line, start,
                               f"bytes {data[start:start + 2].hex(' ')} are not valid "
                               f"{codec} ({exc.reason})") from exc


def looks_utf16(data: bytes) -> bool:
    """No BOM, but the zero bytes of ASCII characters fall on one side: UTF-16."""
    return _looks_utf16(data)


def _looks_utf16(data: bytes) -> bool:
    head = data[:4096]
    zeros = head.count(0)
    return len(head) >= 4 and zeros >= len(head) // 4 and \
        abs(head[0::2].count(0) - head[1::2].count(0)) >= zeros // 2


def _looks_like_broken_utf8(data: bytes) -> bool:
    """Most non-ASCII runs are valid UTF-8: the file is UTF-8 with a bad byte, not 8-bit."""
    runs = re.findall(rb"[\x80-\xff]+", data[:1_000_000])
    valid = 0
    for run in runs:
        try:
            run.decode("utf-8")
            valid += 1
        except UnicodeDecodeError:
            pass
    return bool(runs) and valid * 2 >= len(runs)


def _legacy(data: bytes, encoding: str) -> Decoded:
    try:
        return Decoded(_DECODERS[encoding](data), encoding)
    except UnicodeDecodeError as exc:
        bad = data[exc.start:exc.end].hex(" ")
        raise UndecodableError(encoding, _line_of(data, exc.start), exc.start,
                               f"byte {bad} is not defined in {encoding}") from exc


def _check_declared_legacy(data: bytes, declared: str) -> dict[str, float]:
    """Refuse a declared 8-bit encoding when the bytes clearly read as another one."""
    counts, first = _words(data)
    if not counts:
        return {}
    others = [UTF8, *LEGACY]
    results = {name: _score(counts, name) for name in others}
    scores = {name: round(s, 4) for name, (s, _) in results.items()}
    own, worst = results[declared]
    best_other, best_score = max(((n, s) for n, s in scores.items() if n != declared),
                                 key=lambda kv: kv[1])
    if own < MIN_SCORE and best_score >= MIN_SCORE and best_score - own >= MIN_MARGIN:
        offset = first[worst] if worst is not None else 0
        shown = _DECODERS[declared](worst) if worst is not None else ""
        raise UndecodableError(
            declared, _line_of(data, offset), offset,
            f"declared {declared} but the bytes read as {best_other}: e.g. {shown!r} is not "
            f"Vietnamese in {declared} (well-formed words: {declared} {own:.2f}, "
            f"{best_other} {best_score:.2f})")
    return scores


def decode_piece(data: bytes, encoding: str, *, min_words: int = 50) -> str:
    """A later piece of a file whose 8-bit ``encoding`` is established: decoded strictly,
    and checked against the other encodings like a declared one (refused when it clearly
    reads as another) only when it holds enough non-ASCII words to tell."""
    text = _legacy(data, encoding).text
    counts, _ = _words(data)
    if sum(counts.values()) >= min_words:
        _check_declared_legacy(data, encoding)
    return text


def decode(data: bytes, declared: str = AUTO) -> Decoded:
    """Decode ``data`` in the declared encoding (or detect it with ``auto``); see module doc.

    Raises ``UndecodableError`` (bytes invalid in the declared or evident
    encoding, with line and byte offset) or ``EncodingUndetectedError``.
    """
    encoding = canonical_encoding(declared)
    if encoding == UTF8:
        return _strict_utf8(data, len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8)
                            else 0, declared)
    if encoding == UTF16:
        return _utf16(data)
    if encoding in LEGACY:
        decoded = _legacy(data, encoding)
        scores = _check_declared_legacy(data, encoding)
        return Decoded(decoded.text, encoding, scores=scores)

    # auto
    for bom, name, _ in _BOMS:
        if data.startswith(bom):
            return _strict_utf8(data, len(bom), "utf-8") if name == UTF8 else _utf16(data)
    if _looks_utf16(data):
        return _utf16(data)
    try:
        return Decoded(data.decode("utf-8"), UTF8)
    except UnicodeDecodeError as exc:
        if _looks_like_broken_utf8(data):
            raise _utf8_error(data, exc, "utf-8 (detected)") from exc
    counts, _ = _words(data)
    scores = {name: round(_score(counts, name)[0], 4) for name in LEGACY}
    ranked = _ranked(scores)
    (best, top), (_, second) = ranked[0], ranked[1]
    if top < MIN_SCORE or top - second < MIN_MARGIN:
        raise EncodingUndetectedError(scores, sum(counts.values()))
    decoded = _legacy(data, best)
    return Decoded(decoded.text, best, scores=scores)
