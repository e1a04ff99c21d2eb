"""Encoders: every format round-trips through soundfile, whole and streamed chunk by chunk."""
import io

import numpy as np
import pytest
import soundfile as sf

from tts.encoders import (StreamEncoder, UnsupportedFormatError, can_stream, check_format, encode, output_rate,
                          wav_header)

SR = 32000


def tone(seconds: float = 1.0, sr: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def decode(data: bytes, fmt: str, rate: int) -> tuple[np.ndarray, int]:
    if fmt == "pcm":
        return np.frombuffer(data, "<i2").astype(np.float32) / 32767, rate
    return sf.read(io.BytesIO(data), dtype="float32")


@pytest.mark.parametrize("fmt,rate", [("wav", 32000), ("pcm", 32000), ("flac", 32000), ("ogg", 48000),
                                      ("opus", 48000), ("mp3", 32000)])
def test_whole_file_roundtrip(fmt, rate):
    x = tone()
    y, sr = decode(encode(x, SR, fmt), fmt, rate)
    assert sr == rate == output_rate(fmt, SR)
    assert abs(len(y) / sr - 1.0) < 0.1, len(y)
    assert 0.15 < np.sqrt(np.mean(y ** 2)) < 0.3  # energy of a 0.3-amplitude sine survives


@pytest.mark.parametrize("fmt", ["wav", "pcm", "ogg", "mp3"])
def test_stream_is_one_continuous_file(fmt):
    x = tone(2.0)
    enc = StreamEncoder(fmt, SR)
    parts = [enc.push(c) for c in np.array_split(x, 9)]
    parts.append(enc.close())
    assert sum(len(p) > 0 for p in parts[:-1]) >= 2, "bytes must flow before the end"
    y, sr = decode(b"".join(parts), fmt, enc.out_rate)
    assert abs(len(y) / sr - 2.0) < 0.15, (len(y), sr)
    assert 0.15 < np.sqrt(np.mean(y ** 2)) < 0.3


def test_streaming_wav_header_has_unknown_sizes():
    enc = StreamEncoder("wav", SR)
    data = enc.push(tone(0.1)) + enc.close()
    assert data[4:8] == b"\xff\xff\xff\xff" and data[40:44] == b"\xff\xff\xff\xff"
    assert len(data) == 44 + 2 * 3200


def test_resampled_pcm_24k():
    data = encode(tone(), SR, "pcm", out_rate=24000)
    assert len(data) == 2 * 24000
    enc = StreamEncoder("pcm", SR, out_rate=24000)
    streamed = b"".join(enc.push(c) for c in np.array_split(tone(), 5)) + enc.close()
    assert abs(len(streamed) - 2 * 24000) <= 4


def test_flac_refuses_to_stream():
    with pytest.raises(UnsupportedFormatError, match="cannot be streamed"):
        StreamEncoder("flac", SR)


def test_clipping_and_empty():
    assert np.frombuffer(encode(np.array([2.0, -2.0], np.float32), SR, "pcm"), "<i2").tolist() == [32767, -32767]
    assert encode(np.zeros(0, np.float32), SR, "wav") == wav_header(SR, 0)
    enc = StreamEncoder("ogg", SR)
    assert enc.close().startswith(b"OggS")  # a valid (empty) stream, no crash


@pytest.mark.parametrize("fmt", ["aac", "xyz", ""])
def test_unsupported_formats_are_clear(fmt):
    with pytest.raises(UnsupportedFormatError) as e:
        check_format(fmt)
    assert e.value.http_status == 400
    assert "mp3" in e.value.message


@pytest.mark.parametrize("fmt", ["wav", "pcm", "flac", "mp3", "ogg"])
def test_no_audio_still_makes_a_valid_file(fmt):
    """A reply with nothing to say (an LLM answering with only punctuation): every format is still a file
    that decodes (flac and mp3 were 0 bytes, Ogg Opus a header decoders reject)."""
    whole = encode(np.zeros(0, np.float32), 32000, fmt)
    streams = [whole] if not can_stream(fmt) else [whole, StreamEncoder(fmt, 32000).close()]
    for data in streams:
        if fmt == "pcm":
            assert data == b""
            continue
        y, _ = sf.read(io.BytesIO(data), dtype="float32")
        assert len(y) <= 0.03 * 48000 and np.abs(y).max(initial=0) < 1e-6
