"""Streaming sentence splitter: LLM text deltas in, sentences for the TTS out.

Pure and synchronous. Every decision depends only on the text seen so far (never on how it
was split into deltas), so any token split of a reply gives the same sentences, and
`flush()` hands back whatever is left: no text is lost.

Lengths are counted in units: one per CJK character (Han, kana, hangul), one per Latin word
(a number such as 3.14 or 1,000 or 10:30 is one word).

The stage-direction `Stripper` lives in agent/stripper.py and is re-exported here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from agent.stripper import Piece, Stripper, Tag, ThinkFilter, strip_all

__all__ = ["SplitterConfig", "SentenceSplitter", "Stripper", "ThinkFilter", "Tag", "Piece", "strip_all",
           "count_units", "is_cjk"]

# characters that end a sentence; ASCII ones only when followed by a space, a CJK character or the end
CJK_ENDS = "。！？；…‥\n"
LATIN_ENDS = ".!?"
ENDS = CJK_ENDS + LATIN_ENDS
# closing quotes/brackets kept with the sentence they close
CLOSERS = "」』”’\"')）】》〉]>»"
# clause boundaries for the eager first chunk and for hard cuts
CJK_COMMAS = "，、：；"
LATIN_COMMAS = ",;:"
# characters joining two alphanumerics into one word: 3.14, 1,000, 10:30, don't, e-mail
JOINERS = ".,:'’-_/"
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e a.m p.m u.s u.k no vol fig inc ltd co jan feb mar apr jun jul "
    "aug sep sept oct nov dec approx dept est mt".split()
)
_SPACES = re.compile(r"\s+")
# characters a sentence may hold per unit of max_units: only a single huge word reaches this (words are never
# cut otherwise), and the TTS must not get a sentence beyond its own length limit from it
MAX_CHARS_PER_UNIT = 12


@dataclass(frozen=True)
class SplitterConfig:
    """Splitting settings (units: CJK characters / Latin words).

    Args:
        eager_first: cut the first chunk of a reply at a comma so the first audio starts early.
        eager_min_units: the first chunk is cut at a comma once it holds at least this many units.
        first_min_units: a sentence end closes the first chunk once it holds this many units.
        min_units: later sentences shorter than this are merged with the next one.
        max_units: a sentence is cut (at a comma, else between words) before it grows longer.
    """

    eager_first: bool = True
    eager_min_units: int = 4
    first_min_units: int = 1
    min_units: int = 4
    max_units: int = 50

    def __post_init__(self) -> None:
        if not 1 <= self.max_units <= 1000:
            raise ValueError(f"max_units must be in 1..1000, got {self.max_units}")
        for name in ("eager_min_units", "first_min_units", "min_units"):
            v = getattr(self, name)
            if not 0 <= v <= 1000:
                raise ValueError(f"{name} must be in 0..1000, got {v}")


def is_cjk(c: str) -> bool:
    """A CJK letter (Han, kana, hangul): one unit each, and a place where text may be cut."""
    o = ord(c)
    return (0x3040 <= o <= 0x30FF or 0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF
            or 0xAC00 <= o <= 0xD7AF or 0xFF66 <= o <= 0xFF9F or 0x20000 <= o <= 0x2FA1F)


def _is_word(c: str) -> bool:
    return c.isalnum() and not is_cjk(c)


def _starts_unit(s: str, i: int) -> bool:
    """Whether s[i] begins a new unit (a CJK letter, or the first character of a Latin word)."""
    c = s[i]
    if is_cjk(c):
        return True
    if not _is_word(c):
        return False
    if i == 0:
        return True
    p = s[i - 1]
    if _is_word(p):
        return False
    return not (p in JOINERS and i >= 2 and _is_word(s[i - 2]))


def count_units(text: str) -> int:
    """CJK characters plus Latin words."""
    return sum(1 for i in range(len(text)) if _starts_unit(text, i))


class SentenceSplitter:
    """`push(delta) -> sentences`, `flush() -> sentences`, `reset()`.

    Sentences are stripped, with runs of whitespace collapsed to one space.
    """

    def __init__(self, config: SplitterConfig | None = None) -> None:
        self.config = config or SplitterConfig()
        self.reset()

    def reset(self) -> None:
        self._buf = ""  # text not yet emitted
        self._i = 0  # characters of _buf already decided (no cut inside _buf[:_i])
        self._units = 0  # units in _buf[:_i]
        self._emitted = 0  # chunks emitted since reset: 0 means the next one is the first

    def push(self, delta: str) -> list[str]:
        self._buf += delta
        return self._advance(final=False)

    def flush(self) -> list[str]:
        out = self._advance(final=True)
        rest = _clean(self._buf)
        if rest:
            out.append(rest)
        self._buf, self._i, self._units = "", 0, 0
        return out

    # -- decisions -------------------------------------------------------------------------------

    def _advance(self, final: bool) -> list[str]:
        out: list[str] = []
        cfg = self.config
        while self._i < len(self._buf):
            s, i = self._buf, self._i
            c = s[i]
            if i >= MAX_CHARS_PER_UNIT * cfg.max_units:  # a run-on "word" (a URL, a degenerate reply): cut inside it
                self._cut(i, out)
                continue
            if _starts_unit(s, i):
                if self._units >= cfg.max_units:  # hard cut before this unit
                    self._cut(self._hard_cut_point(i), out)
                    continue
                self._units += 1
            if c in ENDS:
                j = _run_end(s, i)
                if j == len(s) and not final:
                    break  # the run (or what follows it) may still grow
                if _is_sentence_end(s, i, j) and self._units >= self._min_units():
                    self._cut(j, out)
                    continue
                self._i = j
                continue
            if self._eager() and (c in CJK_COMMAS or c in LATIN_COMMAS):
                if c in LATIN_COMMAS and i + 1 == len(s) and not final:
                    break  # 1,000 or 10:30 or a clause end: the next character tells
                if _is_clause_end(s, i) and self._units >= cfg.eager_min_units:
                    self._cut(i + 1, out)
                    continue
            self._i = i + 1
        return out

    def _min_units(self) -> int:
        return self.config.first_min_units if self._emitted == 0 else self.config.min_units

    def _eager(self) -> bool:
        return self.config.eager_first and self._emitted == 0

    def _cut(self, j: int, out: list[str]) -> None:
        """Emit _buf[:j]; continue scanning from j."""
        head, self._buf = self._buf[:j], self._buf[j:]
        self._i = 0
        self._units = 0
        text = _clean(head)
        if text:
            out.append(text)
            self._emitted += 1

    def _hard_cut_point(self, i: int) -> int:
        """Where to cut _buf[:i] (which holds max_units units): after the last clause boundary
        leaving at least min_units before it, else before the last unit (never inside a word)."""
        s = self._buf
        units_before = [0] * (i + 1)  # units in s[:k]
        for k in range(i):
            units_before[k + 1] = units_before[k] + (1 if _starts_unit(s, k) else 0)
        floor = max(1, min(self.config.min_units, self.config.max_units // 2))
        for k in range(i - 1, 0, -1):
            if (s[k] in CJK_COMMAS or s[k] in LATIN_COMMAS or s[k] in ENDS) and units_before[k] >= floor \
                    and _is_clause_end(s, k):
                return _skip_closers(s, k + 1, i)
        return i  # s[i] starts a unit, and _starts_unit guarantees s[i-1] does not continue a word


def _run_end(s: str, i: int) -> int:
    """End of the punctuation run starting at i (ends, then closing quotes/brackets)."""
    j = i
    while j < len(s) and s[j] in ENDS:
        j += 1
    while j < len(s) and s[j] in CLOSERS:
        j += 1
    return j


def _skip_closers(s: str, j: int, limit: int) -> int:
    while j < limit and s[j] in CLOSERS:
        j += 1
    return j


def _is_sentence_end(s: str, i: int, j: int) -> bool:
    """Whether the run s[i:j] of end punctuation (and closers) ends a sentence."""
    run = s[i:j]
    nxt = s[j] if j < len(s) else ""
    if any(ch in CJK_ENDS for ch in run):
        return True
    if "!" in run or "?" in run:  # not inside a URL query such as ?q=1
        return not _is_word(nxt)
    # only "." (and closers): a decimal, abbreviation, URL or file name is not an end
    if nxt and not (nxt.isspace() or is_cjk(nxt)):
        return False
    if run.rstrip(CLOSERS) == ".":
        word = _word_before(s, i)
        if word.lower() in ABBREVIATIONS or (len(word) == 1 and word.isupper()):
            return False
    return True


def _word_before(s: str, i: int) -> str:
    k = i
    while k > 0 and (_is_word(s[k - 1]) or (s[k - 1] == "." and k >= 2 and _is_word(s[k - 2]))):
        k -= 1
    return s[k:i]


def _is_clause_end(s: str, i: int) -> bool:
    """A comma-like s[i] that ends a clause (not 1,000 or 10:30 or http://)."""
    c = s[i]
    if c in CJK_COMMAS:
        return True
    return i + 1 >= len(s) or s[i + 1].isspace() or is_cjk(s[i + 1])


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip()
