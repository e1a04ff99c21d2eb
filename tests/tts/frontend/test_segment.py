"""Mixed-language segmentation by script."""
from __future__ import annotations

import pytest

from tts.frontend import segment
from tts.frontend.segment import char_class, chinese_only, split


@pytest.mark.parametrize(
    "text, mode, want",
    [
        ("我喜欢Python，它很好用。", "zh", [("zh", "我喜欢"), ("en", "Python，"), ("zh", "它很好用。")]),
        ("今日はGitHubで作業します。", "ja", [("ja", "今日は"), ("en", "GitHub"), ("ja", "で作業します。")]),
        ("ねえ、知ってる？我今天很开心。I am happy.", "auto",
         [("ja", "ねえ、知ってる？"), ("zh", "我今天很开心。"), ("en", "I am happy.")]),
        ("iPhone 15是2023年发布的", "auto", [("en", "iPhone 15"), ("zh", "是2023年发布的")]),
        ("2024年我去了Tokyo", "zh", [("zh", "2024年我去了"), ("en", "Tokyo")]),
        ("东京是日本的首都", "auto", [("zh", "东京是日本的首都")]),
        ("東京駅で友達と待ち合わせ", "auto", [("ja", "東京駅で友達と待ち合わせ")]),
        ("Hello, world!", "auto", [("en", "Hello, world!")]),
        ("Mixed 中文 text", "en", [("en", "Mixed 中文 text")]),
        ("中文English", "all_zh", [("zh", "中文English")]),
        ("日本語English", "all_ja", [("ja", "日本語English")]),
        ("123!", "auto", [("zh", "123!")]),
        ("", "auto", []),
        # plain Chinese without kana is Chinese, whatever the detector thinks (it said ja for these)
        ("增长率达到了15.8%，比去年高3个百分点。", "auto", [("zh", "增长率达到了15.8%，比去年高3个百分点。")]),
        ("**重要**：请注意以下几点：1. 早睡 2. 早起", "auto", [("zh", "**重要**：请注意以下几点：1. 早睡 2. 早起")]),
        ("ＡＢＣ１２３，全角字符测试。", "auto", [("en", "ＡＢＣ１２３，"), ("zh", "全角字符测试。")]),
        ("说AI和GPU很重要。", "auto", [("zh", "说"), ("en", "AI"), ("zh", "和"), ("en", "GPU"), ("zh", "很重要。")]),
        ("春眠不覺曉，處處聞啼鳥。", "auto", [("zh", "春眠不覺曉，處處聞啼鳥。")]),  # traditional, no kana
        # kana: Japanese, except Han runs with a Chinese-only character
        ("東京、大阪、名古屋に行きました。", "auto", [("ja", "東京、大阪、名古屋に行きました。")]),
        ("她说了一句ありがとう。", "auto", [("zh", "她说了一句"), ("ja", "ありがとう。")]),
        ("はい。我们走吧。", "auto", [("ja", "はい。"), ("zh", "我们走吧。")]),
        # a unit after a number stays with it in Chinese text (full-width too), not in English or Japanese
        ("温度是-5℃，明天升到10°C。", "zh", [("zh", "温度是-5℃，明天升到10°C。")]),
        ("买了5kg苹果，3 cm的线，车速10km/h", "auto", [("zh", "买了5kg苹果，3 cm的线，车速10km/h")]),
        ("长２０ｃｍ", "zh", [("zh", "长２０ｃｍ")]),
        ("5kg", "auto", [("zh", "5kg")]),
        ("It weighs 5kg.", "auto", [("en", "It weighs 5kg.")]),
        ("5kgのりんご", "auto", [("en", "5kg"), ("ja", "のりんご")]),
        ("等了5 seconds", "zh", [("zh", "等了5 "), ("en", "seconds")]),
    ],
)
def test_split(text, mode, want):
    got = split(text, mode)
    assert got == want
    assert "".join(t for _, t in got) == text


def test_char_classes():
    assert [char_class(c) for c in "aあア漢1。Ｚ"] == ["latin", "kana", "kana", "han", "neutral", "neutral", "latin"]


def test_unknown_mode():
    with pytest.raises(ValueError):
        split("x", "fr")


def test_chinese_only_characters():
    assert all(chinese_only(c) for c in "们这说长觉你")
    assert not any(chinese_only(c) for c in "国学会東京気あA1")


@pytest.mark.parametrize("answer, want", [
    (("ja", 0.95), [("ja", "はい。東京大学。")]),
    (("ja", 0.6), [("ja", "はい。"), ("zh", "東京大学。")]),
    (("zh", 0.99), [("ja", "はい。"), ("zh", "東京大学。")]),
])
def test_kanji_only_sentence_of_a_text_with_kana(monkeypatch, answer, want):
    """Only such a sentence asks the detector; it is Japanese when the detector is confident."""
    asked = []
    monkeypatch.setattr(segment, "_detect_han", lambda text: asked.append(text) or answer)
    assert split("はい。東京大学。", "auto") == want
    assert asked == ["東京大学"]


def test_no_kana_no_detector(monkeypatch):
    def fail(text):
        raise AssertionError("the detector was asked")

    monkeypatch.setattr(segment, "_detect_han", fail)
    assert split("東京大学。今日は晴れ", "zh") == [("zh", "東京大学。今日は晴れ")]
    assert split("東京大学。明日", "auto") == [("zh", "東京大学。明日")]


def test_every_unit_the_zh_normaliser_reads_stays_chinese():
    """The units kept with their number come from the zh normaliser's own tables (db was missing)."""
    from tts.frontend.segment import split

    for text in ("音量达到80db了。", "重3kg。", "速度5m/s。", "明天升到10°C。", "长5mm。"):
        assert [lang for lang, _ in split(text, "zh")] == ["zh"], text
