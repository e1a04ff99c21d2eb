"""Speaker profiles (`speakers/<id>/profile.yaml`) and their prepared, cached prompts.

A profile names the GPT/SoVITS weights, a reference clip with its transcript and the
default sampling settings (GPT-SoVITS `speaker_params`). Every path it holds is resolved
inside the speaker's own folder or the configured models folder; anything else is a
`SpeakerConfigError`. The prepared prompt (`SpeakerPrompt`) is plain numpy so that this
module does not need torch; the engine computes it and `PromptCache` keeps it in memory
and on disk (`.npz`, loaded with `allow_pickle=False`).
"""
from __future__ import annotations

import difflib
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tts.errors import SpeakerConfigError, UnknownSpeakerError, yaml_problem
from tts.types import LANGUAGES

log = logging.getLogger(__name__)

PROFILE_FILE = "profile.yaml"
PROMPT_CACHE_VERSION = "1"


def _language(v: str) -> str:
    """A reference or target language the engine serves (`tts.types.LANGUAGES`), lower-cased."""
    v = v.lower()
    if v not in LANGUAGES:
        raise ValueError(f"unsupported language {v!r}; supported: {', '.join(LANGUAGES)}")
    return v


class EmotionRef(BaseModel):
    """An alternative reference clip selected by `SynthesisOptions.emotion`."""

    model_config = ConfigDict(extra="forbid")
    ref_audio: str
    ref_text: str = ""
    ref_language: str | None = None  # None: the profile's ref_language

    @field_validator("ref_language")
    @classmethod
    def _known_language(cls, v: str | None) -> str | None:
        return None if v is None else _language(v)


class SpeakerProfile(BaseModel):
    """The YAML of one speaker (field names as GPT-SoVITS `speaker_params`). Unknown keys are errors:
    a mistyped `ref_lang:` would otherwise be ignored in silence."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    gpt_model: str
    sovits_model: str
    ref_audio: str
    ref_text: str = ""
    ref_language: str = "zh"
    target_language: str = "zh"
    speed_factor: float = Field(1.0, ge=0.25, le=4.0)
    top_k: int = Field(15, ge=1, le=1024)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    temperature: float = Field(1.0, gt=0.0, le=5.0)
    repetition_penalty: float = Field(1.35, gt=0.0, le=5.0)
    seed: int = -1
    emotions: dict[str, EmotionRef] = Field(default_factory=dict)
    aux_ref_audios: list[str] = Field(default_factory=list)

    @field_validator("ref_language", "target_language")
    @classmethod
    def _known_language(cls, v: str) -> str:
        return _language(v)


def _problem(err: dict) -> str:
    """One pydantic error as `field: reason`; an unknown key lists the valid ones."""
    loc = tuple(str(x) for x in err["loc"])
    where = ".".join(loc)
    if err["type"] != "extra_forbidden":
        return f"{where}: {err['msg'].removeprefix('Value error, ')}"
    model = EmotionRef if loc[0] == "emotions" and len(loc) == 3 else SpeakerProfile
    valid = list(model.model_fields)
    close = difflib.get_close_matches(loc[-1], valid, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{where}: unknown key; {hint}valid keys: {', '.join(valid)}"


@dataclass(frozen=True)
class ReferenceSet:
    """One resolved reference: the main clip, its transcript and language, and aux clips for the style."""

    audio: Path
    text: str
    language: str
    aux: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Speaker:
    """A validated profile with every path resolved."""

    id: str
    folder: Path
    profile: SpeakerProfile
    gpt_path: Path
    sovits_path: Path
    reference: ReferenceSet
    emotions: dict[str, ReferenceSet] = field(default_factory=dict)

    def reference_for(self, emotion: str | None) -> ReferenceSet:
        """The reference of `emotion`; unknown or None -> the default reference."""
        if emotion and emotion in self.emotions:
            return self.emotions[emotion]
        return self.reference


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def resolve_path(value: str, speaker_dir: Path, models_dir: Path | None, what: str) -> Path:
    """Resolve a profile path inside the speaker folder or the models folder.

    Relative paths are looked up in the speaker folder first, then the models folder.
    `..` components, absolute paths outside both roots and symlinks that lead outside
    them raise `SpeakerConfigError`; so does a missing file.
    """
    if not value or "\x00" in value:
        raise SpeakerConfigError(f"{what}: empty or invalid path")
    p = Path(value)
    if ".." in p.parts:
        raise SpeakerConfigError(f"{what}: path {value!r} may not contain '..'")
    roots = [speaker_dir.resolve()] + ([models_dir.resolve()] if models_dir is not None else [])
    candidates = [p] if p.is_absolute() else [r / p for r in roots]
    for cand in candidates:
        if not any(_inside(cand.absolute(), r) for r in roots):
            raise SpeakerConfigError(
                f"{what}: {value!r} is outside the speaker folder and the models folder")
        if os.path.lexists(cand):
            real = cand.resolve()
            if not any(_inside(real, r) for r in roots):
                raise SpeakerConfigError(
                    f"{what}: {value!r} links outside the speaker folder and the models folder")
            if not real.exists():
                break
            return real
    raise SpeakerConfigError(f"{what}: file {value!r} not found in the speaker folder or the models folder")


def speaker_folders(speakers_dir: Path) -> list[Path]:
    """The speaker folders under `speakers_dir` (those with a profile), sorted; none when it is no folder.
    A folder's name is its speaker id."""
    if not speakers_dir.is_dir():
        return []
    return [d for d in sorted(speakers_dir.iterdir()) if d.is_dir() and (d / PROFILE_FILE).is_file()]


def load_speaker(folder: str | Path, models_dir: str | Path | None = None,
                 speaker_id: str | None = None) -> Speaker:
    """Read and validate `folder/profile.yaml`; raises `SpeakerConfigError` naming the file
    (`<folder name>/profile.yaml`), and the line or the fields at fault."""
    folder = Path(folder)
    models = Path(models_dir) if models_dir is not None else None
    f = folder / PROFILE_FILE
    sid = speaker_id or folder.name
    where = f"speaker {sid!r}: {folder.name}/{PROFILE_FILE}"
    try:
        raw = yaml.safe_load(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise SpeakerConfigError(f"{where}: cannot read: {getattr(e, 'strerror', None) or e}") from e
    except yaml.YAMLError as e:
        raise SpeakerConfigError(f"{where}: {yaml_problem(e)}") from e
    if not isinstance(raw, dict):
        raise SpeakerConfigError(f"{where}: must be a mapping of fields")
    try:
        prof = SpeakerProfile.model_validate(raw)
    except ValidationError as e:
        raise SpeakerConfigError(f"{where}: {'; '.join(_problem(err) for err in e.errors())}") from e
    return speaker_from_profile(prof, folder, models, sid, where)


def speaker_from_profile(prof: SpeakerProfile, folder: Path, models_dir: Path | None,
                         sid: str, where: str | None = None) -> Speaker:
    """Resolve the paths of an already validated profile (errors start with `where`)."""
    where = where or f"speaker {sid!r}"

    def res(v: str, what: str) -> Path:
        return resolve_path(v, folder, models_dir, f"{where}: {what}")

    aux = tuple(res(a, f"aux_ref_audios[{i}]") for i, a in enumerate(prof.aux_ref_audios))
    ref = ReferenceSet(res(prof.ref_audio, "ref_audio"), prof.ref_text, prof.ref_language, aux)
    emotions = {
        name: ReferenceSet(res(e.ref_audio, f"emotions.{name}.ref_audio"), e.ref_text,
                           e.ref_language or prof.ref_language)
        for name, e in prof.emotions.items()
    }
    return Speaker(sid, folder.resolve(), prof, res(prof.gpt_model, "gpt_model"),
                   res(prof.sovits_model, "sovits_model"), ref, emotions)


class SpeakerRegistry:
    """All speakers under `speakers_dir` (one folder each). A broken profile is logged and listed in
    `errors` (id -> message naming the file); it does not stop the others.

    As with personas, a reload keeps serving the last good version of a speaker whose profile turned
    invalid (its error stays listed until the file is fixed); a speaker that never loaded stays absent
    with its error, and a folder that is gone (or has no profile) takes its speaker with it.
    """

    def __init__(self, speakers_dir: str | Path, models_dir: str | Path | None = None):
        self.speakers_dir = Path(speakers_dir)
        self.models_dir = Path(models_dir) if models_dir is not None else None
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()  # one reload at a time: each merges with the state before it
        self._speakers: dict[str, Speaker] = {}
        self._added: set[str] = set()  # ids registered with `add`: no folder of theirs to re-read
        self.errors: dict[str, str] = {}
        self.reload()

    def reload(self) -> dict[str, str]:
        """Re-read every profile. Returns the errors (id -> message) of broken ones, kept ones included."""
        with self._reload_lock:
            loaded: dict[str, Speaker] = {}
            errors: dict[str, str] = {}
            for d in self._folders():
                try:
                    loaded[d.name] = load_speaker(d, self.models_dir, d.name)
                except SpeakerConfigError as e:
                    errors[d.name] = e.message
            with self._lock:
                previous = self._speakers
                speakers = {sid: sp for sid, sp in previous.items() if sid in self._added}
                for sid in errors:
                    if sid in previous:  # a profile that turned invalid: its last good version serves on
                        loaded[sid] = previous[sid]
                        errors[sid] += " (serving the last good version until the file is fixed)"
                speakers.update(loaded)
                self._speakers, self.errors = speakers, errors
        for sid, message in errors.items():
            log.error("speaker %s: %s", sid, message)
        return dict(errors)

    def _folders(self) -> list[Path]:
        if not self.speakers_dir.is_dir():
            log.warning("speakers folder %s does not exist", self.speakers_dir)
        return speaker_folders(self.speakers_dir)

    def list(self) -> list[str]:
        with self._lock:
            return sorted(self._speakers)

    def get(self, speaker_id: str) -> Speaker:
        with self._lock:
            sp = self._speakers.get(speaker_id)
            if sp is None and speaker_id in self.errors:  # its folder exists but did not load: say why
                raise SpeakerConfigError(self.errors[speaker_id])
            if sp is None:
                raise UnknownSpeakerError(speaker_id, list(self._speakers))
            return sp

    def add(self, speaker: Speaker) -> None:
        """Register a speaker loaded from elsewhere (e.g. a folder given on the command line)."""
        with self._lock:
            self._speakers[speaker.id] = speaker
            self._added.add(speaker.id)


@dataclass(frozen=True)
class SpeakerPrompt:
    """Everything about a reference that synthesis needs, computed once.

    prompt_tokens [P] int64 (semantic tokens of the reference clip; P=0 without ref text),
    ge [gin] float32 (style vector, averaged over main + aux references),
    phones [Lp] int64 and bert [1024, Lp] float32 of the reference text (Lp=0 without it).
    """

    prompt_tokens: np.ndarray
    ge: np.ndarray
    phones: np.ndarray
    bert: np.ndarray
    norm_text: str = ""

    def to_npz(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, prompt_tokens=self.prompt_tokens, ge=self.ge, phones=self.phones,
                 bert=self.bert, norm_text=np.array(self.norm_text))
        os.replace(tmp, path)

    @classmethod
    def from_npz(cls, path: Path) -> SpeakerPrompt:
        with np.load(path, allow_pickle=False) as z:
            return cls(z["prompt_tokens"].astype(np.int64), z["ge"].astype(np.float32),
                       z["phones"].astype(np.int64), z["bert"].astype(np.float32), str(z["norm_text"]))


_hash_memo: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def file_digest(path: Path) -> str:
    """sha256 of a file's contents (memoised by path, mtime and size)."""
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    with _hash_lock:
        if key in _hash_memo:
            return _hash_memo[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    with _hash_lock:
        _hash_memo[key] = digest
    return digest


def prompt_key(ref: ReferenceSet, sovits_path: Path, settings: str) -> str:
    """Cache key: file contents of the clips and the SoVITS weights, plus text and settings."""
    h = hashlib.sha256(f"v{PROMPT_CACHE_VERSION}\0{settings}\0{ref.text}\0{ref.language}".encode())
    for p in (ref.audio, *ref.aux, sovits_path):
        h.update(file_digest(p).encode())
    return h.hexdigest()


class PromptCache:
    """In-memory LRU plus an optional on-disk folder of `<key>.npz` files.

    `hits`, `misses` and `disk_hits` count lookups (tests and metrics read them).
    """

    def __init__(self, folder: str | Path | None = None, capacity: int = 64):
        self.folder = Path(folder) if folder is not None else None
        self.capacity = capacity
        self._mem: OrderedDict[str, SpeakerPrompt] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self.hits = self.misses = self.disk_hits = 0

    def get_or_compute(self, key: str, compute) -> SpeakerPrompt:
        """Return the cached prompt for `key`, or call `compute()` once (per key, across threads)."""
        with self._lock:
            if key in self._mem:
                self._mem.move_to_end(key)
                self.hits += 1
                return self._mem[key]
            klock = self._key_locks.setdefault(key, threading.Lock())
        with klock:
            with self._lock:
                if key in self._mem:
                    self.hits += 1
                    return self._mem[key]
            prompt = self._load_disk(key)
            if prompt is None:
                prompt = compute()
                with self._lock:
                    self.misses += 1
                self._save_disk(key, prompt)
            with self._lock:
                self._mem[key] = prompt
                while len(self._mem) > self.capacity:
                    self._mem.popitem(last=False)
            return prompt

    def _load_disk(self, key: str) -> SpeakerPrompt | None:
        if self.folder is None:
            return None
        p = self.folder / f"{key}.npz"
        if not p.is_file():
            return None
        try:
            prompt = SpeakerPrompt.from_npz(p)
        except (OSError, ValueError, KeyError) as e:
            log.warning("ignoring unreadable prompt cache file %s: %s", p.name, e)
            return None
        with self._lock:
            self.disk_hits += 1
        return prompt

    def _save_disk(self, key: str, prompt: SpeakerPrompt) -> None:
        if self.folder is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            prompt.to_npz(self.folder / f"{key}.npz")
        except OSError as e:
            log.warning("cannot write prompt cache %s: %s", self.folder, e)

    def clear_memory(self) -> None:
        with self._lock:
            self._mem.clear()
