"""Tiny, deterministic models in the real on-disk formats, for tests and the embedded demo.

Every writer is a pure function of its arguments and seed: the same call writes the same bytes.
"""
from __future__ import annotations

from pathlib import Path


def write_tiny_gpt(path: str | Path, seed: int = 0) -> Path:
    """A tiny GPT-SoVITS v2 T2S `.ckpt` ({"weight","config","info"}, fp16) whose EOS comes after
    roughly 2-4 tokens per phone."""
    raise NotImplementedError


def write_tiny_sovits(path: str | Path, seed: int = 0) -> Path:
    """A tiny SoVITS v2 `.pth` with its config pickled as `utils.HParams`, `enc_q.*` absent."""
    raise NotImplementedError


def write_tiny_hubert(folder: str | Path, seed: int = 0) -> Path:
    """A tiny HF HubertModel folder (hidden 768 so ssl_proj fits)."""
    raise NotImplementedError


def write_tiny_bert(folder: str | Path, seed: int = 0) -> Path:
    """A tiny HF BERT folder (hidden 1024, Chinese character vocab) for phone-level features."""
    raise NotImplementedError


def write_reference_clip(path: str | Path, seconds: float = 4.0, seed: int = 0) -> Path:
    """A synthetic voiced reference clip (32 kHz mono wav) that passes the 3-10 s validation."""
    raise NotImplementedError


def build_demo(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write every tiny TTS asset into `folder` (skipping those already there); returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "gpt": folder / "demo-gpt.ckpt",
        "sovits": folder / "demo-sovits.pth",
        "hubert": folder / "chinese-hubert-base",
        "bert": folder / "chinese-roberta-wwm-ext-large",
        "ref_audio": folder / "demo-ref.wav",
    }
    writers = {"gpt": write_tiny_gpt, "sovits": write_tiny_sovits, "hubert": write_tiny_hubert,
               "bert": write_tiny_bert, "ref_audio": write_reference_clip}
    for key, p in paths.items():
        if not p.exists():
            writers[key](p, seed=seed)
    return paths
