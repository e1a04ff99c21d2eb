"""Japanese G2P compatible with GPT-SoVITS v2 (`text/japanese.py`, prosody mode).

Text is cut at every character outside the "Japanese" class (kana, kanji, ASCII letters
and digits, some full-width forms); each run goes through Open JTalk (pyopenjtalk-plus,
which ships its dictionary) and becomes phones with prosody marks:
  "[" pitch rise, "]" pitch fall, "#" accent-phrase border, "_" pause.
The cut characters are kept as marks (spaces dropped; full-width punctuation mapped to
ASCII). Symbols outside the v2 table ("#", brackets, ...) later become "UNK", as in the
reference cleaner.
"""
from __future__ import annotations

import logging
import re
import threading

__all__ = ["normalize", "g2p", "prosody"]

log = logging.getLogger(__name__)

_JA_CHAR = r"A-Za-z\d\u3005\u3040-\u30ff\u4e00-\u9fff\uff11-\uff19\uff21-\uff3a\uff41-\uff5a\uff66-\uff9d"
_JAPANESE = re.compile(f"[{_JA_CHAR}]")
_NON_JAPANESE = re.compile(f"[^{_JA_CHAR}]")
_PUNCT = "!?…,.-"
_REPEATED_PUNCT = re.compile(f"([{re.escape(_PUNCT)}])([{re.escape(_PUNCT)}])+")
_MARK_MAP = {"：": ",", "；": ",", "，": ",", "。": ".", "！": "!", "？": "?", "\n": ".", "·": ",", "、": ",", "...": "…"}

_lock = threading.Lock()
_ojt = None


def _openjtalk():
    """The pyopenjtalk module, imported once. Its global engine is not re-entrant: callers hold `_lock`."""
    global _ojt
    if _ojt is None:
        with _lock:
            if _ojt is None:
                import pyopenjtalk

                _ojt = pyopenjtalk
    return _ojt


def normalize(text: str) -> str:
    """Collapse runs of punctuation to their first mark (the reference's only normalisation)."""
    return _REPEATED_PUNCT.sub(r"\1", text)


def _feature(pattern: str, label: str) -> int:
    m = re.search(pattern, label)
    return -50 if m is None else int(m.group(1))


def _labels(text: str) -> list[str]:
    ojt = _openjtalk()
    with _lock:
        return list(ojt.make_label(ojt.run_frontend(text)))


def prosody(text: str) -> list[str]:
    """Phones with prosody marks of one run of Japanese text, "^" ... "$"/"?" included."""
    labels = _labels(text)
    out: list[str] = []
    for n, lab in enumerate(labels):
        m = re.search(r"\-(.*?)\+", lab)
        p3 = m.group(1) if m else "xx"
        if p3 in "AEIOU":  # devoiced vowels read as plain vowels
            p3 = p3.lower()
        if p3 == "sil":
            if n == 0:
                out.append("^")
            elif n == len(labels) - 1:
                e3 = _feature(r"!(\d+)_", lab)
                if e3 in (0, 1):
                    out.append("$" if e3 == 0 else "?")
            continue
        if p3 == "pau":
            out.append("_")
            continue
        out.append(p3)
        if n + 1 >= len(labels):
            continue
        a1 = _feature(r"/A:([0-9\-]+)\+", lab)
        a2 = _feature(r"\+(\d+)\+", lab)
        a3 = _feature(r"\+(\d+)/", lab)
        f1 = _feature(r"/F:(\d+)_", lab)
        a2_next = _feature(r"\+(\d+)\+", labels[n + 1])
        if a3 == 1 and a2_next == 1 and p3 in "aeiouAEIOUNcl":
            out.append("#")
        elif a1 == 0 and a2_next == a2 + 1 and a2 != f1:
            out.append("]")
        elif a2 == 1 and a2_next == 2:
            out.append("[")
    return out


def g2p(norm_text: str) -> tuple[list[str], None]:
    """Phones and prosody marks of normalised Japanese text (before the UNK mapping)."""
    text = norm_text.replace("％", "パーセント").lower()
    pieces = _NON_JAPANESE.split(text)
    marks = _NON_JAPANESE.findall(text)
    phones: list[str] = []
    for i, piece in enumerate(pieces):
        if _JAPANESE.match(piece):
            phones += prosody(piece)[1:-1]
        if i < len(marks) and marks[i] != " ":
            phones.append(marks[i])
    return [_MARK_MAP.get(p, p) for p in phones], None
