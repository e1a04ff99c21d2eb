"""Batched SoVITS vocoding: streaming steps of several sentences planned, vocoded as one batch where the
window shapes are equal, and completed give the same audio as each decoder run alone."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tts.checkpoint import load_sovits
from tts.errors import TTSError
from tts.models import vits
from tts.models.vits import SynthesizerTrn, VocodeWindow, vocode_windows
from tts.pipeline import ChunkVocoder, vocode_plans
from tts.scheduler import Scheduler, SentenceJob
from tts.streams import ChunkStream


@pytest.fixture(scope="module")
def model(demo_models, one_thread) -> SynthesizerTrn:
    return SynthesizerTrn.from_checkpoint(load_sovits(demo_models["sovits"]))


@pytest.fixture
def dec_batches(model, monkeypatch):
    """Batch sizes the vocoder (HiFi-GAN) was called with; the CPU frame budget lifted, so that batches
    form at every window length (test_cpu_frame_budget covers the budget)."""
    monkeypatch.setattr(vits, "CPU_BATCH_FRAMES", 10_000)
    sizes: list[int] = []
    handle = model.dec.register_forward_hook(lambda mod, args, out: sizes.append(int(args[0].shape[0])))
    yield sizes
    handle.remove()


def _sentences(n: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        n_tok, n_ph = 40 + 3 * i, 9 + 2 * i  # different sentences: lengths, phones, style, noise seed
        out.append(dict(codes=torch.randint(0, 1024, (n_tok,), generator=g).tolist(),
                        phones=torch.randint(0, 732, (n_ph,), generator=g),
                        ge=torch.randn(1, 512, 1, generator=g) * 0.1, seed=100 + i))
    return out


def _decoder(model, s, noise_scale=0.5):
    return model.decode_streaming(s["phones"], s["ge"], noise_scale=noise_scale,
                                  generator=torch.Generator().manual_seed(s["seed"]))


def _chunks(codes, sizes):
    out, a = [], 0
    for n in sizes:
        out.append(codes[a:a + n])
        a += n
    return out + [codes[a:]]  # the rest goes with the final step


def _alone(model, s, sizes, noise_scale=0.5) -> torch.Tensor:
    d = _decoder(model, s, noise_scale)
    parts = _chunks(s["codes"], sizes)
    outs = [d.push(c) for c in parts[:-1]] + [d.push(parts[-1]), d.finish()]
    return torch.cat(outs)


def _batched(model, sents, sizes_of, noise_scale=0.5, max_batch=8) -> list[torch.Tensor]:
    decs = [_decoder(model, s, noise_scale) for s in sents]
    parts = [_chunks(s["codes"], sizes_of(i)) for i, s in enumerate(sents)]
    outs: list[list[torch.Tensor]] = [[] for _ in sents]
    for step in range(max(len(p) for p in parts) + 1):
        plans = []
        for i, (d, p) in enumerate(zip(decs, parts)):
            if step < len(p):
                plans.append((i, d.plan(p[step])))
            elif step == len(p):
                plans.append((i, d.plan(final=True)))
        live = [(i, pl) for i, pl in plans if pl.window is not None]
        audio = vocode_windows([pl.window for _, pl in live], max_batch=max_batch)
        got = {i: a for (i, _), a in zip(live, audio)}
        for i, pl in plans:
            outs[i].append(decs[i].complete(pl, got.get(i)))
    return [torch.cat(o) for o in outs]


@pytest.mark.parametrize("noise_scale", [0.0, 0.5])
def test_equal_windows_batch_and_match_alone(model, dec_batches, noise_scale):
    sents = _sentences(4)
    sizes = [10, 12, 12]  # the same chunking for every sentence: equal windows at every step but the last
    alone = [_alone(model, s, sizes, noise_scale) for s in sents]
    dec_batches.clear()
    batched = _batched(model, sents, lambda i: sizes, noise_scale)
    assert 4 in dec_batches  # the equal windows really ran as one batch
    for a, b in zip(alone, batched):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


def test_batch_size_is_capped(model, dec_batches):
    sents = _sentences(3, seed=1)
    alone = [_alone(model, s, [10, 12]) for s in sents]
    dec_batches.clear()
    batched = _batched(model, sents, lambda i: [10, 12], max_batch=2)
    assert max(dec_batches) == 2 and 1 in dec_batches
    for a, b in zip(alone, batched):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


def test_different_windows_are_not_grouped_but_correct(model, dec_batches):
    sents = _sentences(3, seed=2)
    sizes = {0: [10, 12, 12], 1: [8, 12, 9], 2: [6, 14, 12]}  # first windows all differ
    alone = [_alone(model, s, sizes[i]) for i, s in enumerate(sents)]
    dec_batches.clear()
    batched = _batched(model, sents, lambda i: sizes[i])
    assert dec_batches[:3] == [1, 1, 1]  # step one: three shapes, three calls
    for a, b in zip(alone, batched):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


def test_cpu_frame_budget(model, dec_batches, monkeypatch):
    g = torch.Generator().manual_seed(9)
    wins = [VocodeWindow(model, torch.randn(1, 192, 30, generator=g), torch.randn(1, 512, 1, generator=g), 4)
            for _ in range(5)]
    alone = [vocode_windows([w])[0] for w in wins]
    monkeypatch.setattr(vits, "CPU_BATCH_FRAMES", 40)
    dec_batches.clear()
    batched = vocode_windows(wins)  # 40 frames: one 30-frame window a batch
    assert dec_batches == [1] * 5
    dec_batches.clear()
    batched = vocode_windows(wins, max_frames=90)
    assert dec_batches == [3, 2]
    assert all(a.shape == (26 * model.hop_length,) for a in batched)
    for a, b in zip(alone, batched):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


def test_plans_made_ahead_complete_in_order(model):
    s = _sentences(1)[0]
    d = _decoder(model, s)
    plans = [d.plan(s["codes"][:10]), d.plan(s["codes"][10:]), d.plan(final=True)]  # windows need no audio
    with pytest.raises(AssertionError):
        d.complete(plans[1], None)
    audio = vocode_windows([p.window for p in plans])
    got = torch.cat([d.complete(p, a) for p, a in zip(plans, audio)])
    torch.testing.assert_close(got, _alone(model, s, [10]), atol=0, rtol=0)
    with pytest.raises(AssertionError):
        d.plan([1])
    assert np.isfinite(got.numpy()).all()


# ---- through the scheduler: real vocoders, scripted T2S tokens ---------------------------------------


class GatedBatch:
    """A scripted decode batch: item `params` = the tokens it produces, one a step; no step produces
    anything before `n` items are in, so that requests added one by one stay in phase."""

    def __init__(self, n: int):
        self.n, self.items, self.started = n, {}, False

    def add(self, rid, phones, bert, prompt, params, n_text_phones):
        self.items[rid] = list(params)

    def remove(self, rid):
        self.items.pop(rid, None)

    def step(self):
        self.started |= len(self.items) >= self.n
        if not self.started:
            return []
        out = []
        for rid, toks in list(self.items.items()):
            out.append(SimpleNamespace(req_id=rid, token=toks.pop(0), finished=not toks, reason=""))
            if not toks:
                del self.items[rid]
        return out


class PlanFails(ChunkVocoder):
    """A real vocoder whose planning fails from its `at`-th chunk on."""

    def __init__(self, *a, at: int = 1, **kw):
        super().__init__(*a, **kw)
        self.at, self.calls = at, 0

    def plan(self, tokens, final):
        self.calls += 1
        if self.calls > self.at:
            raise RuntimeError("plan failed")
        return super().plan(tokens, final)


def _requests(n: int) -> list[dict]:
    out = []
    for i, s in enumerate(_sentences(n, seed=5)):
        out.append(dict(s, codes=s["codes"][: 26 + 4 * i]))  # equal first/middle chunks, different ends
    return out


def _job(model, r, vocoder=ChunkVocoder, **kw):
    def make():
        return vocoder(model, r["phones"], r["ge"].reshape(-1), 1.0, 0.5, r["seed"], torch.device("cpu"), **kw)

    return SentenceJob(0, "s", "m", None, None, None, r["codes"], len(r["phones"]), make,
                       first_chunk_tokens=6, chunk_tokens=10)


def _serve(model, reqs, vocoders=None, vocode_batch=vocode_plans):
    """Run the requests together (all in phase); returns per request its audio or its error."""
    vocoders = vocoders or {}
    s = Scheduler(lambda key: GatedBatch(len(reqs)), max_batch=8, max_queue=8, vocode_batch=vocode_batch)
    try:
        streams = []
        for i, r in enumerate(reqs):
            req = s.submit()
            s.add_sentence(req, _job(model, r, **vocoders.get(i, {})))
            s.prep_finished(req)
            streams.append(ChunkStream(s, req))
        out = []
        for st in streams:
            try:
                out.append(np.concatenate([c.pcm for c in st]))
            except TTSError as e:
                out.append(e)
        return out
    finally:
        s.close()


def test_scheduler_batches_requests_and_matches_solo(model, dec_batches):
    reqs = _requests(4)
    solo = [_serve(model, [r])[0] for r in reqs]
    assert max(dec_batches) == 1
    dec_batches.clear()
    together = _serve(model, reqs)
    assert dec_batches.count(4) >= 2  # first chunks as one batch, then the equal middle chunks
    for a, b in zip(together, solo):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    unbatched = _serve(model, reqs, vocode_batch=None)  # one-shot vocoder calls: the same audio
    for a, b in zip(unbatched, solo):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_failing_plan_fails_only_its_request(model):
    reqs = _requests(3)
    solo = [_serve(model, [r])[0] for r in reqs]
    out = _serve(model, reqs, vocoders={1: dict(vocoder=PlanFails, at=1)})
    assert isinstance(out[1], TTSError) and "plan failed" in str(out[1])
    for i in (0, 2):
        np.testing.assert_allclose(out[i], solo[i], atol=1e-5, rtol=0)


def test_failing_batch_retries_alone_and_fails_only_the_culprit(model):
    reqs = _requests(3)
    solo = [_serve(model, [r])[0] for r in reqs]
    poison = reqs[2]["ge"].reshape(-1)
    calls = []

    def flaky(plans):
        calls.append(len(plans))
        mine = any(torch.equal(st.window.ge.reshape(-1), poison) for p in plans for st in p if st.window is not None)
        if mine and len(calls) > 1:  # request 2's chunks fail from its second chunk on
            raise RuntimeError("device error")
        return vocode_plans(plans)

    out = _serve(model, reqs, vocode_batch=flaky)
    assert isinstance(out[2], TTSError) and "device error" in str(out[2])
    assert calls[:5] == [3, 3, 1, 1, 1]  # the failed batch of middle chunks was rerun one plan at a time
    for i in (0, 1):
        np.testing.assert_allclose(out[i], solo[i], atol=1e-5, rtol=0)


def test_first_chunks_run_before_later_chunks():
    rounds: list[list[str]] = []

    class Named:
        def __init__(self, name):
            self.name, self.n = name, 0

        def __call__(self, toks, last):  # pragma: no cover - the scheduler plans instead
            raise AssertionError("one-shot path used")

        def plan(self, toks, last):
            self.n += 1
            return f"{self.name}{self.n}"

        def complete(self, plan, res):
            return np.zeros(4, np.float32)

    def batch(plans):
        rounds.append(list(plans))
        return [None] * len(plans)

    s = Scheduler(lambda key: GatedBatch(2), max_batch=4, max_queue=4, vocode_batch=batch)
    try:
        streams = []
        for name, first in (("a", 1), ("b", 2)):  # b's first chunk is due with a's second
            req = s.submit()
            s.add_sentence(req, SentenceJob(0, name, "m", None, None, None, [1] * 5, 1,
                                            lambda name=name: Named(name), first, 1))
            s.prep_finished(req)
            streams.append(ChunkStream(s, req))
        for st in streams:
            list(st)
    finally:
        s.close()
    assert rounds[:3] == [["a1"], ["b1"], ["a2"]]  # same iteration: b's first chunk in its own round first
    assert ["a3", "b2"] in rounds  # later chunks of both share a round
