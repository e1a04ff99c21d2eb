"""Reference audio validation table, trimming, downmix, peak scaling, resampling and the spectrogram."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from tts.audio import load_reference, resample, spectrogram
from tts.errors import ReferenceAudioError

SR = 32000


def tone(seconds: float, sr: int = SR, amp: float = 0.5, f: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * f * t)).astype(np.float32)


def silence(seconds: float, sr: int = SR) -> np.ndarray:
    return np.zeros(int(seconds * sr), dtype=np.float32)


def write(tmp_path, name: str, x: np.ndarray, sr: int = SR, subtype: str = "PCM_16"):
    p = tmp_path / name
    sf.write(str(p), x, sr, subtype=subtype)
    return p


@pytest.mark.parametrize("name,make,match", [
    ("silent.wav", lambda: silence(5), "silent"),
    ("short.wav", lambda: tone(1), "too short"),
    ("long.wav", lambda: tone(30), "too long"),
    ("padded_short.wav", lambda: np.concatenate([silence(2), tone(2.5), silence(2)]), "too short.*after trimming"),
    ("empty.wav", lambda: silence(0), "empty"),
])
def test_validation_table(tmp_path, name, make, match):
    p = write(tmp_path, name, make())
    with pytest.raises(ReferenceAudioError, match=match) as e:
        load_reference(p)
    assert name in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("content", [b"this is plain text, not audio\n" * 100, b"RIFF\x00\x00\x00\x00WAVEjunk", b""])
def test_not_audio(tmp_path, content):
    p = tmp_path / "clip.wav"
    p.write_bytes(content)
    with pytest.raises(ReferenceAudioError, match="not an audio file|empty"):
        load_reference(p)


def test_missing_file(tmp_path):
    with pytest.raises(ReferenceAudioError, match="not found"):
        load_reference(tmp_path / "nope.wav")


def test_ok_clip_gives_both_rates(tmp_path):
    w32, w16 = load_reference(write(tmp_path, "ok.wav", tone(4, sr=44100), sr=44100))
    assert w32.dtype == np.float32 and w16.dtype == np.float32
    assert abs(len(w32) - 4 * 32000) < 32 and abs(len(w16) - 4 * 16000) < 16
    assert abs(np.abs(w32).max() - 0.5) < 0.02


def test_stereo_is_downmixed(tmp_path):
    x = np.stack([tone(4), silence(4)], axis=1)
    w32, _ = load_reference(write(tmp_path, "stereo.wav", x))
    assert abs(np.abs(w32).max() - 0.25) < 0.01


def test_trimming_cuts_leading_and_trailing_silence(tmp_path):
    x = np.concatenate([silence(1.5), tone(4), silence(2)])
    w32, w16 = load_reference(write(tmp_path, "padded.wav", x))
    assert 4.0 <= len(w32) / SR <= 4.2 and 4.0 <= len(w16) / 16000 <= 4.2
    w32_raw, _ = load_reference(write(tmp_path, "padded2.wav", x), trim=False)
    assert len(w32_raw) == len(x)


def test_peak_above_one_is_scaled_like_the_reference(tmp_path):
    p = write(tmp_path, "hot.wav", tone(4, amp=1.5), subtype="FLOAT")
    w32, w16 = load_reference(p)
    assert abs(np.abs(w32).max() - 1.0) < 0.01  # divided by min(2, 1.5)
    assert np.abs(w16).max() > 1.4  # the HuBERT copy is left as read
    w32, _ = load_reference(write(tmp_path, "hotter.wav", tone(4, amp=3.0), subtype="FLOAT"))
    assert abs(np.abs(w32).max() - 1.5) < 0.02  # divided by 2 at most


def test_resample():
    x = tone(1.0, sr=48000, f=1000.0)
    y = resample(x, 48000, 16000)
    assert len(y) == 16000 and y.dtype == np.float32
    spec = np.abs(np.fft.rfft(y[2000:14000]))
    assert abs(np.argmax(spec) * 16000 / 12000 - 1000) < 5
    assert resample(x, 48000, 48000) is x


def test_spectrogram_shape_and_values_against_torch_stft():
    x = np.random.default_rng(0).standard_normal(64000).astype(np.float32) * 0.1
    s = spectrogram(x)
    assert s.shape == (1025, 100) and s.dtype == np.float32
    y = torch.nn.functional.pad(torch.from_numpy(x)[None, None], (704, 704), mode="reflect")[0, 0]
    ref = torch.stft(y, 2048, hop_length=640, win_length=2048, window=torch.hann_window(2048), center=False,
                     return_complex=True)
    ref = torch.sqrt(ref.real**2 + ref.imag**2 + 1e-8).numpy()
    np.testing.assert_allclose(s, ref, rtol=1e-4, atol=1e-5)
