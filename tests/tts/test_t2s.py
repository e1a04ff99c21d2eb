"""T2S model: checkpoint loading, static KV cache against an uncached reference, the tiny factory, parity."""
from __future__ import annotations

import importlib.util
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from tts.checkpoint import load_gpt
from tts.factory import write_tiny_gpt
from tts.models.sampling import DecodeItem, SamplingParams, decode
from tts.models.t2s import T2SConfig, T2SModel, prefill_mask, sine_table

pytestmark = pytest.mark.usefixtures("one_thread")

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
PARITY = SHARED / "parity"


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> Path:
    return write_tiny_gpt(tmp_path_factory.mktemp("gpt") / "tiny.ckpt", seed=0)


@pytest.fixture(scope="module")
def model(tiny_path) -> T2SModel:
    return T2SModel.from_checkpoint(load_gpt(tiny_path))


def make_item(n_text: int, n_prompt_phones: int, n_prompt: int, seed: int) -> DecodeItem:
    g = torch.Generator().manual_seed(seed)
    L = n_text + n_prompt_phones
    return DecodeItem(torch.randint(0, 732, (L,), generator=g), torch.randn(1024, L, generator=g),
                      torch.randint(0, 1024, (n_prompt,), generator=g), n_text)


def naive_logits(m: T2SModel, phones: torch.Tensor, bert: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """Uncached reference: the whole [text; audio] sequence at once, attention written out by hand."""
    c, nh = m.cfg.hidden_dim, m.cfg.head
    L, A = phones.numel(), audio.numel()
    text = m.ar_text_embedding.word_embeddings.weight[phones] + (bert.T @ m.bert_proj.weight.T + m.bert_proj.bias)
    text = text + m.ar_text_position.alpha * sine_table(L, c)
    aud = m.ar_audio_embedding.word_embeddings.weight[audio] + m.ar_audio_position.alpha * sine_table(A, c)
    x = torch.cat([text, aud])  # (T, C)
    allowed = prefill_mask(L, A)
    for layer in m.h.layers:
        att = layer.self_attn
        q, k, v = (x @ att.in_proj_weight.T + att.in_proj_bias).split(c, dim=-1)
        q, k, v = (t.view(-1, nh, c // nh).transpose(0, 1) for t in (q, k, v))  # (nh, T, hs)
        scores = (q @ k.transpose(1, 2)) / math.sqrt(c // nh)
        y = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1) @ v
        x = layer.norm1(x + att.out_proj(y.transpose(0, 1).reshape(-1, c)))
        x = layer.norm2(x + layer.linear2(torch.relu(layer.linear1(x))))
    return m.ar_predict_layer(x)  # (T, V)


def test_config_from_checkpoint():
    cfg = T2SConfig.from_checkpoint({"model": {"hidden_dim": 512, "embedding_dim": 512, "head": 16, "n_layer": 24,
                                               "vocab_size": 1025, "phoneme_vocab_size": 732, "EOS": 1024}})
    assert (cfg.head_dim, cfg.ffn_dim, cfg.eos) == (32, 2048, 1024)
    with pytest.raises(ValueError, match="EOS"):
        T2SConfig.from_checkpoint({"model": {"hidden_dim": 8, "head": 2, "n_layer": 1, "vocab_size": 1025,
                                             "phoneme_vocab_size": 732, "EOS": 7}})


def test_tiny_checkpoint_format_and_strict_load(tiny_path, model):
    raw = torch.load(tiny_path, map_location="cpu", weights_only=True)
    assert set(raw) == {"weight", "config", "info"} and raw["info"] == "GPT-e1"
    assert all(k.startswith("model.") and v.dtype == torch.float16 for k, v in raw["weight"].items())
    assert len(raw["weight"]) == 6 + 12 * model.cfg.n_layer + 1
    assert "model.h.layers.1.self_attn.in_proj_weight" in raw["weight"]
    assert set(model.state_dict()) == {k[len("model."):] for k in raw["weight"]}  # caches are not state


def test_tiny_checkpoint_is_deterministic(tmp_path):
    a = write_tiny_gpt(tmp_path / "a" / "g.ckpt", seed=3).read_bytes()
    b = write_tiny_gpt(tmp_path / "b" / "g.ckpt", seed=3).read_bytes()
    c = write_tiny_gpt(tmp_path / "c" / "g.ckpt", seed=4).read_bytes()
    assert a == b and a != c


@pytest.mark.parametrize("n_text,n_pp,n_prompt", [(6, 0, 0), (5, 8, 24), (1, 4, 12)])
def test_kv_cache_decode_matches_uncached_forward(model, n_text, n_pp, n_prompt):
    item = make_item(n_text, n_pp, n_prompt, seed=n_text)
    res = decode(model, item, SamplingParams(top_k=1, early_stop_num=20), record_logits=True)
    assert res.logits is not None and len(res.logits) >= len(res.tokens) >= 11
    full = naive_logits(model, item.phones, item.bert, torch.cat([item.prompt, res.tokens]))
    L, P = item.phones.numel(), n_prompt
    for i in range(len(res.tokens)):
        torch.testing.assert_close(res.logits[i], full[L + P + i - 1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("n_text", [4, 12, 30])
def test_tiny_gpt_ends_by_eos_at_two_to_four_tokens_per_phone(model, n_text):
    for item in (make_item(n_text, 0, 0, seed=n_text), make_item(n_text, 10, 30, seed=n_text + 1)):
        res = decode(model, item, SamplingParams(top_k=15, seed=1))
        assert res.reason == "eos"
        assert 2.0 * n_text <= len(res.tokens) <= 4.0 * n_text + 11


def test_v2_size_gpt_has_the_real_sizes_and_still_ends_by_eos(tmp_path):
    """`size="v2"` (service benchmarks at real sizes): 24 layers of post-norm LayerNorms must not
    drown the length clock."""
    m = T2SModel.from_checkpoint(load_gpt(write_tiny_gpt(tmp_path / "v2.ckpt", seed=0, size="v2")))
    assert (m.cfg.hidden_dim, m.cfg.head, m.cfg.n_layer, m.cfg.ffn_dim) == (512, 16, 24, 2048)
    res = decode(m, make_item(12, 10, 30, seed=5), SamplingParams(top_k=15, seed=1))
    assert res.reason == "eos" and 2.0 * 12 <= len(res.tokens) <= 4.0 * 12 + 11


def test_half_precision_runs(model):
    m16 = T2SModel(model.cfg)
    m16.load_state_dict(model.state_dict())
    res = decode(m16.to(torch.bfloat16), make_item(5, 0, 0, seed=0), SamplingParams(top_k=1))
    assert res.reason == "eos" and len(res.tokens) >= 11


def test_onednn_linears_match_the_default_path_and_switch_off(model):
    from tts.models.t2s import onednn_available

    assert type(model.h.layers[0].linear1) is torch.nn.Linear  # plain Linears: quantize_dynamic still applies
    item = make_item(7, 3, 9, seed=5)
    params = SamplingParams(top_k=1, early_stop_num=15)
    try:
        on = decode(model.use_onednn(True), item, params, record_logits=True)
        off = decode(model.use_onednn(False), item, params, record_logits=True)
        assert model.packed is False and model.h.layers[0].self_attn.packed is False
    finally:
        model.use_onednn(True)
    assert model.packed is onednn_available()
    assert torch.equal(on.tokens, off.tokens)
    torch.testing.assert_close(on.logits, off.logits, atol=1e-4, rtol=1e-4)


def test_fused_relu_and_residual_add_equal_the_separate_ops():
    from tts.models.t2s import linear

    torch.manual_seed(0)
    lin, x, res = torch.nn.Linear(16, 24), torch.randn(2, 3, 16), torch.randn(2, 3, 24)
    with torch.no_grad():
        for packed in (True, False):
            assert torch.equal(linear(x, lin, packed, relu=True), torch.relu(lin(x)) if not packed
                               else torch.relu(linear(x, lin, True)))
            assert torch.equal(linear(x, lin, packed, add=res), res + linear(x, lin, packed))
        # a residual that does not match the output shape is broadcast, not fused; a strided one is added
        assert torch.equal(linear(x, lin, True, add=res[:1]), res[:1] + linear(x, lin, True))
        strided = torch.randn(2, 24, 3).transpose(1, 2)
        assert torch.equal(linear(x, lin, True, add=strided), strided + linear(x, lin, True))


def test_lone_row_step_without_mask_equals_the_all_true_mask(model):
    m = T2SModel(model.cfg)
    m.load_state_dict(model.state_dict())
    m.eval().setup_caches(1, 64)
    torch.manual_seed(1)
    with torch.no_grad():
        m(torch.randn(1, 9, m.cfg.hidden_dim), torch.arange(9)[None], prefill_mask(5, 4)[None, None])
        x = torch.randn(1, 1, m.cfg.hidden_dim)
        masked = m(x, torch.tensor([[9]]), torch.ones(1, 1, 1, 10, dtype=torch.bool))
        free = m(x, torch.tensor([[9]]), None, 0, 10)
    assert torch.equal(masked, free)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_int8_copy_is_quantised_close_and_leaves_the_original(model):
    from tts.models.sampling import DecodeBatch

    owner = DecodeBatch(model, 1, 64)  # the original keeps its cache owner through the copy
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = model.quantize_int8()
    assert getattr(model, "cache_owner", None) is owner
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    att = q.h.layers[0].self_attn
    assert att.in_proj is not None and "Quantized" in repr(att.in_proj)
    assert "Quantized" in repr(q.h.layers[0].linear1)
    item = make_item(6, 4, 8, seed=3)
    params = SamplingParams(top_k=1, early_stop_num=12)
    ref = decode(model, item, params, record_logits=True)
    got = decode(q, item, params, record_logits=True)
    n = min(len(ref.logits), len(got.logits))
    assert n >= 11
    err = (got.logits[0] - ref.logits[0]).abs().max() / ref.logits[0].abs().max()
    assert 0 < err < 0.05  # quantised (not bit-equal) but close at the first step (same prefix)


def test_copy_leaves_the_kv_cache_and_its_owner_behind(model):
    from tts.models.sampling import DecodeBatch

    owner = DecodeBatch(model, 2, 64)
    cache = model.h.layers[0].self_attn.kv_cache
    new = model.copy()
    assert model.cache_owner is owner and model.h.layers[0].self_attn.kv_cache is cache
    assert "cache_owner" not in new.__dict__ and new.max_batch == new.max_len == 0
    assert all(layer.self_attn.kv_cache is None for layer in new.h.layers)
    assert all(torch.equal(a, b) and a.data_ptr() != b.data_ptr()
               for a, b in zip(model.state_dict().values(), new.state_dict().values()))


def test_bf16_weights_keep_float32_activations_and_stay_close(model):
    from tts.models.sampling import DecodeBatch

    m = T2SModel(model.cfg)
    m.load_state_dict(model.state_dict())
    m.eval().bf16_weights()
    layer = m.h.layers[0]
    assert layer.self_attn.in_proj_weight.dtype == layer.linear2.bias.dtype == torch.bfloat16
    assert layer.norm1.weight.dtype == m.ar_predict_layer.weight.dtype == m.bert_proj.weight.dtype == torch.float32
    batch = DecodeBatch(m, 1, 64)
    assert batch is m.cache_owner and layer.self_attn.k_cache.dtype == torch.float32
    item = make_item(6, 4, 8, seed=3)
    params = SamplingParams(top_k=1, early_stop_num=12)
    ref = decode(model, item, params, record_logits=True)
    got = decode(m, item, params, record_logits=True)
    assert got.logits.dtype == torch.float32
    err = (got.logits[0] - ref.logits[0]).abs().max() / ref.logits[0].abs().max()
    assert 0 < err < 0.02  # bfloat16 rounding of the weights, not float32 bits
    with pytest.raises(ValueError, match="already quantised"):
        model.quantize_int8().bf16_weights()


def _load_checker():
    spec = importlib.util.spec_from_file_location("parity_check", PARITY / "check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not (PARITY / "check.py").exists(), reason="parity set not present")
def test_parity_gpt_and_symbols():
    from tts.parity import gpt_outputs

    chk = _load_checker()
    gpt = np.load(PARITY / "goldens" / "gpt_goldens.npz")
    sov = np.load(PARITY / "goldens" / "sovits_goldens.npz")
    (ckpt,) = (PARITY / "ckpt").glob("*.ckpt")
    with tempfile.TemporaryDirectory() as tmp:
        gi, _ = chk.write_inputs(gpt, sov, tmp)
        with np.load(gi) as z:
            out = gpt_outputs(str(ckpt), {k: z[k] for k in z.files})
        np.savez(Path(tmp) / "out.npz", **out)
        report = chk.compare(np.load(Path(tmp) / "out.npz"), gpt, sov)
    rows = [r for r in report.rows if r[0].startswith(("gpt_", "symbols_"))]
    assert len(rows) == 13
    assert [r for r in rows if not r[1]] == []


@pytest.mark.skipif(not (PARITY / "check.py").exists(), reason="parity set not present")
def test_bf16_weights_keep_the_parity_sets_greedy_tokens():
    """The rule for a CPU speed mode (and `t2s_quant: auto` picks bf16 by it): the parity set's
    greedy tokens do not change, one request at a time or two in one batch; the logits move by
    bfloat16 rounding only."""
    from tts.parity import gpt_outputs

    chk = _load_checker()
    gpt = np.load(PARITY / "goldens" / "gpt_goldens.npz")
    sov = np.load(PARITY / "goldens" / "sovits_goldens.npz")
    (ckpt,) = (PARITY / "ckpt").glob("*.ckpt")
    model = T2SModel.from_checkpoint(load_gpt(ckpt)).bf16_weights()
    with tempfile.TemporaryDirectory() as tmp:
        gi, _ = chk.write_inputs(gpt, sov, tmp)
        with np.load(gi) as z:
            out = gpt_outputs(str(ckpt), {k: z[k] for k in z.files}, model=model)
        np.savez(Path(tmp) / "out.npz", **out)
        rows = chk.compare(np.load(Path(tmp) / "out.npz"), gpt, sov).rows
    tokens = [r for r in rows if r[0].startswith("gpt_") and "tokens" in r[0]]
    assert len(tokens) == 6 and [r for r in tokens if not r[1]] == []  # 4 cases + the 2-item batch
    for c in chk.gpt_cases(gpt):
        ref, got = gpt[f"gpt_{c}_step_logits"], out[f"gpt_{c}_step_logits"]
        n = min(len(ref), len(got))
        ref, got = ref[:n], got[:n]
        assert 0 < np.abs(got - ref).max() < 0.05 * np.abs(ref).max(), c
