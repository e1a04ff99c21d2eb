"""Pure helpers of bench/reference_bench.py (no reference checkout needed)."""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from tts.models.t2s import T2SConfig
from tts.models.vits import VitsConfig

_PATH = Path(__file__).resolve().parents[2] / "bench" / "reference_bench.py"
_spec = importlib.util.spec_from_file_location("reference_bench", _PATH)
rb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rb)


def _weight_norm(mod: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy API is the one the reference uses
        return nn.utils.weight_norm(mod)


class _Ref(nn.Module):
    """A reference-style net: weight-normed convs, a training-only branch and codebook buffers."""

    def __init__(self):
        super().__init__()
        self.conv = _weight_norm(nn.Conv1d(3, 4, 3))
        self.up = _weight_norm(nn.ConvTranspose1d(4, 2, 4, stride=2))
        self.lin = nn.Linear(2, 2)
        self.enc_q = nn.Linear(2, 2)
        self.register_buffer("q_codebook_inited", torch.zeros(1))

    def forward(self, x):
        return self.lin(self.up(self.conv(x)).transpose(1, 2))


class _Ours(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 3)
        self.up = nn.ConvTranspose1d(4, 2, 4, stride=2)
        self.lin = nn.Linear(2, 2)

    def forward(self, x):
        return self.lin(self.up(self.conv(x)).transpose(1, 2))


def test_to_reference_state_unfolds_weight_norm_and_keeps_outputs():
    torch.manual_seed(0)
    mine, ref = _Ours().eval(), _Ref().eval()
    state = rb.to_reference_state(mine.state_dict(), ref.state_dict(), ref_only=("enc_q.", "_inited"))
    assert {"conv.weight_g", "conv.weight_v", "up.weight_g", "up.weight_v"} <= set(state)
    assert not any(k.startswith("enc_q.") or k.endswith("_inited") for k in state)
    missing = ref.load_state_dict(state, strict=False).missing_keys
    assert sorted(missing) == ["enc_q.bias", "enc_q.weight", "q_codebook_inited"]
    x = torch.randn(1, 3, 9)
    torch.testing.assert_close(ref(x), mine(x), rtol=1e-5, atol=1e-6)


def test_to_reference_state_rejects_unmatched_keys_and_shapes():
    mine, ref = _Ours(), _Ref()
    with pytest.raises(ValueError, match="no weights for the reference's enc_q"):
        rb.to_reference_state(mine.state_dict(), ref.state_dict(), ref_only=("_inited",))
    extra = {**mine.state_dict(), "extra.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match="no place for"):
        rb.to_reference_state(extra, ref.state_dict(), ref_only=("enc_q.", "_inited"))
    bad = {**mine.state_dict(), "lin.weight": torch.zeros(3, 2)}
    with pytest.raises(ValueError, match="lin.weight"):
        rb.to_reference_state(bad, ref.state_dict(), ref_only=("enc_q.", "_inited"))


def test_configs_follow_our_sizes():
    m = rb.t2s_config(T2SConfig())["model"]
    assert (m["n_layer"], m["hidden_dim"], m["head"], m["vocab_size"], m["phoneme_vocab_size"], m["EOS"]) == \
        (24, 512, 16, 1025, 732, 1024)
    kw = rb.vits_kwargs(VitsConfig())
    assert kw["spec_channels"] == 1025 and kw["segment_size"] == 32 and kw["upsample_rates"] == [10, 8, 2, 2, 2]
    assert kw["resblock_dilation_sizes"] == [[1, 3, 5]] * 3 and kw["version"] == "v2"


def test_ratio_direction():
    r, text = rb.ratio("t2s_ms_per_token", 40.0, 20.0)
    assert r == 2.0 and "2.00x faster" in text
    r, text = rb.ratio("sovits_rtf", 0.1, 0.2)
    assert r == 0.5 and "2.00x slower" in text
    r, text = rb.ratio("t2s_batch8_tokens_per_s", 10.0, 27.0)
    assert r == 2.7 and "2.70x its tokens/s" in text


def test_format_table_and_median():
    ref = {"t2s_ms_per_token": 40.0, "sovits_rtf": 0.2, "device": "cpu"}
    table = rb.format_table(ref, {"t2s_ms_per_token": 20.0})
    lines = table.splitlines()
    assert lines[0].split() == ["key", "reference", "ours", "ratio"]
    assert "ours is 2.00x faster" in lines[1] and lines[2].split()[-2:] == ["-", "-"]
    med = rb.median_of([{"a": 1.0, "p": "x"}, {"a": 5.0, "p": "y"}, {"a": 2.0, "p": "z"}])
    assert med == {"a": 2.0, "p": "x"}
