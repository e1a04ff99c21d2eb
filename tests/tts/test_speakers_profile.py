"""Profile validation at load: languages of every reference, unknown keys, YAML errors with file and line;
the shipped profiles and the docs' example stay valid."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tts.errors import SpeakerConfigError
from tts.speakers import SpeakerProfile, SpeakerRegistry, load_speaker

ROOT = Path(__file__).resolve().parents[2]
BASE = "gpt_model: g.ckpt\nsovits_model: s.pth\nref_audio: ref.wav\nref_text: 你好。\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "speakers" / "alice"
    d.mkdir(parents=True)
    for name in ("g.ckpt", "s.pth", "ref.wav", "happy.wav"):
        (d / name).write_bytes(b"x")
    return d


def _load(folder: Path, extra: str):
    (folder / "profile.yaml").write_text(BASE + extra, encoding="utf-8")
    return load_speaker(folder)


@pytest.mark.parametrize("extra,field", [
    ("ref_language: ko\n", "ref_language"),
    ("target_language: ko\n", "target_language"),
    ("emotions: {happy: {ref_audio: happy.wav, ref_text: 哈哈。, ref_language: ko}}\n", "emotions.happy.ref_language"),
])
def test_every_reference_language_is_checked_at_load(folder: Path, extra: str, field: str) -> None:
    with pytest.raises(SpeakerConfigError) as ei:
        _load(folder, extra)
    msg = ei.value.message
    assert f"{field}:" in msg and "'ko'" in msg and "zh" in msg, msg


def test_emotion_language_is_normalised(folder: Path) -> None:
    sp = _load(folder, "emotions: {happy: {ref_audio: happy.wav, ref_text: Yay., ref_language: EN}}\n")
    assert sp.reference_for("happy").language == "en"


@pytest.mark.parametrize("extra,key,suggestion", [
    ("ref_lang: en\n", "ref_lang", "ref_language"),
    ("topk: 5\n", "topk", "top_k"),
    ("emotions: {happy: {ref_audio: happy.wav, ref_lang: en}}\n", "emotions.happy.ref_lang", "ref_language"),
])
def test_unknown_keys_are_reported(folder: Path, extra: str, key: str, suggestion: str) -> None:
    with pytest.raises(SpeakerConfigError) as ei:
        _load(folder, extra)
    msg = ei.value.message
    assert f"{key}:" in msg and "unknown key" in msg and suggestion in msg, msg


def test_every_problem_is_reported(folder: Path) -> None:
    with pytest.raises(SpeakerConfigError) as ei:
        _load(folder, "ref_lang: en\ntop_k: 0\n")
    assert "ref_lang" in ei.value.message and "top_k" in ei.value.message, ei.value.message


@pytest.mark.parametrize("text,line", [
    (BASE + "top_k: [\n", 6),
    ("gpt_model: g.ckpt\n  bad: indent\n", 2),
    ("gpt_model: [unclosed", 1),
])
def test_yaml_errors_name_file_and_line(folder: Path, text: str, line: int) -> None:
    (folder / "profile.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(SpeakerConfigError) as ei:
        load_speaker(folder)
    msg = ei.value.message
    assert "alice/profile.yaml" in msg and f"line {line}" in msg and "<unicode string>" not in msg, msg
    reg = SpeakerRegistry(folder.parent)
    assert "alice/profile.yaml" in reg.errors["alice"] and f"line {line}" in reg.errors["alice"]


def test_shipped_profiles_stay_valid() -> None:
    profiles = sorted((ROOT / "speakers").glob("*/profile.yaml"))
    assert profiles
    for f in profiles:
        SpeakerProfile.model_validate(yaml.safe_load(f.read_text(encoding="utf-8")))


def test_the_docs_example_stays_valid() -> None:
    text = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    m = re.search(r"`profile\.yaml`[^\n]*\n+```yaml\n(.*?)```", text, re.DOTALL)
    assert m, "docs/models.md has no profile.yaml example"
    prof = SpeakerProfile.model_validate(yaml.safe_load(m.group(1)))
    assert "happy" in prof.emotions and prof.aux_ref_audios
