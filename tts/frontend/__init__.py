"""Text frontend: text -> phone symbols and ids, as GPT-SoVITS v1/v2 produce them.

- `clean_text(text, lang)`: one language's cleaner over the whole text (zh, en or ja),
  exactly GPT-SoVITS's `text.cleaner.clean_text`.
- `to_segments(text, lang)`: the inference frontend for a GPT-SoVITS text_lang code
  (auto, zh, ja, en, all_zh, all_ja): segmentation into languages, one cleaner per
  segment, and the reference's "fewer than 6 phones -> retry with a leading '.'" rule.
- `to_phonemes(text, lang)`: the same, concatenated.

Before segmentation, control and zero-width characters are removed and runs of spaces
collapse to one. English segments see full-width letters and digits as ASCII, and CJK
commas/full stops as ASCII punctuation, so that those words and pauses are not dropped.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from tts.errors import UnsupportedLanguageError
from tts.frontend import segment as _segment
from tts.frontend.symbols import ids as _ids
from tts.frontend.symbols import table as _table

__all__ = ["Phonemes", "Segment", "LANGUAGES", "CLEANERS", "clean_text", "to_phonemes", "to_segments"]

LANGUAGES = ("auto", "zh", "all_zh", "en", "ja", "all_ja")  # GPT-SoVITS text_lang codes served
CLEANERS = ("zh", "en", "ja")
VERSIONS = ("v1", "v2")
_ZH_SPECIALS = (("￥", "SP2"), ("^", "SP3"))  # silence marks of the zh cleaner
_FULLWIDTH_ALNUM = {c: c - 0xFEE0 for c in [*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B)]}
_EN_CJK_PUNCT = str.maketrans({"\u3000": " ", "，": ",", "、": ",", "；": ",", "：": ",", "。": ".", "！": "!", "？": "?"})
_MIN_PHONES = 6


@dataclass(frozen=True)
class Segment:
    """One language's part of a text. `word2ph` (zh only) counts phones per character of `norm_text`."""

    lang: str
    norm_text: str
    phones: tuple[str, ...]
    ids: tuple[int, ...]
    word2ph: tuple[int, ...] | None


@dataclass(frozen=True)
class Phonemes:
    """Phones of a whole text. `word2ph` is set only when every segment is Chinese."""

    phones: tuple[str, ...]
    ids: tuple[int, ...]
    word2ph: tuple[int, ...] | None
    norm_text: str


def _check_version(version: str) -> None:
    if version not in VERSIONS:
        raise ValueError(f"unsupported symbol table version {version!r}; supported: {', '.join(VERSIONS)}")


def _language_module(lang: str):
    if lang == "zh":
        from tts.frontend import zh as module
    elif lang == "en":
        from tts.frontend import en as module
    else:
        from tts.frontend import ja as module
    return module


def _clean(text: str, lang: str, version: str) -> Segment:
    module = _language_module(lang)
    special = next((s for s in _ZH_SPECIALS if s[0] in text), None) if lang == "zh" else None
    if special is not None:
        text = text.replace(special[0], ",")
    norm_text = module.normalize(text)
    phones, word2ph = module.g2p(norm_text)
    if special is not None:
        phones = [special[1] if p == "," else p for p in phones]
    known = set(_table(version))
    phones = tuple(p if p in known else "UNK" for p in phones)
    return Segment(lang, norm_text, phones, tuple(_ids(phones, version)),
                   tuple(word2ph) if word2ph is not None else None)


def clean_text(text: str, lang: str, version: str = "v2") -> Phonemes:
    """One cleaner ("zh", "en" or "ja") over the whole text, as GPT-SoVITS's `clean_text`."""
    if lang not in CLEANERS:
        raise UnsupportedLanguageError(lang, CLEANERS)
    _check_version(version)
    return _join([_clean(text, lang, version)])


def _tidy(text: str) -> str:
    kept = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "\n\t\r":
            kept.append(" ")
        elif cat not in ("Cc", "Cf", "Cs", "Co", "Cn"):
            kept.append(ch)
    return re.sub(r" {2,}", " ", "".join(kept))


def _for_cleaner(lang: str, text: str) -> str:
    if lang == "en":
        return text.translate(_FULLWIDTH_ALNUM).translate(_EN_CJK_PUNCT)
    return text


def to_segments(text: str, lang: str, version: str = "v2") -> list[Segment]:
    """Segments of `text` for a GPT-SoVITS text_lang code, each through its cleaner."""
    if lang not in LANGUAGES:
        raise UnsupportedLanguageError(lang, LANGUAGES)
    _check_version(version)
    text = _tidy(str(text))
    segments = _segments(text, lang, version)
    if sum(len(s.phones) for s in segments) < _MIN_PHONES:
        segments = _segments("." + text, lang, version)
    return segments


def _segments(text: str, lang: str, version: str) -> list[Segment]:
    return [_clean(_for_cleaner(seg_lang, part), seg_lang, version)
            for seg_lang, part in _segment.split(text, lang) if part.strip()]


def _join(segments: list[Segment]) -> Phonemes:
    phones = tuple(p for s in segments for p in s.phones)
    ids = tuple(i for s in segments for i in s.ids)
    word2ph = None
    if segments and all(s.word2ph is not None for s in segments):
        word2ph = tuple(n for s in segments for n in s.word2ph)
    return Phonemes(phones, ids, word2ph, "".join(s.norm_text for s in segments))


def to_phonemes(text: str, lang: str, version: str = "v2") -> Phonemes:
    """Phones, ids, word2ph and normalised text of `text` for a GPT-SoVITS text_lang code."""
    return _join(to_segments(text, lang, version))
