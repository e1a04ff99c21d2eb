"""Mandarin G2P: phones equal GPT-SoVITS v2's (pypinyin path), sandhi/erhua rules, alignment invariants."""
from __future__ import annotations

import pytest

from tts.frontend import zh
from tts.frontend.symbols import symbols_v2

# (text, expected phones) from the reference cleaner.
PHONES = [
    ("我们班一共有45个同学。",
     "w o3 m en5 b an1 y i2 g ong4 y ou3 s i04 sh ir2 w u3 g e5 t ong2 x ve2 ."),
    ("平均分是86.5分", "p ing2 j vn1 f en1 sh ir4 b a1 sh ir2 l iu4 d ian2 w u3 f en1"),
    ("余额-350元", "y v2 EE e5 f u4 s an1 b ai3 w u3 sh ir2 y van2"),
    ("9:00-21:00", "j iu2 d ian3 zh ir4 EE er4 sh ir2 y i4 d ian3"),
    ("3+5=8", "s an1 j ia1 w u2 d eng3 y v2 b a1"),
    ("α粒子", "AA a1 EE er3 f a3 l i4 z i05"),
    ("嗯……好", "EE en1 … h ao3"),
]

SANDHI = [
    # 不
    ("不怕", "b u2 p a4"), ("看不懂", "k an4 b u5 d ong3"), ("不好", "b u4 h ao3"), ("不是", "b u2 sh ir4"),
    # 一
    ("一天", "y i4 t ian1"), ("一段", "y i2 d uan4"), ("看一看", "k an4 y i5 k an4"), ("第一", "d i4 y i1"),
    ("十一", "sh ir2 y i1"), ("万一，", "w an4 y i1 ,"), ("一百一十一", "y i4 b ai3 y i1 sh ir2 y i1"),
    # third-tone chains
    ("你好", "n i2 h ao3"), ("展览馆", "zh an2 l an2 g uan3"), ("纸老虎", "zh ir3 l ao2 h u3"),
    ("蒙古包", "m eng2 g u3 b ao1"), ("所有人", "s uo2 y ou3 r en2"), ("好喜欢", "h ao2 x i3 h uan5"),
    ("我很想你", "w o2 h en3 x iang2 n i3"),
    # neutral tone
    ("我们", "w o3 m en5"), ("桌子", "zh uo1 z i05"), ("好的", "h ao3 d e5"), ("麻烦", "m a2 f an5"),
    ("走了", "z ou3 l e5"), ("奶奶", "n ai3 n ai5"), ("看看", "k an4 k an5"), ("上来", "sh ang4 l ai5"),
    ("那个", "n a4 g e5"), ("家里", "j ia1 l i5"),
]

ERHUA = [
    ("小院儿", "x iao3 y van4 EE er4"), ("玩儿", "w an2 EE er2"), ("女儿", "n v3 EE er2"),
    ("花儿", "h ua1 EE er2"), ("一会儿", "y i2 h ui4 EE er4"), ("哪儿", "n a3 EE er3"),
    ("今儿个", "j in1 EE er2 g e4"),
]


@pytest.mark.parametrize("text,expected", PHONES + SANDHI + ERHUA)
def test_phones_match_reference(text, expected):
    phones, word2ph, norm = zh.clean_text(text)
    assert phones == expected.split()
    assert len(word2ph) == len(norm) and sum(word2ph) == len(phones)


@pytest.mark.parametrize("char,pause", [("￥", "SP2"), ("^", "SP3")])
def test_special_pause_symbols(char, pause):
    phones, word2ph, norm = zh.clean_text(f"你好{char}世界，再见")
    assert norm == "你好,世界,再见"
    assert phones == f"n i2 h ao3 {pause} sh ir4 j ie4 {pause} z ai4 j ian4".split()


def test_g2p_contract():
    norm = zh.normalize("今天天气不错，我们去公园散步吧！")
    phones, word2ph = zh.g2p(norm)
    assert len(word2ph) == len(norm)
    assert sum(word2ph) == len(phones)
    assert all(n == 1 if ch in ",.!?…-" else n == 2 for ch, n in zip(norm, word2ph))
    assert all(p in symbols_v2 for p in phones)


def test_syllable_phones():
    assert zh.syllable_phones("zh", "uei4") == ["zh", "ui4"]
    assert zh.syllable_phones("", "iou3") == ["y", "ou3"]
    assert zh.syllable_phones("", "v4") == ["y", "v4"]
    assert zh.syllable_phones("", "er2") == ["EE", "er2"]
    assert zh.syllable_phones("", "xx") == ["UNK"]


ODD = [
    "你好😀世界🎉，今天天气不错👍",
    "零宽\u200b字符\u200c测试\u200d。",
    "控制\x00字符\x07测试\x1b。",
    "ＡＢＣ全角，！？",
    "瓧噷",  # no pinyin / no final: the reference raises; here UNK or dictionary tones
    "",
    "   ",
    "😀",
    "\ufeff",
]


@pytest.mark.parametrize("text", ODD)
def test_never_crashes_and_keeps_words(text):
    phones, word2ph, norm = zh.clean_text(text)
    assert len(word2ph) == len(norm) and sum(word2ph) == len(phones)
    for word in ("世界", "今天天气不错", "字符", "测试", "全角"):
        if word in text.replace("\u200b", "").replace("\u200c", "").replace("\u200d", ""):
            assert word in norm


def test_long_input():
    text = "这是一个很长的句子，里面有数字12和标点！" * 200
    phones, word2ph, norm = zh.clean_text(text)
    assert len(word2ph) == len(norm) and sum(word2ph) == len(phones)
    assert norm.count("数字十二和") == 200
