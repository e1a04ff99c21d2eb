"""Response encoders for mono float32 PCM: whole files and continuous streams.

Formats: wav (16-bit PCM), pcm (raw s16le mono), flac (whole files only), ogg (= Ogg Opus, 48 kHz), opus (alias of ogg),
mp3 (MPEG layer III through libsndfile/LAME). aac has no encoder here and is refused with a clear error.

A streaming wav is a header whose RIFF and data sizes are 0xFFFFFFFF followed by PCM; every other
format is ONE continuous encoded stream: libsndfile writes into an in-memory sink that we drain after
each chunk. When the encoder later seeks back to patch a header (FLAC STREAMINFO totals, MP3 VBR
header) over bytes already sent, that patch is dropped: those fields then read as "unknown", which
the formats allow for streams.
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tts.errors import TTSError

MEDIA_TYPES = {
    "wav": "audio/wav",
    "pcm": "audio/pcm",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "mp3": "audio/mpeg",
    "aac": "audio/aac",
}
FORMATS = tuple(MEDIA_TYPES)


@dataclass(frozen=True)
class _Codec:
    container: str
    subtype: str
    rates: tuple[int, ...] = ()  # allowed output rates; () = any
    streams: bool = True  # the concatenated stream decodes with libsndfile
    cbr: bool = False  # constant bitrate: readers estimate the length from the first frame


_CODECS = {
    # A streamed FLAC must leave STREAMINFO's total unknown, and libsndfile cannot read that back.
    "flac": _Codec("FLAC", "PCM_16", streams=False),
    "ogg": _Codec("OGG", "OPUS", (48000,)),
    "opus": _Codec("OGG", "OPUS", (48000,)),
    "mp3": _Codec("MP3", "MPEG_LAYER_III", (32000, 44100, 48000, 16000, 22050, 24000), cbr=True),
}


class UnsupportedFormatError(TTSError):
    code = "unsupported_format"
    http_status = 400


def check_format(fmt: str) -> str:
    """Normalise and validate a format name; raises `UnsupportedFormatError` with the valid ones."""
    name = (fmt or "").lower()
    if name == "aac":
        raise UnsupportedFormatError("aac is not available: this build has no AAC encoder; "
                                     "use mp3, opus, flac, wav or pcm")
    if name not in MEDIA_TYPES:
        raise UnsupportedFormatError(f"unknown format {fmt!r}; available: wav, pcm, flac, ogg, opus, mp3")
    return name


def output_file(name: str | Path) -> tuple[Path, str]:
    """An audio file to write and its format (from the extension; none: wav), checked before any work is
    done for it; raises ValueError saying what is wrong (the caller names the option it came from)."""
    path = Path(name)
    try:
        fmt = check_format(path.suffix.lstrip(".").lower() or "wav")
    except TTSError as e:
        raise ValueError(e.message) from None
    if path.is_dir():
        raise ValueError("is a folder; give a file name such as say.wav")
    if not path.parent.is_dir():
        raise ValueError(f"folder {path.parent} does not exist")
    return path, fmt


def can_stream(fmt: str) -> bool:
    """Whether `fmt` can go out as one continuous stream (flac cannot: it is sent whole)."""
    codec = _CODECS.get(check_format(fmt))
    return codec is None or codec.streams


def output_rate(fmt: str, sample_rate: int, requested: int | None = None) -> int:
    """The rate audio of `fmt` is written at: `requested` if given, else the codec's nearest allowed rate."""
    codec = _CODECS.get(check_format(fmt))
    rate = requested or sample_rate
    if codec and codec.rates and rate not in codec.rates:
        rate = max(codec.rates) if codec.container == "OGG" else min(codec.rates, key=lambda r: abs(r - rate))
    return rate


def to_s16le(pcm: np.ndarray) -> bytes:
    """float32 [-1, 1] (T,) -> little-endian int16 bytes, clipped."""
    x = np.clip(np.asarray(pcm, dtype=np.float32), -1.0, 1.0)
    return np.round(x * 32767.0).astype("<i2").tobytes()


def wav_header(sample_rate: int, n_samples: int | None) -> bytes:
    """44-byte header of a mono 16-bit wav; `n_samples=None` -> the streaming form (sizes 0xFFFFFFFF)."""
    data = 0xFFFFFFFF if n_samples is None else 2 * n_samples
    riff = 0xFFFFFFFF if n_samples is None else 36 + data
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", riff) + b"WAVE" + b"fmt " + fmt + b"data" + struct.pack("<I", data)


def encode(pcm: np.ndarray, sample_rate: int, fmt: str, out_rate: int | None = None) -> bytes:
    """Encode a whole clip. `pcm` is mono float32 (T,) at `sample_rate`."""
    name = check_format(fmt)
    rate = output_rate(name, sample_rate, out_rate)
    x = np.asarray(pcm, dtype=np.float32).reshape(-1)
    if rate != sample_rate and len(x):
        x = soxr.resample(x, sample_rate, rate).astype(np.float32)
    if name == "pcm":
        return to_s16le(x)
    if name == "wav":  # the whole-file wav carries its real sizes
        return wav_header(rate, len(x)) + to_s16le(x)
    codec = _CODECS[name]
    buf = io.BytesIO()
    with _open(buf, rate, codec) as f:
        f.write(np.clip(x, -1.0, 1.0) if len(x) else _silence(rate))
    return buf.getvalue()


def _silence(rate: int) -> np.ndarray:
    """20 ms of silence: what a compressed file holds when there is no audio (a reply with nothing to say).
    flac and mp3 would otherwise be 0 bytes and Ogg Opus a header that decoders reject."""
    return np.zeros(rate // 50, np.float32)


def _open(target, rate: int, codec: _Codec) -> sf.SoundFile:
    extra = {"bitrate_mode": "CONSTANT", "compression_level": 0.8} if codec.cbr else {}  # mp3: 96 kb/s at 32 kHz
    return sf.SoundFile(target, mode="w", samplerate=rate, channels=1, format=codec.container,
                        subtype=codec.subtype, **extra)


class _Sink(io.RawIOBase):
    """Seekable write-only buffer that hands out its bytes as they are written (see module doc)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0  # absolute offset of _buf[0]; bytes before it were drained
        self._pos = 0
        self._end = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        data = bytes(data)
        start = self._pos - self._base
        skip = max(0, -start)  # the part that falls on drained bytes is dropped
        if skip < len(data):
            s = start + skip
            if s > len(self._buf):
                self._buf.extend(b"\0" * (s - len(self._buf)))
            self._buf[s:s + len(data) - skip] = data[skip:]
        self._pos += len(data)
        self._end = max(self._end, self._pos)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        return b""

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = {0: offset, 1: self._pos + offset, 2: self._end + offset}[whence]
        return self._pos

    def tell(self) -> int:
        return self._pos

    def drain(self) -> bytes:
        out = bytes(self._buf)
        self._base += len(self._buf)
        self._buf.clear()
        return out


class StreamEncoder:
    """Encodes consecutive float32 PCM chunks into one continuous stream.

    Usage: `enc.push(chunk)` returns the bytes ready so far (the header comes with the first push),
    `enc.close()` returns the tail. The bytes concatenated form a valid file of `fmt`.
    """

    def __init__(self, fmt: str, sample_rate: int, out_rate: int | None = None):
        """Raises `UnsupportedFormatError` for a format that cannot stream (flac)."""
        self.fmt = check_format(fmt)
        if not can_stream(self.fmt):
            raise UnsupportedFormatError(f"{self.fmt} cannot be streamed; use stream=false, "
                                         "or a streaming format: wav, pcm, ogg, opus, mp3")
        self.in_rate = sample_rate
        self.out_rate = output_rate(self.fmt, sample_rate, out_rate)
        self._resampler = (soxr.ResampleStream(sample_rate, self.out_rate, 1, dtype="float32")
                           if self.out_rate != sample_rate else None)
        self._sink: _Sink | None = None
        self._file: sf.SoundFile | None = None
        self._started = False
        self._closed = False
        self.samples_out = 0

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.fmt]

    def push(self, pcm: np.ndarray) -> bytes:
        assert not self._closed, "push after close"
        x = np.asarray(pcm, dtype=np.float32).reshape(-1)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x, last=False)
        return self._write(x)

    def close(self) -> bytes:
        if self._closed:
            return b""
        tail = self._head()
        if self._resampler is not None:
            tail += self._write(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        self._closed = True
        if self._file is not None:
            if not self.samples_out:
                self._file.write(_silence(self.out_rate))
            self._file.close()
            tail += self._sink.drain()  # type: ignore[union-attr]
        return tail

    def _head(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        if self.fmt == "wav":
            return wav_header(self.out_rate, None)
        if self.fmt == "pcm":
            return b""
        codec = _CODECS[self.fmt]
        self._sink = _Sink()
        self._file = _open(self._sink, self.out_rate, codec)
        return b""

    def _write(self, x: np.ndarray) -> bytes:
        head = self._head()
        self.samples_out += len(x)
        if self._file is None:
            return head + (to_s16le(x) if len(x) else b"")
        if len(x):
            self._file.write(np.clip(x, -1.0, 1.0))
        return head + self._sink.drain()  # type: ignore[union-attr]
