"""Wire models: HTTP request bodies, WebSocket client events and server messages (docs/protocol.md).

Pydantic lives here, at the boundary; the turn's own events are the frozen dataclasses of
`agent.events`, turned into JSON messages by `server_message`.
"""
from __future__ import annotations

import base64
import json
import math
import struct
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError

from agent import events as ev

AudioFormat = Literal["wav", "pcm", "flac", "ogg", "opus", "mp3"]
Language = Literal["auto", "zh", "all_zh", "en", "ja", "all_ja"]  # tts.types.LANGUAGES


def _not_bool(v: Any) -> Any:
    if isinstance(v, (bool, str)):
        raise ValueError(f"expected a number, got {type(v).__name__}")
    return v


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False)]
Flag = Annotated[bool, Strict()]  # true/false only: 0, 1 or "yes" are rejected as the schema says
SPOKEN = r"\S"  # at least one non-space character
SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # client-chosen session ids


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


# ----------------------------------------------------------------------------- HTTP bodies


class ChatRequest(_Body):
    """POST /chat2audio. The seed request `{"input": "...", "speaker": "Nahida"}` works as is."""

    input: str = Field(..., min_length=1, pattern=SPOKEN, description="What the user says (at most limits.max_text_chars: 413 text_too_long)")
    speaker: str | None = Field(None, description="Speaker id (GET /speakers); default from config")
    persona: str | None = Field(None, description="Persona id (GET /personas); default: the speaker's persona")
    session_id: str | None = Field(None, pattern=SESSION_ID_PATTERN,
                                   description="Continue a conversation (1-64 letters, digits, _ or -)")
    stream: Flag = Field(False, description="Chunked audio as sentences are synthesised")
    format: AudioFormat = Field("wav", description="wav | pcm (s16le mono, 32 kHz) | flac | ogg (Opus) | mp3")


class TTSRequest(_Body):
    """POST /tts with the GPT-SoVITS api_v2 field names, plus `speaker`."""

    text: str = Field(..., min_length=1, pattern=SPOKEN, description="At most limits.max_text_chars (413 text_too_long)")
    text_lang: Language = "auto"
    speaker: str | None = Field(None, description="Speaker id; default from config")
    ref_audio_path: str | None = Field(None, description="Reference clip inside the speakers or configured folders")
    aux_ref_audio_paths: list[str] = Field(default_factory=list)
    prompt_text: str = ""
    prompt_lang: Language | None = None
    top_k: Int = Field(15, ge=1, le=1024)
    top_p: Float = Field(1.0, gt=0.0, le=1.0)
    temperature: Float = Field(1.0, gt=0.0, le=5.0)
    text_split_method: Literal["cut0", "cut1", "cut2", "cut3", "cut4", "cut5"] = "cut5"  # cut0: no split
    batch_size: Int = Field(1, ge=1, le=64)
    batch_threshold: Float = 0.75
    split_bucket: Flag = True
    speed_factor: Float = Field(1.0, ge=0.25, le=4.0)
    fragment_interval: Float = Field(0.3, ge=0.0, le=5.0)
    seed: Int = Field(-1, ge=-1, le=2**32 - 1)  # -1: random; a sentence i of the text is seeded with seed + i
    media_type: AudioFormat = "wav"
    streaming_mode: Flag | Annotated[int, Field(ge=0, le=3), BeforeValidator(_not_bool)] = Field(
        False, description="false/0: whole file; true or 1-3 (api_v2 streaming modes): chunked audio")
    parallel_infer: Flag = True
    repetition_penalty: Float = Field(1.35, gt=0.0, le=5.0)


class VoiceRef(_Body):
    id: str = Field(..., min_length=1, max_length=128)


class SpeechRequest(_Body):
    """POST /v1/audio/speech (OpenAI semantics)."""

    model: str = Field("tts-1", max_length=256)
    input: str = Field(..., min_length=1, pattern=SPOKEN, description="At most 4096 characters (413 text_too_long)")
    voice: Annotated[str, Field(min_length=1, max_length=128)] | VoiceRef = Field(
        ..., description="A speaker id (GET /v1/audio/voices), or {\"id\": ...}")
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: Float = Field(1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"
    instructions: str | None = Field(None, max_length=4096)

    def voice_id(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceRef) else self.voice


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


# ----------------------------------------------------------------------------- WebSocket client events


class _ClientEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SessionUpdate(_ClientEvent):
    type: Literal["session.update"]
    persona: str | None = Field(None, max_length=128)
    speaker: str | None = Field(None, max_length=128)
    session_id: str | None = Field(None, pattern=SESSION_ID_PATTERN)
    format: Literal["pcm16"] | None = None
    audio_transport: Literal["base64", "binary"] | None = None


class InputText(_ClientEvent):
    type: Literal["input.text"]
    text: str = Field(..., min_length=1, pattern=SPOKEN)


class Interrupt(_ClientEvent):
    type: Literal["interrupt"]


class Playback(_ClientEvent):
    type: Literal["playback"]
    turn_id: str
    played_ms: Float = Field(..., ge=0)


ClientEvent = Annotated[Union[SessionUpdate, InputText, Interrupt, Playback], Field(discriminator="type")]
_client_adapter: TypeAdapter[Any] = TypeAdapter(ClientEvent)
CLIENT_TYPES = ("session.update", "input.text", "interrupt", "playback")


class ProtocolError(Exception):
    """A malformed client message; `code` goes into the `error` event."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def parse_client_event(raw: str | bytes) -> SessionUpdate | InputText | Interrupt | Playback:
    """Parse one client message; raises `ProtocolError` with a readable message."""
    try:
        data = json.loads(raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw)  # UTF-8 only, as documented
    except UnicodeDecodeError:
        raise ProtocolError("invalid_json", "binary message is not UTF-8 JSON") from None
    except json.JSONDecodeError as e:
        raise ProtocolError("invalid_json", f"message is not JSON: {e}") from e
    except RecursionError:
        raise ProtocolError("invalid_json", "message is nested too deeply") from None
    if not isinstance(data, dict) or "type" not in data:
        raise ProtocolError("invalid_event", "message must be a JSON object with a 'type' field")
    kind = data["type"]
    if kind not in CLIENT_TYPES:
        raise ProtocolError("unknown_event", f"unknown event type {kind!r}; expected one of: {', '.join(CLIENT_TYPES)}")
    try:
        return _client_adapter.validate_python(data)
    except ValidationError as e:
        errors = [{**err, "loc": err["loc"][1:]} if err["loc"][:1] == (kind,) else err for err in e.errors()]
        raise ProtocolError("invalid_event", f"{kind}: {validation_message(errors)}") from e


def validation_message(errors: list[dict[str, Any]]) -> str:
    """Pydantic's errors (of a WebSocket event or an HTTP body) as one line naming each field, in words a
    client's author reads: an empty text is "empty", NaN and Infinity are "not a finite number"."""
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        value, msg = err.get("input"), err.get("msg", "invalid")
        if err.get("type") == "string_pattern_mismatch" and isinstance(value, str) and not value.strip():
            msg = "must not be empty or only spaces"
        elif isinstance(value, float) and not math.isfinite(value):
            msg = f"must be a finite number (got {value})"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------- server messages

BINARY_HEADER = struct.Struct("<I")  # length of the JSON header that follows, then raw s16le PCM


def pcm16(pcm: np.ndarray) -> bytes:
    x = np.clip(np.asarray(pcm, dtype=np.float32), -1.0, 1.0)
    return np.round(x * 32767.0).astype("<i2").tobytes()


def server_message(event: ev.Event) -> dict[str, Any]:
    """A turn event as a flat JSON-able dict (audio: without its payload; see `audio_message`)."""
    if isinstance(event, ev.AudioOut):
        return {"type": "audio", "turn_id": event.turn_id, "index": event.index, "seq": event.seq,
                "sample_rate": event.sample_rate, "format": "pcm16"}
    if isinstance(event, ev.SentenceDone):
        return {"type": event.type, "turn_id": event.turn_id, "index": event.index,
                "audio_ms": round(float(event.audio_ms), 1)}
    if isinstance(event, ev.SentenceStarted):
        msg = {"type": event.type, "turn_id": event.turn_id, "index": event.index, "text": event.text}
        if event.emotion:
            msg["emotion"] = event.emotion
        return msg
    if isinstance(event, ev.ErrorEvent):
        msg = {"type": "error", "code": event.code, "message": event.message}
        if event.turn_id:
            msg["turn_id"] = event.turn_id
        return msg
    return {k: v for k, v in vars(event).items()} | {"type": event.type}


def audio_message(event: ev.AudioOut, transport: str) -> str | bytes:
    """`audio` as a JSON text frame with base64 `data`, or a binary frame:
    uint32 LE header length N | N bytes UTF-8 JSON header (the audio event without `data`) | s16le PCM."""
    head = server_message(event)
    pcm = pcm16(event.pcm)
    if transport == "binary":
        meta = json.dumps(head, separators=(",", ":")).encode()
        return BINARY_HEADER.pack(len(meta)) + meta + pcm
    head["data"] = base64.b64encode(pcm).decode("ascii")
    return json.dumps(head, ensure_ascii=False, separators=(",", ":"))


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))
