"""Japanese frontend: Open JTalk phones with GPT-SoVITS v2 prosody marks."""
from __future__ import annotations

from tts.frontend import clean_text, ja


def test_prosody_marks_of_a_phrase():
    assert ja.prosody("こんにちは") == ["^", "k", "o", "[", "N", "n", "i", "ch", "i", "w", "a", "$"]


def test_question_form_ends_with_question_mark():
    marks = ja.prosody("行きますか？")
    assert marks[0] == "^" and marks[-1] == "?"


def test_reference_sentence_with_unk_for_phrase_borders():
    ph = clean_text("こんにちは、今日はいい天気ですね。", "ja")
    want = ("k o [ N n i ch i w a , ky o ] o w a UNK i [ i UNK t e ] N k i d e s u n e .").split()
    assert list(ph.phones) == want
    assert ph.word2ph is None and ph.norm_text == "こんにちは、今日はいい天気ですね。"


def test_marks_mapped_and_spaces_dropped():
    phones, _ = ja.g2p("はい！ いいえ？")
    assert "!" in phones and "?" in phones and " " not in phones
    assert "[" in ja.g2p("すみません")[0]


def test_normalize_collapses_repeated_punctuation():
    assert ja.normalize("はい!!??") == "はい!"


def test_percent_sign_is_read():
    phones, _ = ja.g2p("５０％")
    assert "p" in phones  # パーセント


def test_unknown_marks_become_unk_not_dropped():
    ph = clean_text("「猫」です", "ja")
    assert ph.phones[0] == "UNK" and "n" in ph.phones and "d" in ph.phones
