"""GPT-SoVITS text-to-semantic transformer ("GPT", s1) with a static KV cache.

The network only: embeddings, a post-norm decoder and the output layer. Sampling and the
decode loop live in `tts.models.sampling`. Parameter names match the checkpoint keys (after
the "model." prefix is stripped), so `load_state_dict(strict=True)` takes a real `.ckpt`.

Sequence layout of one item in the cache: [text phones (L) ; audio tokens (prompt P, then
generated)]. Text attends to text only, audio attends to all text and causally to audio.
Positions restart at 0 for the audio part, each part with its own sine table and `alpha`.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tts.models.onednn import linear, onednn_available, packed_linear, use_packed

BERT_DIM = 1024  # chinese-roberta-wwm-ext-large hidden size
LN_EPS = 1e-5
PE_INITIAL = 4000  # the reference precomputes 4000 positions and extends on demand


@dataclass(frozen=True)
class T2SConfig:
    hidden_dim: int = 512
    head: int = 16
    n_layer: int = 24
    vocab_size: int = 1025  # 1024 semantic codes + EOS
    phoneme_vocab_size: int = 732  # v2 (v1: 512 rows of which 322 are used)
    eos: int = 1024
    ffn_dim: int = 2048  # always 4 * hidden_dim in the reference (`linear_units` is ignored)

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.head

    @classmethod
    def from_checkpoint(cls, config: dict[str, Any]) -> T2SConfig:
        """From a `.ckpt` "config" dict (its `model` section)."""
        m = config.get("model", config)
        hidden = int(m["hidden_dim"])
        emb = int(m.get("embedding_dim", hidden))
        if emb != hidden:
            raise ValueError(f"embedding_dim {emb} != hidden_dim {hidden}")
        vocab = int(m["vocab_size"])
        eos = int(m.get("EOS", vocab - 1))
        if eos != vocab - 1:
            raise ValueError(f"EOS {eos} must be vocab_size - 1 ({vocab - 1})")
        head = int(m["head"])
        if hidden % head:
            raise ValueError(f"hidden_dim {hidden} is not divisible by head {head}")
        return cls(hidden_dim=hidden, head=head, n_layer=int(m["n_layer"]), vocab_size=vocab,
                   phoneme_vocab_size=int(m["phoneme_vocab_size"]), eos=eos, ffn_dim=4 * hidden)


def sine_table(n: int, dim: int) -> Tensor:
    """[n, dim] float32: sin on even channels, cos on odd ones (the reference's table)."""
    pos = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * -(math.log(10000.0) / dim))
    pe = torch.zeros(n, dim)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


class TokenEmbedding(nn.Module):
    def __init__(self, n: int, dim: int):
        super().__init__()
        self.word_embeddings = nn.Embedding(n, dim)

    def forward(self, ids: Tensor) -> Tensor:
        return self.word_embeddings(ids)


class SinePosition(nn.Module):
    """`x * 1 + alpha * pe[pos]` (scale=False, learnable scalar alpha)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.alpha = nn.Parameter(torch.ones(1))
        self.register_buffer("pe", sine_table(PE_INITIAL, dim), persistent=False)

    def extend(self, n: int) -> None:
        if n > self.pe.shape[0]:
            self.pe = sine_table(n, self.dim).to(self.pe.device)

    def forward(self, x: Tensor, pos: Tensor) -> Tensor:
        # x: (B, T, C), pos: (B, T) long
        return x + self.alpha * self.pe[pos].to(x.dtype)


class SelfAttention(nn.Module):
    """Multi-head attention with the fused `in_proj` of nn.MultiheadAttention and a static KV cache."""

    def __init__(self, cfg: T2SConfig):
        super().__init__()
        c = cfg.hidden_dim
        self.n_head, self.head_dim = cfg.head, cfg.head_dim
        self.in_proj_weight = nn.Parameter(torch.empty(3 * c, c))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * c))
        self.out_proj = nn.Linear(c, c)
        self.packed = False  # oneDNN-packed Linears (see `T2SModel.use_onednn`)
        nn.init.xavier_uniform_(self.in_proj_weight)
        self.in_proj: nn.Module | None = None  # set by `T2SModel.quantize_int8` (a quantised Linear)
        self.kv_cache: Tensor | None  # (2, max_batch, heads, max_len, head_dim): keys, then values
        self.register_buffer("kv_cache", None, persistent=False)

    @property
    def k_cache(self) -> Tensor | None:
        return None if self.kv_cache is None else self.kv_cache[0]

    @property
    def v_cache(self) -> Tensor | None:
        return None if self.kv_cache is None else self.kv_cache[1]

    def setup_cache(self, max_batch: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        shape = (2, max_batch, self.n_head, max_len, self.head_dim)
        self.kv_cache = torch.zeros(shape, dtype=dtype, device=device)

    def forward(self, x: Tensor, rows: Tensor, input_pos: Tensor, mask: Tensor | None, n_keys: int, start: int,
                residual: Tensor | None = None) -> Tensor:
        """Attention over cache keys 0..n_keys-1, then `out_proj` (plus `residual` when given).

        x: (B, T, C); rows: (B, 1) = arange(B); input_pos: (B, T); mask: (B, 1, T, n_keys) bool,
        True = may attend, or None when every query may attend to all `n_keys` keys.
        """
        assert self.kv_cache is not None, "Caches must be initialized first"
        B, T, C = x.shape
        if self.in_proj is not None:
            qkv = self.in_proj(x)
        elif use_packed(self.in_proj_weight, self.packed):
            qkv = packed_linear(x, self.in_proj_weight, self.in_proj_bias, self)
        else:
            qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.view(B, T, 3, self.n_head, self.head_dim)
        q = qkv[:, :, 0].transpose(1, 2)  # (B, nh, T, hs)
        kv = self.kv_cache[:, start:start + B]
        if mask is None and B == 1 and T == 1:  # a lone row's step: its key goes to position n_keys - 1
            kv[:, 0, :, n_keys - 1].copy_(qkv[0, 0, 1:])  # a plain view: ~10 us less than index_put
        else:
            # advanced indices (rows, pos) around a slice: the indexed view is (B, T, 2, nh, hs), so the
            # keys and values of every row and position are written in one call
            kv[:, rows, :, input_pos] = qkv[:, :, 1:]
        y = F.scaled_dot_product_attention(q, kv[0, :, :, :n_keys], kv[1, :, :, :n_keys], attn_mask=mask)
        return linear(y.transpose(1, 2).reshape(B, T, C), self.out_proj, self.packed, add=residual)


class DecoderLayer(nn.Module):
    """Post-norm: x = LN1(x + MHA(x)); x = LN2(x + FFN(x)), FFN with ReLU."""

    def __init__(self, cfg: T2SConfig):
        super().__init__()
        c = cfg.hidden_dim
        self.self_attn = SelfAttention(cfg)
        self.linear1 = nn.Linear(c, cfg.ffn_dim)
        self.linear2 = nn.Linear(cfg.ffn_dim, c)
        self.norm1 = nn.LayerNorm(c, eps=LN_EPS)
        self.norm2 = nn.LayerNorm(c, eps=LN_EPS)
        self.packed = False

    def forward(self, x: Tensor, rows: Tensor, input_pos: Tensor, mask: Tensor | None, n_keys: int,
                start: int) -> Tensor:
        # the residual adds and the ReLU ride in the Linears (fused on the oneDNN path)
        x = _norm(self.self_attn(x, rows, input_pos, mask, n_keys, start, residual=x), self.norm1)
        h = linear(x, self.linear1, self.packed, relu=True, keep_bf16=True)  # bf16 weights: h stays bf16
        return _norm(linear(h, self.linear2, self.packed, add=x), self.norm2)


def _norm(x: Tensor, ln: nn.LayerNorm) -> Tensor:
    return F.layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)


class Decoder(nn.Module):
    def __init__(self, cfg: T2SConfig):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_layer))


class T2SModel(nn.Module):
    """The T2S network. `onednn` (default on where available): float32 CPU Linears run through
    oneDNN-prepacked weights (`packed_linear`), same outputs up to rounding; see `use_onednn`."""

    def __init__(self, cfg: T2SConfig, onednn: bool = True):
        super().__init__()
        self.cfg = cfg
        c = cfg.hidden_dim
        self.bert_proj = nn.Linear(BERT_DIM, c)
        self.ar_text_embedding = TokenEmbedding(cfg.phoneme_vocab_size, c)
        self.ar_text_position = SinePosition(c)
        self.ar_audio_embedding = TokenEmbedding(cfg.vocab_size, c)
        self.ar_audio_position = SinePosition(c)
        self.h = Decoder(cfg)
        self.ar_predict_layer = nn.Linear(c, cfg.vocab_size, bias=False)
        self.max_batch = 0
        self.max_len = 0
        self.packed = False
        self.use_onednn(onednn)

    def use_onednn(self, enable: bool = True) -> T2SModel:
        """Switch the oneDNN-prepacked float32 CPU Linears on or off (in place; a no-op where
        oneDNN is missing). Other dtypes and devices always take the default path."""
        on = enable and onednn_available()
        for mod in self.modules():
            if isinstance(mod, (SelfAttention, DecoderLayer, T2SModel)):
                mod.packed = on
        return self

    @classmethod
    def from_checkpoint(cls, ckpt: Any, onednn: bool = True) -> T2SModel:
        """Build from a `tts.checkpoint.GPTCheckpoint` (fp32 weights, "model." stripped); eval mode."""
        model = cls(T2SConfig.from_checkpoint(ckpt.config), onednn=onednn)
        model.load_state_dict(ckpt.weights, strict=True)
        return model.eval()

    def quantize_int8(self, per_channel: bool = True) -> T2SModel:
        """A new model whose decoder Linears (fused in_proj, out_proj, FFN) are dynamic int8 (CPU only).

        Embeddings and the output layer stay in this model's dtype (float32). Weights are int8 per
        output channel (`per_channel`) or per tensor; activations are quantised per call. About 4x
        less weight memory traffic per token; logits move slightly, so greedy tokens can differ
        from float32 where two logits are close. This model is left unchanged.
        """
        from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

        if self.ar_predict_layer.weight.device.type != "cpu":
            raise ValueError("int8 dynamic quantisation runs on CPU only")
        new = self.copy().float()
        for layer in new.h.layers:
            att = layer.self_attn
            att.in_proj = _plain_linear(att.in_proj_weight, att.in_proj_bias)
            del att.in_proj_weight, att.in_proj_bias
        qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
        new.h = quantize_dynamic(new.h, {nn.Linear: qconfig}, dtype=torch.qint8)
        return new.eval()

    def copy(self) -> T2SModel:
        """A deep copy of the network without this model's KV cache or the decode batch that owns it
        (the copy sets up its own cache). Not to be called while this model is decoding."""
        owner = self.__dict__.pop("cache_owner", None)  # a DecodeBatch
        caches = [layer.self_attn.kv_cache for layer in self.h.layers]
        try:
            for layer in self.h.layers:
                layer.self_attn.kv_cache = None
            new = copy.deepcopy(self)
        finally:
            for layer, cache in zip(self.h.layers, caches):
                layer.self_attn.kv_cache = cache
            if owner is not None:
                self.cache_owner = owner
        new.max_batch = new.max_len = 0
        return new

    def bf16_weights(self) -> T2SModel:
        """Store the decoder Linears' weights and biases (fused in_proj, out_proj, FFN) in bfloat16,
        in place; returns self.

        Activations, LayerNorms, attention, the KV cache, embeddings and the output layer stay
        float32: each decoder Linear takes its float32 input in bfloat16 and hands back float32
        (`tts.models.onednn`). Half the weight bytes that every decode step streams, so faster on
        CPUs with native bfloat16 (AVX512-BF16, AMX); logits move by bfloat16 rounding, so greedy
        tokens can differ from float32 where two logits are close.
        """
        for layer in self.h.layers:
            att = layer.self_attn
            if att.in_proj is not None:
                raise ValueError("this model's decoder Linears are already quantised")
            for name in ("in_proj_weight", "in_proj_bias"):
                setattr(att, name, nn.Parameter(getattr(att, name).detach().to(torch.bfloat16), requires_grad=False))
            for mod in (att.out_proj, layer.linear1, layer.linear2):
                mod.to(torch.bfloat16).requires_grad_(False)
        return self

    def setup_caches(self, max_batch: int, max_len: int, dtype: torch.dtype | None = None) -> None:
        """Allocate the static KV cache: `max_batch` rows of `max_len` positions (text + audio)."""
        p = self.ar_predict_layer.weight
        dtype = dtype or p.dtype
        for layer in self.h.layers:
            layer.self_attn.setup_cache(max_batch, max_len, dtype, p.device)
        self.ar_text_position.extend(max_len)
        self.ar_audio_position.extend(max_len)
        self.max_batch, self.max_len = max_batch, max_len

    def embed_text(self, phones: Tensor, bert: Tensor) -> Tensor:
        """phones: (B, L) long, bert: (B, 1024, L) -> (B, L, C) with text positions 0..L-1."""
        b = bert.transpose(1, 2).to(self.bert_proj.weight.dtype)
        x = self.ar_text_embedding(phones) + linear(b, self.bert_proj, self.packed)
        pos = torch.arange(phones.shape[1], device=phones.device).expand_as(phones)
        return self.ar_text_position(x, pos)

    def embed_audio(self, tokens: Tensor, pos: Tensor) -> Tensor:
        """tokens, pos: (B, T) long (pos = index among the audio tokens) -> (B, T, C)."""
        return self.ar_audio_position(self.ar_audio_embedding(tokens), pos)

    def forward(self, x: Tensor, input_pos: Tensor, mask: Tensor | None, start: int = 0,
                n_keys: int | None = None) -> Tensor:
        """One pass over cache rows `start .. start+B-1`.

        Args:
            x: (B, T, C) embedded inputs.
            input_pos: (B, T) long, cache positions the inputs are written to.
            mask: (B, 1, T, S) bool, True = may attend; S <= max_len keys from position 0.
                None: every query attends to all `n_keys` keys (a lone row's decode step,
                whose keys are exactly the cache positions written so far).
            start: first cache row of this batch.
            n_keys: S when `mask` is None (ignored otherwise).
        Returns:
            (B, T, vocab_size) raw logits.
        """
        assert self.max_len > 0, "Caches must be initialized first"
        S = mask.shape[-1] if mask is not None else n_keys
        assert S is not None and start + x.shape[0] <= self.max_batch and S <= self.max_len
        rows = torch.arange(x.shape[0], device=x.device).unsqueeze(1)
        for layer in self.h.layers:
            x = layer(x, rows, input_pos, mask, S, start)
        return linear(x, self.ar_predict_layer, self.packed)


def _plain_linear(weight: nn.Parameter, bias: nn.Parameter | None) -> nn.Linear:
    """An nn.Linear sharing these parameters (the type `quantize_dynamic` converts)."""
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    lin.weight = weight
    if bias is not None:
        lin.bias = bias
    return lin


def prefill_mask(n_text: int, n_audio: int, device: torch.device | str = "cpu") -> Tensor:
    """(T, T) bool, True = may attend: text<->text full, text->audio blocked, audio causal."""
    t = n_text + n_audio
    mask = torch.ones(t, t, dtype=torch.bool, device=device).tril_()
    mask[:n_text, :n_text] = True
    return mask
