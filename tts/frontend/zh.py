"""Mandarin G2P compatible with GPT-SoVITS v2 (`text/chinese2.py` + `cleaner.clean_text`).

Pipeline for one text:
  normalize (zh_normalize) -> split after each punctuation mark -> jieba posseg ->
  sandhi pre-merge -> pinyin initials/finals per word (pypinyin, or G2PW when configured)
  -> tone sandhi -> erhua tone fix -> opencpop-strict initial/final symbols.

`g2p` returns one `word2ph` entry per character of the normalised text: 2 for a syllable
(initial + final with tone digit), 1 for a punctuation mark.
"""
from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache
from pathlib import Path

import jieba
import jieba.posseg
from pypinyin import Style, lazy_pinyin

from tts.frontend import tone_sandhi
from tts.frontend.symbols import UNK, table
from tts.frontend.zh_normalize import PUNCTUATION, normalize

__all__ = ["normalize", "g2p", "clean_text", "configure", "syllable_phones"]

log = logging.getLogger(__name__)
jieba.setLogLevel(logging.WARNING)

_DATA = Path(__file__).parent / "data"
_RE_SENTENCE = re.compile(r"(?<=[" + re.escape(PUNCTUATION) + r"])\s*")
_RE_LATIN = re.compile("[a-zA-Z]+")
# Characters the reference's clean_text turns into pauses: every "," of such a text becomes the symbol.
SPECIAL_PAUSES = (("￥", "SP2"), ("^", "SP3"))

MUST_ERHUA = frozenset({"小院儿", "胡同儿", "范儿", "老汉儿", "撒欢儿", "寻老礼儿", "妥妥儿", "媳妇儿"})
NOT_ERHUA = frozenset({
    "虐儿", "为儿", "护儿", "瞒儿", "救儿", "替儿", "有儿", "一儿", "我儿", "俺儿", "妻儿", "拐儿", "聋儿",
    "乞儿", "患儿", "幼儿", "孤儿", "婴儿", "婴幼儿", "连体儿", "脑瘫儿", "流浪儿", "体弱儿", "混血儿",
    "蜜雪儿", "舫儿", "祖儿", "美儿", "应采儿", "可儿", "侄儿", "孙儿", "侄孙儿", "女儿", "男儿", "红孩儿",
    "花儿", "虫儿", "马儿", "鸟儿", "猪儿", "猫儿", "狗儿", "少儿",
})

_lock = threading.Lock()
_g2pw = None  # a tts.frontend.g2pw.G2PW when configured


def configure(g2pw_dir: str | Path | None, tokenizer_dir: str | Path | None = None) -> None:
    """Use the G2PW polyphone model in `g2pw_dir` (None: back to pypinyin readings).

    Raises:
        tts.errors.TTSError subclass (via G2PW) when the folder is incomplete.
    """
    global _g2pw
    if g2pw_dir is None:
        with _lock:
            _g2pw = None
        return
    from tts.frontend.g2pw import G2PW

    model = G2PW.from_dir(g2pw_dir, tokenizer_dir)
    with _lock:
        _g2pw = model


@lru_cache(maxsize=1)
def _pinyin_table() -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for line in (_DATA / "opencpop-strict.txt").read_text(encoding="utf-8").splitlines():
        if "\t" in line:
            pinyin, phones = line.split("\t")
            initial, final = phones.strip().split(" ")
            out[pinyin] = (initial, final)
    return out


_AFTER_INITIAL = {"uei": "ui", "iou": "iu", "uen": "un"}
_ZERO_INITIAL = {"ing": "ying", "i": "yi", "in": "yin", "u": "wu"}
_ZERO_INITIAL_HEAD = {"v": "yu", "e": "e", "i": "y", "u": "w"}


def syllable_phones(initial: str, final: str) -> list[str]:
    """(strict initial, TONE3 final) -> [initial symbol, final symbol + tone]; ["UNK"] if unknown."""
    if not final or final[-1] not in "12345":
        return [UNK]
    bare, tone = final[:-1], final[-1]
    if initial:
        spelled = initial + _AFTER_INITIAL.get(bare, bare)
    elif bare in _ZERO_INITIAL:
        spelled = _ZERO_INITIAL[bare]
    elif bare and bare[0] in _ZERO_INITIAL_HEAD:
        spelled = _ZERO_INITIAL_HEAD[bare[0]] + bare[1:]
    else:
        spelled = bare
    pair = _pinyin_table().get(spelled)
    if pair is None:
        return [UNK]
    return [pair[0], pair[1] + tone]


def _merge_erhua(initials: list[str], finals: list[str], word: str, pos: str) -> list[str]:
    """儿 at a word's end: tone 1 -> 2, then (unless listed or a name/adjective) it takes the previous tone."""
    last = len(finals) - 1
    if last >= 0 and word[last] == "儿" and finals[last] == "er1":
        finals[last] = "er2"
    if word not in MUST_ERHUA and (word in NOT_ERHUA or pos in {"a", "j", "nr"}):
        return finals
    if len(finals) != len(word):
        return finals
    if (last >= 1 and word[last] == "儿" and finals[last] in {"er2", "er5"}
            and word[-2:] not in NOT_ERHUA):
        finals[last] = "er" + finals[last - 1][-1]
    return finals


def _pypinyin_word(word: str) -> tuple[list[str], list[str]]:
    initials = lazy_pinyin(word, neutral_tone_with_five=True, style=Style.INITIALS)
    finals = lazy_pinyin(word, neutral_tone_with_five=True, style=Style.FINALS_TONE3)
    return initials, finals


def _word_syllables(word: str, pos: str, readings: tuple[list[str], list[str]]) -> list[tuple[str, str]]:
    initials, finals = readings
    if len(initials) != len(word) or len(finals) != len(word):
        # Cannot happen for normalised text (one item per character); realign per character.
        pairs = [_pypinyin_word(ch) for ch in word]
        initials = [p[0][0] if p[0] else ch for p, ch in zip(pairs, word)]
        finals = [p[1][0] if p[1] else ch for p, ch in zip(pairs, word)]
    try:
        finals = tone_sandhi.modified_tone(word, pos, list(finals))
        finals = _merge_erhua(list(initials), finals, word, pos)
    except IndexError:
        # A syllable without a final (e.g. 噷 "hm"): the reference fails here; keep dictionary tones.
        log.debug("tone sandhi skipped for %r", word)
        finals = list(finals)
    return list(zip(initials, finals))


def _sentence_syllables(sentence: str) -> list[tuple[str, str]]:
    sentence = _RE_LATIN.sub("", sentence)
    seg = [(w, p) for w, p in jieba.posseg.lcut(sentence)]
    seg = tone_sandhi.pre_merge(seg)
    model = _g2pw
    predicted = model.predict(sentence) if model is not None else None
    out: list[tuple[str, str]] = []
    start = 0
    for word, pos in seg:
        end = start + len(word)
        if pos == "eng":
            start = end
            continue
        if predicted is not None:
            readings = model.word_readings(word, predicted[start:end])
        else:
            readings = _pypinyin_word(word)
        out += _word_syllables(word, pos, readings)
        start = end
    return out


def g2p(norm_text: str) -> tuple[list[str], list[int]]:
    """Phones and per-character phone counts of normalised text (from `normalize`).

    Returns:
        phones: v2 symbols; word2ph: len(norm_text) ints summing to len(phones).
    """
    phones: list[str] = []
    word2ph: list[int] = []
    sentences = [s for s in _RE_SENTENCE.split(norm_text) if s.strip()]
    for sentence in sentences:
        for initial, final in _sentence_syllables(sentence):
            if initial == final:
                phone = [initial] if initial in PUNCTUATION else [UNK]
            else:
                phone = syllable_phones(initial, final)
            if phone == [UNK]:
                log.debug("no phones for %r/%r in %r", initial, final, sentence)
            phones += phone
            word2ph.append(len(phone))
    return phones, word2ph


def clean_text(text: str, version: str = "v2") -> tuple[list[str], list[int], str]:
    """The reference cleaner for "zh": (phones, word2ph, norm_text), pause symbols included.

    A text holding "￥" (or else "^") has that character replaced by "," and then every ","
    phone becomes SP2 (SP3). Phones outside the version's table become "UNK".
    """
    for char, pause in SPECIAL_PAUSES:
        if char in text:
            norm_text = normalize(text.replace(char, ","))
            phones, word2ph = g2p(norm_text)
            return [pause if p == "," else p for p in phones], word2ph, norm_text
    norm_text = normalize(text)
    phones, word2ph = g2p(norm_text)
    known = set(table(version))
    return [p if p in known else UNK for p in phones], word2ph, norm_text
