"""oneDNN-prepacked float32 Linears for CPU inference.

`packed_linear` runs `F.linear` through a copy of the weight reordered once into oneDNN's blocked
layout (`torch.ops.mkldnn`), which streams the weights about 2x faster than the default BLAS path
on the small-row shapes of decoding and BERT features, with the same results up to rounding.
`pack_linears` switches every plain `nn.Linear` of a module tree (a Hugging Face encoder, say)
over to it in place; state-dict keys do not change.
"""
from __future__ import annotations

import functools
import platform
import weakref

import torch
import torch.nn.functional as F
from torch import Tensor, nn

@functools.cache  # asked on every bf16-weight Linear call; the build does not change
def onednn_available() -> bool:
    """Whether this torch build has oneDNN's prepacked float32 linear (CPU builds normally do)."""
    ops = torch.ops.mkldnn
    return torch.backends.mkldnn.is_available() and all(
        hasattr(ops, n) for n in ("_linear_pointwise", "_reorder_linear_weight"))


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively: AVX512-BF16 or AMX on x86, oneDNN's own check
    elsewhere (Arm with BF16). Without it oneDNN emulates bfloat16 and the bf16 paths run slower."""
    cpu = torch.cpu
    if platform.machine().lower() in ("x86_64", "amd64") and hasattr(cpu, "_is_avx512_bf16_supported"):
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


# module -> ((data_ptr, version) of the weight it was made from, weight in oneDNN's blocked layout)
_PACKED: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[int, int], Tensor]] = weakref.WeakKeyDictionary()


def packed_linear(x: Tensor, weight: Tensor, bias: Tensor | None, owner: nn.Module, relu: bool = False,
                  add: Tensor | None = None, keep_bf16: bool = False) -> Tensor:
    """`F.linear` through a oneDNN-blocked copy of `weight` (float32 on CPU; other cases fall back),
    optionally followed by ReLU (`relu`) or by `+ add` (a residual), fused into the same call.
    A bfloat16 `weight` computes in bfloat16 and returns `x`'s dtype (see `_bf16_weight_linear`), or
    bfloat16 with `keep_bf16` (for a next bfloat16-weight Linear: the same values, two conversions fewer).

    On the decode shapes it is about 2x faster than the default BLAS path (batch 8: 2.5x) with the
    same results up to rounding (~1e-6); the fused ReLU / residual add give bit-identical results
    to the separate ops. The copy is made on first use and remade when the weight changes (new
    storage or an in-place update).
    """
    if weight.dtype == torch.bfloat16 and x.dtype in (torch.float32, torch.bfloat16):
        return _bf16_weight_linear(x, weight, bias, owner, relu, add, keep_bf16)
    if (weight.dtype != torch.float32 or x.dtype != torch.float32 or weight.device.type != "cpu"
            or (weight.requires_grad and torch.is_grad_enabled()) or torch.compiler.is_compiling()):
        return _epilogue(F.linear(x, weight, bias), relu, add)  # (torch.compile packs weights itself)
    w = _packed(weight, owner)
    if (add is not None and not relu and add.shape == x.shape[:-1] + weight.shape[:1] and add.dtype == x.dtype
            and add.is_contiguous()):
        return torch.ops.mkldnn._linear_pointwise.binary(x, add, w, bias, "add")
    y = torch.ops.mkldnn._linear_pointwise(x, w, bias, "relu" if relu else "none", [], "")
    return y if add is None else add + y


def _packed(weight: Tensor, owner: nn.Module) -> Tensor:
    """`weight` reordered into oneDNN's blocked layout, made once per weight version and owner."""
    # inference tensors (weights loaded under inference_mode) keep no version counter
    key = (weight.data_ptr(), -1 if weight.is_inference() else weight._version)
    hit = _PACKED.get(owner)
    if hit is None or hit[0] != key:
        hit = (key, torch.ops.mkldnn._reorder_linear_weight(weight.detach()))
        _PACKED[owner] = hit
    return hit[1]


def _bf16_weight_linear(x: Tensor, weight: Tensor, bias: Tensor | None, owner: nn.Module, relu: bool,
                        add: Tensor | None, keep_bf16: bool = False) -> Tensor:
    """`x` (float32 or bfloat16) through a bfloat16 weight: the product runs in bfloat16 (float32
    accumulation inside oneDNN) and comes back in `x`'s dtype (bfloat16 with `keep_bf16`), or in
    `add`'s when that is given (a float32 `add` is added in float32). Half the weight bytes of
    float32: the decoder Linears of a batch-1 T2S step take 4.4 ms instead of 7.9 (2 threads,
    AVX512-BF16); not bit-equal to float32."""
    b = None if bias is None else bias.to(torch.bfloat16)
    xb = x.to(torch.bfloat16)
    if (weight.device.type != "cpu" or (weight.requires_grad and torch.is_grad_enabled())
            or torch.compiler.is_compiling() or not onednn_available()):
        y = F.linear(xb, weight, b)
        y = F.relu(y) if relu else y
    else:
        y = torch.ops.mkldnn._linear_pointwise(xb, _packed(weight, owner), b, "relu" if relu else "none", [], "")
    if add is not None:
        return torch.add(add, y)  # float32 + bfloat16 -> float32: the same values as add + y.float(), one op
    return y if keep_bf16 else y.to(x.dtype)


def _epilogue(y: Tensor, relu: bool, add: Tensor | None) -> Tensor:
    if relu:
        y = F.relu(y)
    return y if add is None else add + y


def use_packed(weight: Tensor, packed: bool) -> bool:
    """The routing rule for a Linear's weight: the packed path when `packed`, or for a bfloat16 weight."""
    return packed or weight.dtype == torch.bfloat16


def linear(x: Tensor, mod: nn.Module, packed: bool, relu: bool = False, add: Tensor | None = None,
           keep_bf16: bool = False) -> Tensor:
    """`mod(x)` (then ReLU when `relu`, then `add + ...` when `add` is given), through
    `packed_linear` when `mod` is a plain nn.Linear (a quantised or otherwise replaced module runs
    as itself) and either `packed` or its weight is bfloat16 (`T2SModel.bf16_weights`: a float32 or
    bfloat16 `x`). `keep_bf16`: a bfloat16-weight Linear without `add` returns bfloat16."""
    if type(mod) is nn.Linear and use_packed(mod.weight, packed):
        return packed_linear(x, mod.weight, mod.bias, mod, relu, add, keep_bf16)
    return _epilogue(mod(x), relu, add)


class OneDNNLinear(nn.Linear):
    """An `nn.Linear` whose forward goes through `packed_linear` (same parameters and keys)."""

    def forward(self, x: Tensor) -> Tensor:
        return packed_linear(x, self.weight, self.bias, self)


def pack_linears(module: nn.Module) -> int:
    """Turn every plain `nn.Linear` under `module` into a `OneDNNLinear`, in place.

    A no-op (returns 0) where this torch build lacks oneDNN; otherwise returns how many were
    switched. Other dtypes and devices still take `F.linear` at call time.
    """
    if not onednn_available():
        return 0
    n = 0
    for mod in module.modules():
        if type(mod) is nn.Linear:
            mod.__class__ = OneDNNLinear
            n += 1
    return n
