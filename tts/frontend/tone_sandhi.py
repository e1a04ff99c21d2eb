"""Mandarin tone sandhi as GPT-SoVITS v2 applies it (PaddleSpeech's rules and word lists).

Two stages act on jieba's (word, pos) segmentation of one sentence:

1. `pre_merge` joins pieces that sandhi must see together: "不"/"一" with the next word,
   "听一听", reduplications, short third-tone runs and a trailing "儿".
2. `modified_tone(word, pos, finals)` rewrites the tone digits of one word's finals
   (TONE3 style, 5 = neutral): 不, 一, neutral-tone words/suffixes, then 3-3 chains.

Finals are pypinyin strings such as "ao3"; a punctuation "final" is the mark itself.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import jieba
from pypinyin import Style, lazy_pinyin

jieba.setLogLevel(logging.WARNING)

_DATA = Path(__file__).parent / "data"
Seg = list[tuple[str, str]]

# Punctuation after "一" keeps it in tone 1 ("万一，").
_PUNC = "：，；。？！“”‘’':,;.?!"
_NEUTRAL_FINAL_CHARS = "吧呢哈啊呐噻嘛吖嗨呐哦哒额滴哩哟喽啰耶喔诶"


@lru_cache(maxsize=1)
def _word_lists() -> dict[str, frozenset[str]]:
    lists: dict[str, set[str]] = {}
    current = None
    for line in (_DATA / "zh_neutral_words.txt").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = lists.setdefault(line.strip("[]"), set())
        elif current is not None:
            current.add(line)
    return {k: frozenset(v) for k, v in lists.items()}


def must_neutral() -> frozenset[str]:
    return _word_lists()["must_neutral"]


def must_not_neutral() -> frozenset[str]:
    return _word_lists()["must_not_neutral"]


def _with_tone(final: str, tone: str) -> str:
    return final[:-1] + tone


def _finals(word: str) -> list[str]:
    return lazy_pinyin(word, neutral_tone_with_five=True, style=Style.FINALS_TONE3)


def _all_third(finals: list[str]) -> bool:
    # final[-1] raises on an empty final, as the reference does; callers rely on that.
    return all(f[-1] == "3" for f in finals)


def split_word(word: str) -> list[str]:
    """Split a word in two around its shortest search-mode sub-word (e.g. 蒙古包 -> 蒙古 / 包)."""
    pieces = sorted(jieba.cut_for_search(word), key=len)
    first = pieces[0]
    if word.find(first) == 0:
        return [first, word[len(first):]]
    return [word[: -len(first)], first]


# ---------------------------------------------------------------- stage 1: merging


def _merge_bu(seg: Seg) -> Seg:
    out: Seg = []
    last = ""
    for word, pos in seg:
        if last == "不":
            word = last + word
        if word != "不":
            out.append((word, pos))
        last = word
    if last == "不":
        out.append((last, "d"))
    return out


def _merge_yi(seg: Seg) -> Seg:
    merged: list[list[str]] = []
    i = 0
    while i < len(seg):  # "听","一","听" -> "听一听" (verbs only)
        word, pos = seg[i]
        if i >= 1 and word == "一" and i + 1 < len(seg):
            last = merged[-1]
            nxt = seg[i + 1]
            if last[0] == nxt[0] and last[1] == "v" and nxt[1] == "v":
                merged[-1] = [last[0] + "一" + nxt[0], last[1]]
                i += 2
                continue
        merged.append([word, pos])
        i += 1
    out: list[list[str]] = []
    for word, pos in merged:  # a lone "一" absorbs the next word
        if out and out[-1][0] == "一":
            out[-1][0] += word
        else:
            out.append([word, pos])
    return [(w, p) for w, p in out]


def _merge_reduplication(seg: Seg) -> Seg:
    out: list[list[str]] = []
    for word, pos in seg:
        if out and word == out[-1][0]:
            out[-1][0] += word
        else:
            out.append([word, pos])
    return [(w, p) for w, p in out]


def _is_reduplication(word: str) -> bool:
    return len(word) == 2 and word[0] == word[1]


def _merge_third_tones(seg: Seg, whole_words: bool) -> Seg:
    """Join neighbours with third tones (whole words, or last/first syllable) up to 3 characters."""
    finals = [_finals(word) for word, _ in seg]
    out: list[list[str]] = []
    merged_last = [False] * len(seg)
    for i, (word, pos) in enumerate(seg):
        if i >= 1:
            if whole_words:
                both = _all_third(finals[i - 1]) and _all_third(finals[i])
            else:
                both = finals[i - 1][-1][-1] == "3" and finals[i][0][-1] == "3"
            if both and not merged_last[i - 1]:
                prev = seg[i - 1][0]
                if not _is_reduplication(prev) and len(prev) + len(word) <= 3:
                    out[-1][0] += word
                    merged_last[i] = True
                    continue
        out.append([word, pos])
    return [(w, p) for w, p in out]


def _merge_er(seg: Seg) -> Seg:
    out: list[list[str]] = []
    for i, (word, pos) in enumerate(seg):
        if i >= 1 and word == "儿" and seg[i - 1][0] != "#":
            out[-1][0] += word
        else:
            out.append([word, pos])
    return [(w, p) for w, p in out]


def pre_merge(seg: Seg) -> Seg:
    """Merge jieba pieces before sandhi. A step that meets a syllable without a final is skipped whole."""
    seg = _merge_bu(seg)
    for step in (_merge_yi, _merge_reduplication,
                 lambda s: _merge_third_tones(s, True), lambda s: _merge_third_tones(s, False)):
        try:
            seg = step(seg)
        except IndexError:
            pass
    return _merge_er(seg)


# ---------------------------------------------------------------- stage 2: per-word tones


def _bu_sandhi(word: str, finals: list[str]) -> list[str]:
    if len(word) == 3 and word[1] == "不":  # 看不懂
        finals[1] = _with_tone(finals[1], "5")
        return finals
    for i, ch in enumerate(word):
        if ch == "不" and i + 1 < len(word) and finals[i + 1][-1] == "4":  # 不怕
            finals[i] = _with_tone(finals[i], "2")
    return finals


def _yi_sandhi(word: str, finals: list[str]) -> list[str]:
    if "一" in word and all(ch.isnumeric() for ch in word if ch != "一"):
        return finals  # numbers: 一零零, 十一
    if len(word) == 3 and word[1] == "一" and word[0] == word[-1]:
        finals[1] = _with_tone(finals[1], "5")  # 看一看
    elif word.startswith("第一"):
        finals[1] = _with_tone(finals[1], "1")
    else:
        for i, ch in enumerate(word):
            if ch == "一" and i + 1 < len(word):
                if finals[i + 1][-1] == "4":
                    finals[i] = _with_tone(finals[i], "2")  # 一段
                elif word[i + 1] not in _PUNC:
                    finals[i] = _with_tone(finals[i], "4")  # 一天
    return finals


def _is_neutral_word(word: str) -> bool:
    return word in must_neutral() or word[-2:] in must_neutral()


def _neutral_suffix(word: str, pos: str, finals: list[str]) -> None:
    """Neutral tone of the last syllable (or of 个) from particles, suffixes and the word lists."""
    ge = word.find("个")
    last = word[-1]
    if last in _NEUTRAL_FINAL_CHARS or last in "的地得":
        finals[-1] = _with_tone(finals[-1], "5")
    elif len(word) == 1 and word in "了着过" and pos in {"ul", "uz", "ug"}:
        finals[-1] = _with_tone(finals[-1], "5")
    elif len(word) > 1 and last in "们子" and pos in {"r", "n"} and word not in must_not_neutral():
        finals[-1] = _with_tone(finals[-1], "5")
    elif len(word) > 1 and last in "上下里" and pos in {"s", "l", "f"}:
        finals[-1] = _with_tone(finals[-1], "5")
    elif len(word) > 1 and last in "来去" and word[-2] in "上下进出回过起开":
        finals[-1] = _with_tone(finals[-1], "5")
    elif (ge >= 1 and (word[ge - 1].isnumeric() or word[ge - 1] in "几有两半多各整每做是")) or word == "个":
        finals[ge] = _with_tone(finals[ge], "5")
    elif _is_neutral_word(word):
        finals[-1] = _with_tone(finals[-1], "5")


def _neutral_sandhi(word: str, pos: str, finals: list[str]) -> list[str]:
    for j in range(1, len(word)):  # reduplicated nouns/verbs/adjectives: 奶奶, 试试
        if word[j] == word[j - 1] and pos[0] in "nva" and word not in must_not_neutral():
            finals[j] = _with_tone(finals[j], "5")
    if word:
        _neutral_suffix(word, pos, finals)
    parts = split_word(word)
    cut = len(parts[0])
    halves = [finals[:cut], finals[cut:]]
    for part, half in zip(parts, halves):
        if _is_neutral_word(part):
            half[-1] = _with_tone(half[-1], "5")
    return halves[0] + halves[1]


def _three_sandhi(word: str, finals: list[str]) -> list[str]:
    if len(word) == 2 and _all_third(finals):
        finals[0] = _with_tone(finals[0], "2")
    elif len(word) == 3:
        parts = split_word(word)
        if _all_third(finals):
            if len(parts[0]) == 2:  # 蒙古/包
                finals[0] = _with_tone(finals[0], "2")
                finals[1] = _with_tone(finals[1], "2")
            elif len(parts[0]) == 1:  # 纸/老虎
                finals[1] = _with_tone(finals[1], "2")
        else:
            cut = len(parts[0])
            halves = [finals[:cut], finals[cut:]]
            for i, half in enumerate(halves):
                if len(half) == 2 and _all_third(half):  # 所有/人
                    half[0] = _with_tone(half[0], "2")
                elif i == 1 and not _all_third(half) and half[0][-1] == "3" and halves[0][-1][-1] == "3":
                    halves[0][-1] = _with_tone(halves[0][-1], "2")  # 好/喜欢
            finals = halves[0] + halves[1]
    elif len(word) == 4:  # idioms: two pairs
        halves = [finals[:2], finals[2:]]
        for half in halves:
            if _all_third(half):
                half[0] = _with_tone(half[0], "2")
        finals = halves[0] + halves[1]
    return finals


def modified_tone(word: str, pos: str, finals: list[str]) -> list[str]:
    """Apply 不, 一, neutral-tone and third-tone sandhi to one merged word's finals."""
    finals = _bu_sandhi(word, finals)
    finals = _yi_sandhi(word, finals)
    finals = _neutral_sandhi(word, pos, finals)
    return _three_sandhi(word, finals)
