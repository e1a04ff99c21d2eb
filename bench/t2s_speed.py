"""T2S decode speed at the real GPT-SoVITS v2 size, speed options side by side.

    python bench/t2s_speed.py [--threads 1] [--repeats 3] [--variants fp32,int8,bf16,bf16_all]
                              [--parity-gpt G.ckpt --parity-goldens gpt_goldens.npz] [--sovits] [--json OUT]

Random weights (seeded), 24 layers / 512 hidden / 16 heads / FFN 2048 / vocab 1025. The EOS row
of the output layer is zeroed so every greedy decode runs its full token count. Variants are
measured interleaved in one process (variant A, B, C, then A, B, C again ...) and the table shows
medians over the repeats, as wall-clock and as process CPU time (CPU time is the steadier figure on
a shared machine when one thread is used).

Figures:
  prefill_ms        one `DecodeBatch.add`: 40 text phones + 20 prompt phones + 30 prompt tokens
  ms_per_token      batch 1, median decode step over 100 greedy tokens (first step excluded)
  batch8_tok_s      8 requests prefilled, then stepped to 100 tokens each: 800 / decode time
Token agreement: share of equal greedy tokens (batch-8 run, 8 x 99 tokens) of each variant against
the first variant at the real size (random weights: close logits, a hard case) and, given the parity files, against the reference's golden tokens.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tts.models.sampling import DecodeBatch, DecodeItem, SamplingParams, decode  # noqa: E402
from tts.models.t2s import T2SModel  # noqa: E402
from tts_bench import build_t2s  # noqa: E402

N_TEXT, N_PROMPT_PHONES, N_PROMPT = 40, 20, 30
N_TOKENS = 100
MAX_LEN = N_TEXT + N_PROMPT_PHONES + N_PROMPT + N_TOKENS + 8


@dataclass
class Timing:
    wall: float
    cpu: float


def _clock(fn) -> Timing:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return Timing(time.perf_counter() - w, time.process_time() - c)


def make_variant(base: T2SModel, name: str) -> tuple[T2SModel, torch.dtype]:
    if name in ("fp32", "fp32_compiled"):
        return base, torch.float32
    if name == "fp32_blas":  # the default BLAS Linear path instead of oneDNN-prepacked weights
        return base.copy().use_onednn(False), torch.float32
    if name == "int8":
        return base.quantize_int8(per_channel=True), torch.float32
    if name == "int8_tensor":
        return base.quantize_int8(per_channel=False), torch.float32
    if name == "bf16":  # bfloat16 decoder weights, float32 activations (`tts.t2s_quant: bf16`)
        return base.copy().bf16_weights(), torch.float32
    if name == "bf16_all":  # the whole model and its KV cache in bfloat16
        return base.copy().to(torch.bfloat16), torch.bfloat16
    raise SystemExit(f"unknown variant {name!r}")


def make_item(seed: int) -> DecodeItem:
    g = torch.Generator().manual_seed(seed)
    n = N_TEXT + N_PROMPT_PHONES
    return DecodeItem(torch.randint(0, 732, (n,), generator=g), torch.randn(1024, n, generator=g),
                      torch.randint(0, 1024, (N_PROMPT,), generator=g), N_TEXT)


GREEDY = SamplingParams(top_k=1, early_stop_num=-1, max_new_tokens=N_TOKENS, tokens_per_phone=None)


def new_batch(model: T2SModel, dtype: torch.dtype, compiled: bool) -> DecodeBatch:
    return DecodeBatch(model, 8, MAX_LEN, dtype=dtype, compile=compiled)


def measure(batch: DecodeBatch, items: list[DecodeItem]) -> tuple[dict[str, Timing], list[list[int]]]:
    """prefill, per-token step (batch 1) and batch-8 decode time, one pass."""
    out: dict[str, Timing] = {}
    batch.model.cache_owner = batch  # variants share the float32 model (and its cache)
    it = items[0]
    out["prefill"] = _clock(lambda: batch.add(0, it.phones, it.bert, it.prompt, GREEDY, it.n_text_phones))
    batch.step()  # the prefill's token
    steps = []
    while len(batch):
        steps.append(_clock(batch.step))
    steps = steps[1:]
    out["step"] = Timing(statistics.median(s.wall for s in steps), statistics.median(s.cpu for s in steps))
    for i, it in enumerate(items[:8]):
        batch.add(i, it.phones, it.bert, it.prompt, GREEDY, it.n_text_phones)
    batch.step()

    tokens: list[list[int]] = [[] for _ in range(8)]

    def run() -> None:
        while len(batch):
            for r in batch.step():
                if r.token is not None:
                    tokens[int(r.req_id)].append(r.token)  # type: ignore[call-overload]
    out["batch8"] = _clock(run)
    return out, tokens


def agreement(a: list[int], b: list[int]) -> tuple[int, float]:
    """(length of the common prefix, share of equal positions over the shorter sequence)."""
    n = min(len(a), len(b))
    prefix = next((i for i in range(n) if a[i] != b[i]), n)
    same = sum(x == y for x, y in zip(a, b)) / max(n, 1)
    return prefix, same


def parity_agreement(variants: list[str], gpt: Path, goldens: Path) -> dict[str, dict[str, object]]:
    from tts.checkpoint import load_gpt

    z = np.load(goldens)
    base = T2SModel.from_checkpoint(load_gpt(gpt))
    res: dict[str, dict[str, object]] = {}
    for name in variants:
        model, _ = make_variant(base, name)
        cases = {}
        for case in "ABCD":
            p = f"gpt_{case}_"
            if p + "all_phones" not in z:
                continue
            early = int(z[p + "early_stop_num"])
            params = SamplingParams(top_k=1, repetition_penalty=float(z[p + "repetition_penalty"]),
                                    early_stop_num=early, max_new_tokens=max(early, 1500), tokens_per_phone=None)
            item = DecodeItem(torch.from_numpy(z[p + "all_phones"].astype(np.int64)),
                              torch.from_numpy(z[p + "bert"].astype(np.float32)),
                              torch.from_numpy(z[p + "prompt_semantic"].astype(np.int64)))
            got = decode(model, item, params).tokens.tolist()
            want = z[p + "y_full"][item.prompt.numel():].astype(np.int64).tolist()  # the new tokens
            cases[case] = agreement(got, want)
        res[name] = {k: {"prefix": v[0], "same": round(v[1], 4)} for k, v in cases.items()}
    return res


def sovits_speed(repeats: int) -> dict[str, float]:
    """SoVITS v2 (s2.json sizes, random weights): 100 tokens = 4 s of audio, one 3 s reference.

    Whole decode split into prior (enc_p) / flow / vocoder, and the streaming decoder fed
    10 then 24-token chunks; RTF = seconds per second of audio (wall and CPU)."""
    from tts.models.vits import StreamingDecoder, SynthesizerTrn, VitsConfig

    torch.manual_seed(0)
    m = SynthesizerTrn(VitsConfig()).eval().requires_grad_(False)
    toks = torch.randint(0, 1024, (N_TOKENS,))
    phones = torch.randint(0, 732, (1, N_TEXT))
    ge = m.style(torch.rand(1025, 150))
    seconds = N_TOKENS / 25

    def whole() -> dict[str, Timing]:
        out = {}
        res: dict[str, object] = {}
        out["prior"] = _clock(lambda: res.update(p=m.prior(toks, phones, ge)))
        m_p, logs_p = res["p"]  # type: ignore[misc]
        z_p = m.sample_prior(m_p, logs_p, 0.5)
        out["flow"] = _clock(lambda: res.update(z=m.flow.reverse(z_p, ge)))
        out["vocoder"] = _clock(lambda: m.dec(res["z"], ge))
        return out

    def stream() -> None:
        dec = StreamingDecoder(m, phones, ge, 0.5)
        i = 0
        for n in (10, 24, 24, 24, 18):
            dec.push(toks[i:i + n])
            i += n
        dec.finish()

    runs: dict[str, list[Timing]] = {}
    with torch.inference_mode():
        whole()
        for _ in range(repeats):
            for k, t in whole().items():
                runs.setdefault(k, []).append(t)
            runs.setdefault("stream", []).append(_clock(stream))
    med = {k: Timing(statistics.median(t.wall for t in v), statistics.median(t.cpu for t in v)) for k, v in runs.items()}
    total = Timing(sum(med[k].wall for k in ("prior", "flow", "vocoder")),
                   sum(med[k].cpu for k in ("prior", "flow", "vocoder")))
    out = {f"sovits_{k}_ms": v.wall * 1e3 for k, v in med.items()}
    out |= {"sovits_rtf": total.wall / seconds, "sovits_rtf_cpu": total.cpu / seconds,
            "sovits_stream_rtf": med["stream"].wall / seconds, "sovits_stream_rtf_cpu": med["stream"].cpu / seconds}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variants", default="fp32,fp32_blas,int8,bf16,bf16_all")
    ap.add_argument("--parity-gpt", type=Path)
    ap.add_argument("--parity-goldens", type=Path)
    ap.add_argument("--sovits", action="store_true", help="also time SoVITS decode at the v2 size")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*quantize_per.*")
    torch.set_num_threads(args.threads)
    names = args.variants.split(",")
    base = build_t2s(torch.device("cpu")).requires_grad_(False)  # EOS row zeroed: fixed-length decodes
    models = {n: make_variant(base, n) for n in names}
    items = [make_item(i) for i in range(8)]
    runs: dict[str, list[dict[str, Timing]]] = {n: [] for n in names}
    toks: dict[str, list[list[int]]] = {}
    with torch.inference_mode():
        batches = {n: new_batch(m, dt, n.endswith("_compiled")) for n, (m, dt) in models.items()}
        for n, b in batches.items():  # warm-up (and compilation), not counted
            c = time.perf_counter()
            _, toks[n] = measure(b, items)
            log_compile = time.perf_counter() - c
            if n.endswith("_compiled"):
                print(f"{n}: first pass incl. compilation {log_compile:.1f} s")
        for _ in range(args.repeats):
            for n, b in batches.items():
                runs[n].append(measure(b, items)[0])
    ref = toks[names[0]]
    agree = {n: statistics.mean(agreement(a, b)[1] for a, b in zip(t, ref)) for n, t in toks.items()}
    result: dict[str, object] = {"threads": args.threads, "repeats": args.repeats, "torch": torch.__version__,
                                 "variants": {}}
    print(f"T2S 24x512, threads={args.threads}, median of {args.repeats} (wall / cpu)")
    print(f"{'variant':<14} {'prefill ms':>16} {'ms/token b1':>16} {'b8 tok/s':>16} {'agree':>6}")
    for n in names:
        med = {k: Timing(statistics.median(r[k].wall for r in runs[n]), statistics.median(r[k].cpu for r in runs[n]))
               for k in ("prefill", "step", "batch8")}
        row = {
            "prefill_ms": med["prefill"].wall * 1e3, "prefill_cpu_ms": med["prefill"].cpu * 1e3,
            "ms_per_token": med["step"].wall * 1e3, "ms_per_token_cpu": med["step"].cpu * 1e3,
            "batch8_tokens_per_s": 8 * (N_TOKENS - 1) / med["batch8"].wall,
            "batch8_tokens_per_s_cpu": 8 * (N_TOKENS - 1) / max(med["batch8"].cpu, 1e-9),
            "real_size_token_agreement": agree[n],
        }
        result["variants"][n] = row  # type: ignore[index]
        print(f"{n:<14} {row['prefill_ms']:7.1f} / {row['prefill_cpu_ms']:6.1f} "
              f"{row['ms_per_token']:7.2f} / {row['ms_per_token_cpu']:6.2f} "
              f"{row['batch8_tokens_per_s']:7.1f} / {row['batch8_tokens_per_s_cpu']:6.1f} "
              f"{agree[n]:6.2f}")
    if args.parity_gpt and args.parity_goldens:
        plain = [n for n in names if not n.endswith("_compiled")]  # compiled = the same float32 model
        result["parity_agreement"] = pa = parity_agreement(plain, args.parity_gpt, args.parity_goldens)
        for n, cases in pa.items():
            print(f"parity tokens {n:<12}", " ".join(f"{c}:{v['prefix']}/{v['same']:.2f}" for c, v in cases.items()))
    if args.sovits:
        result["sovits"] = sv = sovits_speed(args.repeats)
        print("SoVITS 4 s audio: " + ", ".join(f"{k[7:]} {v:.3f}" if "rtf" in k else f"{k[7:]} {v:.0f}"
                                              for k, v in sv.items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
