"""Building blocks of the SoVITS v2 inference path (batch of one, no padding masks).

Parameter names match GPT-SoVITS' state dict so a checkpoint loads strictly. Weight-norm pairs
(`weight_g`, `weight_v`) are folded into plain `weight` tensors at load time (see `fold_weight_norm`),
so every conv here is a plain `nn.Conv1d` / `nn.ConvTranspose1d`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.1


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace each `X.weight_g`/`X.weight_v` pair by `X.weight = g * v / ||v||` (norm over all dims but 0)."""
    out = {k: v for k, v in state.items() if not k.endswith((".weight_g", ".weight_v"))}
    for k, g in state.items():
        if not k.endswith(".weight_g"):
            continue
        base = k[: -len("_g")]
        v = state[base + "_v"]
        norm = v.reshape(v.shape[0], -1).norm(dim=1).reshape(-1, *([1] * (v.dim() - 1)))
        out[base] = v * (g / norm)
    return out


class ChannelLayerNorm(nn.Module):
    """LayerNorm over channels of a [B, C, T] tensor (GPT-SoVITS `modules.LayerNorm`: gamma/beta)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.transpose(1, -1), self.gamma.shape, self.gamma, self.beta, self.eps)
        return x.transpose(1, -1)


class RelMultiHeadAttention(nn.Module):
    """VITS multi-head attention with 1x1 conv projections and optional windowed relative positions."""

    def __init__(self, channels: int, out_channels: int, n_heads: int, window_size: int | None = None):
        super().__init__()
        assert channels % n_heads == 0
        self.n_heads, self.k_channels, self.window_size = n_heads, channels // n_heads, window_size
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, out_channels, 1)
        if window_size is not None:  # heads share one table: [1, 2w+1, k_channels]
            self.emb_rel_k = nn.Parameter(torch.zeros(1, 2 * window_size + 1, self.k_channels))
            self.emb_rel_v = nn.Parameter(torch.zeros(1, 2 * window_size + 1, self.k_channels))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # x: [B, C, Tq] queries, c: [B, C, Tk] keys/values
        B, C, Tq = x.shape
        Tk = c.shape[2]
        q = self.conv_q(x).view(B, self.n_heads, self.k_channels, Tq).transpose(2, 3)  # (B, h, Tq, d)
        k = self.conv_k(c).view(B, self.n_heads, self.k_channels, Tk).transpose(2, 3)
        v = self.conv_v(c).view(B, self.n_heads, self.k_channels, Tk).transpose(2, 3)
        q = q / math.sqrt(self.k_channels)
        scores = q @ k.transpose(-2, -1)  # (B, h, Tq, Tk)
        if self.window_size is not None:
            assert Tq == Tk, "relative attention is self-attention only"
            rel = q @ self.emb_rel_k[0].t()  # (B, h, T, 2w+1): q_i . E[j - i + w]
            self._add_band(scores, rel)
        p = torch.softmax(scores, dim=-1)
        out = p @ v  # (B, h, Tq, d)
        if self.window_size is not None:
            out = out + self._band_of(p) @ self.emb_rel_v[0]
        out = out.transpose(2, 3).reshape(B, C, Tq)
        return self.conv_o(out)

    def _offsets(self, T: int) -> range:
        w = self.window_size
        return range(-min(w, T - 1), min(w, T - 1) + 1)

    def _add_band(self, scores: torch.Tensor, rel: torch.Tensor) -> None:
        """scores[..., i, i+o] += rel[..., i, o+w] for |o| <= w (in place)."""
        T, w = scores.shape[-1], self.window_size
        for o in self._offsets(T):
            rows = slice(max(0, -o), T - max(0, o))
            torch.diagonal(scores, offset=o, dim1=-2, dim2=-1).add_(rel[..., rows, o + w])

    def _band_of(self, p: torch.Tensor) -> torch.Tensor:
        """Relative weights r[..., i, o+w] = p[..., i, i+o] (zero outside the matrix)."""
        T, w = p.shape[-1], self.window_size
        r = p.new_zeros(*p.shape[:-1], 2 * w + 1)
        for o in self._offsets(T):
            rows = slice(max(0, -o), T - max(0, o))
            r[..., rows, o + w] = torch.diagonal(p, offset=o, dim1=-2, dim2=-1)
        return r


class FFN(nn.Module):
    """Two 'same'-padded convs with ReLU."""

    def __init__(self, channels: int, filter_channels: int, kernel_size: int):
        super().__init__()
        self.pad = ((kernel_size - 1) // 2, kernel_size // 2)
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv_1(F.pad(x, self.pad)))
        return self.conv_2(F.pad(x, self.pad))


class Encoder(nn.Module):
    """Post-norm transformer encoder with relative-position self-attention (window 4)."""

    def __init__(self, hidden: int, filter_channels: int, n_heads: int, n_layers: int, kernel_size: int,
                 window_size: int = 4):
        super().__init__()
        self.attn_layers = nn.ModuleList(
            RelMultiHeadAttention(hidden, hidden, n_heads, window_size) for _ in range(n_layers))
        self.norm_layers_1 = nn.ModuleList(ChannelLayerNorm(hidden) for _ in range(n_layers))
        self.ffn_layers = nn.ModuleList(FFN(hidden, filter_channels, kernel_size) for _ in range(n_layers))
        self.norm_layers_2 = nn.ModuleList(ChannelLayerNorm(hidden) for _ in range(n_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T] -> [B, C, T]
        for attn, n1, ffn, n2 in zip(self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2):
            x = n1(x + attn(x, x))
            x = n2(x + ffn(x))
        return x


class MRTE(nn.Module):
    """Cross-attention from content (SSL) frames to text, plus the style vector (hidden 512, 4 heads)."""

    def __init__(self, content_channels: int = 192, hidden: int = 512, out_channels: int = 192, n_heads: int = 4):
        super().__init__()
        self.cross_attention = RelMultiHeadAttention(hidden, hidden, n_heads)
        self.c_pre = nn.Conv1d(content_channels, hidden, 1)
        self.text_pre = nn.Conv1d(content_channels, hidden, 1)
        self.c_post = nn.Conv1d(hidden, out_channels, 1)

    def forward(self, ssl: torch.Tensor, text: torch.Tensor, ge: torch.Tensor) -> torch.Tensor:
        ssl = self.c_pre(ssl)  # [B, 512, T]
        text = self.text_pre(text)  # [B, 512, N]
        x = self.cross_attention(ssl, text) + ssl + ge
        return self.c_post(x)


# ------------------------------------------------------------------------------- style encoder


class _Linear(nn.Module):
    """`LinearNorm`: an nn.Linear stored under `.fc`."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.fc = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class _Mish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(F.softplus(x))


class _ConvNorm(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel_size, padding=(kernel_size - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Conv1dGLU(nn.Module):
    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.channels = channels
        self.conv1 = _ConvNorm(channels, 2 * channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.conv1(x).split(self.channels, dim=1)
        return x + a * torch.sigmoid(b)


class _StyleAttention(nn.Module):
    """Multi-head self-attention of the style encoder; note the temperature is sqrt(d_model)."""

    def __init__(self, n_head: int, d_model: int):
        super().__init__()
        self.n_head, self.d_k, self.temperature = n_head, d_model // n_head, math.sqrt(d_model)
        self.w_qs = nn.Linear(d_model, d_model)
        self.w_ks = nn.Linear(d_model, d_model)
        self.w_vs = nn.Linear(d_model, d_model)
        self.fc = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, D]
        B, T, D = x.shape
        q = self.w_qs(x).view(B, T, self.n_head, self.d_k).transpose(1, 2)  # (B, h, T, dk)
        k = self.w_ks(x).view(B, T, self.n_head, self.d_k).transpose(1, 2)
        v = self.w_vs(x).view(B, T, self.n_head, self.d_k).transpose(1, 2)
        p = torch.softmax((q @ k.transpose(-2, -1)) / self.temperature, dim=-1)
        out = (p @ v).transpose(1, 2).reshape(B, T, D)
        return self.fc(out) + x


class MelStyleEncoder(nn.Module):
    """Spectrogram [B, n_bins, T] -> style vector ge [B, out_dim, 1]."""

    def __init__(self, n_bins: int, hidden: int = 128, out_dim: int = 512, kernel_size: int = 5, n_head: int = 2):
        super().__init__()
        # indices 0 and 3 hold weights (Linear, Mish, Dropout, Linear, Mish, Dropout)
        self.spectral = nn.Sequential(_Linear(n_bins, hidden), _Mish(), nn.Identity(),
                                      _Linear(hidden, hidden), _Mish(), nn.Identity())
        self.temporal = nn.Sequential(_Conv1dGLU(hidden, kernel_size), _Conv1dGLU(hidden, kernel_size))
        self.slf_attn = _StyleAttention(n_head, hidden)
        self.fc = _Linear(hidden, out_dim)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        x = self.spectral(spec.transpose(1, 2))  # (B, T, hidden)
        x = self.temporal(x.transpose(1, 2)).transpose(1, 2)
        x = self.fc(self.slf_attn(x))  # (B, T, out)
        return x.mean(dim=1).unsqueeze(-1)  # (B, out, 1)


# ---------------------------------------------------------------------------------- quantizer


class _Codebook(nn.Module):
    def __init__(self, bins: int, dim: int):
        super().__init__()
        self.register_buffer("embed", torch.zeros(bins, dim))


class _VQLayer(nn.Module):
    def __init__(self, bins: int, dim: int):
        super().__init__()
        self._codebook = _Codebook(bins, dim)


class _VQ(nn.Module):
    def __init__(self, bins: int, dim: int, n_q: int):
        super().__init__()
        self.layers = nn.ModuleList(_VQLayer(bins, dim) for _ in range(n_q))


class Quantizer(nn.Module):
    """Residual VQ (n_q = 1 in GPT-SoVITS): codebook lookup and nearest-entry encoding."""

    def __init__(self, dim: int = 768, bins: int = 1024, n_q: int = 1):
        super().__init__()
        self.vq = _VQ(bins, dim, n_q)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:  # [n_q, B, T] -> [B, D, T]
        out = None
        for i, layer in enumerate(self.vq.layers):
            q = F.embedding(codes[i], layer._codebook.embed).transpose(1, 2)
            out = q if out is None else out + q
        return out

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # [B, D, T] -> [n_q, B, T]
        B, D, T = x.shape
        residual = x.transpose(1, 2).reshape(-1, D)
        codes = []
        for layer in self.vq.layers:
            embed = layer._codebook.embed.t()  # (D, bins)
            dist = -(residual.pow(2).sum(1, keepdim=True) - 2 * residual @ embed
                     + embed.pow(2).sum(0, keepdim=True))
            idx = dist.max(dim=-1).indices
            codes.append(idx.view(B, T))
            residual = residual - F.embedding(idx, layer._codebook.embed)
        return torch.stack(codes)


# --------------------------------------------------------------------------------------- flow


class WN(nn.Module):
    """WaveNet-style gated residual stack conditioned on g."""

    def __init__(self, hidden: int, kernel_size: int, dilation_rate: int, n_layers: int, gin_channels: int):
        super().__init__()
        self.hidden, self.n_layers = hidden, n_layers
        self.cond_layer = nn.Conv1d(gin_channels, 2 * hidden * n_layers, 1)
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            d = dilation_rate**i
            self.in_layers.append(nn.Conv1d(hidden, 2 * hidden, kernel_size, dilation=d,
                                            padding=(kernel_size * d - d) // 2))
            out = 2 * hidden if i < n_layers - 1 else hidden
            self.res_skip_layers.append(nn.Conv1d(hidden, out, 1))

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        h = self.hidden
        g = self.cond_layer(g)  # [B, 2*h*L, 1]
        output = torch.zeros_like(x)
        for i, (inl, rs) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            a = inl(x).add_(g[:, 2 * h * i: 2 * h * (i + 1)])
            acts = torch.tanh(a[:, :h]).mul_(torch.sigmoid(a[:, h:]))
            rs_out = rs(acts)
            if i < self.n_layers - 1:
                x = x + rs_out[:, :h]
                output.add_(rs_out[:, h:])
            else:
                output.add_(rs_out)
        return output


class ResidualCouplingLayer(nn.Module):
    """Mean-only affine coupling; only the reverse (inference) direction is implemented."""

    def __init__(self, channels: int, hidden: int, kernel_size: int, dilation_rate: int, n_layers: int,
                 gin_channels: int):
        super().__init__()
        self.half = channels // 2
        self.pre = nn.Conv1d(self.half, hidden, 1)
        self.enc = WN(hidden, kernel_size, dilation_rate, n_layers, gin_channels)
        self.post = nn.Conv1d(hidden, self.half, 1)

    def reverse(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        x0, x1 = x[:, : self.half], x[:, self.half:]
        m = self.post(self.enc(self.pre(x0), g))
        return torch.cat([x0, x1 - m], dim=1)


class ResidualCouplingBlock(nn.Module):
    """4 couplings interleaved with channel flips; parameters live at flows.{0,2,4,6}."""

    def __init__(self, channels: int, hidden: int, kernel_size: int = 5, dilation_rate: int = 1,
                 n_layers: int = 4, n_flows: int = 4, gin_channels: int = 512):
        super().__init__()
        mods: list[nn.Module] = []
        for _ in range(n_flows):
            mods += [ResidualCouplingLayer(channels, hidden, kernel_size, dilation_rate, n_layers, gin_channels),
                     nn.Identity()]  # Flip has no parameters
        self.flows = nn.ModuleList(mods)

    def reverse(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        for f in reversed(self.flows):
            x = x.flip(1) if isinstance(f, nn.Identity) else f.reverse(x, g)
        return x


# ---------------------------------------------------------------------------------- generator


def _pad(k: int, d: int = 1) -> int:
    return (k * d - d) // 2


class ResBlock1(nn.Module):
    def __init__(self, ch: int, k: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(nn.Conv1d(ch, ch, k, dilation=d, padding=_pad(k, d)) for d in dilations)
        self.convs2 = nn.ModuleList(nn.Conv1d(ch, ch, k, padding=_pad(k)) for _ in dilations)

    def forward(self, x: torch.Tensor, x_act: torch.Tensor | None = None) -> torch.Tensor:
        """`x_act` = leaky_relu(x, 0.1) when the caller already has it (shared by a stage's blocks)."""
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2)):
            xt = x_act if i == 0 and x_act is not None else F.leaky_relu(x, LRELU_SLOPE)
            xt = c2(F.leaky_relu(c1(xt), LRELU_SLOPE, inplace=True))
            x = xt.add_(x)  # a fresh tensor: the input x is left intact for the sibling blocks
        return x


class ResBlock2(nn.Module):
    def __init__(self, ch: int, k: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(ch, ch, k, dilation=d, padding=_pad(k, d)) for d in dilations[:2])

    def forward(self, x: torch.Tensor, x_act: torch.Tensor | None = None) -> torch.Tensor:
        for i, c in enumerate(self.convs):
            xt = x_act if i == 0 and x_act is not None else F.leaky_relu(x, LRELU_SLOPE)
            x = c(xt).add_(x)
        return x


class Generator(nn.Module):
    """HiFi-GAN generator: latent [B, C, T] -> audio [B, 1, T * prod(upsample_rates)]."""

    def __init__(self, in_channels: int, resblock: str, resblock_kernel_sizes: list[int],
                 resblock_dilation_sizes: list[list[int]], upsample_rates: list[int],
                 upsample_initial_channel: int, upsample_kernel_sizes: list[int], gin_channels: int):
        super().__init__()
        self.num_kernels = len(resblock_kernel_sizes)
        uic = upsample_initial_channel
        self.conv_pre = nn.Conv1d(in_channels, uic, 7, 1, padding=3)
        block = ResBlock1 if str(resblock) == "1" else ResBlock2
        self.ups = nn.ModuleList(
            nn.ConvTranspose1d(uic // 2**i, uic // 2 ** (i + 1), k, u, padding=(k - u) // 2)
            for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes)))
        self.resblocks = nn.ModuleList()
        ch = uic
        for i in range(len(self.ups)):
            ch = uic // 2 ** (i + 1)
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes):
                self.resblocks.append(block(ch, k, tuple(d)))
        self.conv_post = nn.Conv1d(ch, 1, 7, 1, padding=3, bias=False)
        self.cond = nn.Conv1d(gin_channels, uic, 1)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        # In-place activations/sums on tensors this function owns: same arithmetic, less memory traffic.
        x = self.conv_pre(x).add_(self.cond(g))
        nk = self.num_kernels
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE, inplace=True))
            x_act = F.leaky_relu(x, LRELU_SLOPE)  # every block of the stage starts with this
            xs = self.resblocks[i * nk](x, x_act)
            for j in range(1, nk):
                xs.add_(self.resblocks[i * nk + j](x, x_act))
            x = xs.div_(nk)
        x = self.conv_post(F.leaky_relu(x, 0.01, inplace=True))
        return x.tanh_()
