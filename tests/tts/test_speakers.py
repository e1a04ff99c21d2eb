import os
from pathlib import Path

import numpy as np
import pytest

from tts.errors import SpeakerConfigError, UnknownSpeakerError
from tts.speakers import PromptCache, SpeakerPrompt, SpeakerRegistry, load_speaker, prompt_key


def _write(folder: Path, **fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    prof = {"gpt_model": "g.ckpt", "sovits_model": "s.pth", "ref_audio": "ref.wav", "ref_text": "你好。",
            "ref_language": "zh", "target_language": "zh"}
    prof.update(fields)
    lines = []
    for k, v in prof.items():
        lines.append(f"{k}: {v!r}" if not isinstance(v, (dict, list)) else f"{k}: {__import__('json').dumps(v)}")
    (folder / "profile.yaml").write_text("\n".join(lines), encoding="utf-8")
    return folder


@pytest.fixture
def roots(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "g.ckpt").write_bytes(b"g")
    (models / "s.pth").write_bytes(b"s")
    speakers = tmp_path / "speakers"
    a = _write(speakers / "alice")
    (a / "ref.wav").write_bytes(b"r")
    (a / "happy.wav").write_bytes(b"h")
    return speakers, models, tmp_path


def test_registry_lists_and_resolves(roots):
    speakers, models, _ = roots
    reg = SpeakerRegistry(speakers, models)
    assert reg.list() == ["alice"]
    sp = reg.get("alice")
    assert sp.gpt_path == (models / "g.ckpt").resolve()
    assert sp.reference.audio == (speakers / "alice" / "ref.wav").resolve()
    assert sp.profile.top_k == 15 and sp.profile.repetition_penalty == 1.35


def test_unknown_speaker_lists_ids(roots):
    reg = SpeakerRegistry(roots[0], roots[1])
    with pytest.raises(UnknownSpeakerError) as e:
        reg.get("bob")
    assert "alice" in str(e.value) and e.value.known == ["alice"]


def test_broken_profile_does_not_stop_others(roots):
    speakers, models, _ = roots
    _write(speakers / "broken", top_k="many")
    (speakers / "bad_yaml").mkdir()
    (speakers / "bad_yaml" / "profile.yaml").write_text("gpt_model: [unclosed", encoding="utf-8")
    reg = SpeakerRegistry(speakers, models)
    assert reg.list() == ["alice"]
    assert set(reg.errors) == {"broken", "bad_yaml"}
    assert "top_k" in reg.errors["broken"]


@pytest.mark.parametrize("field,value", [
    ("ref_audio", "../alice/ref.wav"),
    ("gpt_model", "../../models/g.ckpt"),
    ("sovits_model", "/etc/passwd"),
    ("ref_audio", "missing.wav"),
])
def test_paths_are_confined(roots, field, value):
    speakers, models, _ = roots
    d = _write(speakers / "evil", **{field: value})
    (d / "ref.wav").write_bytes(b"r")
    with pytest.raises(SpeakerConfigError, match=field):
        load_speaker(d, models)


def test_symlink_escape_refused(roots):
    speakers, models, tmp = roots
    secret = tmp / "secret.wav"
    secret.write_bytes(b"x")
    d = _write(speakers / "linky", ref_audio="ref.wav")
    os.symlink(secret, d / "ref.wav")
    with pytest.raises(SpeakerConfigError, match="links outside"):
        load_speaker(d, models)
    # a link that stays inside the models folder is fine
    os.remove(d / "ref.wav")
    (models / "shared.wav").write_bytes(b"x")
    os.symlink(models / "shared.wav", d / "ref.wav")
    assert load_speaker(d, models).reference.audio == (models / "shared.wav").resolve()


def test_emotions_and_aux(roots):
    speakers, models, _ = roots
    d = speakers / "alice"
    _write(d, emotions={"happy": {"ref_audio": "happy.wav", "ref_text": "哈哈。"}}, aux_ref_audios=["happy.wav"])
    sp = load_speaker(d, models)
    assert sp.reference_for("happy").audio.name == "happy.wav"
    assert sp.reference_for("happy").language == "zh"
    assert sp.reference_for("angry") is sp.reference
    assert [p.name for p in sp.reference.aux] == ["happy.wav"]


def test_bad_language_and_ranges(roots):
    speakers, models, _ = roots
    with pytest.raises(SpeakerConfigError, match="target_language"):
        load_speaker(_write(speakers / "x1", target_language="klingon"), models)
    with pytest.raises(SpeakerConfigError, match="speed_factor"):
        load_speaker(_write(speakers / "x2", speed_factor=9), models)


def _prompt(v=1.0):
    return SpeakerPrompt(np.arange(5), np.full(4, v, np.float32), np.arange(3), np.zeros((1024, 3), np.float32), "ab")


def test_prompt_cache_memory_and_disk(tmp_path, roots):
    speakers, models, _ = roots
    sp = SpeakerRegistry(speakers, models).get("alice")
    key = prompt_key(sp.reference, sp.sovits_path, "x")
    assert key != prompt_key(sp.reference, sp.sovits_path, "y")
    calls = []
    c1 = PromptCache(tmp_path / "cache")
    p1 = c1.get_or_compute(key, lambda: calls.append(1) or _prompt())
    p2 = c1.get_or_compute(key, lambda: calls.append(1) or _prompt())
    assert p1 is p2 and calls == [1] and c1.hits == 1
    c2 = PromptCache(tmp_path / "cache")
    p3 = c2.get_or_compute(key, lambda: calls.append(1) or _prompt(2.0))
    assert calls == [1] and c2.disk_hits == 1
    np.testing.assert_array_equal(p3.ge, p1.ge)
    assert p3.norm_text == "ab"
    # the key follows the file contents
    (speakers / "alice" / "ref.wav").write_bytes(b"changed")
    assert prompt_key(sp.reference, sp.sovits_path, "x") != key


def test_a_speaker_that_did_not_load_says_why(tmp_path):
    """Asking for a speaker whose folder is there but broken gives its load error, not "unknown speaker"."""
    d = tmp_path / "Broken"
    d.mkdir()
    (d / "profile.yaml").write_text("gpt_model: missing.ckpt\nsovits_model: x.pth\nref_audio: r.wav\n", encoding="utf-8")
    reg = SpeakerRegistry(tmp_path)
    with pytest.raises(SpeakerConfigError, match="not found in the speaker folder"):
        reg.get("Broken")
    with pytest.raises(UnknownSpeakerError):
        reg.get("Nobody")
