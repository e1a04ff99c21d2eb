"""oneDNN-prepacked Linears: same results as nn.Linear, same state-dict keys, safe fallbacks."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from tts.models.onednn import OneDNNLinear, onednn_available, pack_linears

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="torch built without oneDNN")


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Sequential(nn.Linear(32, 8, bias=False)))


@needs_onednn
def test_pack_linears_switches_every_linear_and_keeps_results_and_keys():
    net, ref = _net(), _net()
    keys = list(net.state_dict())
    assert pack_linears(net) == 2
    assert all(type(m) is not nn.Linear for m in net.modules())
    assert sum(isinstance(m, OneDNNLinear) for m in net.modules()) == 2
    assert list(net.state_dict()) == keys
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x), atol=1e-5, rtol=1e-5)
    assert pack_linears(net) == 0  # already packed


@needs_onednn
def test_packed_copy_follows_weight_updates_and_other_dtypes_fall_back():
    net = _net()
    pack_linears(net)
    x = torch.randn(2, 16)
    with torch.no_grad():
        before = net(x)
        net[0].weight.mul_(2)  # an in-place update must not reuse the stale packed copy
        after = net(x)
        assert not torch.allclose(before, after)
        plain = _net()
        plain[0].weight.mul_(2)
        torch.testing.assert_close(after, plain(x), atol=1e-5, rtol=1e-5)
        out16 = net.to(torch.bfloat16)(x.bfloat16())  # a bfloat16 model stays bfloat16
    assert out16.dtype == torch.bfloat16


@pytest.mark.parametrize("packed", [True, False])
def test_bf16_weight_takes_float32_input_and_returns_float32(packed):
    from tts.models.onednn import linear

    torch.manual_seed(0)
    lin, x, res = nn.Linear(64, 48), torch.randn(2, 3, 64), torch.randn(2, 3, 48)
    with torch.no_grad():
        ref = torch.relu(lin(x))
        ref_add = res + lin(x)
        lin.to(torch.bfloat16)
        got = linear(x, lin, packed and onednn_available(), relu=True)
        got_add = linear(x, lin, packed and onednn_available(), add=res)
        plain = torch.relu(nn.functional.linear(x.bfloat16(), lin.weight, lin.bias)).float()
    assert got.dtype == got_add.dtype == torch.float32
    err = (got - ref).abs().max() / ref.abs().max()
    assert 0 < err < 2e-2  # bfloat16 rounding, not float32 bits
    torch.testing.assert_close(got, plain, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(got_add, ref_add, atol=5e-2, rtol=2e-2)


@pytest.mark.parametrize("packed", [True, False])
def test_bf16_hidden_kept_in_bf16_gives_the_same_values(packed):
    """`keep_bf16` hands a bfloat16-weight Linear's output on without the float32 round trip: the same
    bits for the next bfloat16-weight Linear, two conversions fewer (the T2S FFN's hidden layer)."""
    from tts.models.onednn import linear

    torch.manual_seed(0)
    lin1, lin2 = nn.Linear(64, 128).to(torch.bfloat16), nn.Linear(128, 64).to(torch.bfloat16)
    x = torch.randn(2, 3, 64)
    on = packed and onednn_available()
    with torch.no_grad():
        h32 = linear(x, lin1, on, relu=True)
        h16 = linear(x, lin1, on, relu=True, keep_bf16=True)
        assert h32.dtype == torch.float32 and h16.dtype == torch.bfloat16
        assert torch.equal(h16.float(), h32)
        out16, out32 = linear(h16, lin2, on, add=x), linear(h32, lin2, on, add=x)
        assert out16.dtype == torch.float32
        assert torch.equal(out16, out32)
        assert linear(h16, lin2, on).dtype == torch.bfloat16  # no add: the input's dtype
