"""Reference audio: read, validate, resample, trim; the SoVITS linear spectrogram. numpy only (no torch).

`load_reference` gives the two copies a speaker prompt needs: 32 kHz (spectrogram -> style vector) and
16 kHz (HuBERT -> prompt semantic tokens). Every problem raises `ReferenceAudioError` with a one-line
message that names the file and what is wrong.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tts.errors import ReferenceAudioError

log = logging.getLogger(__name__)

SR_VITS = 32000
SR_SSL = 16000
MIN_SECONDS, MAX_SECONDS = 3.0, 10.0  # GPT-SoVITS refuses references outside 3-10 s
N_FFT, HOP, WIN = 2048, 640, 2048
SILENCE_PEAK = 10 ** (-60 / 20)  # a clip whose peak is below -60 dBFS counts as silent
TRIM_BELOW_LOUDEST_DB = 40.0  # frames this far below the loudest frame are silence at the edges
TRIM_FRAME_S = 0.02
TRIM_MARGIN_S = 0.05  # keep this much around the voiced part so soft onsets survive


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Mono float32 resampling (soxr HQ); returns `x` itself when the rates are equal."""
    x = np.asarray(x, dtype=np.float32)
    if sr_in == sr_out:
        return x
    if len(x) == 0:
        return x
    return soxr.resample(x, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def read_mono(path: str | Path) -> tuple[np.ndarray, int]:
    """Read any soundfile-supported file as float32 mono (channels averaged)."""
    p = Path(path)
    if not p.is_file():
        raise ReferenceAudioError(f"reference audio not found: {p}")
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as e:
        raise ReferenceAudioError(f"cannot read reference audio {p.name}: not an audio file or corrupt "
                                  f"({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})"
                                  ) from e
    if data.shape[0] == 0:
        raise ReferenceAudioError(f"reference audio {p.name} is empty")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(mono)):
        raise ReferenceAudioError(f"reference audio {p.name} contains NaN or infinite samples")
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)


def trim_silence(x: np.ndarray, sr: int) -> np.ndarray:
    """Cut leading/trailing frames more than 40 dB below the loudest 20 ms frame (keeping 50 ms margins)."""
    n = max(1, int(round(TRIM_FRAME_S * sr)))
    n_frames = len(x) // n
    if n_frames < 2:
        return x
    rms = np.sqrt(np.mean(x[: n_frames * n].reshape(n_frames, n).astype(np.float64) ** 2, axis=1))
    thr = max(rms.max() * 10 ** (-TRIM_BELOW_LOUDEST_DB / 20), SILENCE_PEAK)
    voiced = np.nonzero(rms >= thr)[0]
    if len(voiced) == 0:
        return x
    margin = int(round(TRIM_MARGIN_S * sr))
    a = max(0, voiced[0] * n - margin)
    b = min(len(x), (voiced[-1] + 1) * n + margin)
    return x[a:b]


def load_reference(path: str | Path, trim: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate a reference clip -> (wav32k, wav16k), float32 mono.

    The 32 kHz copy is divided by min(2, peak) when its peak exceeds 1 (as GPT-SoVITS does for the
    reference spectrogram); the 16 kHz copy (HuBERT input) is left as read.
    """
    p = Path(path)
    x, sr = read_mono(p)
    if float(np.max(np.abs(x))) < SILENCE_PEAK:
        raise ReferenceAudioError(f"reference audio {p.name} is silent")
    if trim:
        x = trim_silence(x, sr)
    seconds = len(x) / sr
    what = " after trimming silence" if trim else ""
    if seconds < MIN_SECONDS:
        raise ReferenceAudioError(f"reference audio {p.name} is too short: {seconds:.2f} s{what} "
                                  f"(needs {MIN_SECONDS:g}-{MAX_SECONDS:g} s)")
    if seconds > MAX_SECONDS:
        raise ReferenceAudioError(f"reference audio {p.name} is too long: {seconds:.2f} s{what} "
                                  f"(needs {MIN_SECONDS:g}-{MAX_SECONDS:g} s)")
    wav32k = resample(x, sr, SR_VITS)
    wav16k = resample(x, sr, SR_SSL)
    peak = float(np.max(np.abs(wav32k)))
    if peak > 1:
        wav32k = wav32k / min(2.0, peak)
    return np.ascontiguousarray(wav32k, dtype=np.float32), np.ascontiguousarray(wav16k, dtype=np.float32)


def _hann(n: int) -> np.ndarray:
    """Periodic Hann window (torch.hann_window's default)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float64)


_WINDOW = _hann(WIN)


def spectrogram(wav32k: np.ndarray) -> np.ndarray:
    """Linear magnitude spectrogram [1025, frames] float32 of a 32 kHz mono clip, as GPT-SoVITS computes it:
    reflect-pad (n_fft - hop) / 2 = 704 per side, Hann window 2048, hop 640, no centring,
    sqrt(re^2 + im^2 + 1e-8)."""
    y = np.asarray(wav32k, dtype=np.float64).reshape(-1)
    pad = (N_FFT - HOP) // 2
    if len(y) <= pad:
        raise ReferenceAudioError(f"audio too short for a spectrogram ({len(y)} samples)")
    y = np.pad(y, (pad, pad), mode="reflect")
    n_frames = 1 + (len(y) - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(y, N_FFT)[::HOP][:n_frames]  # (frames, n_fft)
    spec = np.fft.rfft(frames * _WINDOW, axis=1)  # (frames, 1025)
    mag = np.sqrt(spec.real**2 + spec.imag**2 + 1e-8)
    return np.ascontiguousarray(mag.T, dtype=np.float32)
