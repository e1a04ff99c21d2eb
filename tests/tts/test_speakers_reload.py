"""SpeakerRegistry.reload: a profile that turns invalid keeps its last good version serving (as personas
do), its error still reported naming the file; a fixed file is taken; a speaker that never loaded stays
absent with its error; a removed folder removes the speaker."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tts.errors import SpeakerConfigError, UnknownSpeakerError
from tts.speakers import SpeakerRegistry

PROFILE = """name: Alice
gpt_model: g.ckpt
sovits_model: s.pth
ref_audio: ref.wav
ref_text: 你好。
ref_language: zh
top_k: 15
"""


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    models = tmp_path / "models"
    models.mkdir()
    (models / "g.ckpt").write_bytes(b"g")
    (models / "s.pth").write_bytes(b"s")
    speakers = tmp_path / "speakers"
    for sid in ("alice", "bob"):
        (speakers / sid).mkdir(parents=True)
        (speakers / sid / "ref.wav").write_bytes(b"r")
        (speakers / sid / "profile.yaml").write_text(PROFILE.replace("Alice", sid), encoding="utf-8")
    return speakers, models


@pytest.mark.parametrize("breakage", [
    lambda text: text + "top_k: [\n",  # the user trial: invalid YAML
    lambda text: text.replace("top_k: 15", "top_k: many"),  # valid YAML, invalid field
    lambda text: text.replace("ref_audio: ref.wav", "ref_audio: gone.wav"),  # a path that does not resolve
])
def test_a_profile_turned_invalid_keeps_its_last_good_version(roots, breakage) -> None:
    speakers, models = roots
    reg = SpeakerRegistry(speakers, models)
    good = reg.get("alice")
    f = speakers / "alice" / "profile.yaml"
    text = f.read_text(encoding="utf-8")
    f.write_text(breakage(text), encoding="utf-8")

    errors = reg.reload()
    assert reg.list() == ["alice", "bob"]
    assert reg.get("alice") is good  # still serving, not bad_speaker
    assert set(errors) == {"alice"} and set(reg.errors) == {"alice"}
    assert "alice/profile.yaml" in errors["alice"] and "last good version" in errors["alice"], errors

    f.write_text(text.replace("top_k: 15", "top_k: 20"), encoding="utf-8")
    assert reg.reload() == {} and reg.errors == {}
    assert reg.get("alice").profile.top_k == 20


def test_a_speaker_that_never_loaded_stays_absent_with_its_error(roots) -> None:
    speakers, models = roots
    (speakers / "alice" / "profile.yaml").write_text(PROFILE + "top_k: [\n", encoding="utf-8")
    reg = SpeakerRegistry(speakers, models)
    assert reg.list() == ["bob"] and "alice/profile.yaml" in reg.errors["alice"]
    assert "last good version" not in reg.errors["alice"]
    with pytest.raises(SpeakerConfigError, match="alice/profile.yaml"):
        reg.get("alice")
    assert reg.reload().keys() == {"alice"} and reg.list() == ["bob"]


@pytest.mark.parametrize("broken_first", [False, True])
def test_a_removed_folder_removes_the_speaker(roots, broken_first: bool) -> None:
    speakers, models = roots
    reg = SpeakerRegistry(speakers, models)
    if broken_first:  # a speaker serving its last good version goes too, with its error
        (speakers / "alice" / "profile.yaml").write_text("top_k: [\n", encoding="utf-8")
        assert "alice" in reg.reload()
    shutil.rmtree(speakers / "alice")
    assert reg.reload() == {}
    assert reg.list() == ["bob"] and reg.errors == {}
    with pytest.raises(UnknownSpeakerError):
        reg.get("alice")


def test_a_removed_profile_file_removes_the_speaker(roots) -> None:
    speakers, models = roots
    reg = SpeakerRegistry(speakers, models)
    (speakers / "alice" / "profile.yaml").unlink()
    reg.reload()
    assert reg.list() == ["bob"]


def test_a_new_folder_is_picked_up(roots) -> None:
    speakers, models = roots
    reg = SpeakerRegistry(speakers, models)
    shutil.copytree(speakers / "bob", speakers / "carol")
    assert reg.reload() == {} and reg.list() == ["alice", "bob", "carol"]


def test_a_speaker_added_from_elsewhere_survives_a_reload(roots, tmp_path: Path) -> None:
    from tts.speakers import load_speaker

    speakers, models = roots
    reg = SpeakerRegistry(speakers, models)
    elsewhere = tmp_path / "cli" / "dave"
    shutil.copytree(speakers / "bob", elsewhere)
    reg.add(load_speaker(elsewhere, models))
    reg.reload()
    assert reg.list() == ["alice", "bob", "dave"]
