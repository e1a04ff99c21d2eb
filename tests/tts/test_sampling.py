"""Sampling rules and the decode path: DecodeBatch, decode, decode_batch, decode_stream."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tts.checkpoint import load_gpt
from tts.errors import BusyError, TextTooLongError, TTSError
from tts.factory import write_tiny_gpt
from tts.models.sampling import (EOS_MIN_STEPS, Chunker, DecodeBatch, DecodeItem, SamplingParams, decode,
                                 decode_batch, decode_stream, sample, token_limit)
from tts.models.t2s import T2SModel

pytestmark = pytest.mark.usefixtures("one_thread")

EOS = 1024


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> T2SModel:
    path: Path = write_tiny_gpt(tmp_path_factory.mktemp("gpt") / "tiny.ckpt", seed=0)
    return T2SModel.from_checkpoint(load_gpt(path))


def make_item(n_text: int, n_prompt_phones: int = 0, n_prompt: int = 0, seed: int = 0) -> DecodeItem:
    g = torch.Generator().manual_seed(seed)
    L = n_text + n_prompt_phones
    return DecodeItem(torch.randint(0, 732, (L,), generator=g), torch.randn(1024, L, generator=g),
                      torch.randint(0, 1024, (n_prompt,), generator=g), n_text)


def run_sample(logits, seen=None, penalty=1.0, top_p=None, temperature=1.0, top_k=1, noise=None, eos_ok=True):
    B, V = logits.shape
    seen = torch.zeros(B, V, dtype=torch.bool) if seen is None else seen
    return sample(logits, seen, torch.full((B,), penalty), None if top_p is None else torch.full((B,), top_p),
                  torch.full((B,), temperature), torch.full((B,), top_k, dtype=torch.long), top_k, noise,
                  torch.full((B,), eos_ok), EOS)


# ---- sample(): the reference's order of operations -------------------------------------------------

def test_repetition_penalty_divides_positive_and_multiplies_negative():
    logits = torch.zeros(1, 1025)
    logits[0, 3], logits[0, 4], logits[0, 5] = 2.0, 1.9, -0.1
    seen = torch.zeros(1, 1025, dtype=torch.bool)
    seen[0, 3] = True
    tok, _ = run_sample(logits, seen, penalty=1.35)
    assert tok.item() == 4  # 2.0 / 1.35 < 1.9
    logits[0] = -1.0
    logits[0, 3], logits[0, 4] = -0.5, -0.6
    seen[0, 4] = False
    tok, _ = run_sample(logits, seen, penalty=1.35)
    assert tok.item() == 4  # -0.5 * 1.35 < -0.6
    assert logits[0, 3] == -0.5  # the caller's raw logits are untouched


def test_eos_masked_until_allowed_and_argmax_stop_uses_penalised_logits():
    logits = torch.zeros(1, 1025)
    logits[0, EOS] = 5.0
    tok, stop = run_sample(logits, eos_ok=False)
    assert tok.item() != EOS and not stop.item()
    tok, stop = run_sample(logits, eos_ok=True)
    assert tok.item() == EOS and stop.item()
    # argmax is EOS only before the penalty: token 7 (seen) wins the argmax after dividing -> no argmax stop
    logits[0, 7] = 6.0
    seen = torch.zeros(1, 1025, dtype=torch.bool)
    seen[0, 7] = True
    noise = torch.ones(1, 1025)
    noise[0, EOS] = 1e9  # the race picks token 7 although EOS leads after the penalty
    tok, stop = run_sample(logits, seen, penalty=1.35, top_k=2, noise=noise)
    assert tok.item() == 7 and stop.item()  # 6/1.35 < 5: the penalised argmax is EOS -> stop
    tok, stop = run_sample(logits, seen, penalty=1.0, top_k=2, noise=noise)
    assert tok.item() == 7 and not stop.item()


def test_top_p_uses_untempered_logits_and_top_k_limits():
    logits = torch.full((1, 1025), -30.0)
    logits[0, 10], logits[0, 11] = 3.0, 0.0  # p(10) ~ 0.95 untempered
    for seed in range(20):
        noise = torch.empty(1, 1025).exponential_(generator=torch.Generator().manual_seed(seed))
        tok, _ = run_sample(logits, top_p=0.9, temperature=100.0, top_k=1025, noise=noise)
        assert tok.item() == 10  # top-p before temperature keeps only token 10
    picks = set()
    for seed in range(40):
        noise = torch.empty(1, 1025).exponential_(generator=torch.Generator().manual_seed(seed))
        picks.add(run_sample(logits, temperature=100.0, top_k=2, noise=noise)[0].item())
    assert picks == {10, 11}


def test_token_limit_bounds():
    p = SamplingParams(early_stop_num=100, max_new_tokens=500, tokens_per_phone=4.0, token_slack=10)
    assert token_limit(p, 5) == (30, "phone_cap")
    assert token_limit(p, 50) == (100, "early_stop")
    assert token_limit(replace(p, early_stop_num=-1, tokens_per_phone=None), 50) == (500, "max_tokens")
    assert token_limit(p, 0)[0] > EOS_MIN_STEPS


@pytest.mark.parametrize("kw", [{"top_p": 0.0}, {"temperature": 0.0}, {"repetition_penalty": -1.0},
                                {"max_new_tokens": 0}, {"tokens_per_phone": 0.0}])
def test_bad_params_are_typed_errors(kw):
    with pytest.raises(TTSError):
        SamplingParams(**kw)


# ---- decode paths -----------------------------------------------------------------------------------

def test_seeded_sampling_is_reproducible(model):
    item = make_item(8, 6, 18, seed=2)
    a = decode(model, item, SamplingParams(top_k=15, seed=7)).tokens
    b = decode(model, item, SamplingParams(top_k=15, seed=7)).tokens
    c = decode(model, item, SamplingParams(top_k=15, seed=8)).tokens
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_batched_items_of_different_lengths_equal_single(model):
    items = [make_item(9, 6, 20, seed=1), make_item(3, 0, 0, seed=2), make_item(14, 10, 31, seed=3)]
    params = [SamplingParams(top_k=1), SamplingParams(top_k=15, seed=5), SamplingParams(top_k=15, top_p=0.8,
                                                                                       temperature=0.7, seed=6)]
    single = [decode(model, it, p).tokens for it, p in zip(items, params)]
    batched = decode_batch(model, items, params)
    for s, b in zip(single, batched):
        assert torch.equal(s, b.tokens) and b.reason == "eos"


@pytest.mark.parametrize("static_shapes", [False, True])
def test_continuous_batching_join_and_cancel(model, static_shapes):
    a, b, c = make_item(10, seed=11), make_item(6, 4, 12, seed=12), make_item(5, seed=13)
    p = SamplingParams(top_k=15, seed=3)
    want_a, want_b = decode(model, a, p).tokens.tolist(), decode(model, b, p).tokens.tolist()
    batch = DecodeBatch(model, max_batch=2, max_len=256, static_shapes=static_shapes)
    batch.add("a", a.phones, a.bert, a.prompt, p, a.n_text_phones)
    got: dict[str, list[int]] = {"a": [], "b": []}
    for step in range(200):
        if step == 5:  # b joins a running batch in the second slot
            batch.add("b", b.phones, b.bert, b.prompt, p, b.n_text_phones)
            assert batch.free_slots == 0
            with pytest.raises(BusyError):
                batch.add("c", c.phones, c.bert, c.prompt, p)
        for r in batch.step():
            if r.token is not None:
                got[str(r.req_id)].append(r.token)
        if not len(batch):
            break
    assert got == {"a": want_a, "b": want_b}
    batch.add("c", c.phones, c.bert, c.prompt, p)
    batch.step()
    batch.remove("c")
    assert len(batch) == 0 and batch.free_slots == 2 and batch.step() == []


def test_eos_is_masked_for_the_first_steps(model):
    res = decode(model, make_item(1, seed=4), SamplingParams(top_k=1))  # the tiny clock wants EOS at once
    assert res.reason == "eos" and len(res.tokens) == EOS_MIN_STEPS


def test_token_caps(model):
    item = make_item(20, seed=5)
    res = decode(model, item, SamplingParams(top_k=15, seed=1, tokens_per_phone=1.0, token_slack=2))
    assert (res.reason, len(res.tokens)) == ("phone_cap", 22)
    res = decode(model, item, SamplingParams(top_k=15, seed=1, early_stop_num=17))
    assert (res.reason, len(res.tokens)) == ("early_stop", 17)
    batch = DecodeBatch(model, max_batch=1, max_len=item.phones.numel() + 15)
    batch.add(0, item.phones, item.bert, item.prompt, SamplingParams(), 20)
    results = [r for _ in range(20) for r in batch.step()]
    assert results[-1].finished and results[-1].reason == "cache_full" and len(results) == 15


def test_reference_free_decode(model):
    res = decode(model, make_item(7, seed=6), SamplingParams(top_k=15, seed=2))
    assert res.reason == "eos" and len(res.tokens) > EOS_MIN_STEPS
    assert int(res.tokens.max()) < EOS and int(res.tokens.min()) >= 0


@pytest.mark.parametrize("first,size", [(4, 8), (8, 16), (1, 1), (500, 16)])
def test_stream_chunks_concatenate_to_decode(model, first, size):
    item, p = make_item(9, 5, 16, seed=8), SamplingParams(top_k=15, seed=4)
    whole = decode(model, item, p).tokens
    chunks = list(decode_stream(model, item, p, first_chunk_tokens=first, chunk_tokens=size))
    assert torch.equal(torch.cat([c.tokens for c in chunks]), whole)
    assert [c.is_last for c in chunks] == [False] * (len(chunks) - 1) + [True] and chunks[-1].reason == "eos"
    lens = [len(c.tokens) for c in chunks[:-1]]
    assert lens == ([first] + [size] * (len(lens) - 1) if lens else [])


def test_chunker_rejects_bad_sizes():
    with pytest.raises(TTSError):
        Chunker(0, 16)


def test_bad_inputs_are_typed_errors(model):
    batch = DecodeBatch(model, max_batch=1, max_len=64)
    p, ok = SamplingParams(), make_item(4)
    with pytest.raises(TTSError, match="phone ids"):
        batch.add(1, torch.tensor([0, 9999]), torch.zeros(1024, 2), ok.prompt, p)
    with pytest.raises(TTSError, match="bert"):
        batch.add(1, ok.phones, torch.zeros(1024, 3), ok.prompt, p)
    with pytest.raises(TTSError, match="prompt tokens"):
        batch.add(1, ok.phones, ok.bert, torch.tensor([EOS]), p)
    with pytest.raises(TextTooLongError):
        batch.add(1, torch.zeros(60, dtype=torch.long), torch.zeros(1024, 60), ok.prompt, p)
    assert len(batch) == 0
    batch.add(1, ok.phones, ok.bert, ok.prompt, p)
    with pytest.raises(TTSError, match="already"):
        batch.add(1, ok.phones, ok.bert, ok.prompt, p)


def test_a_second_batch_on_the_same_model_takes_the_cache(model):
    item, p = make_item(4), SamplingParams()
    first = DecodeBatch(model, max_batch=1, max_len=64)
    first.add(0, item.phones, item.bert, item.prompt, p)
    DecodeBatch(model, max_batch=1, max_len=64)
    with pytest.raises(RuntimeError, match="taken over"):
        first.step()


def test_free_slot_below_a_busy_one_with_other_settings(model):
    short, long_ = make_item(2, seed=21), make_item(12, seed=22)
    want = decode(model, long_, SamplingParams(top_k=1)).tokens.tolist()
    batch = DecodeBatch(model, max_batch=2, max_len=128)
    batch.add("s", short.phones, short.bert, short.prompt, SamplingParams(top_k=50, top_p=0.5, seed=1))
    batch.add("l", long_.phones, long_.bert, long_.prompt, SamplingParams(top_k=1))
    got = []
    while len(batch):
        got += [r.token for r in batch.step() if r.req_id == "l" and r.token is not None]
    assert got == want


@pytest.mark.slow
def test_compiled_decode_step_gives_the_eager_tokens(model):
    item = make_item(8, 4, 10, seed=21)
    p = SamplingParams(top_k=1, early_stop_num=20)
    want = decode(model, item, p).tokens.tolist()
    batch = DecodeBatch(model, max_batch=2, max_len=64, compile=True)
    assert batch.static_shapes and batch.forward is not model
    batch.add(0, item.phones, item.bert, item.prompt, p, item.n_text_phones)
    got = []
    while len(batch):
        got += [r.token for r in batch.step() if r.token is not None]
    assert got == want
