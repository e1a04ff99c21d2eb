"""`python -m tts.frontend`: one JSON line per input line, errors on their own line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _run(args: list[str], stdin: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tts.frontend", *args], input=stdin, cwd=ROOT,
                          capture_output=True, timeout=240)


def test_jsonl_round_trip_en():
    lines = ["The meeting starts at 9:30.", "", "Emoji 😀 and \x07 bell", "bad \xff utf8"]
    raw = "\n".join(lines[:3]).encode() + b"\nbad \xff utf8\n"
    p = _run(["--lang", "en", "--jsonl"], raw)
    assert p.returncode == 0, p.stderr.decode()
    out = [json.loads(x) for x in p.stdout.decode("utf-8").splitlines()]
    assert len(out) == len(lines)
    first = out[0]
    assert first["norm_text"] == "The meeting starts at nine thirty a.m."
    assert first["phones"][:3] == ["DH", "AH0", "M"] and len(first["ids"]) == len(first["phones"])
    assert first["word2ph"] is None
    assert out[1]["phones"] == [","]
    assert all("phones" in o or "error" in o for o in out)


def test_jsonl_auto_and_ja():
    text = "ねえ、知ってる？I am happy.\nこんにちは\n"
    for lang in ("auto",):
        p = _run(["--lang", lang, "--jsonl"], text.encode())
        assert p.returncode == 0, p.stderr.decode()
        out = [json.loads(x) for x in p.stdout.decode("utf-8").splitlines()]
        assert len(out) == 2 and "phones" in out[0]


def test_positional_texts_and_version():
    p = _run(["--lang", "ja", "--version", "v1", "こんにちは"], b"")
    assert p.returncode == 0
    out = json.loads(p.stdout.decode("utf-8"))
    assert "[" not in out["phones"] and "UNK" in out["phones"]


@pytest.mark.parametrize("lang", ["fr", "korean"])
def test_unknown_language_is_rejected(lang):
    p = _run(["--lang", lang, "--jsonl"], b"hello\n")
    assert p.returncode == 2 and b"invalid choice" in p.stderr


def test_a_failing_line_becomes_an_error_object(monkeypatch):
    from tts.frontend import __main__ as cli

    def boom(text, lang, version):
        raise RuntimeError("broken line")

    monkeypatch.setattr(cli, "convert", boom)
    assert cli._record("x", "en", "v2") == {"error": "RuntimeError: broken line"}
