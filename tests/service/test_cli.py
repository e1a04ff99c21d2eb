"""`chat2audio check` and `chat2audio say`/`chat`: every ordinary mistake is one line and a non-zero exit."""
from __future__ import annotations

import shutil
import socket
from pathlib import Path

import httpx
import pytest

from agent.config import DEFAULT_CONFIG, PROJECT_ROOT, load_settings


def _run(capsys, *argv: str) -> tuple[int, list[str], list[str]]:
    """`chat2audio ARGV` in-process: the exit code and the non-empty stdout and stderr lines."""
    from agent.cli import main

    rc = main(list(argv))
    cap = capsys.readouterr()
    return rc, [ln for ln in cap.out.splitlines() if ln.strip()], [ln for ln in cap.err.splitlines() if ln.strip()]


def _speakers_with(tmp_path: Path, name: str, sovits: bytes) -> Path:
    """speakers/ with Nahida (the demo) and `name`, a copy of it whose SoVITS file holds `sovits`."""
    speakers = tmp_path / "speakers"
    shutil.copytree(PROJECT_ROOT / "speakers" / "Nahida", speakers / "Nahida")
    other = speakers / name
    other.mkdir()
    (other / "profile.yaml").write_text((speakers / "Nahida" / "profile.yaml").read_text(encoding="utf-8").replace(
        "name: Nahida", f"name: {name}").replace("demo-sovits.pth", "voice.pth"), encoding="utf-8")
    (other / "voice.pth").write_bytes(sovits)
    return speakers


def test_check_refuses_a_sovits_version_the_engine_refuses(demo_cache, tmp_path):
    """A GPT-SoVITS v3 file (header "02"): `check` reports what the engine would answer (unsupported_version)."""
    from agent.cli import check_problems

    v3 = b"02" + (demo_cache / "models" / "demo-sovits.pth").read_bytes()[2:]
    speakers = _speakers_with(tmp_path, "Three", v3)
    settings = load_settings(DEFAULT_CONFIG, env={"CHAT2AUDIO_PATHS__CACHE_DIR": str(demo_cache),
                                                  "CHAT2AUDIO_PATHS__SPEAKERS_DIR": str(speakers)})
    problems = check_problems(settings)
    assert len(problems) == 1 and problems[0].startswith("speaker Three: sovits_model:"), problems
    assert "unsupported version v3" in problems[0] and "voice.pth" in problems[0]


def test_check_prints_each_persona_error_once(demo_cache, tmp_path, monkeypatch, capsys, caplog):
    personas = tmp_path / "personas"
    shutil.copytree(PROJECT_ROOT / "personas", personas)
    (personas / "broken.yaml").write_text("name: broken\nspeaker: Nahida\n", encoding="utf-8")  # no system_prompt
    monkeypatch.setenv("CHAT2AUDIO_PATHS__CACHE_DIR", str(demo_cache))
    monkeypatch.setenv("CHAT2AUDIO_PATHS__PERSONAS_DIR", str(personas))
    rc, out, err = _run(capsys, "check", "--config", str(DEFAULT_CONFIG))
    assert rc == 1 and err == []
    want = "problem: persona broken.yaml: field 'system_prompt' Field required"
    assert [ln for ln in out if "broken.yaml" in ln] == [want], out
    assert not [r for r in caplog.records if "broken.yaml" in r.getMessage()]  # not logged as well


@pytest.mark.parametrize("device,available,count,needle", [
    ("cuda", False, 0, "CUDA is not available"),
    ("cuda:0", False, 0, "CUDA is not available"),
    ("cuda:1", True, 1, "1 CUDA device"),
    ("cuda:0", True, 1, None),
    ("cpu", False, 0, None),
])
def test_check_reports_a_device_this_machine_lacks(demo_cache, monkeypatch, device, available, count, needle):
    import torch

    from agent.cli import check_problems

    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    settings = load_settings(DEFAULT_CONFIG, env={"CHAT2AUDIO_PATHS__CACHE_DIR": str(demo_cache),
                                                  "CHAT2AUDIO_TTS__DEVICE": device})
    problems = check_problems(settings)
    if needle is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith("tts.device:") and needle in problems[0], problems
        assert repr(device) in problems[0]


# ------------------------------------------------------------------------------------------- say / chat


def _no_models(*_a, **_k):
    raise AssertionError("the models were loaded for a mistake that could be found without them")


@pytest.mark.parametrize("args,needle", [
    (["--speaker", "Bob"], "unknown speaker 'Bob'; available: Nahida"),
    (["--lang", "ko"], "unsupported language 'ko'"),
    (["-o", "hi.aac"], "aac is not available"),
    (["-o", "x.txt"], "unknown format 'txt'"),
    (["-o", "nodir/x.wav"], "does not exist"),
    (["-o", "."], "is a folder"),
])
def test_say_mistakes_are_one_line_before_loading_models(tmp_path, monkeypatch, capsys, args, needle):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("agent.cli._with_runtime", _no_models)
    rc, out, err = _run(capsys, "say", "你好", *args, "--config", str(DEFAULT_CONFIG))
    assert rc == 1 and out == [] and len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_say_text_with_nothing_to_speak(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("agent.cli._with_runtime", _no_models)
    rc, _, err = _run(capsys, "say", "！！", "-o", str(tmp_path / "x.wav"), "--config", str(DEFAULT_CONFIG))
    assert rc == 1 and len(err) == 1 and "nothing to speak" in err[0], err


def test_say_errors_of_the_engine_are_one_line(tmp_path, monkeypatch, capsys):
    """What only the loaded engine finds (a speaker whose files are missing) is its message, not a traceback."""
    from tts.errors import SpeakerConfigError

    def broken(*_a, **_k):
        raise SpeakerConfigError("speaker 'Nahida': ref_audio: file 'demo-ref.wav' not found")

    monkeypatch.setattr("agent.cli._with_runtime", broken)
    rc, _, err = _run(capsys, "say", "你好", "-o", str(tmp_path / "x.wav"), "--config", str(DEFAULT_CONFIG))
    assert rc == 1 and err == ["error: speaker 'Nahida': ref_audio: file 'demo-ref.wav' not found"]
    assert not (tmp_path / "x.wav").exists()


def _closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_unreachable_server_is_one_line(tmp_path, monkeypatch, capsys):
    url = _closed_url()
    rc, _, err = _run(capsys, "say", "你好", "--url", url, "-o", str(tmp_path / "x.wav"))
    assert rc == 1 and len(err) == 1 and err[0].startswith(f"error: cannot reach {url}"), err
    monkeypatch.setattr("builtins.input", lambda _prompt="": "hi")
    rc, _, err = _run(capsys, "chat", "--url", url, "--out-dir", str(tmp_path / "replies"))
    assert rc == 1 and len(err) == 1 and err[0].startswith(f"error: cannot reach {url}"), err


def test_error_answer_is_one_line_with_the_message(tmp_path, monkeypatch, capsys):
    answer = httpx.Response(404, json={"error": {"code": "unknown_speaker",
                                                 "message": "unknown speaker 'Bob'; available: Nahida"}})
    monkeypatch.setattr(httpx, "post", lambda *a, **k: answer)
    rc, _, err = _run(capsys, "say", "你好", "--url", "http://127.0.0.1:1", "-o", str(tmp_path / "x.wav"))
    assert rc == 1 and err == ["error 404: unknown speaker 'Bob'; available: Nahida"]
    assert not (tmp_path / "x.wav").exists()


def test_say_in_process_on_the_demo(demo_cache, tmp_path, monkeypatch, capsys):
    """The real runtime: a clip is written; what only synthesis finds (emoji alone) is one line, no file."""
    monkeypatch.setenv("CHAT2AUDIO_PATHS__CACHE_DIR", str(demo_cache))
    monkeypatch.setenv("CHAT2AUDIO_TTS__WARMUP", "false")
    monkeypatch.setenv("CHAT2AUDIO_LLM__BACKEND", "openai")
    monkeypatch.setenv("CHAT2AUDIO_LLM__BASE_URL", _closed_url() + "/v1")  # say never asks the LLM
    rc, out, err = _run(capsys, "say", "😀", "-o", str(tmp_path / "x.wav"))
    assert rc == 1 and [ln for ln in err if ln.startswith("error")] == [
        "error: text has nothing to speak (no Chinese, Japanese or English words)"], err
    assert not (tmp_path / "x.wav").exists()
    rc, out, err = _run(capsys, "say", "你好。", "--lang", "ZH", "-o", str(tmp_path / "hi.ogg"))
    assert rc == 0 and out == [f"wrote {tmp_path / 'hi.ogg'}"], (out, err)
    assert (tmp_path / "hi.ogg").read_bytes()[:4] == b"OggS"
