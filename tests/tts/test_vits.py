"""SoVITS model: factory round trip, weight-norm folding, streaming decode vs whole decode, and the
SoVITS half of the parity set (skipped when ../shared/parity is absent)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tts.audio import load_reference, spectrogram
from tts.checkpoint import load_sovits
from tts.models.vits import SynthesizerTrn
from tts.models.vits_modules import fold_weight_norm

PARITY = Path(__file__).resolve().parents[2].parent / "shared" / "parity"


@pytest.fixture(scope="module")
def model(demo_models) -> SynthesizerTrn:
    return SynthesizerTrn.from_checkpoint(load_sovits(demo_models["sovits"]))


@pytest.fixture(scope="module")
def ge(model, demo_models) -> torch.Tensor:
    w32, _ = load_reference(demo_models["ref_audio"])
    return model.style(torch.from_numpy(spectrogram(w32)))


def test_v2_size_sovits_hps_are_the_real_s2_sizes():
    from tts.factory import _tiny_sovits_hps
    from tts.models.vits import VitsConfig

    assert VitsConfig.from_hps(_tiny_sovits_hps("v2"), n_symbols=732, version="v2") == VitsConfig()
    assert VitsConfig.from_hps(_tiny_sovits_hps(), n_symbols=732, version="v2").upsample_initial_channel == 64


def test_round_trip_decode(model, ge):
    assert ge.shape == (1, 512, 1)
    codes = torch.randint(0, 1024, (1, 1, 12), generator=torch.Generator().manual_seed(0))
    phones = torch.randint(0, 732, (1, 7), generator=torch.Generator().manual_seed(1))
    audio = model.decode(codes, phones, ge, noise_scale=0.5, generator=torch.Generator().manual_seed(2))
    assert audio.shape == (12 * 1280,) and audio.dtype == torch.float32
    assert torch.isfinite(audio).all() and 0.001 < audio.abs().max() < 1.0
    again = model.decode(codes, phones, ge, noise_scale=0.5, generator=torch.Generator().manual_seed(2))
    assert torch.equal(audio, again)
    fast = model.decode(codes, phones, ge, speed=2.0, noise_scale=0.0)
    assert fast.shape == ((int(24 / 2.0) + 1) * 640,)


def test_extract_latent_and_style_averaging(model):
    ssl = torch.randn(1, 768, 51)
    codes = model.extract_latent(ssl)
    assert codes.shape == (1, 1, 25) and codes.dtype == torch.int64 and int(codes.max()) < 1024
    a, b = torch.rand(1025, 40), torch.rand(1025, 60)
    both = model.style([a, b])
    assert torch.allclose(both, (model.style(a) + model.style(b)) / 2, atol=1e-6)


def test_weight_norm_is_folded_at_load(model):
    assert not any(k.endswith(("weight_g", "weight_v")) for k in model.state_dict())
    assert not any(type(m).__name__.startswith("_WeightNorm") or hasattr(m, "parametrizations")
                   for m in model.modules())
    v, g = torch.randn(6, 3, 5), torch.rand(6, 1, 1) + 0.5
    w = fold_weight_norm({"c.weight_g": g, "c.weight_v": v, "c.bias": torch.zeros(6)})["c.weight"]
    ref = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(3, 6, 5))
    with torch.no_grad():
        ref.parametrizations.weight.original0.copy_(g)
        ref.parametrizations.weight.original1.copy_(v)
    assert torch.allclose(w, ref.weight, atol=1e-6)


def _stream(model, codes, phones, ge, sizes, **kw):
    sd = model.decode_streaming(phones, ge, **kw)
    outs, a = [], 0
    for n in sizes:
        outs.append(sd.push(codes[a:a + n]))
        a += n
    outs.append(sd.finish())
    joins = np.cumsum([len(o) for o in outs])[:-1]
    return torch.cat(outs), [int(j) for j in joins if 0 < j]


@pytest.mark.parametrize("noise_scale", [0.0, 0.5])
def test_streaming_close_to_whole_decode(model, ge, noise_scale):
    g = torch.Generator().manual_seed(3)
    codes, phones = torch.randint(0, 1024, (30,), generator=g), torch.randint(0, 732, (14,), generator=g)
    eps = torch.randn(192, 60, generator=g)
    whole = model.decode(codes, phones, ge, noise_scale=noise_scale, eps=eps)
    streamed, joins = _stream(model, codes, phones, ge, [8, 5, 7, 10], noise_scale=noise_scale, eps=eps)
    assert streamed.shape == whole.shape
    assert float((streamed - whole).norm() / whole.norm()) < 0.1
    # no clicks: at every join the step between neighbouring samples is like the whole decode's there
    step, step_whole = (streamed[1:] - streamed[:-1]).abs(), (whole[1:] - whole[:-1]).abs()
    typical = float(step_whole.quantile(0.99))
    for j in joins:
        assert float(step[j - 1]) <= float(step_whole[j - 1]) + typical, f"discontinuity at sample {j}"


def test_streaming_returns_only_new_audio(model, ge):
    codes, phones = torch.randint(0, 1024, (20,)), torch.randint(0, 732, (8,))
    sd = model.decode_streaming(phones, ge, noise_scale=0.0, holdback_tokens=2, crossfade_tokens=2)
    first = sd.push(codes[:10])
    assert len(first) == (10 - 2) * 1280  # the last 2 tokens wait for their right context
    assert len(sd.push(codes[10:11])) == 1280
    assert len(sd.push([])) == 0
    middle = sd.push(codes[11:])
    rest = sd.finish()
    assert len(middle) == (20 - 11) * 1280 and len(rest) == 2 * 1280
    assert len(first) + 1280 + len(middle) + len(rest) == 20 * 1280
    with pytest.raises(AssertionError):
        sd.push(codes[:1])


@pytest.mark.skipif(not (PARITY / "goldens" / "sovits_goldens.npz").is_file(), reason="no ../shared/parity")
def test_sovits_parity():
    from tts.parity import sovits_outputs

    gold = np.load(PARITY / "goldens" / "sovits_goldens.npz")
    names = ("ref_wav_32k", "aux_wav_32k", "ssl_feature", "decode_codes", "decode_phones", "e2e_pred_semantic",
             "e2e_text_phones")
    inputs = {k: gold[k] for k in names}
    for tag in ("ns05", "ns0", "speed125", "tworefs", "e2e"):
        for f in ("noise_scale", "speed", "eps"):
            if f"decode_{tag}_{f}" in gold.files:
                inputs[f"decode_{tag}_{f}"] = gold[f"decode_{tag}_{f}"]
    out = sovits_outputs(str(PARITY / "ckpt" / "paritypublic_e1_s8.pth"), inputs)
    np.testing.assert_allclose(out["ref_spec"], gold["ref_spec"], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(out["extract_latent_codes"], gold["extract_latent_codes"])
    for tag in ("ns05", "ns0", "speed125", "tworefs", "e2e"):
        np.testing.assert_allclose(out[f"decode_{tag}_audio"], gold[f"decode_{tag}_audio"], rtol=0, atol=1e-4)
        if f"decode_{tag}_ge" in gold.files:
            np.testing.assert_allclose(out[f"decode_{tag}_ge"], gold[f"decode_{tag}_ge"], rtol=1e-3, atol=1e-5)
