"""The engine's scheduler: one worker thread owns the device and serves every request.

Each loop iteration:
  1. drops cancelled work (an item leaves the decode batch at the next step),
  2. admits the next prepared sentence of waiting requests into the shared decode batch of
     their GPT model (oldest request first) while it has free slots,
  3. runs ONE decode step for all active items of every batch,
  4. vocodes the chunks that are ready and pushes them to per-request bounded outboxes: first
     chunks of a sentence as one round, then the other chunks as a second round, so that time to
     first audio stays low under load. Within a round, vocoders that can plan (see `ChunkVocoder`)
     have their heavy parts run by one `vocode_batch` call (equal windows share a batch).

The scheduler knows nothing about models: a sentence arrives as a `SentenceJob` holding the
decode-batch inputs and a vocoder factory, so the orchestration can be tested on its own.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from tts.errors import BusyError, CancelledError, SynthesisError, TTSError
from tts.types import SAMPLE_RATE, AudioChunk

log = logging.getLogger(__name__)

END_OF_STREAM = object()  # the last item of a request's outbox (tts.streams reads it)


class Batch(Protocol):
    """What the scheduler needs of a decode batch (tts.models.sampling.DecodeBatch)."""

    def add(self, req_id: Any, phones: Any, bert: Any, prompt: Any, params: Any, n_text_phones: int) -> None: ...
    def step(self) -> list: ...
    def remove(self, req_id: Any) -> None: ...


ChunkVocoder = Callable[[list[int], bool], np.ndarray]  # (new tokens, is_final_chunk) -> pcm float32
# A vocoder may also offer `plan(new tokens, is_final_chunk) -> plan` and `complete(plan, result) -> pcm`;
# with a scheduler `vocode_batch(plans) -> results` (one result per plan, in order) the chunks of one
# round are then vocoded together. A plain callable is vocoded alone.
VocodeBatch = Callable[[list[Any]], list[Any]]


@dataclass
class SentenceJob:
    """One sentence ready for T2S: decode-batch inputs and how to vocode its tokens."""

    index: int
    text: str
    batch_key: Any  # which shared decode batch (one per GPT model)
    phones: Any  # [L] prompt + text phone ids
    bert: Any  # [1024, L]
    prompt: Any  # [P] prompt semantic tokens
    params: Any  # SamplingParams
    n_text_phones: int
    make_vocoder: Callable[[], ChunkVocoder]
    first_chunk_tokens: int = 10
    chunk_tokens: int = 24
    stream: bool = True
    tail_silence: int = 0  # samples of silence appended after the sentence


class Outbox:
    """A bounded per-request queue of chunks, readable from threads and from asyncio."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._q: deque = deque()
        self._cond = threading.Condition()
        self._waker: Callable[[], None] | None = None

    def room(self) -> bool:
        with self._cond:
            return len(self._q) < self.capacity

    def put(self, item: Any) -> None:
        with self._cond:
            self._q.append(item)
            self._cond.notify_all()
            waker = self._waker
        if waker is not None:
            try:
                waker()
            except RuntimeError:  # the consumer's event loop is closed: nobody is listening
                pass

    def get(self, timeout: float | None = None) -> Any:
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._q), timeout):
                raise TimeoutError
            return self._q.popleft()

    def get_nowait(self) -> Any:
        with self._cond:
            return self._q.popleft() if self._q else None

    def set_waker(self, waker: Callable[[], None] | None) -> None:
        with self._cond:
            self._waker = waker


@dataclass
class Request:
    """A synthesize() call as the worker sees it."""

    id: int
    outbox: Outbox
    created: float = field(default_factory=time.perf_counter)
    sentences: deque = field(default_factory=deque)  # prepared SentenceJobs, in order
    prep_done: bool = False
    error: BaseException | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    started: bool = False  # first sentence admitted to a batch
    finished: bool = False
    first_audio: float | None = None
    audio_samples: int = 0
    held: AudioChunk | None = None  # last chunk waiting to learn whether it is the final one


@dataclass
class _Active:
    """A sentence in flight: in the decode batch (t2s_done False) and/or being vocoded."""

    req: Request
    job: SentenceJob
    slot_id: Any
    tokens: list[int] = field(default_factory=list)
    vocoded: int = 0
    seq: int = 0
    t2s_done: bool = False
    vocoder: ChunkVocoder | None = None


@dataclass(frozen=True)
class Stats:
    """A snapshot of the engine's counters (the service's /metrics reads this)."""

    requests_total: int
    requests_active: int
    requests_failed: int
    requests_cancelled: int
    queue_depth: int
    active_items: int
    tokens_total: int
    audio_seconds_total: float
    busy_seconds_total: float
    first_chunk_ms_p50: float | None
    first_chunk_ms_p95: float | None
    rtf: float | None  # worker busy time / audio produced


class Scheduler:
    """Owns the worker thread. `make_batch(key)` builds a decode batch the first time a key is used."""

    def __init__(self, make_batch: Callable[[Any], Batch], max_batch: int, max_queue: int,
                 outbox_chunks: int = 64, name: str = "tts-worker", vocode_batch: VocodeBatch | None = None):
        self.make_batch = make_batch
        self.vocode_batch = vocode_batch
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.outbox_chunks = outbox_chunks
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._requests: dict[int, Request] = {}
        self._batches: dict[Any, Batch] = {}
        self._active: dict[Any, _Active] = {}  # slot_id -> item
        self._slot_ids = itertools.count(1)
        self._retired: set = set()
        self._first_ms: deque = deque(maxlen=512)
        self._calls: deque[tuple[Callable[[], Any], Future]] = deque()  # see `call`
        self._counters = dict(total=0, failed=0, cancelled=0, tokens=0, samples=0, busy=0.0)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # ---- caller side -------------------------------------------------------------------
    def submit(self) -> Request:
        """Admit a new request (its sentences come later via `add_sentence`)."""
        if self._stop.is_set():
            raise CancelledError("the engine is closed")
        with self._lock:
            pending = sum(1 for r in self._requests.values() if not r.started)
            if pending >= self.max_queue:
                raise BusyError(f"TTS queue is full ({pending} requests waiting); try again later")
            req = Request(next(self._ids), Outbox(self.outbox_chunks))
            self._requests[req.id] = req
            self._counters["total"] += 1
        return req

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run `fn()` on the worker thread between decode steps; returns its Future (on the worker
        itself it runs at once).

        Every multi-threaded torch op of the engine (model loading, prompts, BERT) goes through
        here: a second thread running such ops keeps a second OpenMP thread team alive, and with
        more OpenMP threads than cores every parallel region hands over through sleeping threads
        (decode steps ~1.5x slower on 2 cores; docs/performance.md).
        """
        fut: Future = Future()
        if threading.current_thread() is self._thread:
            _settle(fut, fn)
            return fut
        with self._lock:
            if self._stop.is_set():
                fut.set_exception(CancelledError("the engine is closed"))
                return fut
            self._calls.append((fn, fut))
        self._wake.set()
        return fut

    def add_sentence(self, req: Request, job: SentenceJob) -> None:
        with self._lock:
            req.sentences.append(job)
        self._wake.set()

    def prep_finished(self, req: Request, error: BaseException | None = None) -> None:
        with self._lock:
            req.prep_done = True
            if error is not None and req.error is None:
                req.error = error
        self._wake.set()

    def cancel(self, req: Request) -> None:
        req.cancelled.set()
        self._wake.set()

    def notify(self) -> None:
        self._wake.set()

    def retire_batch(self, key: Any) -> None:
        """Forget the decode batch of an evicted model once it has no active items."""
        with self._lock:
            self._retired.add(key)
        self._wake.set()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        with self._lock:
            reqs = list(self._requests.values())
            self._requests.clear()
            calls = list(self._calls)
            self._calls.clear()
        for _, fut in calls:
            if fut.set_running_or_notify_cancel():
                fut.set_exception(CancelledError("the engine was closed"))
        for r in reqs:
            if not r.finished:
                r.finished = True
                r.outbox.put(CancelledError("the engine was closed"))

    # ---- introspection -----------------------------------------------------------------
    def health(self) -> dict:
        with self._lock:
            return {
                "worker_alive": self._thread.is_alive(),
                "queue_depth": sum(1 for r in self._requests.values() if not r.started),
                "active_requests": len(self._requests),
                "active_items": sum(1 for a in self._active.values() if not a.t2s_done),
                "batches": len(self._batches),
            }

    def stats(self) -> Stats:
        with self._lock:
            c = dict(self._counters)
            firsts = sorted(self._first_ms)
            queue = sum(1 for r in self._requests.values() if not r.started)
            nreq = len(self._requests)
            items = sum(1 for a in self._active.values() if not a.t2s_done)
        audio_s = c["samples"] / SAMPLE_RATE

        def pct(q: float) -> float | None:
            return firsts[min(len(firsts) - 1, int(q * len(firsts)))] if firsts else None

        return Stats(c["total"], nreq, c["failed"], c["cancelled"], queue, items, c["tokens"],
                     audio_s, c["busy"], pct(0.5), pct(0.95), c["busy"] / audio_s if audio_s else None)

    # ---- worker ------------------------------------------------------------------------
    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while not self._stop.is_set():
                self._wake.clear()
                t0 = time.perf_counter()
                try:
                    did = self._iteration()
                except Exception as e:  # a bug must not kill the worker silently
                    log.exception("scheduler iteration failed")
                    self._fail_all(SynthesisError(f"synthesis failed: {e}"))
                    did = True
                if did:
                    with self._lock:
                        self._counters["busy"] += time.perf_counter() - t0
                else:
                    self._wake.wait(0.05)

    def _iteration(self) -> bool:
        did = self._run_calls()
        did |= self._reap()
        did |= self._admit()
        did |= self._step()
        did |= self._vocode()
        did |= self._finish_requests()
        if self._retired:
            self._drop_retired()
        return did

    def _run_calls(self) -> bool:
        """Queued `call`s: one per iteration while sentences are decoding (a burst of preparation
        work then delays each step by one call at most), all of them when idle."""
        ran = False
        while True:
            with self._lock:
                if not self._calls:
                    return ran
                fn, fut = self._calls.popleft()
            if fut.set_running_or_notify_cancel():
                _settle(fut, fn)
            ran = True
            if self._active:
                return ran

    def _drop_retired(self) -> None:
        busy = {a.job.batch_key for a in self._active.values() if not a.t2s_done}
        with self._lock:
            for key in [k for k in self._retired if k not in busy]:
                self._retired.discard(key)
                self._batches.pop(key, None)

    def _reap(self) -> bool:
        """Cancelled requests leave the batch now; their queued work is dropped."""
        did = False
        for sid, a in list(self._active.items()):
            if a.req.cancelled.is_set() or a.req.error is not None:
                if not a.t2s_done:
                    self._batches[a.job.batch_key].remove(sid)
                del self._active[sid]
                did = True
        with self._lock:
            for r in list(self._requests.values()):
                if r.cancelled.is_set() and not r.finished:
                    r.finished = True
                    r.sentences.clear()
                    self._counters["cancelled"] += 1
                    del self._requests[r.id]
                    did = True
        return did

    def _admit(self) -> bool:
        did = False
        with self._lock:
            waiting = sorted(self._requests.values(), key=lambda r: r.id)
        busy_reqs = {a.req.id for a in self._active.values() if not a.t2s_done}
        for r in waiting:
            if r.finished or r.error is not None or r.id in busy_reqs or not r.sentences:
                continue
            job = r.sentences[0]
            used = sum(1 for a in self._active.values() if not a.t2s_done and a.job.batch_key == job.batch_key)
            if used >= self.max_batch:
                continue
            with self._lock:
                r.sentences.popleft()
                r.started = True
            try:
                batch = self._batches.get(job.batch_key)
                if batch is None:
                    batch = self._batches[job.batch_key] = self.make_batch(job.batch_key)
                sid = next(self._slot_ids)
                batch.add(sid, job.phones, job.bert, job.prompt, job.params, job.n_text_phones)
            except TTSError as e:
                self._fail(r, e)
                continue
            except Exception as e:
                log.exception("decode batch add failed")
                self._fail(r, SynthesisError(f"synthesis failed: {e}"))
                continue
            self._active[sid] = _Active(r, job, sid)
            did = True
        return did

    def _step(self) -> bool:
        keys = {a.job.batch_key for a in self._active.values() if not a.t2s_done}
        for key in keys:
            for res in self._batches[key].step():
                a = self._active.get(res.req_id)
                if a is None:
                    continue
                if res.token is not None:
                    a.tokens.append(int(res.token))
                if res.finished:
                    a.t2s_done = True
                    with self._lock:
                        self._counters["tokens"] += len(a.tokens)
        return bool(keys)

    def _ready(self, a: _Active) -> int:
        """How many tokens of `a` are ready to vocode now (0: none)."""
        pending = len(a.tokens) - a.vocoded
        if a.t2s_done:
            return max(pending, 1)  # the closing chunk is due even with no new tokens
        if not a.job.stream:
            return 0
        need = a.job.first_chunk_tokens if a.seq == 0 else a.job.chunk_tokens
        return pending if pending >= need else 0

    def _vocode(self) -> bool:
        # only the oldest in-flight sentence of each request may emit (chunks stay in order)
        head: dict[int, _Active] = {}
        for a in self._active.values():
            h = head.get(a.req.id)
            if h is None or a.job.index < h.job.index:
                head[a.req.id] = a
        ready = [a for a in head.values()
                 if self._ready(a) and not a.req.cancelled.is_set() and a.req.outbox.room()]
        ready.sort(key=lambda a: (a.seq > 0, a.req.created))  # first chunks first, then oldest
        firsts = sum(1 for a in ready if a.seq == 0)
        for round_ in (ready[:firsts], ready[firsts:]):  # a first chunk never waits behind later chunks
            if round_:
                self._vocode_round(round_)
        return bool(ready)

    def _vocode_round(self, items: list[_Active]) -> None:
        """One chunk of each item: planned ones through one `vocode_batch` call, others one at a time."""
        planned: list[tuple[_Active, int, Any]] = []
        for a in items:
            new, last = a.tokens[a.vocoded:], a.t2s_done
            try:
                if a.vocoder is None:
                    a.vocoder = a.job.make_vocoder()
                if self.vocode_batch is not None and hasattr(a.vocoder, "plan"):
                    planned.append((a, len(new), a.vocoder.plan(new, last)))
                    continue
                pcm = a.vocoder(new, last) if (new or last) else np.zeros(0, np.float32)
            except Exception as e:
                self._vocoder_failed(a.req, e)
                continue
            self._emit(a, len(new), pcm)
        results = self._run_vocode_batch([p for _, _, p in planned])
        for (a, n, plan), res in zip(planned, results):
            try:
                if isinstance(res, BaseException):
                    raise res
                pcm = a.vocoder.complete(plan, res)  # type: ignore[union-attr]
            except Exception as e:
                self._vocoder_failed(a.req, e)
                continue
            self._emit(a, n, pcm)

    def _run_vocode_batch(self, plans: list[Any]) -> list[Any]:
        """Results of `vocode_batch(plans)`; when the batch fails, each plan runs alone so that a failure
        reaches only its own request (an exception in its result slot)."""
        if not plans or self.vocode_batch is None:
            return []
        try:
            results = list(self.vocode_batch(plans))
            if len(results) != len(plans):
                raise ValueError(f"vocode_batch returned {len(results)} results for {len(plans)} plans")
            return results
        except Exception as e:
            if len(plans) == 1:
                return [e]
            log.warning("batched vocoding of %d chunks failed; running them one at a time", len(plans),
                        exc_info=True)
        out: list[Any] = []
        for p in plans:
            try:
                out.append(self.vocode_batch([p])[0])
            except Exception as e:
                out.append(e)
        return out

    def _vocoder_failed(self, r: Request, e: Exception) -> None:
        if isinstance(e, TTSError):
            self._fail(r, e)
            return
        log.error("vocoder failed", exc_info=e)
        self._fail(r, SynthesisError(f"synthesis failed: {e}"))

    def _emit(self, a: _Active, n: int, pcm: Any) -> None:
        """Deliver the vocoded chunk of `a`'s next `n` tokens."""
        last = a.t2s_done
        pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
        if last and a.job.tail_silence:
            pcm = np.concatenate([pcm, np.zeros(a.job.tail_silence, np.float32)])
        a.vocoded += n
        chunk = AudioChunk(pcm, SAMPLE_RATE, a.job.index, a.seq, last, False, a.job.text, n,
                           meta={"request_id": a.req.id})
        a.seq += 1
        r = a.req
        now = time.perf_counter()
        with self._lock:
            self._counters["samples"] += len(pcm)
            if r.first_audio is None and len(pcm):
                r.first_audio = now
                self._first_ms.append(1000.0 * (now - r.created))
        if last:
            del self._active[a.slot_id]
        self._deliver(r, chunk)

    def _deliver(self, r: Request, chunk: AudioChunk) -> None:
        """Push a chunk. A sentence's last chunk is held only while it is unknown whether more
        sentences follow (preparation still running and nothing queued)."""
        if r.held is not None:
            r.outbox.put(r.held)
            r.held = None
        if not chunk.is_last:
            r.outbox.put(chunk)
            return
        more = any(a.req is r for a in self._active.values())
        with self._lock:
            more, known = more or bool(r.sentences), r.prep_done
        if more:
            r.outbox.put(chunk)
        elif known:
            r.outbox.put(replace(chunk, is_final=True))
        else:
            r.held = chunk

    def _finish_requests(self) -> bool:
        did = False
        in_flight = {a.req.id for a in self._active.values()}
        with self._lock:
            reqs = list(self._requests.values())
        for r in reqs:
            if r.finished:
                continue
            if r.error is not None:
                self._fail(r, r.error)
                did = True
                continue
            if r.prep_done and not r.sentences and r.id not in in_flight:
                if r.held is not None:
                    r.outbox.put(replace(r.held, is_final=True))
                    r.held = None
                r.finished = True
                r.outbox.put(END_OF_STREAM)
                with self._lock:
                    self._requests.pop(r.id, None)
                did = True
        return did

    def _fail(self, r: Request, err: BaseException) -> None:
        for sid, a in list(self._active.items()):
            if a.req is r:
                if not a.t2s_done:
                    self._batches[a.job.batch_key].remove(sid)
                del self._active[sid]
        if r.finished:
            return
        r.finished = True
        r.sentences.clear()
        r.outbox.put(err)
        with self._lock:
            self._counters["failed"] += 1
            self._requests.pop(r.id, None)

    def _fail_all(self, err: BaseException) -> None:
        with self._lock:
            reqs = list(self._requests.values())
        for r in reqs:
            self._fail(r, err)
        self._active.clear()
        self._batches.clear()


def _settle(fut: Future, fn: Callable[[], Any]) -> None:
    try:
        fut.set_result(fn())
    except BaseException as e:  # the caller re-raises it from `result()`
        fut.set_exception(e)
