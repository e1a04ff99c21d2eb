r"""The reference GPT-SoVITS measured side by side with this engine, same sizes, same weights.

    nice python bench/reference_bench.py --reference <checkout>/GPT_SoVITS --json bench-ref.json \
        [--threads 2] [--quick] [--rounds 3] [--ours bench-tts.json | --measure-ours [--fp32] [--bf16] [--fast]]

Builds the reference's own Text2SemanticDecoder (AR/models/t2s_model.py) and SynthesizerTrn
(module/models.py, v2 s2.json hyper-parameters) from the checkout given on the command line and
loads into them the weights of `bench/tts_bench.py`'s models (random, seed 0, T2S EOS logit row
zeroed so no decode stops early). Weight norm, folded in our SoVITS, is unfolded back into the
reference's `weight_g` / `weight_v` pairs. Nothing of the reference is copied into this project.

Measured through the reference's own inference code, the way its api_v2 / TTS.run calls it:
  t2s_prefill_ms, t2s_ms_per_token   `infer_panel_naive` (one request; the path TTS.run takes in
                                      streaming modes 2/3 and with parallel_infer off)
  t2s_batch_infer_*                   `infer_panel_batch_infer` with one prompt (TTS.run's path for
                                      a non-streaming request with the default parallel_infer=True)
  t2s_batch8_tokens_per_s             `infer_panel_batch_infer`, 8 prompts of different lengths
  sovits_rtf                          `SynthesizerTrn.decode`, 100 tokens, one 3 s reference spectrogram
  first_chunk_ms                      streaming_mode=3 (fixed-length chunks): T2S start to the first
                                      `decode_streaming` chunk, min_chunk_length=10 (our first chunk's
                                      token count); first_chunk_ms_api_default: min_chunk_length=16
Inputs, medians and warm-ups follow bench/tts_bench.py; "ours" is the T2S as the engine's default
config runs it (`t2s_quant`, reported). Also reported: greedy-token agreement (top_k=1) between the
reference and ours on the same weights (and of our float32 T2S where the default is not float32),
and the largest SoVITS sample difference at noise_scale=0.

Needs, besides this project's dependencies: tqdm, einops, torchmetrics, lightning-utilities
(`pip install --no-deps einops torchmetrics lightning-utilities`). The reference's f5_tts package
(v3/v4 only) is stubbed when it does not import; the v2 path measured here never uses it.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import tts_bench as ours  # noqa: E402  (also puts the project root on sys.path)
from tts.models.t2s import T2SConfig  # noqa: E402
from tts.models.vits import VitsConfig  # noqa: E402
from tts.types import SAMPLE_RATE  # noqa: E402

# s2.json values that are not part of VitsConfig (training-only or constants of the checkpoint).
S2_EXTRA = {"p_dropout": 0.1, "n_speakers": 300, "segment_size": 20480 // 640, "freeze_quantizer": True,
            "use_spectral_norm": False, "n_layers_q": 3}
# Training-only parts of the reference, absent from our model: the posterior encoder and the
# codebook's k-means/EMA buffers (its decode reads `embed` only). Matched as key prefix or suffix.
REF_ONLY = ("enc_q.", "._codebook.inited", "._codebook.cluster_size", "._codebook.embed_avg")
REPETITION_PENALTY = 1.35  # api_v2 default, as in our SamplingParams
OVERLAP_TOKENS = 2  # api_v2 overlap_length default
PATHS = {  # which of the reference's code paths each key measures (written to the JSON)
    "t2s_prefill_ms": "infer_panel_naive, start to first token",
    "t2s_ms_per_token": "infer_panel_naive, tokens 10..n of one request",
    "t2s_batch_infer_ms_per_token": "infer_panel_batch_infer with 1 prompt (api_v2 default, non-streaming)",
    "sovits_rtf": "SynthesizerTrn.decode, 100 tokens, one 3 s reference spectrogram",
    "first_chunk_ms": "streaming_mode=3: infer_panel_naive chunk of 10 tokens + decode_streaming",
    "first_chunk_ms_api_default": "as first_chunk_ms with min_chunk_length=16 (api_v2 default)",
}
LOWER_IS_BETTER = {"t2s_prefill_ms": True, "t2s_ms_per_token": True, "t2s_batch8_tokens_per_s": False,
                   "sovits_rtf": True, "first_chunk_ms": True}


# ---- pure helpers (unit-tested) ------------------------------------------------------------------
def t2s_config(cfg: T2SConfig) -> dict:
    """The reference's `config` dict (its `model` section) for our T2S sizes."""
    return {"model": {"hidden_dim": cfg.hidden_dim, "embedding_dim": cfg.hidden_dim, "head": cfg.head,
                      "n_layer": cfg.n_layer, "vocab_size": cfg.vocab_size, "EOS": cfg.eos,
                      "phoneme_vocab_size": cfg.phoneme_vocab_size, "dropout": 0.0},
            "data": {"max_sec": 54}}


def vits_kwargs(cfg: VitsConfig) -> dict:
    """Keyword arguments of the reference SynthesizerTrn for our SoVITS sizes (s2.json layout)."""
    kw: dict[str, Any] = {k: getattr(cfg, k) for k in (
        "inter_channels", "hidden_channels", "filter_channels", "n_heads", "n_layers", "kernel_size",
        "resblock", "upsample_initial_channel", "gin_channels", "semantic_frame_rate", "version")}
    kw.update(spec_channels=cfg.spec_channels, resblock_kernel_sizes=list(cfg.resblock_kernel_sizes),
              resblock_dilation_sizes=[list(d) for d in cfg.resblock_dilation_sizes],
              upsample_rates=list(cfg.upsample_rates), upsample_kernel_sizes=list(cfg.upsample_kernel_sizes))
    return {**kw, **S2_EXTRA}


def to_reference_state(ours_state: dict[str, torch.Tensor], ref_state: dict[str, torch.Tensor],
                       ref_only: tuple[str, ...] = REF_ONLY) -> dict[str, torch.Tensor]:
    """Our state dict in the reference's key layout; folded weight norm is unfolded.

    A reference `X.weight_g` / `X.weight_v` pair is filled from our `X.weight` W as v = W and
    g = ||W|| over every dim but 0 (so g * v / ||v|| = W). Keys starting or ending with one of
    `ref_only` are left out (they keep the reference's own values);
    any other key missing on either side, or a shape mismatch, raises ValueError.
    """
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for key, ref_t in ref_state.items():
        if key in ours_state:
            src = key
            out[key] = ours_state[key]
        elif key.endswith((".weight_g", ".weight_v")) and key[:-2] in ours_state:
            src = key[:-2]
            w = ours_state[src]
            if key.endswith("_v"):
                out[key] = w
            else:
                out[key] = w.reshape(w.shape[0], -1).norm(dim=1).reshape(ref_t.shape)
        elif key.startswith(ref_only) or key.endswith(ref_only):
            continue
        else:
            raise ValueError(f"no weights for the reference's {key}")
        used.add(src)
        if out[key].shape != ref_t.shape:
            raise ValueError(f"{key}: ours {tuple(out[key].shape)} vs reference {tuple(ref_t.shape)}")
    left = sorted(set(ours_state) - used)
    if left:
        raise ValueError(f"weights the reference has no place for: {left[:5]}")
    return out


def ratio(key: str, ref: float, mine: float) -> tuple[float, str]:
    """How many times better ours is, in the key's direction, and a sentence saying so."""
    if key in LOWER_IS_BETTER and not LOWER_IS_BETTER[key]:
        r, what = mine / ref, "its tokens/s" if "tokens" in key else "its value"
        return r, f"ours is {r:.2f}x {what}"
    r = ref / mine
    return r, (f"ours is {r:.2f}x faster" if r >= 1 else f"ours is {1 / r:.2f}x slower")


def format_table(ref: dict, mine: dict | None) -> str:
    """key | reference | ours | ratio, one line per compared key."""
    rows = [("key", "reference", "ours", "ratio")]
    for key in LOWER_IS_BETTER:
        if key not in ref:
            continue
        if mine and key in mine and ref[key] and mine[key]:
            rows.append((key, f"{ref[key]:g}", f"{mine[key]:g}", ratio(key, ref[key], mine[key])[1]))
        else:
            rows.append((key, f"{ref[key]:g}", "-", "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows) + "\n"


# ---- the reference -------------------------------------------------------------------------------
def import_reference(folder: Path) -> types.SimpleNamespace:
    """Import the reference's T2S and SoVITS modules from its GPT_SoVITS folder."""
    if not (folder / "AR" / "models" / "t2s_model.py").is_file():
        raise SystemExit(f"{folder} is not a GPT_SoVITS folder (no AR/models/t2s_model.py)")
    sys.path.insert(0, str(folder))
    try:
        importlib.import_module("f5_tts.model")
    except Exception:  # v3/v4 DiT (x_transformers, ...): imported by module/models.py, unused by v2
        stub = types.ModuleType("f5_tts.model")
        stub.DiT = None
        sys.modules["f5_tts"], sys.modules["f5_tts.model"] = types.ModuleType("f5_tts"), stub
    t2s_mod = importlib.import_module("AR.models.t2s_model")
    models = importlib.import_module("module.models")
    return types.SimpleNamespace(Text2SemanticDecoder=t2s_mod.Text2SemanticDecoder,
                                 SynthesizerTrn=models.SynthesizerTrn)


def reference_commit(folder: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        if out.returncode == 0:
            return out.stdout.strip()
    except OSError:
        pass
    return str(folder)


def build_pair(ref: types.SimpleNamespace, device: torch.device) -> dict[str, torch.nn.Module]:
    """Our T2S/SoVITS (as tts_bench builds them) and the reference's, with the same weights."""
    t2s, vits = ours.build_t2s(device), ours.build_vits(device)
    r_t2s = ref.Text2SemanticDecoder(t2s_config(t2s.cfg), top_k=3)
    # in place: the reference's scripted T2SBlocks hold these very Parameter tensors
    r_t2s.load_state_dict(to_reference_state(t2s.state_dict(), r_t2s.state_dict()), strict=True)
    kw = vits_kwargs(vits.cfg)
    r_vits = ref.SynthesizerTrn(kw.pop("spec_channels"), kw.pop("segment_size"), **kw)
    missing = r_vits.load_state_dict(to_reference_state(vits.state_dict(), r_vits.state_dict()), strict=False)
    assert all(k.startswith(REF_ONLY) or k.endswith(REF_ONLY) for k in missing.missing_keys), missing
    return {"fp32_t2s": t2s, "vits": vits, "ref_t2s": r_t2s.to(device).eval(), "ref_vits": r_vits.to(device).eval()}


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The reference prints progress (tqdm, print): kept, but sent to /dev/null."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        yield


def _args(item: tuple, device: torch.device) -> tuple:
    phones, bert, prompt = item
    return phones[None], torch.tensor([phones.numel()], device=device), prompt[None], bert[None]


def naive_run(model, item: tuple, device: torch.device, n: int, top_k: int = 15, seed: int = 0,
              chunk: int = 1) -> tuple[float, list[float], list[int]]:
    """`infer_panel_naive` for exactly n tokens (early_stop_num = n - 1), streamed in chunks of
    `chunk` tokens: (start time, a time stamp per chunk, the tokens)."""
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    gen = model.infer_panel_naive(*_args(item, device), top_k=top_k, top_p=1, early_stop_num=n - 1,
                                  temperature=1.0, repetition_penalty=REPETITION_PENALTY,
                                  streaming_mode=True, chunk_length=chunk)
    stamps, tokens = [], []
    for toks, _final in gen:
        ours._sync(device)
        stamps.append(time.perf_counter())
        tokens += toks[0].tolist()
    return t0, stamps, tokens


def ref_prefill_ms(model, device: torch.device, reps: int = 5) -> float:
    """Start of `infer_panel_naive` to its first token (prefill + one sampling), median."""
    rng = np.random.default_rng(1)
    times = []
    for i in range(reps + 1):
        t0, stamps, _ = naive_run(model, ours._item(rng, device), device, 1, seed=i)
        times.append(stamps[0] - t0)
    return 1000 * statistics.median(times[1:])


def ref_ms_per_token(model, device: torch.device, n: int) -> float:
    """Steady state over tokens 10..n of one naive request (as tts_bench.t2s_decode)."""
    _, stamps, tokens = naive_run(model, ours._item(np.random.default_rng(2), device), device, n)
    assert len(tokens) == n, len(tokens)
    return 1000 * (stamps[-1] - stamps[9]) / (len(stamps) - 10)


def _batch_infer(model, items: list[tuple], device: torch.device, n: int) -> int:
    """One `infer_panel_batch_infer` call decoding n tokens per item; returns the tokens decoded."""
    lens = torch.tensor([p.numel() for p, _, _ in items], device=device)
    torch.manual_seed(0)
    _, idx = model.infer_panel_batch_infer(
        [p for p, _, _ in items], lens, torch.stack([pr for _, _, pr in items]), [b for _, b, _ in items],
        top_k=15, top_p=1, early_stop_num=n - 1, temperature=1.0, repetition_penalty=REPETITION_PENALTY,
        max_len=int(lens.max()))
    ours._sync(device)
    return sum(i + 1 for i in idx)  # idx = last step index; the last token is dropped by the reference


def ref_batch_infer_single(model, device: torch.device, n: int) -> dict:
    """TTS.run's default non-streaming path for one sentence: whole-call times at 1, 10 and n tokens."""
    item = ours._item(np.random.default_rng(2), device)
    times = {}
    for k in (1, 1, 10, n):  # the first call warms up
        t = time.perf_counter()
        _batch_infer(model, [item], device, k)
        times[k] = time.perf_counter() - t
    return {"t2s_batch_infer_prefill_ms": round(1000 * times[1], 1),
            "t2s_batch_infer_ms_per_token": round(1000 * (times[n] - times[10]) / (n - 10), 2)}


def ref_batch8_tokens_per_s(model, device: torch.device, n: int) -> tuple[float, str]:
    rng = np.random.default_rng(3)
    items = [ours._item(rng, device, n_text=30 + 3 * i) for i in range(8)]  # different lengths
    t = time.perf_counter()
    try:
        total = _batch_infer(model, items, device, n)
        path = "infer_panel_batch_infer (8 prompts, one call)"
    except Exception as e:  # noqa: BLE001 - report the reference's failure, fall back to its serial path
        total, path = 0, f"8 sequential infer_panel_naive (batch_infer failed: {type(e).__name__})"
        t = time.perf_counter()
        for i, item in enumerate(items):
            total += len(naive_run(model, item, device, n, seed=i, chunk=n)[2])
    return total / (time.perf_counter() - t), path


def ref_sovits_rtf(vits, device: torch.device, n_tokens: int = 100) -> float:
    spec = ours._ref_spec(device)[None]
    codes = torch.randint(0, 1024, (1, 1, n_tokens), generator=torch.Generator().manual_seed(0)).to(device)
    phones = torch.randint(1, 700, (1, 40), generator=torch.Generator().manual_seed(1)).to(device)
    times = []
    for _ in range(5):  # as tts_bench: median of the last 4
        ours._sync(device)
        t = time.perf_counter()
        audio = vits.decode(codes, phones, [spec], noise_scale=0.5, speed=1)
        ours._sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:]) / (audio.numel() / SAMPLE_RATE)


def ref_first_chunk_ms(t2s, vits, device: torch.device, chunk: int) -> float:
    """streaming_mode=3 as TTS.run runs it: naive T2S yields `chunk` tokens, then the first
    `decode_streaming` call (style vector included, as the reference computes it per chunk)."""
    spec = ours._ref_spec(device)[None]
    hop = math.prod(vits.upsample_rates) * 2  # samples per 25 Hz token
    rng = np.random.default_rng(4)
    times = []
    for rep in range(3):
        phones, bert, prompt = item = ours._item(rng, device)
        torch.manual_seed(rep)
        t = time.perf_counter()
        gen = t2s.infer_panel_naive(*_args(item, device), top_k=15, top_p=1, early_stop_num=50 * 54,
                                    temperature=1.0, repetition_penalty=REPETITION_PENALTY,
                                    streaming_mode=True, chunk_length=chunk, mute_emb_sim_matrix=None)
        toks, final = next(gen)
        audio, _, _ = vits.decode_streaming(toks.unsqueeze(0), phones[None, ours.N_PROMPT_PHONES:], [spec],
                                            speed=1.0, sv_emb=None, result_length=None, overlap_frames=None,
                                            padding_length=0)
        audio = audio.detach()[0, 0, :]
        audio = audio if final else audio[: -math.ceil(OVERLAP_TOKENS * hop)]
        ours._sync(device)
        times.append(time.perf_counter() - t)
        gen.close()
        assert audio.numel() > 0
    return 1000 * statistics.median(times[1:])


def greedy_agreement(models: dict, device: torch.device, n: int, seeds: int = 3, t2s: str = "t2s") -> list[float]:
    """top_k=1 token streams of the reference vs our `models[t2s]` on the same prompts (tts_bench's inputs)."""
    out = []
    for s in range(seeds):
        mine = ours.t2s_decode(models[t2s], device, n, top_k=1, seed=s)[1]
        item = ours._item(np.random.default_rng(2 + s), device)
        theirs = naive_run(models["ref_t2s"], item, device, n, top_k=1, seed=s, chunk=n)[2]
        out.append(round(ours.agreement(mine, theirs), 3))
    return out


def sovits_max_abs_diff(models: dict, device: torch.device) -> float:
    """Largest sample difference of the two SoVITS decodes at noise_scale=0 (same codes, phones, spec)."""
    spec = ours._ref_spec(device)
    codes = torch.randint(0, 1024, (1, 1, 50), generator=torch.Generator().manual_seed(0)).to(device)
    phones = torch.randint(1, 700, (1, 40), generator=torch.Generator().manual_seed(1)).to(device)
    a = models["vits"].decode(codes, phones, models["vits"].style([spec]), noise_scale=0.0).reshape(-1)
    b = models["ref_vits"].decode(codes, phones, [spec[None]], noise_scale=0.0).reshape(-1)
    if a.numel() != b.numel():
        return float("inf")
    return float((a.float() - b.float()).abs().max())


# ---- runs ----------------------------------------------------------------------------------------
def measure_reference(models: dict, device: torch.device, n: int) -> dict:
    t2s, vits = models["ref_t2s"], models["ref_vits"]
    res: dict[str, Any] = {}
    with torch.no_grad(), quiet():  # TTS.run is @torch.no_grad()
        res["t2s_prefill_ms"] = round(ref_prefill_ms(t2s, device), 1)
        res["t2s_ms_per_token"] = round(ref_ms_per_token(t2s, device, n), 2)
        res.update(ref_batch_infer_single(t2s, device, n))
        tps, res["t2s_batch8_path"] = ref_batch8_tokens_per_s(t2s, device, n)
        res["t2s_batch8_tokens_per_s"] = round(tps, 1)
        res["sovits_rtf"] = round(ref_sovits_rtf(vits, device), 3)
        res["first_chunk_ms"] = round(ref_first_chunk_ms(t2s, vits, device, chunk=10), 1)
        res["first_chunk_ms_api_default"] = round(ref_first_chunk_ms(t2s, vits, device, chunk=16), 1)
    return res


# our variants besides the engine's default ("", `t2s_quant: auto`): key prefix -> (what it is, how
# its (T2S, SoVITS) pair is made from the float32 T2S and the default SoVITS)
PROFILES: dict[str, tuple[str, Callable[[Any, Any], tuple[Any, Any]]]] = {
    "fp32_": ("float32 T2S (t2s_quant: none), float32 vocoder", lambda t2s, vits: (t2s, vits)),
    "bf16_": ("bfloat16 T2S weights, float32 vocoder", lambda t2s, vits: (t2s.copy().bf16_weights(), vits)),
    "fast_": ("int8 T2S, bfloat16 vocoder", lambda t2s, vits: ours.fast_profile(t2s, vits)),
}


def measure_ours(models: dict, device: torch.device, n: int, variant: str = "") -> dict:
    """tts_bench's five core keys, measured in this process next to the reference; `variant`: ""
    (the engine's default config) or a key of PROFILES."""
    t2s, vits = models[variant + "t2s"], models[variant + "vits"]
    with torch.inference_mode():
        return {"t2s_prefill_ms": round(ours.t2s_prefill_ms(t2s, device), 1),
                "t2s_ms_per_token": round(ours.t2s_decode(t2s, device, n)[0], 2),
                "t2s_batch8_tokens_per_s": round(ours.t2s_batch8_tokens_per_s(t2s, device, n), 1),
                "sovits_rtf": round(ours.sovits_rtf(vits, device), 3),
                "first_chunk_ms": round(ours.first_chunk_ms(t2s, vits, device), 1)}


def warm_up(models: dict, device: torch.device, n: int) -> None:
    """One full request through each path of both engines before any timing: the reference's
    scripted (TorchScript) blocks profile and specialise on their first calls."""
    item = ours._item(np.random.default_rng(0), device)
    with torch.no_grad(), quiet():
        naive_run(models["ref_t2s"], item, device, n)
        _batch_infer(models["ref_t2s"], [item, item], device, n)
    with torch.inference_mode():
        ours.t2s_decode(models["t2s"], device, n)


def median_of(runs: list[dict]) -> dict:
    """Per-key median of numeric values over rounds (other values from the first round)."""
    out = dict(runs[0])
    for k, v in out.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = round(statistics.median(r[k] for r in runs), 3)
    return out


def measure_rounds(models: dict, device: torch.device, n: int, rounds: int,
                   variants: list[str]) -> tuple[dict, dict[str, dict]]:
    """Reference and our `variants` ("" = default, or keys of PROFILES), alternating round by round so load
    spikes hit every side."""
    refs: list[dict] = []
    mine: dict[str, list[dict]] = {v: [] for v in variants}
    for r in range(rounds):
        refs.append(_timed(f"reference round {r + 1}", lambda: measure_reference(models, device, n)))
        for v in variants:
            mine[v].append(_timed(f"ours {v or 'default '}round {r + 1}",
                                  lambda: measure_ours(models, device, n, v)))
    return median_of(refs), {v: median_of(runs) for v, runs in mine.items()}


def _timed(label: str, fn: Callable[[], Any]) -> Any:
    t = time.perf_counter()
    out = fn()
    sys.stderr.write(f"{label}: {time.perf_counter() - t:.1f} s\n")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", required=True, type=Path, help="the GPT_SoVITS folder of a checkout")
    ap.add_argument("--json", help="write the reference's results here")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--quick", action="store_true", help="30 tokens instead of 100 (smoke run)")
    ap.add_argument("--ours", type=Path, help="a bench/tts_bench.py JSON to compare with")
    ap.add_argument("--measure-ours", action="store_true", help="measure our core keys in this process too")
    ap.add_argument("--fast", action="store_true",
                    help="with --measure-ours: also our CPU fast profile (int8 T2S, bfloat16 vocoder)")
    ap.add_argument("--bf16", action="store_true",
                    help="with --measure-ours: also ours with bfloat16 T2S weights (t2s_quant: bf16)")
    ap.add_argument("--fp32", action="store_true",
                    help="with --measure-ours: also ours with a float32 T2S (t2s_quant: none)")
    ap.add_argument("--rounds", type=int, default=1, help="alternate reference/ours rounds; per-key median")
    ap.add_argument("--reference-commit", help="the checkout's commit when its folder is not a git tree")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    n = 30 if a.quick else 100
    folder = a.reference.resolve()
    with quiet():
        ref_mod = import_reference(folder)
        models = build_pair(ref_mod, device)
    res: dict[str, Any] = {"device": ours._device_name(device), "threads": a.threads, "torch": torch.__version__,
                           "tokens": n, "reference_commit": a.reference_commit or reference_commit(folder)}
    models["t2s"], res["t2s_quant"] = ours.engine_default_t2s(models["fp32_t2s"], device)
    extra = [v for v, on in (("fp32_", a.fp32), ("bf16_", a.bf16), ("fast_", a.fast)) if on]
    variants = [""] + extra if a.measure_ours else []
    for v in variants[1:]:
        models[v + "t2s"], models[v + "vits"] = PROFILES[v][1](models["fp32_t2s"], models["vits"])
    _timed("warm-up", lambda: warm_up(models, device, n))
    ref_res, by_variant = measure_rounds(models, device, n, max(1, a.rounds), variants)
    measured = by_variant.get("", {})
    res.update(ref_res, rounds=max(1, a.rounds), paths=PATHS)
    with torch.inference_mode(), quiet():
        agree = greedy_agreement(models, device, n)
        if res["t2s_quant"] != "none":  # and the float32 T2S: equal to the reference's tokens
            res["greedy_agreement_with_ours_fp32"] = round(statistics.mean(
                greedy_agreement(models, device, n, t2s="fp32_t2s")), 3)
        res["sovits_max_abs_diff_vs_ours"] = float(f"{sovits_max_abs_diff(models, device):.3g}")
    res["greedy_agreement_with_ours"] = round(statistics.mean(agree), 3)
    res["greedy_agreement_per_prompt"] = agree
    mine = json.loads(a.ours.read_text(encoding="utf-8")) if a.ours else None
    if measured:
        mine = {**(mine or {}), **measured}
        res["ours"] = mine
    if mine:
        res["ratios"] = {k: round(ratio(k, res[k], mine[k])[0], 2) for k in LOWER_IS_BETTER
                         if res.get(k) and mine.get(k)}
    sys.stdout.write(format_table(res, mine))
    for v in variants[1:]:
        got = by_variant[v]
        res["ours_" + v[:-1]] = got
        res["ratios_" + v[:-1]] = {k: round(ratio(k, res[k], got[k])[0], 2) for k in LOWER_IS_BETTER
                                   if res.get(k) and got.get(k)}
        sys.stdout.write(f"\n{v[:-1]} profile ({PROFILES[v][0]}):\n" + format_table(res, got))
    for k, v in res.items():
        if k not in LOWER_IS_BETTER and k not in ("ours", "ratios", "paths") and not k.startswith(("ours_", "ratios_")):
            sys.stdout.write(f"{k}: {v}\n")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
