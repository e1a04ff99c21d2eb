import pytest

from tts.text_split import (MAX_PIECE_UNITS, as_single_sentence, final_punctuation, merge_short,
                             split_long, split_sentences, units)


@pytest.mark.parametrize("text,expected", [
    ("你好。今天天气很好，我们去公园散步吧！好的", ["你好。今天天气很好，", "我们去公园散步吧！好的。"]),
    ("Hello there, how are you? I am fine.", ["Hello there,", "how are you?", "I am fine."]),
    ("Pi is 3.14 exactly", ["Pi is 3.14 exactly."]),
    ("「我知道了！」他说", ["「我知道了！」他说。"]),
    ("等等。。。好吧！！", ["等等。好吧！"]),
    ("……", []),
    ("   ", []),
    ("Hi", ["Hi."]),
])
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


def test_every_piece_ends_in_punctuation_and_keeps_the_text():
    text = "第一句话很长很长，第二句。Third sentence here! 最后一句没有标点"
    pieces = split_sentences(text)
    assert all(p[-1] in ",.;?!、，。？！;：:…" for p in pieces)
    joined = "".join(pieces).replace(" ", "")
    assert joined.rstrip("。") == text.replace(" ", "")


def test_long_piece_is_cut():
    pieces = split_sentences("word " * 300, max_units=100)  # 1500 characters = 400 units
    assert len(pieces) == 4 and all(units(p) <= 100 + 1 for p in pieces)
    assert all(p.endswith("word,") for p in pieces[:-1]) and pieces[-1].endswith("word.")
    assert " ".join(p.rstrip(",.") for p in pieces) == ("word " * 300).strip()


def _unpunctuated(pieces: list[str]) -> str:
    return "".join(p[:-1] for p in pieces)  # each piece ends in one added mark


def test_units():
    assert units("你好") == 2 and units("2024") == 4 and units("abc def") == 2 and units("こんにちは") == 5
    assert units("，。 ") == 2 / 3


@pytest.mark.parametrize("text,n", [
    # the trial's texts: 141 and 480 characters without punctuation (both failed in BERT as one piece)
    ("我们一起去公园散步然后再去图书馆看看书最后回家吃晚饭再看一会儿电视然后睡觉明天早上再起来跑步" * 3, 3),
    ("我们在2024年花了15%的预算" * 30, 10),
])
def test_long_cjk_run_becomes_t2s_sized_sentences(text, n):
    pieces = split_sentences(text)
    assert len(pieces) == n
    assert all(units(p[:-1]) <= MAX_PIECE_UNITS for p in pieces)
    assert all(p.endswith("，") for p in pieces[:-1]) and pieces[-1].endswith("。")
    assert _unpunctuated(pieces) == text
    assert not any(p.startswith(("馆", "书馆", "天早上")) for p in pieces)  # cut at word boundaries


def test_long_english_clause_is_cut_at_spaces():
    text = " ".join(["the quick brown fox jumps over the lazy dog"] * 5)  # 219 characters, no marks
    pieces = split_sentences(text)
    assert len(pieces) == 2 and all(units(p) <= MAX_PIECE_UNITS + 1 for p in pieces)
    assert " ".join(p[:-1] for p in pieces) == text


def test_split_long_prefers_punctuation_and_keeps_short_text():
    assert split_long("你好，世界。") == ["你好，世界。"]
    text = "今天我们去公园散步吧，" * 4 + "然后回家吃饭好不好"  # 49 + 9 = 58 units: two parts
    parts = split_long(text)
    assert parts == ["今天我们去公园散步吧，" * 2, "今天我们去公园散步吧，" * 2 + "然后回家吃饭好不好"]
    assert split_long("x" * 400)[0] == "x" * 150 + ","  # one 'word' longer than a part: cut by characters


def test_no_split_path_is_capped_too():
    text = "我们一起去公园散步然后再去图书馆看看书最后回家吃晚饭再看一会儿电视然后睡觉明天早上再起来跑步" * 3
    assert len(as_single_sentence(text)) == 3


def test_merge_short_and_final_punct():
    assert merge_short(["a,", "b,", "ccccc."], 5) == ["a, b,", "ccccc."]
    assert merge_short(["a,", "b.", "c"], 5) == ["a, b. c"]
    assert merge_short(["abcdef.", "x"], 5) == ["abcdef. x"]
    assert final_punctuation("你好") == "你好。"
    assert final_punctuation("hello") == "hello."
    assert final_punctuation("「好！」") == "「好！」"
    assert as_single_sentence("one, two. three") == ["one, two. three."]
