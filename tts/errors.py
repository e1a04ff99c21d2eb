"""Typed errors raised at the TTS boundary. Each carries a stable `code` the service maps to HTTP/WS errors."""
from __future__ import annotations


class TTSError(Exception):
    """Base class. `code` is a short machine-readable identifier; the message is for humans."""

    code = "tts_error"
    http_status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class SynthesisError(TTSError):
    """The engine failed on a valid request (a bug, a device error): the server's side."""

    code = "synthesis_failed"
    http_status = 500


class CheckpointError(TTSError):
    """A checkpoint or model folder is missing, unreadable or not a GPT-SoVITS one: the server's setup
    (weights are never named by a request)."""

    code = "bad_checkpoint"
    http_status = 500


class UnsupportedVersionError(CheckpointError):
    """A real GPT-SoVITS checkpoint of a version this engine does not run (v3, v4, v2Pro, LoRA)."""

    code = "unsupported_version"

    def __init__(self, version: str, path: str = ""):
        where = f" ({path})" if path else ""
        super().__init__(f"unsupported version {version}{where}: chat2audio runs GPT-SoVITS v1 and v2 checkpoints")
        self.version = version


class ReferenceAudioError(TTSError):
    """Reference audio unreadable, silent, too short or too long."""

    code = "bad_reference_audio"


class UnknownSpeakerError(TTSError):
    code = "unknown_speaker"
    http_status = 404

    def __init__(self, speaker: str, known: list[str]):
        super().__init__(f"unknown speaker {speaker!r}; available: {', '.join(sorted(known)) or '(none)'}")
        self.speaker, self.known = speaker, sorted(known)


class SpeakerConfigError(TTSError):
    """A speaker profile YAML is invalid or points outside its allowed folders: the server's setup."""

    code = "bad_speaker"
    http_status = 500


class UnsupportedLanguageError(TTSError):
    code = "unsupported_language"

    def __init__(self, lang: str, supported: list[str] | tuple[str, ...]):
        super().__init__(f"unsupported language {lang!r}; supported: {', '.join(supported)}")
        self.lang, self.supported = lang, list(supported)


class EmptyTextError(TTSError):
    """The text has nothing a voice could say: only punctuation, emoji, symbols, or a script
    without a frontend (Korean)."""

    code = "empty_text"

    def __init__(self, message: str = "text has nothing to speak (no Chinese, Japanese or English words)"):
        super().__init__(message)


class TextTooLongError(TTSError):
    code = "text_too_long"
    http_status = 413


class BusyError(TTSError):
    """The engine's queue is full; try again later."""

    code = "busy"
    http_status = 429


class CancelledError(TTSError):
    """The request was cancelled (interrupt, client gone)."""

    code = "cancelled"
    http_status = 499


def yaml_problem(e: Exception) -> str:
    """A YAML error (of PyYAML) as `invalid YAML at line L, column C: ...`: the parser's own text names no file
    but `<unicode string>`; callers put the file name in front."""
    mark = getattr(e, "problem_mark", None)
    if mark is None:  # a ReaderError: a character YAML does not allow
        at = f" at character {e.position}" if isinstance(getattr(e, "position", None), int) else ""
        return f"invalid YAML{at}: {getattr(e, 'reason', None) or type(e).__name__}"
    text = f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {e.problem}"
    ctx, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
    if ctx and cmark is not None and (cmark.line, cmark.column) != (mark.line, mark.column):
        text += f" ({ctx} at line {cmark.line + 1}, column {cmark.column + 1})"
    elif ctx:
        text += f" ({ctx})"
    return text
