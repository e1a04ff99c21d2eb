"""Public frontend API: languages, dataclasses, ids, odd input."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tts.errors import UnsupportedLanguageError
from tts.frontend import LANGUAGES, Phonemes, Segment, clean_text, to_phonemes, to_segments
from tts.frontend.symbols import ids, symbols_v1, symbols_v2


@pytest.mark.parametrize("lang", ["fr", "EN", "", "english", "ko"])
def test_unknown_language_is_a_typed_error(lang):
    with pytest.raises(UnsupportedLanguageError) as err:
        to_phonemes("hello", lang)
    assert err.value.code == "unsupported_language"
    for known in LANGUAGES:
        assert known in str(err.value)


def test_clean_text_rejects_modes():
    with pytest.raises(UnsupportedLanguageError):
        clean_text("hello", "auto")


def test_bad_version():
    with pytest.raises(ValueError):
        to_phonemes("hello", "en", version="v9")


def test_results_are_frozen_and_consistent():
    ph = to_phonemes("Hello there, my friend.", "en")
    assert isinstance(ph, Phonemes)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ph.phones = ()  # type: ignore[misc]
    assert list(ph.ids) == ids(ph.phones, "v2")
    assert ph.word2ph is None and ph.norm_text == "Hello there, my friend."


def test_segments_of_mixed_text():
    segs = to_segments("ねえ、今日はGitHubで作業します。", "ja")
    assert [s.lang for s in segs] == ["ja", "en", "ja"]
    assert all(isinstance(s, Segment) and len(s.ids) == len(s.phones) for s in segs)
    ph = to_phonemes("ねえ、今日はGitHubで作業します。", "ja")
    assert ph.phones == tuple(p for s in segs for p in s.phones)
    assert ph.word2ph is None


def test_ja_pitch_marks_are_unk_in_v1():
    ph = to_phonemes("こんにちは、今日はいい天気ですね。", "all_ja", version="v1")
    assert "[" not in ph.phones and "UNK" in ph.phones
    assert all(p in symbols_v1 for p in ph.phones)


def test_short_text_is_retried_with_a_full_stop():
    ph = to_phonemes("Hi", "en")
    assert ph.norm_text.startswith(".") and len(ph.phones) >= 3


def test_full_width_and_invisible_characters_keep_the_words():
    ph = to_phonemes("Ｈｅｌｌｏ\u3000ｗｏｒｌｄ\u200b！", "en")
    assert ph.norm_text == "Hello world!"
    ph = to_phonemes("Good\u200bmorning 😀 friend\x07!", "auto")
    assert "friend" in ph.norm_text and "G" in ph.phones and "F" in ph.phones


def test_emoji_in_japanese():
    ph = to_phonemes("こんにちは😀世界", "all_ja")
    assert ph.phones[:3] == ("k", "o", "[") and ph.phones[-1] == "i"


def test_very_long_input():
    text = "This is a long sentence with 12345 words. " * 300
    ph = to_phonemes(text, "en")
    assert len(ph.phones) > 10000


_odd = st.text(
    alphabet=st.one_of(
        st.characters(),
        st.sampled_from(list("Hello 你好 こんにちは 123 $£%.,!?…-'\u200b\u3000😀Ｈｉ\x00\n\t")),
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_odd, lang=st.sampled_from(["en", "auto", "all_ja", "ja"]))
def test_never_crashes(text, lang):
    ph = to_phonemes(text, lang)
    assert len(ph.ids) == len(ph.phones)
    assert all(p in symbols_v2 for p in ph.phones)


@settings(max_examples=25, deadline=None)
@given(left=st.sampled_from(["Hello", "world", "friend"]), noise=st.sampled_from(["😀", "\u200b", "\x07", "\ufeff", "™"]))
def test_words_around_odd_characters_survive(left, noise):
    ph = to_phonemes(f"{noise}{left}{noise} again{noise}", "en")
    assert left in ph.norm_text and "again" in ph.norm_text


@pytest.mark.parametrize("text, lang, norm", [
    ("温度是-5℃，明天升到10°C。", "zh", "温度是零下五度,明天升到十度."),   # the C was English: 十C
    ("买了5kg苹果，车速10km/h。", "auto", "买了五千克苹果,车速十千米每小时."),
    ("ＡＢＣ１２３，全角字符测试。", "zh", "A B C one hundred twenty-three,全角字符测试."),  # was Cone hundred
    ("5:30 PM", "en", "five thirty p.m."),                                 # was five thirty a.m. P M
])
def test_trial_misreads(text, lang, norm):
    assert to_phonemes(text, lang).norm_text == norm
