"""Batched SoVITS vocoding: streaming steps of several sentences planned, vocoded as one batch where the
window shapes are equal, and completed give the same audio as each decoder run alone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tts.checkpoint import load_sovits
from tts.models.vits import SynthesizerTrn, vocode_windows


@pytest.fixture(scope="module")
def model(demo_models, one_thread) -> SynthesizerTrn:
    return SynthesizerTrn.from_checkpoint(load_sovits(demo_models["sovits"]))


@pytest.fixture
def dec_batches(model):
    """Batch sizes the vocoder (HiFi-GAN) was called with."""
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
