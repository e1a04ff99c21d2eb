"""Service settings: `configs/default.yaml` (or `--config`), then `CHAT2AUDIO_<SECTION>__<KEY>` env
overrides, then CLI flags. Precedence: CLI > env > YAML > defaults.

This is the only module that reads the process environment; everything else gets a `Settings`.
Relative paths in a YAML file are relative to that file's folder; relative paths given through
env or CLI are relative to the working directory.
"""
from __future__ import annotations

import json
import os
import re
import typing
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tts.errors import yaml_problem

ENV_PREFIX = "CHAT2AUDIO_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "default.yaml"
# The torch device strings the engine can run on: a type and an optional index (torch refuses "gpu0", "cuda:01").
_DEVICE = re.compile(r"(cpu|cuda|mps|xpu)(:(0|[1-9][0-9]*))?")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    cors_origins: list[str] = Field(default_factory=list)  # ["*"] to allow any origin
    cors_allow_credentials: bool = False
    shutdown_grace_s: float = Field(5.0, ge=0)  # how long running turns may finish on shutdown


class LLMSettings(_Section):
    backend: Literal["transformers", "openai", "vllm"] = "transformers"
    base_url: str | None = None  # openai: the server's /v1 URL; vllm: an external server (else one is launched)
    model: str | None = None  # openai/vllm: served model name (None: the first of /v1/models); transformers: a folder
    api_key: str | None = None
    timeout_s: float = Field(60.0, gt=0)
    temperature: float = Field(0.8, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(256, ge=1, le=32768)
    device: str = "cpu"  # transformers backend
    # vllm backend without base_url: the launched `python -m vllm.entrypoints.openai.api_server`
    vllm_python: str = "python"
    vllm_port: int = Field(8011, ge=1, le=65535)
    vllm_args: list[str] = Field(default_factory=list)  # e.g. ["--gpu-memory-utilization", "0.6"]


class TTSSettings(_Section):
    device: str = "cpu"  # "cpu", "cuda", "cuda:1"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    max_queue: int = Field(32, ge=1)  # requests waiting for the engine; beyond this: 429 busy
    max_batch: int = Field(8, ge=1)
    first_chunk_tokens: int | None = Field(None, ge=1)
    chunk_tokens: int | None = Field(None, ge=1)
    compile: bool = False
    warmup: bool = True
    threads: int | None = Field(None, ge=1)  # torch intra-op threads; None = torch's default
    t2s_quant: Literal["auto", "none", "int8", "bf16"] = "auto"  # CPU only; see docs/performance.md
    vocoder_dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # HiFi-GAN only; see docs/performance.md
    g2pw_dir: Path | None = None  # G2PW polyphone model folder (zh); None = pypinyin readings
    text_cache_size: int = Field(128, ge=0)  # sentences (<= 64 characters) whose phones + BERT are kept; 0 = off
    model_cache_size: int = Field(2, ge=1)  # GPT and SoVITS checkpoints kept loaded (each); more speakers, more memory

    @field_validator("device")
    @classmethod
    def _torch_device(cls, v: str) -> str:
        if not _DEVICE.fullmatch(v):
            raise ValueError(f"{v!r} is not a device; use cpu, cuda or cuda:N (or mps, xpu)")
        return v


class AuthSettings(_Section):
    api_keys: list[str] = Field(default_factory=list)  # empty: no key needed
    admin_keys: list[str] = Field(default_factory=list)  # /admin/*; empty: admin routes are closed


class LimitsSettings(_Section):
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_text_chars: int = Field(2000, ge=1)  # /chat2audio input, /tts text, WS input.text
    max_turns_per_session: int = Field(500, ge=1)
    max_sessions_per_key: int = Field(32, ge=1)
    max_concurrent_turns_per_key: int = Field(4, ge=1)
    ws_send_queue: int = Field(64, ge=1)  # messages buffered per WebSocket before the turn waits
    session_ttl_s: float = Field(3600.0, gt=0)


class PathsSettings(_Section):
    speakers_dir: Path = Path("speakers")
    personas_dir: Path = Path("personas")
    cache_dir: Path = Path("cache")
    static_dir: Path = Path("static")
    ref_audio_dirs: list[Path] = Field(default_factory=list)  # extra folders /tts ref_audio_path may read

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"


class AgentSettings(_Section):
    default_speaker: str = "Nahida"
    default_persona: str = "nahida"
    demo: bool = True  # generate the tiny demo models into cache_dir/models when missing
    history_turns: int = Field(20, ge=0)


class Settings(_Section):
    server: ServerSettings = ServerSettings()
    llm: LLMSettings = LLMSettings()
    tts: TTSSettings = TTSSettings()
    auth: AuthSettings = AuthSettings()
    limits: LimitsSettings = LimitsSettings()
    paths: PathsSettings = PathsSettings()
    agent: AgentSettings = AgentSettings()


class ConfigError(Exception):
    """The configuration cannot be loaded; the message names the file or variable and the field."""


_PATH_KEYS = {("paths", "speakers_dir"), ("paths", "personas_dir"), ("paths", "cache_dir"),
              ("paths", "static_dir"), ("paths", "ref_audio_dirs")}


def load_settings(config: str | Path | None = None, env: Mapping[str, str] | None = None,
                  cli: Mapping[str, Any] | None = None) -> Settings:
    """Build `Settings` from a YAML file, env overrides and CLI overrides (`{"server.port": 9000}`).

    Raises:
        ConfigError: unreadable YAML, unknown section/key, or a value of the wrong type.
    """
    env = os.environ if env is None else env
    path = Path(config) if config is not None else DEFAULT_CONFIG
    data = _read_yaml(path)
    _absolutize(data, path.resolve().parent)
    _merge(data, env_overrides(env))
    for dotted, value in (cli or {}).items():
        if value is not None:
            section, key = dotted.split(".", 1)
            data.setdefault(section, {})[key] = value
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_describe(e, path)) from e


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {path}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path}: {yaml_problem(e)}") from e
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror or e}") from e
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"{path}: expected a mapping of sections (server:, llm:, ...) to mappings")
    return data


def _absolutize(data: dict, base: Path) -> None:
    for section, key in _PATH_KEYS:
        value = data.get(section, {}).get(key)
        if isinstance(value, str):
            data[section][key] = str(_resolve(base, value))
        elif isinstance(value, list):
            data[section][key] = [str(_resolve(base, v)) if isinstance(v, str) else v for v in value]


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """`CHAT2AUDIO_LLM__BASE_URL=x` -> {"llm": {"base_url": "x"}}; JSON for list/dict fields."""
    out: dict[str, dict[str, Any]] = {}
    sections = Settings.model_fields
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].lower().partition("__")
        if section not in sections:
            raise ConfigError(f"{name}: unknown section {section!r}; sections: {', '.join(sections)}")
        fields = sections[section].annotation.model_fields  # type: ignore[union-attr]
        if key not in fields:
            raise ConfigError(f"{name}: unknown key {key!r} in [{section}]; keys: {', '.join(fields)}")
        out.setdefault(section, {})[key] = _parse_env_value(name, raw, fields[key].annotation)
    return out


def _parse_env_value(name: str, raw: str, annotation: Any) -> Any:
    if _is_container(annotation):
        try:
            return json.loads(raw)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{name}: expected a JSON list/object, e.g. '[\"a\", \"b\"]'; got {raw!r}") from e
    if raw == "" and type(None) in typing.get_args(annotation):
        return None  # an empty optional value clears it (e.g. CHAT2AUDIO_LLM__MODEL=)
    return raw  # pydantic coerces "8000" -> int, "true" -> bool by the field's type


def _is_container(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list, dict, tuple, set):
        return True
    return any(_is_container(a) for a in typing.get_args(annotation)) if origin is not None else False


def _merge(base: dict, override: dict) -> None:
    for section, values in override.items():
        base.setdefault(section, {}).update(values)


def _valid_keys(loc: tuple) -> list[str]:
    """The field names of the settings model at `loc` (() = the sections)."""
    model: Any = Settings
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        model = field.annotation if field is not None else None
    return sorted(getattr(model, "model_fields", {}))


def _describe(e: ValidationError, path: Path) -> str:
    lines = [f"invalid configuration (file {path}, env {ENV_PREFIX}*, CLI flags):"]
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"])
        env_name = ENV_PREFIX + "__".join(str(p).upper() for p in err["loc"][:2])
        msg = err["msg"]
        if err.get("type") == "extra_forbidden":  # name the keys that do exist
            msg = f"unknown key; valid keys here: {', '.join(_valid_keys(err['loc'][:-1])) or '(none)'}"
        lines.append(f"  {where} ({env_name}): {msg}")
    return "\n".join(lines)
