"""Sampling and the one T2S decode path: `DecodeBatch` (continuous batching) and thin wrappers.

Sampling follows GPT-SoVITS (`AR/models/utils.py`), per row, in this order: repetition penalty
over every prompt and generated token (once per distinct token), top-p on the un-tempered
logits, temperature, top-k, softmax, then the exponential race `argmax(p / Exp(1))`. The EOS
is masked for the first `EOS_MIN_STEPS` steps; a row stops when the sampled token or the
argmax of the penalised logits is EOS (the token of that step is dropped), or when it reaches
its token limit (`token_limit`).

Each row owns a `torch.Generator`, so a seeded item decodes to the same tokens alone or in
any batch. Decode state lives on the device; one step does one host sync (tokens + stop flags).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from tts.errors import BusyError, TextTooLongError, TTSError
from tts.models.t2s import BERT_DIM, T2SModel, prefill_mask

log = logging.getLogger(__name__)

EOS_MIN_STEPS = 11  # the reference drops the EOS column while idx < 11 (>= 0.44 s of audio)


@dataclass(frozen=True)
class SamplingParams:
    """Per-item decode options (GPT-SoVITS api_v2 defaults).

    `early_stop_num` (-1 = off), `max_new_tokens` and the phone-proportional cap
    `tokens_per_phone * n_text_phones + token_slack` (None = off) all bound the new tokens;
    the smallest one applies.
    """

    top_k: int = 15  # <= 0: off
    top_p: float = 1.0  # 1.0: off
    temperature: float = 1.0
    repetition_penalty: float = 1.35
    seed: int | None = None  # None or -1: random
    early_stop_num: int = 2700  # hz(50) * max_sec(54) in the reference
    max_new_tokens: int = 1500  # 60 s at 25 Hz
    tokens_per_phone: float | None = 8.0  # speech runs ~2-4 tokens per phone; runaway decodes stop here
    token_slack: int = 30

    def __post_init__(self) -> None:
        if not 0.0 < self.top_p <= 1.0:
            raise TTSError(f"top_p must be in (0, 1], got {self.top_p}")
        if not self.temperature > 0.0:
            raise TTSError(f"temperature must be > 0, got {self.temperature}")
        if not self.repetition_penalty > 0.0:
            raise TTSError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.max_new_tokens < 1:
            raise TTSError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.tokens_per_phone is not None and self.tokens_per_phone <= 0:
            raise TTSError(f"tokens_per_phone must be > 0 or None, got {self.tokens_per_phone}")


def token_limit(params: SamplingParams, n_text_phones: int) -> tuple[int, str]:
    """The most new tokens an item may produce, and the name of the bound that sets it."""
    bounds = [(params.max_new_tokens, "max_tokens")]
    if params.early_stop_num is not None and params.early_stop_num > 0:
        bounds.append((params.early_stop_num, "early_stop"))
    if params.tokens_per_phone is not None:
        cap = int(params.tokens_per_phone * max(n_text_phones, 1)) + params.token_slack
        bounds.append((max(cap, EOS_MIN_STEPS + 1), "phone_cap"))
    return min(bounds)


@dataclass(frozen=True)
class DecodeItem:
    """One utterance: prompt phones then text phones, their BERT features, prompt semantic tokens."""

    phones: Tensor  # (L,) long, v1/v2 symbol ids
    bert: Tensor  # (1024, L), zeros for non-Chinese phones
    prompt: Tensor  # (P,) long semantic tokens; P = 0: reference-free
    n_text_phones: int | None = None  # phones to speak (without the prompt's); None: L


@dataclass(frozen=True)
class StepResult:
    req_id: object
    token: int | None  # None when the step ended the item by EOS
    finished: bool
    reason: str = ""  # "", "eos", "early_stop", "max_tokens", "phone_cap", "cache_full"
    logits: Tensor | None = None  # (vocab,) raw output logits of this step (record_logits only)


@dataclass(frozen=True)
class DecodeResult:
    tokens: Tensor  # (N,) long, new tokens, EOS excluded
    reason: str
    logits: Tensor | None = None  # (steps, vocab) raw logits when recorded


@dataclass(frozen=True)
class TokenChunk:
    tokens: Tensor  # (n,) long, may be empty only when is_last
    is_last: bool
    reason: str = ""


@dataclass
class _Row:
    req_id: object
    slot: int
    n_text: int  # L: text positions in the cache
    length: int  # tokens written to the cache (host mirror of cache_pos)
    limit: int
    limit_reason: str
    generator: torch.Generator
    noisy: bool  # needs the exponential race (top_k != 1)
    top_p: bool  # top_p < 1
    top_k: int
    fresh: bool = True  # logits come from the prefill, no forward this step
    n_new: int = 0
    logits: list[Tensor] = field(default_factory=list)


def sample(logits: Tensor, seen: Tensor, penalty: Tensor, top_p: Tensor | None, temperature: Tensor,
           top_k: Tensor, k_max: int, noise: Tensor | None, eos_allowed: Tensor, eos: int) -> tuple[Tensor, Tensor]:
    """Sample one token per row from raw logits, in the reference's order.

    Args:
        logits: (B, V) float32 raw logits (not modified).
        seen: (B, V) bool, tokens in the prompt or generated so far.
        penalty, temperature: (B,) float; top_p: (B,) float or None when no row uses it;
        top_k: (B,) long in 1..V; k_max: max of top_k; noise: (B, V) Exp(1) draws or None (greedy).
        eos_allowed: (B,) bool, False while the EOS is masked.
    Returns:
        tokens (B,) long and stop (B,) bool (sampled or argmax token is EOS).
    """
    rp = penalty.unsqueeze(1)
    logits = torch.where(seen, torch.where(logits < 0, logits * rp, logits / rp), logits)
    eos_col = logits[:, eos].clone()
    logits[:, eos] = torch.where(eos_allowed, eos_col, torch.full_like(eos_col, float("-inf")))
    argmax = logits.argmax(dim=-1)
    if top_p is not None:
        sorted_logits, sorted_idx = torch.sort(logits, descending=True)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop = cum > top_p.unsqueeze(1)
        drop[:, 0] = False
        drop &= (top_p < 1.0).unsqueeze(1)
        logits = logits.masked_fill(drop.scatter(1, sorted_idx, drop), float("-inf"))
    logits = logits / temperature.clamp_min(1e-5).unsqueeze(1)
    pivot = torch.topk(logits, k_max, dim=-1).values.gather(1, (top_k - 1).unsqueeze(1))
    logits = logits.masked_fill(logits < pivot, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    tokens = (probs if noise is None else probs / noise).argmax(dim=-1)
    stop = eos_allowed & ((tokens == eos) | (argmax == eos))
    return tokens, stop


class DecodeBatch:
    """Continuous-batching T2S decoder over a static KV cache of `max_batch` rows.

    `add` prefills an item into a free row; `step` runs one decode step for every active row
    and reports one `StepResult` each; finished and removed rows free their slot at once.

    A step runs the rows up to the highest busy slot over the keys written so far. With
    `static_shapes` it always runs all `max_batch` rows over all `max_len` keys: one fixed shape,
    so the owner of the device may swap `self.forward` for a compiled or CUDA-graphed `model`.
    `compile=True` does that here: static shapes and `torch.compile` of the step forward with
    frozen weights (prefill stays eager). On CPU at the real size it saves ~12-15% a step, costs
    ~40 s of compilation per batch shape, and attends over all `max_len` keys each step, so it pays
    only for long-lived batches with a modest `max_len` (see docs/speed-notes.md).

    The KV cache lives in the model's buffers: one live DecodeBatch per model instance (a newer
    one takes the cache over and the older one then refuses to run).
    """

    def __init__(self, model: T2SModel, max_batch: int, max_len: int, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None, record_logits: bool = False, static_shapes: bool = False,
                 compile: bool = False):
        p = model.ar_predict_layer.weight
        self.device = torch.device(device) if device is not None else p.device
        dtype = dtype or p.dtype
        if p.device != self.device or p.dtype != dtype:
            model.to(self.device, dtype)
        model.setup_caches(max_batch, max_len, dtype)
        model.cache_owner = self
        self.model, self.max_batch, self.max_len = model, max_batch, max_len
        self.eos, V = model.cfg.eos, model.cfg.vocab_size
        self.record_logits, self.static_shapes = record_logits, static_shapes or compile
        self.forward = model  # decode-step forward; replaceable by a compiled version of the same module
        if compile:
            self.forward = torch.compile(model, dynamic=False, options={"freezing": True})
        dev = self.device
        self._rows: list[_Row | None] = [None] * max_batch
        self._by_id: dict[object, _Row] = {}
        self._arange = torch.arange(max_len, device=dev)
        self.seen = torch.zeros(max_batch, V, dtype=torch.bool, device=dev)
        self.prefill_logits = torch.zeros(max_batch, V, device=dev)
        self.last = torch.zeros(max_batch, dtype=torch.long, device=dev)
        self.cache_pos = torch.zeros(max_batch, dtype=torch.long, device=dev)  # next write position
        self.text_len = torch.zeros(max_batch, dtype=torch.long, device=dev)
        self.steps = torch.zeros(max_batch, dtype=torch.long, device=dev)
        self.active = torch.zeros(max_batch, dtype=torch.bool, device=dev)
        self.fresh = torch.zeros(max_batch, dtype=torch.bool, device=dev)
        self.penalty = torch.ones(max_batch, device=dev)
        self.temperature = torch.ones(max_batch, device=dev)
        self.top_p = torch.ones(max_batch, device=dev)
        self.top_k = torch.ones(max_batch, dtype=torch.long, device=dev)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, req_id: object) -> bool:
        return req_id in self._by_id

    @property
    def free_slots(self) -> int:
        return self.max_batch - len(self._by_id)

    def _check(self, phones: Tensor, bert: Tensor, prompt: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        cfg = self.model.cfg
        if phones.dim() != 1 or phones.numel() == 0 or phones.dtype not in (torch.long, torch.int32):
            raise TTSError(f"phones must be a non-empty 1-D integer tensor, got {tuple(phones.shape)} {phones.dtype}")
        if int(phones.min()) < 0 or int(phones.max()) >= cfg.phoneme_vocab_size:
            raise TTSError(f"phone ids must be in [0, {cfg.phoneme_vocab_size})")
        if tuple(bert.shape) != (BERT_DIM, phones.numel()):
            raise TTSError(f"bert must be ({BERT_DIM}, {phones.numel()}), got {tuple(bert.shape)}")
        if prompt.dim() != 1:
            raise TTSError(f"prompt must be 1-D, got {tuple(prompt.shape)}")
        if prompt.numel() and (int(prompt.min()) < 0 or int(prompt.max()) >= cfg.eos):
            raise TTSError(f"prompt tokens must be in [0, {cfg.eos})")
        dev = self.device
        return phones.to(dev, torch.long), bert.to(dev), prompt.to(dev, torch.long)

    @torch.no_grad()
    def add(self, req_id: object, phones: Tensor, bert: Tensor, prompt: Tensor, params: SamplingParams,
            n_text_phones: int | None = None) -> None:
        """Prefill one item into a free row; its first token comes with the next `step()`.

        Args:
            phones: (L,) long, prompt phones then text phones; bert: (1024, L);
            prompt: (P,) long prompt semantic tokens, P = 0 for reference-free;
            n_text_phones: phones to speak (for the phone-proportional cap); None: L.
        """
        self._own()
        if req_id in self._by_id:
            raise TTSError(f"request {req_id!r} is already decoding")
        slot = next((i for i, r in enumerate(self._rows) if r is None), None)
        if slot is None:
            raise BusyError(f"all {self.max_batch} decode slots are busy")
        phones, bert, prompt = self._check(phones, bert, prompt)
        L, P = phones.numel(), prompt.numel()
        room = self.max_len - (L + P)
        if room <= EOS_MIN_STEPS:
            raise TextTooLongError(f"{L} phones + {P} prompt tokens leave no room in a cache of {self.max_len}")
        limit, why = token_limit(params, n_text_phones if n_text_phones is not None else L)
        if limit > room:
            log.debug("request %r: token limit %d cut to the cache's room %d", req_id, limit, room)
            limit, why = room, "cache_full"
        m = self.model
        x = m.embed_text(phones[None], bert[None])
        if P:
            x = torch.cat([x, m.embed_audio(prompt[None], torch.arange(P, device=self.device)[None])], dim=1)
        pos = torch.arange(L + P, device=self.device)[None]
        mask = prefill_mask(L, P, self.device)[None, None]
        self.prefill_logits[slot] = m(x, pos, mask, start=slot)[0, -1].float()
        self.seen[slot] = False
        if P:
            self.seen[slot, prompt] = True
        self.cache_pos[slot], self.text_len[slot], self.steps[slot] = L + P, L, 0
        self.active[slot], self.fresh[slot] = True, True
        self.penalty[slot], self.temperature[slot] = params.repetition_penalty, params.temperature
        self.top_p[slot] = params.top_p
        top_k = params.top_k if 0 < params.top_k <= m.cfg.vocab_size else m.cfg.vocab_size
        self.top_k[slot] = top_k
        gen = torch.Generator(device=self.device)
        if params.seed is None or params.seed < 0:
            gen.seed()
        else:
            gen.manual_seed(params.seed)
        row = _Row(req_id, slot, L, L + P, limit, why, gen, top_k != 1, params.top_p < 1.0, top_k)
        self._rows[slot] = row
        self._by_id[req_id] = row

    def _own(self) -> None:
        if getattr(self.model, "cache_owner", None) is not self:
            raise RuntimeError("another DecodeBatch has taken over this model's KV cache")

    def remove(self, req_id: object) -> None:
        """Cancel an item (no-op when unknown or already finished); frees its slot."""
        row = self._by_id.pop(req_id, None)
        if row is None:
            return
        self._rows[row.slot] = None
        self.active[row.slot], self.fresh[row.slot], self.cache_pos[row.slot] = False, False, 0
        self.top_k[row.slot] = 1  # a free row inside the stepped prefix must not exceed the busy rows' k_max

    def _logits(self, n: int, rows: list[_Row]) -> Tensor:
        """(n, V) float32 raw logits of this step for rows 0..n-1."""
        stale = [r for r in rows if not r.fresh]
        if not stale:
            return self.prefill_logits[:n].clone()
        B, S = (self.max_batch, self.max_len) if self.static_shapes else (n, max(r.length for r in stale) + 1)
        pos = self.cache_pos[:B]  # (B,)
        x = self.model.embed_audio(self.last[:B, None], (pos - self.text_len[:B]).clamp_min(0)[:, None])
        if B == 1 and not self.static_shapes:
            mask = None  # a lone row attends to every key written so far: S = its length + 1
        else:
            mask = (self._arange[:S] <= pos[:, None])[:, None, None, :]  # (B, 1, 1, S)
        out = self.forward(x, pos[:, None], mask, 0, S)[:n, -1].float()
        return torch.where(self.fresh[:n, None], self.prefill_logits[:n], out)

    @torch.no_grad()
    def step(self) -> list[StepResult]:
        """One decode step for every active row; finished rows leave the batch."""
        rows = [r for r in self._rows if r is not None]
        if not rows:
            return []
        self._own()
        n = max(r.slot for r in rows) + 1
        logits = self._logits(n, rows)
        noise = None
        if any(r.noisy for r in rows):
            noise = torch.ones_like(logits)
            for r in rows:
                if r.noisy:
                    noise[r.slot].exponential_(1.0, generator=r.generator)
        top_p = self.top_p[:n] if any(r.top_p for r in rows) else None
        tokens, stop = sample(logits, self.seen[:n], self.penalty[:n], top_p, self.temperature[:n],
                              self.top_k[:n], max(r.top_k for r in rows), noise,
                              self.steps[:n] >= EOS_MIN_STEPS, self.eos)
        self.seen[:n].scatter_(1, tokens[:, None], True)
        self.last[:n] = tokens
        self.cache_pos[:n] += self.active[:n] & ~self.fresh[:n]
        self.steps[:n] += self.active[:n]
        self.fresh[:n] = False
        raw = logits.cpu() if self.record_logits else None
        host = torch.stack([tokens, stop.long()]).tolist()  # the one host sync of a step
        return [self._advance(r, host[0][r.slot], bool(host[1][r.slot]), raw) for r in rows]

    def _advance(self, row: _Row, token: int, stop: bool, raw: Tensor | None) -> StepResult:
        if not row.fresh:
            row.length += 1
        row.fresh = False
        lg = raw[row.slot] if raw is not None else None
        if stop:
            self.remove(row.req_id)
            return StepResult(row.req_id, None, True, "eos", lg)
        row.n_new += 1
        if row.n_new >= row.limit:
            self.remove(row.req_id)
            return StepResult(row.req_id, token, True, row.limit_reason, lg)
        return StepResult(row.req_id, token, False, "", lg)


class Chunker:
    """Groups a token stream into chunks: the first after `first` tokens, then every `size`."""

    def __init__(self, first: int, size: int):
        if first < 1 or size < 1:
            raise TTSError(f"chunk sizes must be >= 1, got first={first} size={size}")
        self.first, self.size = first, size
        self.pending: list[int] = []
        self.emitted = 0

    def push(self, token: int) -> list[int] | None:
        self.pending.append(token)
        want = self.first if self.emitted == 0 else self.size
        if len(self.pending) < want:
            return None
        out, self.pending = self.pending, []
        self.emitted += 1
        return out

    def flush(self) -> list[int]:
        out, self.pending = self.pending, []
        return out


def _new_batch(model: T2SModel, items: Sequence[DecodeItem], params: Sequence[SamplingParams],
               record_logits: bool) -> DecodeBatch:
    need = 0
    for it, p in zip(items, params):
        n_text = it.n_text_phones if it.n_text_phones is not None else it.phones.numel()
        need = max(need, it.phones.numel() + it.prompt.numel() + token_limit(p, n_text)[0])
    return DecodeBatch(model, len(items), need, record_logits=record_logits)


def decode_batch(model: T2SModel, items: Sequence[DecodeItem], params: SamplingParams | Sequence[SamplingParams],
                 record_logits: bool = False) -> list[DecodeResult]:
    """Decode several items in one batch; each result equals the item's single decode."""
    plist = [params] * len(items) if isinstance(params, SamplingParams) else list(params)
    if len(plist) != len(items):
        raise TTSError(f"{len(items)} items but {len(plist)} sampling params")
    if not items:
        return []
    batch = _new_batch(model, items, plist, record_logits)
    for i, (it, p) in enumerate(zip(items, plist)):
        batch.add(i, it.phones, it.bert, it.prompt, p, it.n_text_phones)
    tokens: list[list[int]] = [[] for _ in items]
    logits: list[list[Tensor]] = [[] for _ in items]
    reasons = [""] * len(items)
    while len(batch):
        for r in batch.step():
            i = int(r.req_id)  # type: ignore[call-overload]
            if r.token is not None:
                tokens[i].append(r.token)
            if r.logits is not None:
                logits[i].append(r.logits)
            if r.finished:
                reasons[i] = r.reason
    return [DecodeResult(torch.tensor(t, dtype=torch.long), why, torch.stack(lg) if lg else None)
            for t, why, lg in zip(tokens, reasons, logits)]


def decode(model: T2SModel, item: DecodeItem, params: SamplingParams, record_logits: bool = False) -> DecodeResult:
    """Decode one item."""
    return decode_batch(model, [item], [params], record_logits)[0]


def decode_stream(model: T2SModel, item: DecodeItem, params: SamplingParams, first_chunk_tokens: int = 8,
                  chunk_tokens: int = 16) -> Iterator[TokenChunk]:
    """Decode one item, yielding token chunks as they are ready; the last chunk has `is_last`."""
    chunker = Chunker(first_chunk_tokens, chunk_tokens)
    batch = _new_batch(model, [item], [params], False)
    batch.add(0, item.phones, item.bert, item.prompt, params, item.n_text_phones)
    try:
        while True:
            (r,) = batch.step()
            out = chunker.push(r.token) if r.token is not None else None
            if r.finished:
                rest = (out or []) + chunker.flush()
                yield TokenChunk(torch.tensor(rest, dtype=torch.long), True, r.reason)
                return
            if out is not None:
                yield TokenChunk(torch.tensor(out, dtype=torch.long), False)
    finally:
        batch.remove(0)
