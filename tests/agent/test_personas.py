"""Persona files: validation with file/field/reason, per-file isolation, hot reload, lookups."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from agent.personas import Persona, PersonaRegistry, UnknownPersonaError

REPO_PERSONAS = Path(__file__).resolve().parents[2] / "personas"

GOOD = """name: {name}
speaker: Nahida
language: zh
system_prompt: 你是{name}。
greeting: 你好
llm: {{temperature: 0.5, max_tokens: 100, stop: ["</s>"]}}
emotions: {{Happy: joyful}}
splitter: {{eager_min_units: 3, max_units: 30}}
"""


def write(folder: Path, name: str, text: str) -> Path:
    p = folder / f"{name}.yaml"
    p.write_text(text, encoding="utf-8")
    st = p.stat()  # make mtime changes visible even within the filesystem's time resolution
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000 * (1 + len(text) % 7)))
    return p


def test_shipped_personas_load() -> None:
    reg = PersonaRegistry(REPO_PERSONAS)
    assert reg.errors == []
    assert "nahida" in reg.names() and len(reg.names()) >= 3
    nahida = reg.get("nahida")
    assert nahida.speaker == "Nahida" and nahida.language == "zh" and "纳西妲" in nahida.system_prompt
    assert any(p.language == "en" for p in reg.list())


def test_fields_and_conversions(tmp_path: Path) -> None:
    write(tmp_path, "a", GOOD.format(name="a"))
    p = PersonaRegistry(tmp_path).get("a")
    params = p.llm.params()
    assert params.temperature == 0.5 and params.max_tokens == 100 and params.stop == ("</s>",)
    assert params.enable_thinking is False
    assert p.splitter.config().eager_min_units == 3 and p.splitter.config().max_units == 30
    assert p.speaker_emotion("HAPPY") == "joyful" and p.speaker_emotion("sad") == "sad"


@pytest.mark.parametrize("text,field,reason", [
    ("name: bad\nspeaker: Nahida\nsystem_prompt: x\nlanguage: fr\n", "language", "Input should be"),
    ("name: bad\nspeaker: Nahida\n", "system_prompt", "Field required"),
    ("name: bad\nspeaker: Nahida\nsystem_prompt: x\nllm: {temperature: 9}\n", "llm.temperature", "less than"),
    ("name: bad\nspeaker: Nahida\nsystem_prompt: x\ncolour: red\n", "colour", "Extra inputs"),
    ("name: other\nspeaker: Nahida\nsystem_prompt: x\n", "name", "must match the file name"),
    ("name: bad\nspeaker: ../etc\nsystem_prompt: x\n", "speaker", "pattern"),
    ("name: [unclosed\n", "", "invalid YAML"),
    ("- just\n- a list\n", "", "mapping"),
])
def test_broken_file_reported_and_others_load(tmp_path: Path, text: str, field: str, reason: str) -> None:
    write(tmp_path, "good", GOOD.format(name="good"))
    write(tmp_path, "bad", text)
    reg = PersonaRegistry(tmp_path)
    assert reg.names() == ["good"]
    errs = reg.errors
    assert errs and errs[0].file == "bad.yaml"
    assert any(e.field == field and reason in e.reason for e in errs), errs
    assert "bad.yaml" in str(errs[0])


def test_file_size_limit(tmp_path: Path) -> None:
    write(tmp_path, "big", GOOD.format(name="big") + "#" * 5000 + "\n")
    reg = PersonaRegistry(tmp_path, max_file_bytes=1000)
    assert reg.names() == [] and "limit" in reg.errors[0].reason


def test_hot_reload_keeps_last_good_version(tmp_path: Path) -> None:
    write(tmp_path, "a", GOOD.format(name="a"))
    reg = PersonaRegistry(tmp_path, poll_interval_s=0.0)
    assert reg.maybe_reload() is not None and reg.get("a").system_prompt == "你是a。"
    write(tmp_path, "a", GOOD.format(name="a").replace("你是a。", "你是新的a。"))
    report = reg.maybe_reload()
    assert report is not None and report.loaded == ("a",)
    assert reg.get("a").system_prompt == "你是新的a。"
    write(tmp_path, "a", "name: a\nspeaker: Nahida\n")  # now invalid
    report = reg.maybe_reload()
    assert report is not None and report.errors and reg.get("a").system_prompt == "你是新的a。"
    write(tmp_path, "b", GOOD.format(name="b"))
    reg.maybe_reload()
    assert reg.names() == ["a", "b"]
    (tmp_path / "b.yaml").unlink()
    report = reg.maybe_reload()
    assert report is not None and report.removed == ("b",) and reg.names() == ["a"]


def test_unchanged_files_not_reparsed(tmp_path: Path) -> None:
    write(tmp_path, "a", GOOD.format(name="a"))
    reg = PersonaRegistry(tmp_path, poll_interval_s=0.0)
    report = reg.maybe_reload()
    assert report is not None and report.loaded == ()
    assert reg.reload().loaded == ("a",)


def test_poll_interval_limits_scans(tmp_path: Path) -> None:
    reg = PersonaRegistry(tmp_path, poll_interval_s=3600)
    assert reg.maybe_reload() is None


@pytest.mark.parametrize("name", ["missing", "../nahida", "nahida.yaml", "", "x" * 500])
def test_unknown_persona_lists_valid_names(name: str) -> None:
    reg = PersonaRegistry(REPO_PERSONAS)
    with pytest.raises(UnknownPersonaError) as ei:
        reg.get(name)
    assert "nahida" in ei.value.message and ei.value.code == "unknown_persona" and len(ei.value.message) < 400


def test_missing_folder_is_empty(tmp_path: Path) -> None:
    reg = PersonaRegistry(tmp_path / "nope")
    assert reg.names() == [] and reg.errors == []


def test_speaker_names_as_folders_allow(tmp_path: Path) -> None:
    """A persona may name any speaker folder (胡桃, "Hu Tao"), but not a path."""
    for i, speaker in enumerate(["胡桃", "Hu Tao"]):
        (tmp_path / f"p{i}.yaml").write_text(f"name: p{i}\nspeaker: {speaker}\nsystem_prompt: hi\n", encoding="utf-8")
    (tmp_path / "bad.yaml").write_text("name: bad\nspeaker: ../Nahida\nsystem_prompt: hi\n", encoding="utf-8")
    reg = PersonaRegistry(tmp_path)
    assert [reg.get(f"p{i}").speaker for i in range(2)] == ["胡桃", "Hu Tao"]
    assert [(e.file, e.field) for e in reg.errors] == [("bad.yaml", "speaker")]


def test_persona_model_defaults() -> None:
    p = Persona(name="x", speaker="Nahida", system_prompt="hi")
    assert p.max_history_turns > 0 and p.llm.enable_thinking is False and p.greeting is None


def test_copy_of_repo_folder_reloads(tmp_path: Path) -> None:
    shutil.copytree(REPO_PERSONAS, tmp_path / "p")
    reg = PersonaRegistry(tmp_path / "p")
    assert reg.reload().errors == ()
