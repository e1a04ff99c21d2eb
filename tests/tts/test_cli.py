"""`python -m tts say` end to end with the tiny factory models, and its one-line errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tts.types import SAMPLE_RATE

ROOT = Path(__file__).resolve().parents[2]


def _main(capsys, *args: str) -> tuple[int, list[str]]:
    """Run the CLI in-process (fast); returns the exit code and the non-empty stderr lines."""
    from tts.__main__ import main

    rc = main(list(args))
    err = capsys.readouterr().err
    return rc, [ln for ln in err.splitlines() if ln.strip()]


def _cli(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "tts", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)


def test_say_with_speaker_folder(speakers_dir, demo_models, tmp_path):
    out = tmp_path / "a.wav"
    r = _cli("say", "你好，世界。", "--speaker", str(speakers_dir / "demo"),
             "--models-dir", str(demo_models["gpt"].parent), "--out", str(out), "--seed", "1")
    assert r.returncode == 0, r.stderr
    audio, sr = sf.read(out, dtype="float32")
    assert sr == SAMPLE_RATE and audio.ndim == 1 and len(audio) > SAMPLE_RATE * 0.3
    assert np.abs(audio).max() > 0


def _bad_clips(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    clips = {}
    for name, seconds, silent in (("silent", 4.0, True), ("short", 1.0, False), ("long", 30.0, False)):
        x = np.zeros(int(seconds * SAMPLE_RATE), np.float32) if silent else \
            (0.3 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
        clips[name] = folder / f"{name}.wav"
        sf.write(clips[name], x, SAMPLE_RATE)
    clips["notaudio"] = folder / "notaudio.wav"
    clips["notaudio"].write_text("this is not audio")
    return clips


@pytest.mark.parametrize("kind,needle", [("silent", "silent"), ("short", "too short"), ("long", "too long"),
                                         ("notaudio", "notaudio.wav")])
def test_bad_reference_one_line_error(demo_models, tmp_path, capsys, kind, needle):
    clip = _bad_clips(tmp_path)[kind]
    rc, lines = _main(capsys, "say", "你好。", "--gpt", str(demo_models["gpt"]), "--sovits", str(demo_models["sovits"]),
             "--ref-audio", str(clip), "--ref-text", "参考音频。", "--ref-lang", "zh", "--lang", "zh",
             "--hubert", str(demo_models["hubert"]), "--bert", str(demo_models["bert"]),
             "--out", str(tmp_path / "x.wav"))
    assert rc == 2
    assert len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "x.wav").exists()


def test_unsupported_checkpoint_one_line(demo_models, tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint at all")
    rc, lines = _main(capsys, "say", "你好。", "--gpt", str(demo_models["gpt"]), "--sovits", str(bad),
             "--ref-audio", str(demo_models["ref_audio"]), "--out", str(tmp_path / "x.wav"))
    assert rc == 2
    assert len(lines) == 1 and "bad.pth" in lines[0], lines


def test_missing_flags_one_line(capsys, tmp_path):
    rc, lines = _main(capsys, "say", "hi", "--gpt", "x.ckpt", "--out", str(tmp_path / "x.wav"))
    assert rc == 2 and len(lines) == 1 and "--sovits" in lines[0]


def test_demo_assets_writes_a_usable_speaker(demo_models, tmp_path, capsys):
    import shutil

    from tts.speakers import load_speaker

    out = tmp_path / "demo"
    out.mkdir()
    for p in demo_models.values():  # already built this session: build_demo skips existing files
        (shutil.copytree if p.is_dir() else shutil.copy)(p, out / p.name)
    rc, _ = _main(capsys, "demo-assets", str(out))
    assert rc == 0
    sp = load_speaker(out / "speakers" / "demo", out)
    assert sp.gpt_path.name == demo_models["gpt"].name and sp.reference.text


def test_speaker_id_that_did_not_load_says_why(capsys, tmp_path):
    """A speaker folder whose profile points into a models folder not given: the reason and the hint,
    not "unknown speaker; available: (none)"."""
    d = tmp_path / "speakers" / "Alice"
    d.mkdir(parents=True)
    (d / "profile.yaml").write_text("gpt_model: demo-gpt.ckpt\nsovits_model: demo-sovits.pth\nref_audio: demo-ref.wav\n"
                                    "ref_text: 你好。\nref_language: zh\n", encoding="utf-8")
    rc, lines = _main(capsys, "say", "hi", "--speaker", "Alice", "--speakers-dir", str(tmp_path / "speakers"),
                      "--out", str(tmp_path / "x.wav"))
    assert rc == 2 and len(lines) == 1 and "not found" in lines[0] and "--models-dir" in lines[0], lines


@pytest.mark.parametrize("out,needle", [("x.txt", "unknown format 'txt'"), ("nodir/c.wav", "does not exist"),
                                        (".", "is a folder")])
def test_bad_output_is_refused_before_anything_else(capsys, tmp_path, out, needle):
    """The output is checked first: a missing-flags mistake (or a long synthesis) never comes before it."""
    rc, lines = _main(capsys, "say", "hi", "--gpt", "x.ckpt", "--out", str(tmp_path / out))
    assert rc == 2 and len(lines) == 1 and needle in lines[0] and "--out" in lines[0], lines


def _project(tmp_path: Path, demo_models: dict[str, Path], models: bool = True) -> Path:
    """<root>/speakers/Voice whose profile names bare files, and <root>/cache/models holding them."""
    root = tmp_path / "proj"
    voice = root / "speakers" / "Voice"
    voice.mkdir(parents=True)
    (voice / "profile.yaml").write_text(
        f"gpt_model: {demo_models['gpt'].name}\nsovits_model: {demo_models['sovits'].name}\n"
        f"ref_audio: {demo_models['ref_audio'].name}\nref_text: 参考音频。\nref_language: zh\n", encoding="utf-8")
    if models:
        (root / "cache").mkdir()
        (root / "cache" / "models").symlink_to(demo_models["gpt"].parent, target_is_directory=True)
    return root


def test_project_layout_needs_no_models_dir(demo_models, tmp_path, capsys, monkeypatch):
    """From the project root, `--speaker speakers/Voice` and `--speaker Voice` find the models (and the
    HuBERT/BERT folders) in cache/models, the service's models folder; an mp3 is written as mp3."""
    root = _project(tmp_path, demo_models)
    monkeypatch.chdir(root)
    rc, lines = _main(capsys, "say", "你好。", "--speaker", "speakers/Voice", "--out", str(tmp_path / "a.mp3"),
                      "--seed", "1")
    assert rc == 0, lines
    audio, _ = sf.read(tmp_path / "a.mp3", dtype="float32")
    assert len(audio) > SAMPLE_RATE * 0.3
    rc, lines = _main(capsys, "say", "你好。", "--speaker", "Voice", "--out", str(tmp_path / "b.wav"), "--seed", "1")
    assert rc == 0 and sf.info(str(tmp_path / "b.wav")).samplerate == SAMPLE_RATE, lines


@pytest.mark.parametrize("how", ["folder", "id"])
def test_speaker_files_not_found_hint_models_dir(demo_models, tmp_path, capsys, how):
    root = _project(tmp_path, demo_models, models=False)
    speaker = str(root / "speakers" / "Voice") if how == "folder" else "Voice"
    rc, lines = _main(capsys, "say", "hi", "--speaker", speaker, "--speakers-dir", str(root / "speakers"),
                      "--out", str(tmp_path / "x.wav"))
    assert rc == 2 and len(lines) == 1 and "not found" in lines[0] and "--models-dir" in lines[0], lines
    assert str(root) in lines[0]  # the models folder that was looked in


def test_models_dir_help_says_what_the_default_is(capsys):
    from tts.__main__ import main

    with pytest.raises(SystemExit):
        main(["say", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "cache/models" in text and "the speaker folder's parent" in text


def test_bad_device_one_line(capsys, tmp_path):
    rc, lines = _main(capsys, "say", "hi", "--device", "gpu0", "--out", str(tmp_path / "x.wav"))
    assert rc == 2 and len(lines) == 1 and "gpu0" in lines[0], lines
