"""Chinese normaliser: each rule category against GPT-SoVITS v2 outputs (oddities included)."""
from __future__ import annotations

import pytest

from tts.frontend.zh_normalize import cardinal, collapse_punctuation, map_punctuation, normalize, number

CASES = [
    # integers, measure words (2 -> 两)
    ("我们班一共有45个同学。", "我们班一共有四十五个同学."),
    ("长1280米", "长一千二百八十米"),
    ("2个人", "两个人"),
    ("2+人", "两多人"),
    ("用了2个小时", "用了两个小时"),
    # decimals (a trailing zero keeps one zero)
    ("平均分是86.5分", "平均分是八十六点五分"),
    ("误差0.01以内", "误差零点零一以内"),
    ("0.50", "零点五零"),
    ("3.0", "三点零"),
    # negatives (a negative decimal reads its fraction separately, as the reference does)
    ("余额-350元", "余额负三百五十元"),
    ("变化-2.5", "变化负二零点五"),
    # percentages and fractions
    ("涨幅-2.5%", "涨幅负百分之二点五"),
    ("占52%", "占百分之五十二"),
    ("完成了3/4", "完成了四分之三"),
    # ranges: "-" between numbers reads as subtraction, "~" with units as 至 then …
    ("3-5月", "三减五月"),
    ("30-60分钟", "三十减六十分钟"),
    ("20~25℃", "二十…二十五度"),
    # dates and years
    ("2025-03-15之前", "二零二五年三月十五日之前"),
    ("2026年1月9日", "二零二六年一月九日"),
    ("12月25日", "十二月二十五日"),
    ("公元618年", "公元六一八年"),
    # times
    ("下午3:45", "下午三点四十五分"),
    ("早上6:30", "早上六点半"),
    ("9:00-21:00", "九点至二十一点"),
    ("3:28:15", "三点二十八分十五秒"),
    # phone numbers (一 -> 幺)
    ("手机13812345678", "手机幺三八幺二三四五六七八"),
    ("拨打021-55556666", "拨打零二幺减五五五五六六六六"),
    ("编号00078", "编号零零零七八"),
    # currency and units ("$" is a full stop; every Latin m/s is a unit)
    ("花了$3.99", "花了.三点九九"),
    ("20kg", "二十千克"),
    ("5km", "五千米"),
    ("38℃", "三十八度"),
    ("-18℃", "零下十八度"),
    # departures from the reference (which reads 米米, 千米每 and drops ％)
    ("降雨量50mm", "降雨量五十毫米"),
    ("车速10km/h", "车速十千米每小时"),
    ("１５％的人", "百分之十五的人"),
    ("３．５米", "三点五米"),
    ("这件事--说来话长", "这件事说来话长"),
    ("---", ""),
    ("温度是-3摄氏度", "温度是零下三度"),
    # ordinals, versions, arithmetic, powers
    ("第1-3章", "第一减三章"),
    ("更新到2.3.1版本", "更新到二点三点一版本"),
    ("3+5=8", "三加五等于八"),
    ("2×3=6，6÷2=3。", "二乘三等于六,六除二等于三."),
    ("x²", "的二次方"),
    # symbols, brackets, quotes, traditional characters, full width, Latin removal
    ("①号", "一号"),
    ("α粒子", "阿尔法粒子"),
    ("《红楼梦》是小说；它很长。", "红楼梦是小说,它很长."),
    ("这件事——说来话长——还得", "这件事说来话长还得"),
    ("我們今天去臺灣", "我们今天去台湾"),
    ("ＡＢＣ１２３", "幺二三"),
    ("Hello world", ""),
    # punctuation mapping and collapsing
    ("嗯……让我想想，“月亮”。", "恩…让我想想,月亮."),
    ("我知道了～明天见！", "我知道了…明天见!"),
    ("？？？！！！。。。", "?"),
]


@pytest.mark.parametrize("text,expected", CASES)
def test_normalize(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize("digits,words", [
    ("0", "零"), ("10", "十"), ("15", "十五"), ("100", "一百"), ("105", "一百零五"), ("1010", "一千零一十"),
    ("100000", "十万"), ("10000000000", "一百亿"), ("000", "零"), ("", ""),
])
def test_cardinal(digits, words):
    assert cardinal(digits) == words


def test_number_pure_decimal():
    assert number(".5") == "零点五"


def test_map_and_collapse_punctuation():
    assert map_punctuation("你好，世界。abc😀") == "你好,世界."
    assert collapse_punctuation("好!?,.啊") == "好!啊"


@pytest.mark.parametrize("text", ["", " ", "\u200b", "😀", "\x00\x07", "1" * 400, "٣٤", "-", "1.2.3.4.5.6"])
def test_never_raises(text):
    out = normalize(text)
    assert all("\u4e00" <= c <= "\u9fa5" or c in "!?…,.-" for c in out)
