import pytest

from tts.text_split import as_single_sentence, final_punctuation, merge_short, split_sentences


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
    pieces = split_sentences("word " * 300, max_chars=100)
    assert len(pieces) > 1 and all(len(p) <= 101 for p in pieces)


def test_merge_short_and_final_punct():
    assert merge_short(["a,", "b,", "ccccc."], 5) == ["a, b,", "ccccc."]
    assert merge_short(["a,", "b.", "c"], 5) == ["a, b. c"]
    assert merge_short(["abcdef.", "x"], 5) == ["abcdef. x"]
    assert final_punctuation("你好") == "你好。"
    assert final_punctuation("hello") == "hello."
    assert final_punctuation("「好！」") == "「好！」"
    assert as_single_sentence("one, two. three") == ["one, two. three."]
