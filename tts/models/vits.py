"""SoVITS v1/v2 inference path (GPT-SoVITS `SynthesizerTrn`): semantic codes + phones + style -> 32 kHz audio.

    ge   = mean over references of ref_enc(spec[:704])           # [1, 512, 1]
    q    = nearest_x2(codebook[codes])                           # [1, 768, 2T]  (50 Hz)
    m,lg = enc_p(q, phones, ge, speed)                           # [1, 192, T']
    z    = flow^-1(m + eps * exp(lg) * noise_scale, ge)
    wav  = dec(z, ge)                                            # [T' * 640]

Runs one utterance at a time (batch 1, no padding masks), in the dtype of its parameters; only the
streaming windows of several utterances can share a batch, when their shapes are equal (`vocode_windows`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tts.models.vits_modules import (
    MRTE,
    Encoder,
    Generator,
    MelStyleEncoder,
    Quantizer,
    ResidualCouplingBlock,
    fold_weight_norm,
)

SSL_DIM = 768  # chinese-hubert-base hidden size
CODEBOOK_SIZE = 1024
STYLE_BINS_V2 = 704  # ref_enc reads only the lowest 704 of 1025 bins in v2
# Keys present in checkpoints that inference never reads (training-only codebook statistics).
_UNUSED_KEY_SUFFIXES = ("_codebook.inited", "_codebook.cluster_size", "_codebook.embed_avg")


@dataclass(frozen=True)
class VitsConfig:
    n_symbols: int = 732
    spec_channels: int = 1025
    inter_channels: int = 192
    hidden_channels: int = 192
    filter_channels: int = 768
    n_heads: int = 2
    n_layers: int = 6
    kernel_size: int = 3
    resblock: str = "1"
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    upsample_rates: tuple[int, ...] = (10, 8, 2, 2, 2)
    upsample_initial_channel: int = 512
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 8, 2, 2)
    gin_channels: int = 512
    semantic_frame_rate: str = "25hz"
    version: str = "v2"

    @property
    def hop_length(self) -> int:
        return math.prod(self.upsample_rates)

    @property
    def style_bins(self) -> int:
        return self.spec_channels if self.version == "v1" else STYLE_BINS_V2

    @classmethod
    def from_hps(cls, hps: dict[str, Any], n_symbols: int, version: str) -> "VitsConfig":
        m, d = hps.get("model", {}), hps.get("data", {})
        names = {f for f in cls.__dataclass_fields__} - {"n_symbols", "spec_channels", "version"}
        kw: dict[str, Any] = {}
        for k in names:
            if k in m:
                v = m[k]
                if k == "resblock_dilation_sizes":
                    v = tuple(tuple(x) for x in v)
                elif isinstance(v, list):
                    v = tuple(v)
                kw[k] = v
        return cls(n_symbols=n_symbols, spec_channels=int(d.get("filter_length", 2048)) // 2 + 1,
                   version=version, **kw)


class TextEncoder(nn.Module):
    """enc_p: SSL frames attend to the phones (MRTE) under the style vector; outputs prior stats."""

    def __init__(self, cfg: VitsConfig):
        super().__init__()
        h, f, nh, nl, k = (cfg.hidden_channels, cfg.filter_channels, cfg.n_heads, cfg.n_layers, cfg.kernel_size)
        self.out_channels = cfg.inter_channels
        self.ssl_proj = nn.Conv1d(SSL_DIM, h, 1)
        self.encoder_ssl = Encoder(h, f, nh, nl // 2, k)
        self.text_embedding = nn.Embedding(cfg.n_symbols, h)
        self.encoder_text = Encoder(h, f, nh, nl, k)
        self.mrte = MRTE()  # hard-coded: content 192, hidden 512, 4 heads
        self.encoder2 = Encoder(h, f, nh, nl // 2, k)
        self.proj = nn.Conv1d(h, cfg.inter_channels * 2, 1)

    def forward(self, ssl: torch.Tensor, phones: torch.Tensor, ge: torch.Tensor,
                speed: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        # ssl: [1, 768, T], phones: [1, N] -> m_p, logs_p: [1, inter, T'] (T' = T, or int(T/speed)+1)
        y = self.encoder_ssl(self.ssl_proj(ssl))
        text = self.encoder_text(self.text_embedding(phones).transpose(1, 2))
        y = self.encoder2(self.mrte(y, text, ge))
        if speed != 1:
            y = F.interpolate(y, size=int(y.shape[-1] / speed) + 1, mode="linear")
        m, logs = self.proj(y).split(self.out_channels, dim=1)
        return m, logs


class SynthesizerTrn(nn.Module):
    """The SoVITS generator's inference half. Build with `from_checkpoint`."""

    def __init__(self, cfg: VitsConfig):
        super().__init__()
        self.cfg = cfg
        self.enc_p = TextEncoder(cfg)
        self.dec = Generator(cfg.inter_channels, cfg.resblock, list(cfg.resblock_kernel_sizes),
                             [list(d) for d in cfg.resblock_dilation_sizes], list(cfg.upsample_rates),
                             cfg.upsample_initial_channel, list(cfg.upsample_kernel_sizes), cfg.gin_channels)
        self.flow = ResidualCouplingBlock(cfg.inter_channels, cfg.hidden_channels, 5, 1, 4,
                                          gin_channels=cfg.gin_channels)
        self.ref_enc = MelStyleEncoder(cfg.style_bins, out_dim=cfg.gin_channels)
        self.ssl_proj = nn.Conv1d(SSL_DIM, SSL_DIM, 2, stride=2)
        self.quantizer = Quantizer(SSL_DIM, CODEBOOK_SIZE, 1)

    @classmethod
    def from_checkpoint(cls, ckpt: Any) -> "SynthesizerTrn":
        """Build from a `tts.checkpoint.SovitsCheckpoint`; weight norm is folded, float32, eval mode."""
        w = ckpt.weights
        cfg = VitsConfig.from_hps(ckpt.hps, int(w["enc_p.text_embedding.weight"].shape[0]), ckpt.version)
        with torch.device("meta"):  # no random init: every tensor comes from the checkpoint
            model = cls(cfg)
        state = {k: v for k, v in w.items()
                 if not k.startswith("enc_q.") and not k.endswith(_UNUSED_KEY_SUFFIXES)}
        model.load_state_dict(fold_weight_norm(state), strict=True, assign=True)
        model.float().eval().requires_grad_(False)
        return model

    @property
    def hop_length(self) -> int:
        return self.cfg.hop_length

    # ---------------------------------------------------------------- reference-side features

    @torch.inference_mode()
    def extract_latent(self, ssl: torch.Tensor) -> torch.Tensor:
        """HuBERT features [1, 768, T] (50 Hz) -> semantic codes [1, 1, T//2] (25 Hz, int64)."""
        if ssl.dim() == 2:
            ssl = ssl.unsqueeze(0)
        x = self.ssl_proj(ssl.to(self._device, self._dtype))
        return self.quantizer.encode(x).transpose(0, 1)

    @torch.inference_mode()
    def style(self, specs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Style vector ge [1, gin, 1] from one spectrogram [1025, T] (or [1, 1025, T]) or the mean over several."""
        if isinstance(specs, torch.Tensor):
            specs = [specs]
        if len(specs) == 0:
            raise ValueError("style() needs at least one reference spectrogram")
        ges = []
        for s in specs:
            s = s.to(self._device, self._dtype)
            if s.dim() == 2:
                s = s.unsqueeze(0)
            ges.append(self.ref_enc(s[:, : self.cfg.style_bins]))
        return torch.stack(ges, 0).mean(0)

    # --------------------------------------------------------------------------------- decode

    @torch.inference_mode()
    def prior(self, codes: torch.Tensor, phones: torch.Tensor, ge: torch.Tensor,
              speed: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """m_p, logs_p [1, inter, T'] for codes [1,1,T] (or [T]) and phones [1,N] (or [N])."""
        codes = codes.reshape(1, 1, -1).long().to(self._device)
        phones = phones.reshape(1, -1).long().to(self._device)
        q = self.quantizer.decode(codes.transpose(0, 1))  # [1, 768, T]
        if self.cfg.semantic_frame_rate == "25hz":
            q = q.repeat_interleave(2, dim=-1)  # nearest x2 -> 50 Hz
        return self.enc_p(q, phones, ge.to(self._device, self._dtype), speed)

    @torch.inference_mode()
    def vocode(self, z: torch.Tensor, ge: torch.Tensor, dec_offset: int = 0) -> torch.Tensor:
        """Latent z_p [B, inter, W] -> audio [B, (W - dec_offset) * hop]: flow reverse over the whole
        window, then HiFi-GAN from latent frame `dec_offset` on (frames before it are flow context only)."""
        ge = ge.to(self._device, self._dtype)
        return self.hifigan(self.flow.reverse(z, ge)[..., dec_offset:], ge).flatten(1)

    def hifigan(self, z: torch.Tensor, ge: torch.Tensor) -> torch.Tensor:
        """The vocoder `dec` on flow outputs z [B, inter, F] -> audio [B, 1, F * hop], computed in
        the vocoder's own dtype (`set_vocoder_dtype`) and returned in the model's."""
        dt = self.dec.conv_pre.weight.dtype
        if dt == z.dtype:
            return self.dec(z, ge)
        return self.dec(z.to(dt), ge.to(dt)).to(z.dtype)

    def set_vocoder_dtype(self, dtype: torch.dtype) -> "SynthesizerTrn":
        """Run only the HiFi-GAN vocoder (~95% of the cost) in `dtype`, e.g. bfloat16 on a CPU with
        AVX512-BF16 (about 1.7x faster there; the audio moves by ~3.5% rms, see docs/performance.md).
        The prior and the flow stay in the model's dtype. In place; returns self."""
        self.dec.to(dtype)
        return self

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, phones: torch.Tensor, ge: torch.Tensor, noise_scale: float = 0.5,
               speed: float = 1.0, eps: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Audio [T' * 640] float at 32 kHz. `eps` [inter, T'] (or [1, inter, T']) replaces the normal draw."""
        m_p, logs_p = self.prior(codes, phones, ge, speed)
        z_p = self.sample_prior(m_p, logs_p, noise_scale, eps, generator)
        return self.vocode(z_p, ge)[0]

    @staticmethod
    def sample_prior(m_p: torch.Tensor, logs_p: torch.Tensor, noise_scale: float,
                     eps: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        if noise_scale == 0:
            return m_p
        if eps is None:  # drawn where the generator lives (CPU generators keep GPU runs reproducible)
            dev = generator.device if generator is not None else m_p.device
            eps = torch.randn(m_p.shape, generator=generator, dtype=torch.float32, device=dev)
        eps = eps.reshape(m_p.shape).to(m_p)
        return m_p + eps * torch.exp(logs_p) * noise_scale

    def decode_streaming(self, phones: torch.Tensor, ge: torch.Tensor, noise_scale: float = 0.5,
                         speed: float = 1.0, eps: torch.Tensor | None = None,
                         generator: torch.Generator | None = None, **kw: Any) -> "StreamingDecoder":
        """A `StreamingDecoder` for one sentence: push tokens as they come, get only the new audio."""
        return StreamingDecoder(self, phones, ge, noise_scale, speed, eps, generator, **kw)

    @property
    def _dtype(self) -> torch.dtype:
        return self.enc_p.proj.weight.dtype

    @property
    def _device(self) -> torch.device:
        return self.enc_p.proj.weight.device


@dataclass(frozen=True)
class VocodeWindow:
    """The heavy part of one streaming step: flow^-1 over `z_p`, then HiFi-GAN from frame `dec_offset` on."""

    model: SynthesizerTrn
    z_p: torch.Tensor  # [1, inter, W] sampled prior over the window
    ge: torch.Tensor  # [1, gin, 1] in the model's dtype and device
    dec_offset: int  # leading flow-output frames the vocoder does not need (flow context beyond its own)

    @property
    def key(self) -> tuple:
        """Windows with equal keys can run as one batch."""
        return (id(self.model), tuple(self.z_p.shape), self.dec_offset, self.z_p.dtype, self.z_p.device)


MAX_VOCODE_BATCH = 8  # windows per batched flow + vocoder call (bounds latency and memory)
# On CPU a batch pays only while its activations stay in cache. 4 windows vocoded as one batch against one
# by one (real v2 size, quiet 2-core VM): 12 frames 0.41x the time at 2 threads / 0.49x at 1, 24 frames
# 0.81x / 0.93x, but 52 frames 1.11x / 1.12x and 2 windows of 76 frames 1.14x / 1.08x, at either thread
# count. So on CPU a batch holds at most this many latent frames in all; other devices batch up to
# MAX_VOCODE_BATCH windows of any length.
CPU_BATCH_FRAMES = 100


def _frame_budget(device: torch.device) -> int | None:
    return CPU_BATCH_FRAMES if device.type == "cpu" else None


@torch.inference_mode()
def vocode_windows(windows: Sequence[VocodeWindow], max_batch: int = MAX_VOCODE_BATCH,
                   max_frames: int | None = None) -> list[torch.Tensor]:
    """Audio [(W - dec_offset) * hop] of every window, in order. Windows of equal shape (and model, offset,
    dtype, device) are stacked along the batch dimension, up to `max_batch` windows and `max_frames` latent
    frames at a time (None: the device's default, see CPU_BATCH_FRAMES); every item keeps its
    own style vector, so each output equals its window run alone up to float rounding."""
    groups: dict[tuple, list[int]] = {}
    for i, w in enumerate(windows):
        groups.setdefault(w.key, []).append(i)
    out: list[torch.Tensor | None] = [None] * len(windows)
    for idx in groups.values():
        first = windows[idx[0]]
        frames = max_frames if max_frames is not None else _frame_budget(first.z_p.device)
        size = max(1, min(max_batch, frames // first.z_p.shape[-1] if frames is not None else max_batch))
        for k in range(0, len(idx), size):
            part = idx[k:k + size]
            for i, audio in zip(part, _vocode_batch([windows[i] for i in part])):
                out[i] = audio
    return out  # type: ignore[return-value]


def _vocode_batch(ws: list[VocodeWindow]) -> list[torch.Tensor]:
    m = ws[0].model
    z_p = torch.cat([w.z_p for w in ws]) if len(ws) > 1 else ws[0].z_p  # [B, inter, W]
    ge = torch.cat([w.ge for w in ws]) if len(ws) > 1 else ws[0].ge  # [B, gin, 1]
    return list(m.vocode(z_p, ge, ws[0].dec_offset))  # each [(W - dec_offset) * hop]


@dataclass(frozen=True)
class StepPlan:
    """One planned streaming step: the window to vocode (None: nothing new) and how to cut its audio."""

    seq: int  # plans complete in the order they were made
    window: VocodeWindow | None
    start: int  # first latent frame this step emits
    end: int  # ... and one past its last
    lo_dec: int  # first frame of the vocoder's input
    final: bool


@dataclass
class StreamingDecoder:
    """Chunked SoVITS decode of a growing token sequence, returning only new audio.

    Each `push` recomputes the prior over all tokens so far (enc_p attends globally), runs the flow and
    the vocoder on windows with `flow_context` / `dec_context` latent frames before the first frame not
    yet emitted (enough for both to match a whole decode there),
    holds back the last `holdback_tokens` tokens' audio (their right context is still unknown) and
    joins chunks by a raised-cosine cross-fade over `crossfade_tokens` tokens. `finish()` emits the rest.
    The concatenated output has exactly the length of a whole decode of the same tokens.

    A step is also available in two phases so that the heavy part of several decoders can run as one
    batch: `plan(tokens, final)` (prior, noise, window) -> `vocode_windows([plan.window, ...])` ->
    `complete(plan, audio)` (cut, cross-fade). `push`/`finish` are exactly plan + one window + complete.
    """

    model: SynthesizerTrn
    phones: torch.Tensor
    ge: torch.Tensor
    noise_scale: float = 0.5
    speed: float = 1.0
    eps: torch.Tensor | None = None
    generator: torch.Generator | None = None
    holdback_tokens: int = 2
    crossfade_tokens: int = 2
    flow_context: int = 24  # latent frames of left context for the flow (its reach is about 16)
    dec_context: int = 8  # ... and for the vocoder (reach about 8 frames)
    tokens: list[int] = field(default_factory=list)
    emitted_frames: int = 0  # latent frames (50 Hz) whose audio was planned (returned once completed)
    _tail: torch.Tensor | None = None  # audio computed last time for the next cross-fade
    _noise: torch.Tensor | None = None  # [1, inter, F] normal draws, grown as frames appear
    _prior: tuple | None = None  # (n_tokens, m_p, logs_p) of the last prior computed
    _planned: int = 0  # plans made
    _completed: int = 0  # plans completed
    done: bool = False  # the final step was planned

    def __post_init__(self) -> None:
        assert self.crossfade_tokens <= self.holdback_tokens, "cross-fade needs held-back audio"
        self.phones = self.phones.reshape(1, -1).long()

    def push(self, new_tokens: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Add tokens; returns the audio that became final (possibly empty), float [samples]."""
        return self._run(self.plan(new_tokens))

    def finish(self) -> torch.Tensor:
        """Emit the held-back audio; the decoder is then done."""
        return self._run(self.plan((), final=True))

    def plan(self, new_tokens: Sequence[int] | torch.Tensor = (), final: bool = False) -> StepPlan:
        """Add tokens and plan one step (`final`: the closing one). Plans may be made ahead of completion
        (their windows do not depend on earlier audio) but must be completed in order."""
        assert not self.done, "finish() was already called"
        self.tokens.extend(int(t) for t in (new_tokens.tolist() if isinstance(new_tokens, torch.Tensor)
                                            else new_tokens))
        plan = self._plan(final)
        self._planned += 1
        self.done = final
        return plan

    def complete(self, plan: StepPlan, audio: torch.Tensor | None) -> torch.Tensor:
        """The new audio of a planned step, given `audio` = its window's `vocode_windows` output."""
        assert plan.seq == self._completed, "plans must be completed in the order they were made"
        self._completed += 1
        m = self.model
        if plan.window is None or audio is None:
            return torch.zeros(0, dtype=m._dtype, device=m._device)
        hop = m.hop_length
        start, end = plan.start, plan.end
        xf = 0 if plan.final else int(round(self.crossfade_tokens * self._frames_per_token))
        audio = audio[(start - plan.lo_dec) * hop:]  # frames [start, z_hi)
        out = audio[: (end - start) * hop].clone()
        if self._tail is not None and len(self._tail):
            n = min(len(self._tail), len(out))
            ramp = torch.linspace(0, math.pi, n + 2, dtype=torch.float32, device=out.device)[1:-1]
            fade = (0.5 - 0.5 * torch.cos(ramp)).to(out.dtype)  # raised cosine, 0 -> 1
            out[:n] = self._tail[:n] * (1 - fade) + out[:n] * fade
        self._tail = None if plan.final else audio[(end - start) * hop: (end - start + xf) * hop].clone()
        return out

    @property
    def _frames_per_token(self) -> float:
        return 2.0 / self.speed

    def _run(self, plan: StepPlan) -> torch.Tensor:
        audio = vocode_windows([plan.window])[0] if plan.window is not None else None
        return self.complete(plan, audio)

    def _prior_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self.tokens)
        if self._prior is None or self._prior[0] != n:  # the same tokens give the same prior
            codes = torch.tensor(self.tokens, dtype=torch.long)
            self._prior = (n, *self.model.prior(codes, self.phones, self.ge, self.speed))  # [1, C, F] each
        return self._prior[1], self._prior[2]

    def _plan(self, final: bool) -> StepPlan:
        m = self.model
        seq, start = self._planned, self.emitted_frames
        if not self.tokens:
            return StepPlan(seq, None, start, start, start, final)
        m_p, logs_p = self._prior_stats()  # [1, C, F]
        n_frames = m_p.shape[-1]
        hold = 0 if final else int(round(self.holdback_tokens * self._frames_per_token))
        xf = int(round(self.crossfade_tokens * self._frames_per_token))
        end = n_frames - hold  # emit frames [emitted, end)
        if end <= start:
            return StepPlan(seq, None, start, start, start, final)
        lo = max(0, start - self.flow_context)
        lo_dec = max(0, start - self.dec_context)
        z_hi = min(n_frames, end + (0 if final else xf))
        z_p = SynthesizerTrn.sample_prior(m_p[..., lo:z_hi], logs_p[..., lo:z_hi], self.noise_scale,
                                          self._noise_slice(lo, z_hi, m_p))
        window = VocodeWindow(m, z_p, self.ge.to(m._device, m._dtype), lo_dec - lo)
        self.emitted_frames = end
        return StepPlan(seq, window, start, end, lo_dec, final)

    def _noise_slice(self, lo: int, hi: int, like: torch.Tensor) -> torch.Tensor | None:
        if self.noise_scale == 0:
            return None
        if self.eps is not None:
            eps = self.eps.reshape(1, like.shape[1], -1)
            assert eps.shape[-1] >= hi, "injected eps shorter than the latent"
            return eps[..., lo:hi]
        have = 0 if self._noise is None else self._noise.shape[-1]
        if have < hi:
            dev = self.generator.device if self.generator is not None else torch.device("cpu")
            more = torch.randn((1, like.shape[1], hi - have), generator=self.generator, dtype=torch.float32,
                               device=dev)
            self._noise = more if self._noise is None else torch.cat([self._noise, more], dim=-1)
        return self._noise[..., lo:hi]
