"""Personas: who the character is. One YAML file a persona in a folder (personas/<name>.yaml).

`PersonaRegistry` loads every file at start; a broken file is reported (file, field, reason)
and does not stop the others. `maybe_reload()` (cheap: compares mtimes and sizes) and
`reload()` pick up changes; a file that becomes invalid keeps its last good version loaded.
Lookups take a name only; paths are never built from request data.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.llm import LLMParams
from agent.splitter import SplitterConfig
from tts.errors import yaml_problem

log = logging.getLogger(__name__)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)
SPEAKER_PATTERN = r"^[^/\\\x00]{1,128}$"
MAX_FILE_BYTES = 64 * 1024


class PersonaError(Exception):
    code = "persona_error"
    http_status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UnknownPersonaError(PersonaError):
    code = "unknown_persona"
    http_status = 404

    def __init__(self, name: str, known: list[str]):
        shown = name if len(name) <= 64 else name[:64] + "…"
        super().__init__(f"unknown persona {shown!r}; available: {', '.join(sorted(known)) or '(none)'}")
        self.name, self.known = name, sorted(known)


@dataclass(frozen=True)
class PersonaLoadError:
    """Why one file did not load: `field` is a dotted path ("" for the whole file)."""

    file: str
    field: str
    reason: str

    def __str__(self) -> str:
        where = f" field {self.field!r}" if self.field else ""
        return f"{self.file}:{where} {self.reason}"


class LLMSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.8, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(400, ge=1, le=8192)
    repetition_penalty: float | None = Field(None, ge=0.5, le=2.0)
    stop: list[str] = Field(default_factory=list, max_length=8)
    enable_thinking: bool = False

    def params(self) -> LLMParams:
        return LLMParams(temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                         repetition_penalty=self.repetition_penalty, stop=tuple(self.stop),
                         enable_thinking=self.enable_thinking)


class SplitterSettings(BaseModel):
    """Units: CJK characters / Latin words. See agent.splitter.SplitterConfig."""

    model_config = ConfigDict(extra="forbid")

    eager_first: bool = True
    eager_min_units: int = Field(4, ge=0, le=200)
    first_min_units: int = Field(1, ge=0, le=200)
    min_units: int = Field(4, ge=0, le=200)
    max_units: int = Field(50, ge=4, le=400)

    def config(self) -> SplitterConfig:
        return SplitterConfig(**self.model_dump())


class Persona(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    display_name: str | None = Field(None, max_length=100)
    description: str = Field("", max_length=500)
    system_prompt: str = Field(min_length=1, max_length=20000)
    speaker: str = Field(pattern=SPEAKER_PATTERN)  # a speaker folder's name, which may be e.g. 胡桃 or "Hu Tao"
    language: Literal["auto", "zh", "all_zh", "en", "ja", "all_ja"] = "auto"
    greeting: str | None = Field(None, max_length=2000)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    max_history_turns: int = Field(20, ge=0, le=1000)
    max_history_tokens: int = Field(3000, ge=0, le=200000)
    emotions: dict[str, str] = Field(default_factory=dict, max_length=64)
    splitter: SplitterSettings = Field(default_factory=SplitterSettings)

    @field_validator("emotions")
    @classmethod
    def _emotion_names(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not (0 < len(key) <= 32 and 0 < len(value) <= 64):
                raise ValueError(f"emotion names must be 1-32 characters mapped to 1-64 ({key!r}: {value!r})")
        return {k.lower(): value for k, value in v.items()}

    def speaker_emotion(self, tag_value: str) -> str:
        """The speaker emotion for an [emotion:...] tag (unmapped values pass through)."""
        return self.emotions.get(tag_value.lower(), tag_value)


def parse_persona(path: Path, max_bytes: int = MAX_FILE_BYTES) -> Persona | list[PersonaLoadError]:
    """Validate one file; returns the persona or the reasons it is invalid."""
    fname = path.name
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return [PersonaLoadError(fname, "", f"file is {size} bytes; the limit is {max_bytes}")]
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        return [PersonaLoadError(fname, "", f"cannot read: {e}")]
    except yaml.YAMLError as e:
        return [PersonaLoadError(fname, "", yaml_problem(e))]
    if not isinstance(raw, dict):
        return [PersonaLoadError(fname, "", "the file must hold a mapping of fields")]
    raw.setdefault("name", path.stem)
    try:
        persona = Persona.model_validate(raw)
    except ValidationError as e:
        return [PersonaLoadError(fname, ".".join(str(x) for x in err["loc"]), err["msg"]) for err in e.errors()]
    if persona.name != path.stem:
        return [PersonaLoadError(fname, "name", f"must match the file name ({path.stem!r}), got {persona.name!r}")]
    return persona


@dataclass(frozen=True)
class ReloadReport:
    loaded: tuple[str, ...]
    removed: tuple[str, ...]
    errors: tuple[PersonaLoadError, ...]


class PersonaRegistry:
    """All personas of a folder, validated, reloadable. Thread-safe."""

    def __init__(self, folder: str | Path, max_file_bytes: int = MAX_FILE_BYTES, poll_interval_s: float = 2.0) -> None:
        self.folder = Path(folder)
        self.max_file_bytes = max_file_bytes
        self.poll_interval_s = poll_interval_s
        self._personas: dict[str, Persona] = {}
        self._stamps: dict[str, tuple[int, int]] = {}  # file name -> (mtime_ns, size) last seen
        self._errors: dict[str, list[PersonaLoadError]] = {}
        self._lock = threading.Lock()
        self._last_poll = 0.0
        self.reload()

    @property
    def errors(self) -> list[PersonaLoadError]:
        with self._lock:
            return [e for errs in self._errors.values() for e in errs]

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._personas)

    def list(self) -> list[Persona]:
        with self._lock:
            return [self._personas[n] for n in sorted(self._personas)]

    def get(self, name: str) -> Persona:
        with self._lock:
            persona = self._personas.get(name) if isinstance(name, str) and _NAME_RE.match(name) else None
            if persona is None:
                raise UnknownPersonaError(str(name), list(self._personas))
            return persona

    def reload(self) -> ReloadReport:
        """Re-read every file now."""
        return self._sync(force=True)

    def maybe_reload(self) -> ReloadReport | None:
        """Reload files whose mtime or size changed (at most once per poll interval)."""
        now = time.monotonic()
        if now - self._last_poll < self.poll_interval_s:
            return None
        return self._sync(force=False)

    def _scan(self) -> dict[str, tuple[int, int]]:
        stamps: dict[str, tuple[int, int]] = {}
        if not self.folder.is_dir():
            return stamps
        for path in self.folder.glob("*.yaml"):
            try:
                st = path.stat()
            except OSError:
                continue
            if path.is_file():
                stamps[path.name] = (st.st_mtime_ns, st.st_size)
        return stamps

    def _sync(self, force: bool) -> ReloadReport:
        with self._lock:
            self._last_poll = time.monotonic()
            stamps = self._scan()
            loaded, removed = [], []
            for fname in sorted(stamps):
                if not force and self._stamps.get(fname) == stamps[fname]:
                    continue
                result = parse_persona(self.folder / fname, self.max_file_bytes)
                if isinstance(result, Persona):
                    self._personas[result.name] = result
                    self._errors.pop(fname, None)
                    loaded.append(result.name)
                else:
                    self._errors[fname] = result
                    kept = " (keeping the last good version)" if Path(fname).stem in self._personas else ""
                    for err in result:
                        log.error("persona %s%s", err, kept)
            for fname in set(self._stamps) - set(stamps):
                if self._personas.pop(Path(fname).stem, None) is not None:
                    removed.append(Path(fname).stem)
                self._errors.pop(fname, None)
            self._stamps = stamps
            errors = tuple(e for errs in self._errors.values() for e in errs)
            return ReloadReport(tuple(loaded), tuple(sorted(removed)), errors)
