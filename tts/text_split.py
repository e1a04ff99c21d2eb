"""Sentence splitting of long input text for direct TTS requests.

`split_text(text, method)` follows GPT-SoVITS api_v2's `text_split_method`s
(GPT_SoVITS/TTS_infer_pack/text_segmentation_method.py and TextPreprocessor.pre_seg_text):

  cut0  no split (but at line breaks, as api_v2 splits every method's output at "\n");
  cut1  groups of four sentences (a sentence ends after ，。？！,.?!~:：—…; a remainder of one to
        three joins the last group: api_v2's code makes the last group 5-8 sentences instead);
  cut2  sentences gathered until a group passes 50 characters; a last group under 50 joins the one before;
  cut3  after every Chinese full stop 。;
  cut4  after every English full stop . that is not inside a number (3.14);
  cut5  after every mark of SPLIT_MARKS (api_v2's default; a "." inside a number is no mark).

Then, as api_v2: pieces of punctuation only are dropped, pieces shorter than 5 characters
merge into the next, every piece ends in punctuation. Beyond api_v2: a closing quote stays with
its sentence, "." inside a number never splits, and pieces are capped far below api_v2's 510
characters (below). Pure functions, no I/O (jieba's dictionary, loaded once, finds word
boundaries in a long CJK run without punctuation).

A piece is too long for the T2S beyond MAX_PIECE_UNITS "units": a CJK character or a digit
is one unit (about a syllable), any other non-space character a third (English letters).
50 units is GPT-SoVITS' cut2 size, about 11 s of speech; api_v2 only cuts at 510 characters,
far beyond the clips a T2S is trained on. A longer piece is cut into about equal parts at
punctuation, else spaces, else word boundaries, and each part but the last ends in a comma.
"""
from __future__ import annotations

import functools

import logging
import math
import re

# Marks that end a piece in cut5 (full- and half-width).
SPLIT_MARKS = frozenset(",.;?!、，。？！;：:…")
# Marks that end a sentence for cut1 and cut2 (api_v2's `splits`).
SENTENCE_MARKS = frozenset("，。？！,.?!~:：—…")
METHODS = ("cut0", "cut1", "cut2", "cut3", "cut4", "cut5")
CUT2_CHARS = 50
_CLOSERS = frozenset("\"'”’」』）)]】")
_CJK_RANGES = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # kana and Han
_CJK = re.compile(f"[{_CJK_RANGES}]")
_REPEATED = re.compile(r"([,.;?!、，。？！;：:…])\1+")
# one unit each: digits (also full-width), kana, Han, half-width katakana
_UNIT = re.compile(f"[0-9\uff10-\uff19{_CJK_RANGES}\uff66-\uff9f]")
_LATIN_WORD = re.compile(r"\s*\S+\s*|\s+")
MIN_PIECE_CHARS = 5
MAX_PIECE_UNITS = 50
# Penalties of a cut (added to its relative distance from the even split point)
_CUT_PENALTY = {"punct": 0.0, "space": 0.15, "word": 0.3}


def replace_consecutive_punctuation(text: str) -> str:
    """Collapse runs of the same punctuation mark ("。。。" -> "。", "!!" -> "!")."""
    return _REPEATED.sub(r"\1", text)


def _cut_after(text: str, marks: frozenset[str]) -> list[str]:
    """Split after every mark in `marks`; a '.' between two digits (3.14) is not a split, and
    closing quotes or brackets right after a mark stay with the piece they close."""
    pieces: list[str] = []
    cur: list[str] = []
    n = len(text)
    for i, ch in enumerate(text):
        cur.append(ch)
        if ch not in marks:
            continue
        if ch == "." and 0 < i < n - 1 and text[i - 1].isdigit() and text[i + 1].isdigit():
            continue
        # keep closing quotes/brackets with the sentence they close
        j = i + 1
        while j < n and text[j] in _CLOSERS:
            j += 1
        if j > i + 1:
            continue
        pieces.append("".join(cur))
        cur = []
    if cur:
        pieces.append("".join(cur))
    # attach closers that followed a mark to the piece (they were kept in `cur` above)
    return [p.strip() for p in pieces if p.strip()]


def _sentences(text: str) -> list[str]:
    """api_v2's sentences for cut1/cut2: "——" is a comma, then a split after every SENTENCE_MARKS mark."""
    return _cut_after(text.replace("——", "，"), SENTENCE_MARKS)


def _cut1(text: str) -> list[str]:
    sentences = _sentences(text)
    groups = [functools.reduce(_join, sentences[i:i + 4], "") for i in range(0, len(sentences), 4)]
    if len(groups) > 1 and len(sentences) % 4:  # a remainder of one to three joins the last group
        groups[-2:] = [_join(groups[-2], groups[-1])]
    return groups


def _cut2(text: str) -> list[str]:
    groups: list[str] = []
    cur = ""
    for sentence in _sentences(text):
        cur = _join(cur, sentence)  # a space between English sentences
        if len(cur) > CUT2_CHARS:
            groups.append(cur)
            cur = ""
    if cur:
        groups.append(cur)
    if len(groups) > 1 and len(groups[-1]) < CUT2_CHARS:
        groups[-2:] = [_join(groups[-2], groups[-1])]
    return groups


_CUT3_MARKS, _CUT4_MARKS = frozenset("。"), frozenset(".")
_CUTS = {
    "cut0": lambda text: [text],
    "cut1": _cut1,
    "cut2": _cut2,
    "cut3": lambda text: _cut_after(text, _CUT3_MARKS),
    "cut4": lambda text: _cut_after(text, _CUT4_MARKS),
    "cut5": lambda text: _cut_after(text, SPLIT_MARKS),
}


def _is_punct_only(piece: str) -> bool:
    return all(ch in SPLIT_MARKS or ch in _CLOSERS or ch.isspace() for ch in piece)


def merge_short(pieces: list[str], min_chars: int = MIN_PIECE_CHARS) -> list[str]:
    """Merge pieces shorter than `min_chars` into the following one (the last into the previous)."""
    out: list[str] = []
    buf = ""
    for p in pieces:
        buf = _join(buf, p)
        if len(buf) >= min_chars:
            out.append(buf)
            buf = ""
    if buf:
        if out:
            out[-1] = _join(out[-1], buf)
        else:
            out.append(buf)
    return out


def _join(a: str, b: str) -> str:
    if not a:
        return b
    if a[-1].isascii() and b[:1].isascii() and not a[-1].isspace():
        return a + " " + b
    return a + b


def final_punctuation(piece: str) -> str:
    """Append a full stop ("。" for CJK text, "." otherwise) when the piece lacks final punctuation."""
    stripped = piece.rstrip()
    k = len(stripped)
    while k > 0 and stripped[k - 1] in _CLOSERS:
        k -= 1
    if k > 0 and stripped[k - 1] in SPLIT_MARKS:
        return stripped
    return stripped + ("。" if _CJK.search(stripped) else ".")


def units(text: str) -> float:
    """Spoken length of `text`: one per CJK character or digit, a third per other non-space character.

    Not `agent.splitter.count_units` (one per Latin word): that one sizes an LLM's sentences for the
    turn, this one a piece for the T2S; ~50 English words of the splitter are ~70 units here."""
    return _thirds(text) / 3


def _thirds(text: str) -> int:
    """`units` times 3, exact."""
    n_unit = len(_UNIT.findall(text))
    return 2 * n_unit + sum(1 for c in text if not c.isspace())


def _words(text: str) -> list[str]:
    """Tokens that concatenate back to `text`: jieba's words where there is CJK text, else spaces."""
    if _CJK.search(text):
        import jieba  # the zh frontend loads it anyway; only long CJK runs without punctuation get here

        jieba.setLogLevel(logging.WARNING)
        return [w for w in jieba.cut(text) if w]
    return _LATIN_WORD.findall(text)


def _cut_chars(word: str, limit: int) -> list[str]:
    """A word longer than a part (a URL, a digit string) cut into parts of at most `limit` thirds."""
    out, start, acc = [], 0, 0
    for i, ch in enumerate(word):
        size = _thirds(ch)
        if acc + size > limit and i > start:
            out.append(word[start:i])
            start, acc = i, 0
        acc += size
    out.append(word[start:])
    return out


def _cut_kind(left: str, right: str) -> str:
    if left.rstrip()[-1:] in SPLIT_MARKS or left.rstrip()[-1:] in _CLOSERS:
        return "punct"
    if left[-1:].isspace() or right[:1].isspace():
        return "space"
    return "word"


def _comma(piece: str) -> str:
    if piece[-1:] in SPLIT_MARKS:
        return piece
    return piece + ("，" if _CJK.search(piece[-1:]) else ",")


def split_long(piece: str, max_units: float = MAX_PIECE_UNITS) -> list[str]:
    """`piece` as parts of at most `max_units` (see the module docstring); one part when it fits.

    Every part but the last ends in punctuation (a comma is added at a cut between words).
    """
    limit = int(max_units * 3)  # sizes in thirds of a unit: exact integers
    if _thirds(piece) <= limit:
        return [piece]
    tokens = [part for w in _words(piece) for part in (_cut_chars(w, limit) if _thirds(w) > limit else [w])]
    sizes = [_thirds(t) for t in tokens]
    out: list[str] = []
    start = 0
    while sum(sizes[start:]) > limit:
        total = sum(sizes[start:])
        target = total / math.ceil(total / limit)  # the even split of what is left
        best, best_score, acc = start + 1, math.inf, 0
        for i in range(start + 1, len(tokens)):  # a cut before tokens[i]
            acc += sizes[i - 1]
            if acc > limit:
                break
            score = abs(acc - target) / target + _CUT_PENALTY[_cut_kind(tokens[i - 1], tokens[i])]
            if score < best_score:
                best, best_score = i, score
        part = "".join(tokens[start:best]).strip()
        if part:
            out.append(_comma(part))
        start = best
    rest = "".join(tokens[start:]).strip()
    if rest:
        out.append(rest)
    return out


def split_text(text: str, method: str = "cut5", min_chars: int = MIN_PIECE_CHARS,
               max_units: float = MAX_PIECE_UNITS) -> list[str]:
    """Split `text` into speakable pieces by an api_v2 `text_split_method` (module docstring),
    each ending in punctuation and at most `max_units` long.

    Returns an empty list when the text holds nothing to speak (only spaces or punctuation).

    Raises:
        ValueError: `method` is not one of METHODS.
    """
    if method not in _CUTS:
        raise ValueError(f"unknown text split method {method!r}; use one of {', '.join(METHODS)}")
    text = replace_consecutive_punctuation(text.strip().replace("\r", "\n"))
    pieces = [line.strip() for p in _CUTS[method](text) for line in p.split("\n")]
    pieces = [p for p in pieces if p and not _is_punct_only(p)]
    pieces = merge_short(pieces, min_chars)
    out: list[str] = []
    for p in pieces:
        for q in split_long(p, max_units):
            if q and not _is_punct_only(q):
                out.append(final_punctuation(q))
    return out


def split_sentences(text: str, min_chars: int = MIN_PIECE_CHARS,
                    max_units: float = MAX_PIECE_UNITS) -> list[str]:
    """`split_text(text, "cut5")`: the split of direct TTS input by default."""
    return split_text(text, "cut5", min_chars, max_units)


def as_single_sentence(text: str, max_units: float = MAX_PIECE_UNITS) -> list[str]:
    """The no-split path: the whole text as one piece (with final punctuation), or nothing.

    A text too long for the T2S still becomes several pieces (`split_long`).
    """
    text = replace_consecutive_punctuation(text.strip())
    if not text or _is_punct_only(text):
        return []
    return [final_punctuation(p) for p in split_long(text, max_units)]
