"""Sentence splitting of long input text for direct TTS requests.

Follows GPT-SoVITS' api_v2 default (`cut5`): split after every punctuation mark, merge
pieces that are too short into their neighbours, make sure every piece ends in
punctuation, and split pieces that are still too long. Pure functions, no I/O.
"""
from __future__ import annotations

import re

# Marks that end a piece in cut5 (full- and half-width).
SPLIT_MARKS = frozenset(",.;?!、，。？！;：:…")
_CLOSERS = frozenset("\"'”’」』）)]】")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_REPEATED = re.compile(r"([,.;?!、，。？！;：:…])\1+")
MIN_PIECE_CHARS = 5
MAX_PIECE_CHARS = 510


def replace_consecutive_punctuation(text: str) -> str:
    """Collapse runs of the same punctuation mark ("。。。" -> "。", "!!" -> "!")."""
    return _REPEATED.sub(r"\1", text)


def _cut5(text: str) -> list[str]:
    """Split after every punctuation mark; a '.' between two digits (3.14) is not a split."""
    pieces: list[str] = []
    cur: list[str] = []
    n = len(text)
    for i, ch in enumerate(text):
        cur.append(ch)
        if ch not in SPLIT_MARKS:
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


def _split_long(piece: str, max_chars: int) -> list[str]:
    if len(piece) <= max_chars:
        return [piece]
    out = []
    while len(piece) > max_chars:
        cut = piece.rfind(" ", 0, max_chars)
        cut = cut if cut > max_chars // 2 else max_chars
        out.append(piece[:cut].strip())
        piece = piece[cut:].strip()
    if piece:
        out.append(piece)
    return out


def split_sentences(text: str, min_chars: int = MIN_PIECE_CHARS,
                    max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """Split `text` into speakable pieces, each ending in punctuation.

    Returns an empty list when the text holds nothing to speak (only spaces or punctuation).
    """
    text = replace_consecutive_punctuation(text.strip().replace("\r", "\n"))
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    pieces: list[str] = []
    for line in lines:
        pieces.extend(_cut5(line))
    pieces = [p for p in pieces if not _is_punct_only(p)]
    pieces = merge_short(pieces, min_chars)
    out: list[str] = []
    for p in pieces:
        for q in _split_long(p, max_chars):
            if q and not _is_punct_only(q):
                out.append(final_punctuation(q))
    return out


def as_single_sentence(text: str) -> list[str]:
    """The no-split path: the whole text as one piece (with final punctuation), or nothing."""
    text = replace_consecutive_punctuation(text.strip())
    if not text or _is_punct_only(text):
        return []
    return [final_punctuation(text)]
