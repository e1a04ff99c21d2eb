"""The model calls the engine makes, in one place: loading (device, dtype, quantisation),
reference features, frontend + BERT, and the per-sentence streaming vocoder.

Everything here runs under the engine's control: the text frontend in the preparation pool, all
torch work (loading, reference features, BERT, `decode_batch`, `ChunkVocoder`) on the worker
thread.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tts.errors import TTSError

log = logging.getLogger(__name__)


# ---- loading ---------------------------------------------------------------------------------
def load_t2s(path: Path, device: torch.device, dtype: torch.dtype, quant: str = "none") -> nn.Module:
    """A T2S model from a GPT `.ckpt`, on `device` in `dtype`, with `quant` applied (`apply_t2s_quant`)."""
    from tts.checkpoint import load_gpt
    from tts.models.t2s import T2SModel

    return apply_t2s_quant(T2SModel.from_checkpoint(load_gpt(path)), device, dtype, quant)


def apply_t2s_quant(model: nn.Module, device: torch.device, dtype: torch.dtype, quant: str) -> nn.Module:
    """`model` on `device` in `dtype`; `quant` applies on CPU only: "int8" (a new model with dynamic
    int8 decoder Linears) or "bf16" (bfloat16 decoder weights, float32 activations, in place)."""
    from tts.models.onednn import native_bf16

    if device.type == "cpu" and quant == "bf16":
        if not native_bf16():
            log.warning("t2s_quant bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX); "
                        "the T2S decode will likely be slower than float32")
        return model.float().bf16_weights()
    model = model.to(device, dtype)
    if device.type == "cpu" and quant == "int8":
        model = model.quantize_int8()
    return model


def t2s_dtype(model: nn.Module) -> torch.dtype:
    return model.ar_predict_layer.weight.dtype


def load_vits(path: Path, device: torch.device, vocoder_dtype: str = "float32") -> nn.Module:
    """SoVITS in float32; its HiFi-GAN vocoder in `vocoder_dtype` ("float32" | "bfloat16" | "float16")."""
    from tts.checkpoint import load_sovits
    from tts.models.vits import SynthesizerTrn

    model = SynthesizerTrn.from_checkpoint(load_sovits(path)).to(device)
    if vocoder_dtype != "float32":
        model.set_vocoder_dtype(getattr(torch, vocoder_dtype))
    return model


def decode_batch(gpt: nn.Module, max_batch: int, max_len: int, device: torch.device, dtype: torch.dtype) -> Any:
    from tts.models.sampling import DecodeBatch

    return DecodeBatch(gpt, max_batch, max_len, device, t2s_dtype(gpt))


def sampling_params(**kw: Any) -> Any:
    from tts.models.sampling import SamplingParams

    return SamplingParams(**kw)


def load_ssl(folder: Path | None, device: torch.device) -> Any:
    if folder is None:
        raise TTSError("no HuBERT folder configured (needed for a reference with ref_text)")
    from tts.models.ssl import SSLModel

    ssl = SSLModel.from_dir(folder)
    ssl.model.to(device)
    return ssl


def load_bert(folder: Path | None, device: torch.device) -> Any:
    if folder is None:
        raise TTSError("no BERT folder configured (needed for Chinese text)")
    from tts.models.bert import BertFeatures

    bert = BertFeatures.from_dir(folder)
    bert.encoder.to(device)
    return bert


# ---- reference features ------------------------------------------------------------------------
def load_reference(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(wav32k, wav16k) float32 1-D tensors, validated (ReferenceAudioError)."""
    from tts.audio import load_reference as _load

    w32, w16 = _load(path)
    return torch.as_tensor(np.asarray(w32), dtype=torch.float32), torch.as_tensor(np.asarray(w16), dtype=torch.float32)


def spectrogram(wav32k: torch.Tensor) -> torch.Tensor:
    from tts.audio import spectrogram as _spec

    return torch.as_tensor(_spec(wav32k), dtype=torch.float32)


def style(vits: nn.Module, specs: list[torch.Tensor]) -> np.ndarray:
    """ge as float32 [gin]: the mean style vector over the reference spectrograms."""
    dev = next(vits.parameters()).device
    ge = vits.style([s.to(dev) for s in specs])  # [1, gin, 1]
    return ge.reshape(-1).float().cpu().numpy()


def prompt_tokens(ssl: Any, vits: nn.Module, wav16k: torch.Tensor) -> np.ndarray:
    """Prompt semantic tokens [P] of a 16 kHz clip (HuBERT -> ssl_proj -> codebook)."""
    dev = next(vits.parameters()).device
    feats = ssl(wav16k.to(dev))  # [1, 768, T]; SSLModel appends the reference's 0.6 s of zeros
    codes = vits.extract_latent(feats)  # [1, 1, T/2]
    return codes.reshape(-1).long().cpu().numpy()


# ---- frontend --------------------------------------------------------------------------------
def to_segments(text: str, lang: str) -> list:
    from tts.frontend import to_segments as _to_segments

    return _to_segments(text, lang)


def bert(model: Any, segment: Any) -> np.ndarray:
    feats = model(segment.norm_text, segment.word2ph)  # [1024, n_phones]
    return torch.as_tensor(feats).float().cpu().numpy()


# ---- vocoder ---------------------------------------------------------------------------------
class ChunkVocoder:
    """Streaming SoVITS decode of one sentence: call with each new token chunk; `final` flushes.

    Two-phase use (the scheduler's, so that chunks of different requests share one vocoder batch):
    `plan(tokens, final)` -> `vocode_plans([plan, ...])` -> `complete(plan, result)`; calling the
    vocoder does exactly that for one plan. Seeded: the latent noise comes from a generator seeded per
    sentence, so a request's audio does not depend on what else the worker is doing (batching with other
    requests changes it by float rounding only).
    """

    def __init__(self, vits: nn.Module, phones: torch.Tensor, ge: torch.Tensor, speed: float,
                 noise_scale: float, seed: int, device: torch.device):
        gen = torch.Generator(device="cpu")
        gen.manual_seed(int(seed))
        ge = ge.reshape(1, -1, 1).to(device)
        self._dec = vits.decode_streaming(phones.reshape(1, -1).to(device), ge, noise_scale=noise_scale,
                                          speed=speed, generator=gen)

    def __call__(self, tokens: list[int], final: bool) -> np.ndarray:
        plan = self.plan(tokens, final)
        return self.complete(plan, vocode_plans([plan])[0])

    def plan(self, tokens: list[int], final: bool) -> list:
        """The streaming steps of one chunk (`StepPlan`s: a push of the new tokens, then the flush if final)."""
        steps = []
        if tokens:
            steps.append(self._dec.plan(tokens))
        if final:
            steps.append(self._dec.plan(final=True))
        return steps

    def complete(self, plan: list, audio: list) -> np.ndarray:
        """pcm float32 in [-1, 1] of a planned chunk, given its `vocode_plans` result."""
        parts = [self._dec.complete(step, a) for step, a in zip(plan, audio)]
        if not parts:
            return np.zeros(0, np.float32)
        out = torch.cat([p.reshape(-1) for p in parts]).float().cpu().numpy()
        return np.clip(out, -1.0, 1.0)


def vocode_plans(plans: list[list]) -> list[list]:
    """Run the heavy part (flow + HiFi-GAN) of several `ChunkVocoder.plan`s at once: windows of equal shape
    share a batch (`tts.models.vits.vocode_windows`). Returns, per plan, the audio of each of its steps."""
    from tts.models.vits import vocode_windows

    audio = iter(vocode_windows([s.window for p in plans for s in p if s.window is not None]))
    return [[next(audio) if s.window is not None else None for s in p] for p in plans]
