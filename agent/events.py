"""Typed events a turn emits, in order. The service maps them 1:1 onto WebSocket messages
(docs/protocol.md) and HTTP streams. Frozen dataclasses; no I/O here."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TurnStarted:
    turn_id: str
    type: str = "turn.started"


@dataclass(frozen=True)
class TextDelta:
    """Raw LLM text as it streams (stage directions included; reasoning never)."""

    turn_id: str
    delta: str
    type: str = "text.delta"


@dataclass(frozen=True)
class SentenceStarted:
    """A sentence handed to the TTS: `text` is after stripping, before normalisation."""

    turn_id: str
    index: int
    text: str
    emotion: str | None = None
    type: str = "sentence"


@dataclass(frozen=True)
class AudioOut:
    """Mono float32 PCM of sentence `index`, chunk `seq` (from 0 within the sentence)."""

    turn_id: str
    index: int
    seq: int
    pcm: np.ndarray
    sample_rate: int
    type: str = "audio"


@dataclass(frozen=True)
class SentenceDone:
    turn_id: str
    index: int
    audio_ms: float
    type: str = "sentence.done"


@dataclass(frozen=True)
class EmotionTag:
    """A tag like [emotion:happy] seen in the reply (never spoken); games may animate on it."""

    turn_id: str
    name: str
    value: str
    type: str = "emotion"


@dataclass(frozen=True)
class TurnDone:
    """`text` is what the assistant is remembered to have said (after an interrupt: only what was delivered)."""

    turn_id: str
    text: str
    interrupted: bool
    type: str = "turn.done"


@dataclass(frozen=True)
class ErrorEvent:
    code: str
    message: str
    turn_id: str | None = None
    type: str = "error"


Event = TurnStarted | TextDelta | SentenceStarted | AudioOut | SentenceDone | EmotionTag | TurnDone | ErrorEvent
