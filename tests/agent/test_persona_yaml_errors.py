"""A persona file with a YAML syntax error: the error names the file and the line, not "<unicode string>"."""
from __future__ import annotations

from pathlib import Path

import pytest

from agent.personas import PersonaRegistry, parse_persona


@pytest.mark.parametrize("text,line", [
    ("name: bad\nspeaker: Nahida\nsystem_prompt: x\nllm: {temperature: [\n", 5),
    ("name: bad\nspeaker: Nahida\n  system_prompt: x\n", 3),
    ("name: [unclosed\n", 2),
])
def test_yaml_error_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    (tmp_path / "bad.yaml").write_text(text, encoding="utf-8")
    errs = parse_persona(tmp_path / "bad.yaml")
    assert isinstance(errs, list) and len(errs) == 1
    shown = str(errs[0])
    assert errs[0].file == "bad.yaml" and "invalid YAML" in errs[0].reason
    assert "bad.yaml" in shown and f"line {line}" in shown and "<unicode string>" not in shown, shown
    assert f"line {line}" in str(PersonaRegistry(tmp_path).errors[0])
