"""The TTS engine: owns device and dtype, loads and shares models, prepares requests and
hands them to the scheduler (tts/scheduler.py), whose single worker thread runs T2S and SoVITS.

    engine = Engine(EngineConfig(speakers_dir="speakers", models_dir="models"))
    for chunk in engine.synthesize("你好，世界。", "demo"):
        play(chunk.pcm)              # float32 mono, 32 kHz

Per request, in a small preparation pool: sentence splitting and the text frontend, so a slow
frontend never stalls decoding for other requests. The torch work of preparation (loading
models, the speaker prompt, BERT for Chinese segments) runs on the worker thread between decode
steps (`Scheduler.call`): one thread owns the intra-op thread team.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tts import pipeline as models_io
from tts.errors import EmptyTextError, SynthesisError, TextTooLongError, TTSError, UnsupportedLanguageError
from tts.frontend.symbols import JA_PITCH, PAD, PUNCTUATION, SPECIALS
from tts.frontend.symbols import ids as symbol_ids
from tts.models.onednn import native_bf16
from tts.scheduler import Request, Scheduler, SentenceJob, Stats
from tts.streams import AsyncChunkStream, ChunkStream
from tts.speakers import (PromptCache, ReferenceSet, Speaker, SpeakerPrompt, SpeakerRegistry,
                          prompt_key)
from tts.text_split import as_single_sentence, split_text
from tts.types import LANGUAGES, SAMPLE_RATE, AudioChunk, SynthesisOptions

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
           "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
CACHED_TEXT_CHARS = 64  # longer sentences are not kept in the engine's text cache
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# phone ids that are no speech: punctuation, pauses, UNK, Japanese pitch marks (the frontend's v2 table)
_SILENT_IDS = np.asarray(symbol_ids([PAD, *PUNCTUATION, *SPECIALS, *JA_PITCH], "v2"), np.int64)


@dataclass(frozen=True)
class EngineConfig:
    """Engine settings. Paths may be None where a feature is not used (e.g. no speakers folder)."""

    device: str = "cpu"
    dtype: str = "float32"  # float32 | float16 | bfloat16 (CPU always computes SoVITS in float32)
    speakers_dir: Path | None = None
    models_dir: Path | None = None
    cache_dir: Path | None = None  # on-disk prompt cache; None = memory only
    bert_dir: Path | None = None
    hubert_dir: Path | None = None
    g2pw_dir: Path | None = None
    max_batch: int = 8  # concurrent sentences in one T2S decode batch
    max_queue: int = 32  # requests waiting for their first decode step
    max_len: int = 1024  # KV cache length: prompt phones + text phones + prompt tokens + new tokens
    first_chunk_tokens: int = 10  # 0.4 s of audio
    chunk_tokens: int = 24
    tokens_per_phone: float = 8.0  # safety cap on new tokens per text phone
    max_text_chars: int = 2000
    model_cache_size: int = 2  # loaded GPT and SoVITS checkpoints kept (each)
    text_cache_size: int = 128  # short sentences whose phones + BERT features are kept: a repeated line skips both
    threads: int | None = None  # torch intra-op threads; None = torch's default
    prep_threads: int = 2
    outbox_chunks: int = 64
    # T2S decoder Linears, CPU only: "bf16" (bfloat16 weights, float32 activations: the parity set's
    # greedy tokens kept), "int8" (dynamic quantisation: faster, changes tokens), "none" (float32),
    # or "auto" (resolved here: bf16 on a float32 CPU engine whose CPU has native bfloat16, else none)
    t2s_quant: str = "auto"
    vocoder_dtype: str = "float32"  # SoVITS's HiFi-GAN only: float32 | bfloat16 | float16 (not on CPU)

    def __post_init__(self) -> None:
        if self.t2s_quant not in ("auto", "none", "int8", "bf16"):
            raise ValueError(f"unknown t2s_quant {self.t2s_quant!r}; use auto, none, int8 or bf16")
        if self.t2s_quant == "auto":
            fp32_cpu = self.torch_device.type == "cpu" and _DTYPES.get(self.dtype) == torch.float32
            object.__setattr__(self, "t2s_quant", "bf16" if fp32_cpu and native_bf16() else "none")
        if self.vocoder_dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"unknown vocoder_dtype {self.vocoder_dtype!r}; use float32, bfloat16 or float16")
        if self.vocoder_dtype == "float16" and self.torch_device.type == "cpu":
            raise ValueError("vocoder_dtype float16 needs a GPU; on CPU use bfloat16 (AVX512-BF16 or AMX)")

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        if self.dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; use one of {sorted(_DTYPES)}")
        return torch.float32 if self.torch_device.type == "cpu" else _DTYPES[self.dtype]


class _LRU:
    """Loaded checkpoints keyed by (path, mtime, size): speakers sharing weights share the model."""

    def __init__(self, capacity: int, load: Callable[[Path], Any], on_evict: Callable[[Any], None]):
        self.capacity, self._load, self._on_evict = capacity, load, on_evict
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}

    def get(self, path: Path) -> Any:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            klock = self._key_locks.setdefault(key, threading.Lock())
        with klock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            model = self._load(path)
            with self._lock:
                self._items[key] = model
                evicted = []
                while len(self._items) > self.capacity:
                    evicted.append(self._items.popitem(last=False)[1])
            for m in evicted:
                self._on_evict(m)
            return model

    def loaded(self) -> list[str]:
        with self._lock:
            return [Path(k[0]).name for k in self._items]


class Engine:
    """GPT-SoVITS v1/v2 synthesis for many concurrent callers (see module docstring)."""

    def __init__(self, config: EngineConfig):
        self.config = config
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device, self.dtype = config.torch_device, config.torch_dtype
        if config.g2pw_dir is not None:  # zh polyphones from the G2PW model instead of pypinyin
            from tts.frontend import zh

            zh.configure(config.g2pw_dir, config.bert_dir)
        self.registry = SpeakerRegistry(config.speakers_dir, config.models_dir) if config.speakers_dir else None
        self.prompts = PromptCache(config.cache_dir)
        self._gpts = _LRU(config.model_cache_size, self._load_gpt, self._retire)
        self._sovits = _LRU(config.model_cache_size, self._load_sovits, lambda m: None)
        self._shared_lock = threading.Lock()
        self._ssl: Any = None
        self._bert: Any = None
        self._pool = ThreadPoolExecutor(max(1, config.prep_threads), thread_name_prefix="tts-prep")
        self._sched = Scheduler(self._make_batch, config.max_batch, config.max_queue, config.outbox_chunks,
                                 vocode_batch=models_io.vocode_plans)
        self._closed = False
        self._prompt_settings = f"hubert={_dir_id(config.hubert_dir)};bert={_dir_id(config.bert_dir)}"
        # (text, language) -> (phone ids, BERT features, normalised text), read-only arrays; ~4 KB a phone,
        # so at most ~60 MB for 128 sentences of CACHED_TEXT_CHARS
        self._cached_features = functools.lru_cache(config.text_cache_size)(self._text_features)

    # ---- public API ---------------------------------------------------------------------
    def synthesize(self, text: str, speaker: str | Speaker,
                   options: SynthesisOptions = SynthesisOptions()) -> ChunkStream:
        """Start synthesising `text`; returns an iterator of AudioChunks (closing it cancels).

        Raises at once: UnknownSpeakerError, UnsupportedLanguageError, TextTooLongError, BusyError,
        EmptyTextError (nothing but punctuation). Errors found later (bad reference clip, frontend
        failure, EmptyTextError when no sentence has a phone to speak) are raised by the iterator,
        before any audio. Sentences without speech (emoji, Korean) are skipped.
        """
        return ChunkStream(self._sched, self._start(text, speaker, options))

    def astream(self, text: str, speaker: str | Speaker,
                options: SynthesisOptions = SynthesisOptions()) -> AsyncIterator[AudioChunk]:
        """The same as `synthesize` for asyncio; must be called inside a running event loop."""
        return AsyncChunkStream(self._sched, self._start(text, speaker, options))

    def synthesize_all(self, text: str, speaker: str | Speaker,
                       options: SynthesisOptions = SynthesisOptions()) -> np.ndarray:
        """Convenience: the whole request as one float32 array at SAMPLE_RATE."""
        parts = [c.pcm for c in self.synthesize(text, speaker, options)]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def warmup(self, speaker_ids: list[str] | None = None, text: str = "你好。Hello.") -> dict[str, str]:
        """Load every speaker's models and prompt and run one short synthesis, so that the first
        real request does not pay for loading (frontend dictionaries, BERT, HuBERT, caches).
        Returns {speaker id: error} of the speakers that failed (logged too)."""
        ids = self.speakers() if speaker_ids is None else speaker_ids
        failed: dict[str, str] = {}
        for sid in ids:
            try:
                for _ in self.synthesize(text, sid, SynthesisOptions(language="auto", seed=0)):
                    pass
            except TTSError as e:
                log.error("warm-up of speaker %s failed: %s", sid, e.message)
                failed[sid] = e.message
        return failed

    def speakers(self) -> list[str]:
        return self.registry.list() if self.registry else []

    def speaker(self, speaker: str | Speaker) -> Speaker:
        if isinstance(speaker, Speaker):
            return speaker
        if self.registry is None:
            from tts.errors import UnknownSpeakerError

            raise UnknownSpeakerError(speaker, [])
        return self.registry.get(speaker)

    def reload(self) -> dict[str, str]:
        """Re-read the speaker profiles; returns {speaker id: error} of the broken ones. A speaker whose
        profile turned invalid keeps serving its last good version (its error is listed all the same)."""
        return self.registry.reload() if self.registry else {}

    def health(self) -> dict:
        h = self._sched.health()
        h.update(device=str(self.device), dtype=str(self.dtype).removeprefix("torch."), t2s_quant=self.config.t2s_quant,
                 vocoder_dtype=self.config.vocoder_dtype,
                 gpt_models=self._gpts.loaded(), sovits_models=self._sovits.loaded(),
                 hubert_loaded=self._ssl is not None, bert_loaded=self._bert is not None,
                 text_cache_hits=self._cached_features.cache_info().hits,
                 speakers=len(self.speakers()),
                 speaker_errors=dict(self.registry.errors) if self.registry else {})
        return h

    def stats(self) -> Stats:
        return self._sched.stats()

    def close(self) -> None:
        """Stop the worker; pending and running requests end with CancelledError."""
        if self._closed:
            return
        self._closed = True
        self._sched.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- request preparation (caller thread, then the prep pool) -------------------------
    def _start(self, text: str, speaker: str | Speaker, options: SynthesisOptions) -> Request:
        sp = self.speaker(speaker)
        lang = (options.language or sp.profile.target_language).lower()
        if lang not in LANGUAGES:
            raise UnsupportedLanguageError(lang, LANGUAGES)
        if options.speed is not None and not 0.25 <= options.speed <= 4.0:
            raise TTSError(f"speed must be in [0.25, 4], got {options.speed}")
        if len(text) > self.config.max_text_chars:
            raise TextTooLongError(f"text has {len(text)} characters; the limit is {self.config.max_text_chars}")
        sentences = split_text(text, options.split_method) if options.split else as_single_sentence(text)
        if not sentences:  # only spaces and punctuation
            raise EmptyTextError()
        req = self._sched.submit()
        self._pool.submit(self._prepare, req, sp, sentences, lang, options)
        return req

    def _prepare(self, req: Request, sp: Speaker, sentences: list[str], lang: str,
                 options: SynthesisOptions) -> None:
        try:
            with torch.inference_mode():
                models: tuple | None = None  # loaded at the first sentence with speech
                spoken = 0
                for text in sentences:
                    if req.cancelled.is_set():
                        break
                    # the frontend first: a sentence without speech (emoji, Korean) has no Han, so
                    # no BERT runs for it, and is skipped (its phones would be the "." prefix alone)
                    phones, bert, _ = self._phones_and_bert(text, lang)
                    if not _has_speech(phones):
                        continue
                    if models is None:
                        gpt, vits = self._gpts.get(sp.gpt_path), self._sovits.get(sp.sovits_path)
                        prompt = self.prompt_for(sp.reference_for(options.emotion), sp.sovits_path, vits)
                        models = (gpt, vits, prompt, _resolve_seed(options.seed, sp.profile.seed))
                    gpt, vits, prompt, seed = models
                    job = self._sentence_job(spoken, text, phones, bert, sp, options, prompt, gpt, vits,
                                             seed + spoken)
                    self._sched.add_sentence(req, job)
                    spoken += 1
                if spoken == 0 and not req.cancelled.is_set():
                    raise EmptyTextError()
            self._sched.prep_finished(req)
        except TTSError as e:
            self._sched.prep_finished(req, e)
        except Exception as e:  # frontend/model bug: report it to the caller, keep serving others
            log.exception("request preparation failed")
            self._sched.prep_finished(req, SynthesisError(f"synthesis failed: {e}"))

    def prompt_for(self, ref: ReferenceSet, sovits_path: Path, vits: Any = None) -> SpeakerPrompt:
        """The cached prompt of a reference (computed on first use, then from memory or disk)."""
        key = prompt_key(ref, sovits_path, self._prompt_settings)
        model = vits if vits is not None else self._sovits.get(sovits_path)
        # only a miss goes to the worker: a cached prompt costs no wait for the next decode step
        return self.prompts.get_or_compute(key, lambda: self._on_worker(lambda: self._compute_prompt(ref, model)))

    def _on_worker(self, fn: Callable[[], Any]) -> Any:
        """`fn()` run on the worker thread (at once when already there); its result or exception."""
        return self._sched.call(fn).result()

    def _compute_prompt(self, ref: ReferenceSet, vits: Any) -> SpeakerPrompt:
        wav32k, wav16k = models_io.load_reference(ref.audio)
        specs = [models_io.spectrogram(wav32k)]
        for aux in ref.aux:
            specs.append(models_io.spectrogram(models_io.load_reference(aux)[0]))
        ge = models_io.style(vits, specs)
        if ref.text.strip():
            tokens = models_io.prompt_tokens(self._ssl_model(), vits, wav16k)
            text = _with_final_punct(ref.text.strip(), ref.language)
            phones, bert, norm = self._text_features(text, ref.language)  # PromptCache keeps it: not the text LRU
        else:  # reference-free mode: style only
            tokens = np.zeros(0, np.int64)
            phones, bert, norm = np.zeros(0, np.int64), np.zeros((1024, 0), np.float32), ""
        return SpeakerPrompt(tokens, ge, phones, bert, norm)

    def _phones_and_bert(self, text: str, lang: str) -> tuple[np.ndarray, np.ndarray, str]:
        """`_text_features`, from the LRU cache (`text_cache_size`) for sentences of up to
        `CACHED_TEXT_CHARS` characters (stock phrases repeat; long texts rarely do and are large)."""
        if len(text) > CACHED_TEXT_CHARS:
            return self._text_features(text, lang)
        return self._cached_features(text, lang)

    def _text_features(self, text: str, lang: str) -> tuple[np.ndarray, np.ndarray, str]:
        """Phone ids [L] and BERT features [1024, L] (read-only); BERT only for zh segments."""
        segments = models_io.to_segments(text, lang)
        ids = [i for s in segments for i in s.ids]  # to_segments already prefixes "." below 6 phones
        need_bert = any(s.lang == "zh" for s in segments) and _HAN.search(text) is not None
        zh = [s for s in segments if need_bert and s.lang == "zh"]
        done = iter(self._on_worker(lambda: [np.asarray(models_io.bert(self._bert_model(), s), np.float32)
                                             for s in zh]) if zh else [])
        feats = [next(done) if need_bert and s.lang == "zh" else np.zeros((1024, len(s.ids)), np.float32)
                 for s in segments]
        bert = np.concatenate(feats, axis=1) if feats else np.zeros((1024, 0), np.float32)
        norm = "".join(s.norm_text for s in segments)
        phones = np.asarray(ids, np.int64)
        phones.flags.writeable = bert.flags.writeable = False  # shared by every request of this text
        return phones, bert, norm

    def _sentence_job(self, index: int, text: str, phones: np.ndarray, bert: np.ndarray, sp: Speaker,
                      options: SynthesisOptions, prompt: SpeakerPrompt, gpt: Any, vits: Any,
                      seed: int) -> SentenceJob:
        prof = sp.profile
        params = models_io.sampling_params(
            top_k=_pick(options.top_k, prof.top_k), top_p=_pick(options.top_p, prof.top_p),
            temperature=_pick(options.temperature, prof.temperature),
            repetition_penalty=_pick(options.repetition_penalty, prof.repetition_penalty),
            seed=seed, tokens_per_phone=self.config.tokens_per_phone)
        all_phones = torch.from_numpy(np.concatenate([prompt.phones, phones])).to(self.device)
        all_bert = torch.from_numpy(np.concatenate([prompt.bert, bert], axis=1)).to(self.device, self.dtype)
        prompt_t = torch.from_numpy(prompt.prompt_tokens).to(self.device)
        speed = _pick(options.speed, prof.speed_factor)
        text_phones = torch.tensor(phones, device=self.device)  # a copy: the cached array is read-only
        ge = torch.from_numpy(prompt.ge).to(self.device)

        def make_vocoder() -> Callable[[list[int], bool], np.ndarray]:
            return models_io.ChunkVocoder(vits, text_phones, ge, speed, options.noise_scale, seed,
                                          self.device)

        return SentenceJob(
            index=index, text=text, batch_key=gpt, phones=all_phones, bert=all_bert, prompt=prompt_t,
            params=params, n_text_phones=len(phones), make_vocoder=make_vocoder,
            first_chunk_tokens=options.first_chunk_tokens or self.config.first_chunk_tokens,
            chunk_tokens=options.chunk_tokens or self.config.chunk_tokens, stream=options.stream,
            tail_silence=int(round(options.fragment_interval * SAMPLE_RATE)))

    # ---- models ---------------------------------------------------------------------------
    # the LRUs look up in the caller's thread; only a load (a miss) runs on the worker
    def _load_gpt(self, path: Path) -> Any:
        return self._on_worker(lambda: models_io.load_t2s(path, self.device, self.dtype, self.config.t2s_quant))

    def _load_sovits(self, path: Path) -> Any:
        return self._on_worker(lambda: models_io.load_vits(path, self.device, self.config.vocoder_dtype))

    def _make_batch(self, gpt: Any) -> Any:
        return models_io.decode_batch(gpt, self.config.max_batch, self.config.max_len, self.device, self.dtype)

    def _retire(self, gpt: Any) -> None:
        self._sched.retire_batch(gpt)

    def _ssl_model(self) -> Any:
        with self._shared_lock:
            if self._ssl is None:
                self._ssl = models_io.load_ssl(self.config.hubert_dir, self.device)
            return self._ssl

    def _bert_model(self) -> Any:
        with self._shared_lock:
            if self._bert is None:
                self._bert = models_io.load_bert(self.config.bert_dir, self.device)
            return self._bert


def _has_speech(phones: np.ndarray) -> bool:
    """Whether phone ids hold any phone that is not punctuation, a pause or a mark."""
    return bool(np.isin(phones, _SILENT_IDS, invert=True).any())


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _resolve_seed(option: int | None, profile: int) -> int:
    seed = option if option is not None else profile
    if seed is None or seed < 0:
        seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    return seed


def _with_final_punct(text: str, lang: str) -> str:
    if text[-1] in "。.!?！？…,，;；:：":
        return text
    return text + ("." if lang == "en" else "。")


def _dir_id(path: Path | None) -> str:
    if path is None:
        return "-"
    p = Path(path)
    files = sorted(f for f in p.glob("*") if f.is_file()) if p.is_dir() else []
    return ",".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)


def chunks_to_audio(chunks: Iterator[AudioChunk]) -> np.ndarray:
    """Join chunks into one float32 array."""
    parts = [c.pcm for c in chunks]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


__all__ = ["Engine", "EngineConfig", "chunks_to_audio", "replace"]
