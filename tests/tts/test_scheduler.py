"""Orchestration of the scheduler with a scripted decode batch and vocoder (no models)."""
import asyncio
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from tts.errors import BusyError, CancelledError, TTSError
from tts.scheduler import Scheduler, SentenceJob
from tts.streams import AsyncChunkStream, ChunkStream


@dataclass
class _Res:
    req_id: object
    token: int | None
    finished: bool
    reason: str = ""


class ScriptedBatch:
    """Item `params` = number of tokens to produce; tokens count up from params*100."""

    def __init__(self, delay: float = 0.0):
        self.items: dict = {}
        self.delay = delay
        self.max_seen = 0

    def add(self, rid, phones, bert, prompt, params, n_text_phones):
        self.items[rid] = [params, 0]
        self.max_seen = max(self.max_seen, len(self.items))

    def remove(self, rid):
        self.items.pop(rid, None)

    def step(self):
        out = []
        for rid, st in list(self.items.items()):
            n, i = st
            st[1] += 1
            out.append(_Res(rid, n * 100 + i, i + 1 >= n))
            if i + 1 >= n:
                del self.items[rid]
        if self.delay:
            time.sleep(self.delay)
        return out


def _vocoder():
    return lambda toks, last: np.repeat(np.asarray(toks, np.float32), 4)


def _job(i, n, first=4, size=6, stream=True, silence=0):
    return SentenceJob(i, f"s{i}", "m", None, None, None, n, 1, _vocoder, first, size, stream, silence)


@pytest.fixture
def sched():
    batches = {}

    def make(key):
        batches[key] = ScriptedBatch(delay=0.001)
        return batches[key]

    s = Scheduler(make, max_batch=2, max_queue=3)
    s.batches = batches
    yield s
    s.close()


def _run(s, lengths, **kw):
    req = s.submit()
    for i, n in enumerate(lengths):
        s.add_sentence(req, _job(i, n, **kw))
    s.prep_finished(req)
    return ChunkStream(s, req)


def test_chunks_in_order_with_metadata(sched):
    chunks = list(_run(sched, [15, 7]))
    assert [(c.sentence_index, c.seq) for c in chunks] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert [c.tokens for c in chunks] == [4, 6, 5, 4, 3]
    assert [c.is_last for c in chunks] == [False, False, True, False, True]
    assert [c.is_final for c in chunks] == [False] * 4 + [True]
    toks = np.concatenate([c.pcm for c in chunks])[::4]
    assert toks.tolist() == list(range(1500, 1515)) + list(range(700, 707))
    assert all(c.pcm.dtype == np.float32 and c.sample_rate == 32000 for c in chunks)


def test_no_stream_one_chunk_per_sentence_and_silence(sched):
    chunks = list(_run(sched, [9, 5], stream=False, silence=10))
    assert [(c.sentence_index, c.tokens, c.is_last) for c in chunks] == [(0, 9, True), (1, 5, True)]
    assert len(chunks[0].pcm) == 9 * 4 + 10 and not chunks[0].pcm[-10:].any()


def test_concurrent_requests_share_the_batch_and_match_solo(sched):
    solo = [np.concatenate([c.pcm for c in _run(sched, [n, n + 1])]) for n in (10, 20, 30)]
    out = [None] * 3

    def go(k, n):
        out[k] = np.concatenate([c.pcm for c in _run(sched, [n, n + 1])])

    threads = [threading.Thread(target=go, args=(k, n)) for k, n in enumerate((10, 20, 30))]
    [t.start() for t in threads]
    [t.join(30) for t in threads]
    for a, b in zip(out, solo):
        np.testing.assert_array_equal(a, b)
    assert sched.batches["m"].max_seen == 2  # max_batch respected, and batching happened


def test_cancel_frees_the_slot(sched):
    stream = _run(sched, [10_000])
    first = next(stream)
    assert first.seq == 0
    stream.close()
    for _ in range(200):
        if sched.health()["active_items"] == 0 and not sched.batches["m"].items:
            break
        time.sleep(0.01)
    assert sched.health() | {} and sched.health()["active_items"] == 0
    assert sched.batches["m"].items == {}
    assert sched.stats().requests_cancelled == 1


def test_busy_when_queue_full():
    gate = threading.Event()

    class Blocking(ScriptedBatch):
        def step(self):
            gate.wait(5)
            return super().step()

    s = Scheduler(lambda k: Blocking(), max_batch=1, max_queue=2)
    try:
        reqs = [s.submit() for _ in range(2)]  # not started yet: both wait in the queue
        with pytest.raises(BusyError):
            s.submit()
        for r in reqs:
            s.cancel(r)
    finally:
        gate.set()
        s.close()


def test_prep_error_reaches_the_caller(sched):
    req = sched.submit()
    sched.prep_finished(req, TTSError("bad reference"))
    with pytest.raises(TTSError, match="bad reference"):
        list(ChunkStream(sched, req))


def test_close_cancels_pending():
    s = Scheduler(lambda k: ScriptedBatch(delay=0.01), max_batch=1, max_queue=4)
    req = s.submit()
    s.add_sentence(req, _job(0, 100_000))
    stream = ChunkStream(s, req)
    next(stream)
    s.close()
    with pytest.raises(CancelledError):
        for _ in stream:
            pass


async def test_astream_and_task_cancel(sched):
    req = sched.submit()
    sched.add_sentence(req, _job(0, 12))
    sched.prep_finished(req)
    chunks = [c async for c in AsyncChunkStream(sched, req)]
    assert sum(c.tokens for c in chunks) == 12 and chunks[-1].is_final

    req = sched.submit()
    sched.add_sentence(req, _job(0, 100_000))

    async def consume():
        async for _ in AsyncChunkStream(sched, req):
            await asyncio.sleep(0)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(200):
        if sched.health()["active_items"] == 0:
            break
        await asyncio.sleep(0.01)
    assert sched.health()["active_items"] == 0


def test_first_chunks_are_vocoded_first():
    batch = ScriptedBatch(delay=0.002)
    steps = {"n": 0}
    orig_step = batch.step

    def counting_step():
        steps["n"] += 1
        return orig_step()

    batch.step = counting_step
    log = []

    def vocoder(name):
        return lambda: (lambda toks, last: log.append((steps["n"], name)) or np.zeros(len(toks), np.float32))

    s = Scheduler(lambda k: batch, max_batch=4, max_queue=4)
    try:
        a = s.submit()
        s.add_sentence(a, SentenceJob(0, "a", "m", None, None, None, 100_000, 1, vocoder("a"), 1, 1))
        s.prep_finished(a)
        sa = ChunkStream(s, a)
        for _ in range(5):
            next(sa)
        def drain_a():  # keep a's outbox open; ends with a CancelledError when the scheduler closes
            try:
                for _ in sa:
                    pass
            except CancelledError:
                pass

        drain = threading.Thread(target=drain_a, daemon=True)
        drain.start()
        b = s.submit()
        s.add_sentence(b, SentenceJob(0, "b", "m", None, None, None, 5, 1, vocoder("b"), 1, 1))
        s.prep_finished(b)
        list(ChunkStream(s, b))
        sa.close()
        first_b = next(i for i, (_, name) in enumerate(log) if name == "b")
        same_step = [name for st, name in log if st == log[first_b][0]]
        assert same_step[0] == "b" and "a" in same_step  # b's first chunk goes before a's chunk of that step
    finally:
        s.close()


def test_calls_run_on_the_worker_between_steps(sched):
    assert sched.call(lambda: threading.current_thread().name).result(timeout=5) == "tts-worker"
    with pytest.raises(ZeroDivisionError):
        sched.call(lambda: 1 / 0).result(timeout=5)
    # a call made on the worker runs at once (no deadlock waiting for itself)
    nested = sched.call(lambda: sched.call(lambda: 41).result(timeout=1) + 1)
    assert nested.result(timeout=5) == 42
    # while sentences decode, queued calls interleave with the steps instead of stalling them
    order: list[str] = []
    req = sched.submit()
    sched.add_sentence(req, _job(0, 40, stream=False))
    sched.prep_finished(req)
    futs = [sched.call(lambda i=i: order.append(f"call{i}") or i) for i in range(3)]
    assert [f.result(timeout=10) for f in futs] == [0, 1, 2]
    assert order == ["call0", "call1", "call2"]
    assert len(list(ChunkStream(sched, req))) == 1
