"""Streaming stripper + sentence splitter: table-driven cases and token-split properties."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.splitter import SentenceSplitter, SplitterConfig, Stripper, Tag, ThinkFilter, count_units, strip_all


def split_all(text: str, config: SplitterConfig | None = None, step: int = 1) -> list[str]:
    sp = SentenceSplitter(config)
    out: list[str] = []
    for k in range(0, len(text), step):
        out += sp.push(text[k:k + step])
    return out + sp.flush()


def strip_stream(text: str, step: int = 1) -> list:
    st_ = Stripper()
    out: list = []
    for k in range(0, len(text), step):
        out += st_.push(text[k:k + step])
    out += st_.flush()
    merged: list = []
    for p in out:  # adjacent strings may come in several pieces
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        else:
            merged.append(p)
    return merged


NO_EAGER = SplitterConfig(eager_first=False, min_units=1)

SPLIT_CASES = [
    # (name, text, config, expected)
    ("zh", "今天天气真好。我们一起去公园散步吧！好不好？", NO_EAGER,
     ["今天天气真好。", "我们一起去公园散步吧！", "好不好？"]),
    ("zh ellipsis and semicolon", "嗯……我想想；好吧。", NO_EAGER, ["嗯……", "我想想；", "好吧。"]),
    ("zh closing quote kept", "她说：「你好。」然后笑了。", NO_EAGER, ["她说：「你好。」", "然后笑了。"]),
    ("zh curly quote kept", "“真的吗？”他问道。", NO_EAGER, ["“真的吗？”", "他问道。"]),
    ("en", "Hello there. How are you? I'm fine!", NO_EAGER, ["Hello there.", "How are you?", "I'm fine!"]),
    ("en decimal", "Pi is 3.14 roughly. Next.", NO_EAGER, ["Pi is 3.14 roughly.", "Next."]),
    ("en abbreviation", "Mr. Smith met Dr. Who. Then left.", NO_EAGER, ["Mr. Smith met Dr. Who.", "Then left."]),
    ("en initials", "J. K. Rowling wrote it. Yes.", NO_EAGER, ["J. K. Rowling wrote it.", "Yes."]),
    ("en url", "See https://example.com/a.html?x=1 now. Ok.", NO_EAGER,
     ["See https://example.com/a.html?x=1 now.", "Ok."]),
    ("en time and thousands", "At 10:30 we sold 1,000 apples. Done.", NO_EAGER,
     ["At 10:30 we sold 1,000 apples.", "Done."]),
    ("en quote after stop", 'He said "go." She went.', NO_EAGER, ['He said "go."', "She went."]),
    ("en interrobang", "Really?! Yes.", NO_EAGER, ["Really?!", "Yes."]),
    ("ja", "こんにちは。今日はいい天気ですね！散歩しましょう。", NO_EAGER,
     ["こんにちは。", "今日はいい天気ですね！", "散歩しましょう。"]),
    ("mixed", "我喜欢Python 3.12。It is great! 本当に？", NO_EAGER, ["我喜欢Python 3.12。", "It is great!", "本当に？"]),
    ("newline", "第一行\n第二行\n\nthird line", NO_EAGER, ["第一行", "第二行", "third line"]),
    ("flush keeps tail", "没有句号的结尾", NO_EAGER, ["没有句号的结尾"]),
    ("eager first comma zh", "旅行者，你好呀，今天想去哪里玩呢？我陪你。", SplitterConfig(eager_min_units=3),
     ["旅行者，", "你好呀，今天想去哪里玩呢？", "我陪你。"]),
    ("eager waits for enough text", "嗯，好的，我们走吧。", SplitterConfig(eager_min_units=3),
     ["嗯，好的，", "我们走吧。"]),
    ("eager en comma", "Well, my dear traveler, welcome to the inn. Sit down.", SplitterConfig(eager_min_units=3),
     ["Well, my dear traveler,", "welcome to the inn.", "Sit down."]),
    ("eager not in number", "We have 1,000 rooms here, friend. Ok.", SplitterConfig(eager_min_units=3),
     ["We have 1,000 rooms here,", "friend. Ok."]),
    ("min merges short", "好。嗯。今天天气真好。", SplitterConfig(eager_first=False, first_min_units=3, min_units=3),
     ["好。嗯。今天天气真好。"]),
    ("max cuts at comma", "一二三四五，六七八九十一二三四五", SplitterConfig(eager_first=False, min_units=2, max_units=10),
     ["一二三四五，", "六七八九十一二三四五"]),
    ("max cuts between words", "one two three four five six seven",
     SplitterConfig(eager_first=False, min_units=1, max_units=3), ["one two three", "four five six", "seven"]),
    ("max never inside number", "a b 3.14159 d e", SplitterConfig(eager_first=False, min_units=1, max_units=2),
     ["a b", "3.14159 d", "e"]),
]


@pytest.mark.parametrize("name,text,config,expected", SPLIT_CASES, ids=[c[0] for c in SPLIT_CASES])
@pytest.mark.parametrize("step", [1, 3, 1000])
def test_split_cases(name: str, text: str, config: SplitterConfig, expected: list[str], step: int) -> None:
    assert split_all(text, config, step) == expected


STRIP_CASES = [
    ("zh paren", "（微笑着）你好呀！", ["你好呀！"]),
    ("en paren", "Hello (smiles) there.", ["Hello  there."]),
    ("asterisk action", "*waves* Hi!", [" Hi!"]),
    ("bold kept", "This is **very** good.", ["This is very good."]),
    ("emotion tag", "[emotion:happy]太好了！", [Tag("emotion", "happy"), "太好了！"]),
    ("bracket direction", "[laughs] Ok. 【叹气】好吧。", [" Ok. 好吧。"]),
    ("think", "<think>let me think</think>答案是四。", ["答案是四。"]),
    ("stray think close", "reasoning</think>Hi.", ["reasoningHi."]),
    ("dialogue kept", "「早上好。」“嗯”", ["「早上好。」“嗯”"]),
    ("nested parens", "a (b (c) d) e", ["a  e"]),
    ("literal star", "5 * 3 = 15", ["5 * 3 = 15"]),
    ("star over line is literal", "*a\nb", ["*a\nb"]),
    ("unclosed paren kept at end", "ok (unfinished", ["ok (unfinished"]),
    ("less-than kept", "1 < 2 <b>", ["1 < 2 <b>"]),
]


@pytest.mark.parametrize("name,text,expected", STRIP_CASES, ids=[c[0] for c in STRIP_CASES])
@pytest.mark.parametrize("step", [1, 2, 1000])
def test_strip_cases(name: str, text: str, expected: list, step: int) -> None:
    assert strip_stream(text, step) == expected


def test_long_open_direction_is_given_back() -> None:
    text = "(" + "x" * 50 + " and more"
    st_ = Stripper(max_direction_chars=20)
    out = st_.push(text) + st_.flush()
    assert "".join(p for p in out if isinstance(p, str)) == text


def test_think_filter_unclosed_dropped() -> None:
    tf = ThinkFilter()
    assert tf.push("Hi<th") == "Hi"
    assert tf.push("ink>secret") == ""
    assert tf.flush() == ""


def test_count_units() -> None:
    assert count_units("你好 world 3.14 don't") == 5
    assert count_units("……") == 0


def test_reset_restores_eager_first() -> None:
    sp = SentenceSplitter(SplitterConfig(eager_min_units=2))
    assert sp.push("你好呀，朋友") == ["你好呀，"]
    sp.reset()
    assert sp.push("你好呀，朋友") == ["你好呀，"]


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="max_units"):
        SplitterConfig(max_units=0)
    with pytest.raises(ValueError, match="min_units"):
        SplitterConfig(min_units=-1)


# -- properties ---------------------------------------------------------------------------------

FRAGMENTS = ["你好", "旅行者", "，", "。", "！", "？", "；", "……", "「", "」", "“", "”", "こんにちは", "、",
             "Hello", " ", "world", ",", ".", "!", "?", "...", "3.14", "10:30", "Mr.", "e.g.", "https://a.b/c?d=1",
             "\n", "'", '"', "(smiles)", "（笑）", "*waves*", "**bold**", "[emotion:sad]", "[x]", "<think>hm</think>",
             "*", "(", ")", "[", "<", "think", "1,000", "a"]
texts = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)
configs = st.builds(SplitterConfig, eager_first=st.booleans(), eager_min_units=st.integers(0, 6),
                    first_min_units=st.integers(0, 3), min_units=st.integers(0, 6), max_units=st.integers(6, 20))


def _chunks(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in zip(points, points[1:])]


def _pipeline(chunks: list[str], config: SplitterConfig) -> tuple[list[str], list[Tag]]:
    st_, sp = Stripper(), SentenceSplitter(config)
    sentences: list[str] = []
    tags: list[Tag] = []
    for piece in [p for c in chunks for p in st_.push(c)] + st_.flush():
        if isinstance(piece, Tag):
            tags.append(piece)
        else:
            sentences += sp.push(piece)
    return sentences + sp.flush(), tags


def _nows(s: str) -> str:
    return "".join(s.split())


@settings(max_examples=300, deadline=None)
@given(texts, st.lists(st.integers(0, 400), max_size=12), configs)
def test_any_token_split_same_sentences(text: str, cuts: list[int], config: SplitterConfig) -> None:
    whole = split_all(text, config, step=max(1, len(text)))
    assert split_all(text, config, step=1) == whole
    sp = SentenceSplitter(config)
    got = [s for c in _chunks(text, cuts) for s in sp.push(c)] + sp.flush()
    assert got == whole
    assert _nows("".join(whole)) == _nows(text)  # nothing lost, nothing doubled
    assert all(s and s == s.strip() for s in whole)


@settings(max_examples=300, deadline=None)
@given(texts, st.lists(st.integers(0, 400), max_size=12), configs)
def test_pipeline_split_invariant_and_lossless(text: str, cuts: list[int], config: SplitterConfig) -> None:
    whole = _pipeline([text], config)
    assert _pipeline(_chunks(text, cuts), config) == whole
    assert _pipeline(list(text), config) == whole
    spoken, tags = strip_all(text)
    assert _nows("".join(whole[0])) == _nows(spoken)
    assert whole[1] == tags


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80), st.lists(st.integers(0, 100), max_size=8))
def test_arbitrary_unicode_never_crashes_or_loses(text: str, cuts: list[int]) -> None:
    config = SplitterConfig(max_units=8, min_units=2)
    sp = SentenceSplitter(config)
    got = [s for c in _chunks(text, cuts) for s in sp.push(c)] + sp.flush()
    assert _nows("".join(got)) == _nows(text)
    assert got == split_all(text, config)
    assert all(count_units(s) <= config.max_units for s in got)


def test_a_run_on_word_is_cut():
    """A single huge "word" (a degenerate reply, a pasted blob) cannot reach the TTS whole: the TTS limit
    would fail the sentence. Cut inside it at 12 characters per unit of max_units, whatever the deltas."""
    text = "A" * 2100 + ". Hello there."
    whole = SentenceSplitter()
    out = whole.push(text) + whole.flush()
    assert [len(s) for s in out] == [600, 600, 600, 314] and "".join(out).replace(" ", "") == text.replace(" ", "")
    pieces = SentenceSplitter()
    out2 = [s for k in range(0, len(text), 7) for s in pieces.push(text[k:k + 7])] + pieces.flush()
    assert out2 == out
