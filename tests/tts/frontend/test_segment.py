"""Mixed-language segmentation by script."""
from __future__ import annotations

import pytest

from tts.frontend.segment import char_class, split


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
