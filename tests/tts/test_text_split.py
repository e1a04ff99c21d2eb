import pytest

from tts.text_split import (MAX_PIECE_UNITS, METHODS, as_single_sentence, final_punctuation, merge_short,
                             split_long, split_sentences, split_text, units)


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


TEN = "".join(f"第{n}句。" for n in "一二三四五六七八九十")  # ten sentences of 4 characters


@pytest.mark.parametrize("method,text,expected", [
    # cut0: no split, but at line breaks (api_v2 splits every method's output at "\n")
    ("cut0", "你好，世界。我们走吧！", ["你好，世界。我们走吧！"]),
    ("cut0", "第一行的文字\n第二行的文字", ["第一行的文字。", "第二行的文字。"]),
    # cut1: four sentences a group; a remainder of one to three joins the last group
    ("cut1", TEN, [TEN[:16], TEN[16:]]),
    ("cut1", TEN[:20], [TEN[:20]]),
    ("cut1", "一，二，三，四，五，六，七，八，", ["一，二，三，四，", "五，六，七，八，"]),  # a comma ends a sentence too
    ("cut2", "短句。", ["短句。"]),  # cut2 beyond 50 characters: test_cut2_groups_pass_fifty_characters
    # cut3: after each 。 only
    ("cut3", "第一句，还有逗号。第二句！第三句。", ["第一句，还有逗号。", "第二句！第三句。"]),
    # cut4: after each . outside numbers only
    ("cut4", "Pi is 3.14, roughly. Then he left! OK, bye.", ["Pi is 3.14, roughly.", "Then he left! OK, bye."]),
    ("cut4", "我来了。你呢？好的", ["我来了。你呢？好的。"]),
    # cut5: after every mark (the default)
    ("cut5", "你好。今天天气很好，我们去公园散步吧！好的", ["你好。今天天气很好，", "我们去公园散步吧！好的。"]),
])
def test_split_text_methods(method, text, expected):
    assert split_text(text, method) == expected


def test_cut2_groups_pass_fifty_characters():
    a, b, c = "甲" * 20 + "，", "乙" * 20 + "，", "丙" * 20 + "。"  # 21 characters each
    short = "丁" * 9 + "。"
    # a + b + c passes 50: one group; the short rest (under 50) joins it; over 50 units the cap
    # then cuts that group at punctuation into about equal parts
    assert split_text(a + b + c + a + b + c, "cut2", max_units=200) == [a + b + c, a + b + c]
    assert split_text(a + b + c + short, "cut2", max_units=200) == [a + b + c + short]
    assert split_text(a + b + c + short, "cut2") == [a + b, c + short]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_caps_and_ends_pieces(method):
    text = "我们一起去公园散步然后再去图书馆看看书最后回家吃晚饭再看一会儿电视然后睡觉明天早上再起来跑步" * 3
    pieces = split_text(text, method)
    assert len(pieces) == 3 and all(units(p[:-1]) <= MAX_PIECE_UNITS for p in pieces)
    assert split_text("。。。！！！", method) == [] and split_text("   ", method) == []


def test_cut5_is_split_sentences_and_unknown_methods_fail():
    text = "第一句话很长很长，第二句。Third sentence here! 最后一句没有标点"
    assert split_text(text, "cut5") == split_text(text) == split_sentences(text)
    with pytest.raises(ValueError, match="cut9"):
        split_text("你好", "cut9")


@pytest.mark.parametrize("method", ["cut1", "cut2"])
def test_grouped_english_sentences_keep_their_spaces(method):
    text = "Hello there. How are you? I am fine. Thanks a lot. See you soon."
    pieces = split_text(text, method)
    assert " ".join(pieces) == text and all(".How" not in p and "?I" not in p for p in pieces), pieces
