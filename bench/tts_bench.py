"""TTS speed benchmark at the real GPT-SoVITS v2 sizes with random weights (no downloads).

    nice python bench/tts_bench.py --json bench-tts.json [--threads 2] [--device cpu] [--quick]

Models are built in memory from the model classes: T2S 24 layers / 512 / 16 heads, SoVITS v2
(s2.json sizes), HuBERT-base and a RoBERTa-large-shaped BERT. The T2S EOS logit row is zeroed
so random weights never stop early (every decode runs its full token count).

The core keys measure the T2S as the engine's default config runs it (`t2s_quant`: auto, resolved
on this machine and reported as `t2s_quant`).

Keys: t2s_prefill_ms, t2s_ms_per_token, t2s_batch8_tokens_per_s, sovits_rtf, first_chunk_ms,
first_audio_ms_e2e (and _repeat: the same line again, text cache on), peak_rss_mb, device, threads,
t2s_quant; the bfloat16-vocoder SoVITS (RTF and rms error against float32), and on CPU each T2S mode
(t2s_fp32_*, t2s_bf16_*, t2s_int8_*) with its greedy-token agreement against float32.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tts.models.sampling import DecodeBatch, SamplingParams  # noqa: E402
from tts.models.t2s import BERT_DIM, T2SConfig, T2SModel  # noqa: E402
from tts.models.vits import SynthesizerTrn, VitsConfig  # noqa: E402
from tts.types import SAMPLE_RATE  # noqa: E402

SEED = 0
N_TEXT, N_PROMPT_PHONES, N_PROMPT_TOKENS = 40, 20, 30


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ---- models ------------------------------------------------------------------------------------
def build_t2s(device: torch.device, dtype: torch.dtype = torch.float32) -> T2SModel:
    torch.manual_seed(SEED)
    model = T2SModel(T2SConfig()).eval()
    with torch.no_grad():
        model.ar_predict_layer.weight[model.cfg.eos].zero_()  # logit 0: never the argmax or in the top-k
    return model.to(device, dtype)


def build_vits(device: torch.device) -> SynthesizerTrn:
    torch.manual_seed(SEED)
    model = SynthesizerTrn(VitsConfig()).eval().requires_grad_(False)
    return model.to(device)


def build_ssl(device: torch.device):
    from transformers import HubertConfig, HubertModel

    from tts.models.ssl import SSLModel

    torch.manual_seed(SEED)
    ssl = SSLModel(HubertModel(HubertConfig()))  # HuBERT-base: 12 layers, 768
    ssl.model.to(device)
    return ssl


def build_bert(device: torch.device, tokenizer_dir: Path):
    from transformers import BertConfig, BertModel, BertTokenizer

    from tts.models.bert import BertFeatures

    torch.manual_seed(SEED)
    cfg = BertConfig(vocab_size=21128, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                     intermediate_size=4096, max_position_embeddings=512, type_vocab_size=2)
    enc = BertModel(cfg, add_pooling_layer=False).eval()
    enc.encoder.layer = enc.encoder.layer[:22]  # hidden_states[-3], as BertFeatures.from_dir does
    enc.to(device)
    return BertFeatures(BertTokenizer.from_pretrained(str(tokenizer_dir)), enc)


def _item(rng: np.random.Generator, device: torch.device, n_text: int = N_TEXT):
    phones = torch.from_numpy(rng.integers(1, 700, N_PROMPT_PHONES + n_text)).to(device)
    bert = torch.zeros(BERT_DIM, phones.numel(), device=device)
    prompt = torch.from_numpy(rng.integers(0, 1024, N_PROMPT_TOKENS)).to(device)
    return phones, bert, prompt


def _params(n_tokens: int, seed: int = 0, top_k: int = 15) -> SamplingParams:
    return SamplingParams(top_k=top_k, seed=seed, max_new_tokens=n_tokens, early_stop_num=-1,
                          tokens_per_phone=None)


# ---- measurements --------------------------------------------------------------------------------
def t2s_prefill_ms(model: T2SModel, device: torch.device, reps: int = 5) -> float:
    batch = DecodeBatch(model, 1, 512, device)
    rng = np.random.default_rng(1)
    times = []
    for i in range(reps + 1):
        phones, bert, prompt = _item(rng, device)
        _sync(device)
        t = time.perf_counter()
        batch.add(i, phones, bert, prompt, _params(100), N_TEXT)
        _sync(device)
        times.append(time.perf_counter() - t)
        batch.remove(i)
    return 1000 * statistics.median(times[1:])


def t2s_decode(model: T2SModel, device: torch.device, n_tokens: int = 100, top_k: int = 15,
               seed: int = 0) -> tuple[float, list[int]]:
    """Batch 1: ms per token over steps 10..n (steady state) and the tokens."""
    batch = DecodeBatch(model, 1, 512, device)
    phones, bert, prompt = _item(np.random.default_rng(2 + seed), device)
    batch.add("r", phones, bert, prompt, _params(n_tokens, seed, top_k), N_TEXT)
    tokens, stamps = [], []
    while True:
        res = batch.step()
        stamps.append(time.perf_counter())
        tokens += [r.token for r in res if r.token is not None]
        if not res or res[0].finished:
            break
    per = (stamps[-1] - stamps[9]) / max(1, len(stamps) - 10)
    return 1000 * per, tokens


def t2s_batch8_tokens_per_s(model: T2SModel, device: torch.device, n_tokens: int = 100) -> float:
    batch = DecodeBatch(model, 8, 512, device)
    rng = np.random.default_rng(3)
    t = time.perf_counter()
    for i in range(8):
        phones, bert, prompt = _item(rng, device, n_text=30 + 3 * i)  # different lengths
        batch.add(i, phones, bert, prompt, _params(n_tokens, seed=i), 30 + 3 * i)
    total = 0
    while len(batch):
        total += sum(1 for r in batch.step() if r.token is not None)
    _sync(device)
    return total / (time.perf_counter() - t)


def _ref_spec(device: torch.device, seconds: float = 3.0) -> torch.Tensor:
    from tts.audio import spectrogram

    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wav = (0.3 * np.sin(2 * np.pi * 140 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    return torch.as_tensor(spectrogram(wav), dtype=torch.float32, device=device)


def sovits_rtf(vits: SynthesizerTrn, device: torch.device, n_tokens: int = 100) -> float:
    return _sovits_run(vits, device, n_tokens)[0]


def _sovits_run(vits: SynthesizerTrn, device: torch.device, n_tokens: int = 100) -> tuple[float, torch.Tensor]:
    """(RTF, audio) of style + whole decode of `n_tokens` (median of the last 4 of 5 runs)."""
    spec = _ref_spec(device)
    codes = torch.randint(0, 1024, (1, 1, n_tokens), generator=torch.Generator().manual_seed(0)).to(device)
    phones = torch.randint(1, 700, (1, 40), generator=torch.Generator().manual_seed(1)).to(device)
    times = []
    for _ in range(5):
        _sync(device)
        t = time.perf_counter()
        ge = vits.style([spec])
        audio = vits.decode(codes, phones, ge, noise_scale=0.5, generator=torch.Generator().manual_seed(0))
        _sync(device)
        times.append(time.perf_counter() - t)
    seconds = audio.numel() / SAMPLE_RATE
    return statistics.median(times[1:]) / seconds, audio.float()


def bf16_vocoder(vits: SynthesizerTrn) -> SynthesizerTrn:
    """A copy with its HiFi-GAN in bfloat16 (`tts.vocoder_dtype: bfloat16`)."""
    return copy.deepcopy(vits).set_vocoder_dtype(torch.bfloat16)


def fast_profile(t2s: T2SModel, vits: SynthesizerTrn) -> tuple[T2SModel, SynthesizerTrn]:
    """Copies for the opt-in CPU fast profile (docs/performance.md): int8 T2S, bfloat16 vocoder."""
    return t2s.quantize_int8(), bf16_vocoder(vits)


def bf16_vocoder_keys(vits: SynthesizerTrn, vits_bf16: SynthesizerTrn, device: torch.device) -> dict:
    """SoVITS with its HiFi-GAN in bfloat16 (`tts.vocoder_dtype`): RTF and rms error vs float32."""
    rtf32, ref = _sovits_run(vits, device)
    rtf, audio = _sovits_run(vits_bf16, device)
    err = float((audio - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt())
    return {"sovits_bf16_rtf": round(rtf, 3), "sovits_bf16_vs_fp32_rtf": round(rtf / rtf32, 2),
            "sovits_bf16_rel_rms_error": round(err, 4)}


def first_chunk_ms(model: T2SModel, vits: SynthesizerTrn, device: torch.device, first: int = 10) -> float:
    """A 40-phone sentence: T2S prefill + `first` tokens + the first streaming SoVITS chunk."""
    ge = vits.style([_ref_spec(device)])
    batch = DecodeBatch(model, 1, 512, device)
    rng = np.random.default_rng(4)
    times = []
    for rep in range(3):
        phones, bert, prompt = _item(rng, device)
        dec = vits.decode_streaming(phones[N_PROMPT_PHONES:], ge, generator=torch.Generator().manual_seed(rep))
        t = time.perf_counter()
        batch.add(rep, phones, bert, prompt, _params(100, rep), N_TEXT)
        toks: list[int] = []
        while len(toks) < first:
            toks += [r.token for r in batch.step() if r.token is not None]
        audio = dec.push(toks)
        _sync(device)
        times.append(time.perf_counter() - t)
        assert audio.numel() > 0
        batch.remove(rep)
    return 1000 * statistics.median(times[1:])


def first_audio_ms_e2e(models: dict, device: torch.device, threads: int, tmp: Path) -> tuple[float, float, float]:
    """Through the Engine: a 12-character zh sentence to its first audio chunk (frontend + BERT included:
    the engine's text cache is off, so every run computes them).

    Returns (median first-audio ms, RTF of the whole sentence, median first-audio ms of the same
    sentence again with the text cache on: a repeated line, frontend and BERT skipped)."""
    import soundfile as sf

    from tts.engine import Engine, EngineConfig
    from tts.types import SynthesisOptions

    class BenchEngine(Engine):  # the real engine with the in-memory models injected
        def _load_gpt(self, path):
            return models["t2s"]

        def _load_sovits(self, path):
            return models["vits"]

        def _ssl_model(self):
            return models["ssl"]

        def _bert_model(self):
            return models["bert"]

    spk = tmp / "speakers" / "bench"
    spk.mkdir(parents=True)
    for name in ("gpt.ckpt", "sovits.pth"):
        (spk / name).write_bytes(b"in-memory")
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    sf.write(spk / "ref.wav", (0.3 * np.sin(2 * np.pi * 140 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))), SAMPLE_RATE)
    (spk / "profile.yaml").write_text("gpt_model: gpt.ckpt\nsovits_model: sovits.pth\nref_audio: ref.wav\n"
                                      "ref_text: 这是一段三秒的参考音频。\nref_language: zh\ntarget_language: zh\n",
                                      encoding="utf-8")
    text = "今天天气很好，我们一起去公园吧。"  # 15 characters incl. punctuation, 13 spoken
    opts = SynthesisOptions(seed=0, split=False)
    out = []
    for cache in (0, 128):
        cfg = EngineConfig(device=str(device), speakers_dir=spk.parent, max_batch=8, max_len=512,
                           first_chunk_tokens=10, chunk_tokens=24, threads=threads, text_cache_size=cache)
        firsts, rtfs = [], []
        with BenchEngine(cfg) as engine:
            for i in range(4):  # the first run warms the frontend, BERT and the prompt cache
                t0 = time.perf_counter()
                first, n = None, 0
                for c in engine.synthesize(text, "bench", opts):
                    first = first or time.perf_counter()
                    n += len(c.pcm)
                if i:
                    firsts.append(1000 * (first - t0))
                    rtfs.append((time.perf_counter() - t0) / (n / SAMPLE_RATE))
        out.append((statistics.median(firsts), statistics.median(rtfs)))
    return out[0][0], out[0][1], out[1][0]


def agreement(a: list[int], b: list[int]) -> float:
    """Fraction of positions where two greedy token streams agree (over the longer length)."""
    n = max(len(a), len(b))
    return sum(x == y for x, y in zip(a, b)) / n if n else 1.0


def engine_default_t2s(t2s: T2SModel, device: torch.device) -> tuple[T2SModel, str]:
    """The T2S as an engine with the default config runs it (`t2s_quant: auto` resolved on this
    machine: bfloat16 decoder weights on a CPU with native bf16, else float32), and that mode."""
    from tts.engine import EngineConfig
    from tts.pipeline import apply_t2s_quant

    quant = EngineConfig(device=str(device)).t2s_quant
    if quant == "none":
        return t2s, quant
    return apply_t2s_quant(t2s.copy(), device, torch.float32, quant), quant


MODE_KEYS = {"none": "fp32", "bf16": "bf16", "int8": "int8"}  # t2s_quant -> key prefix t2s_<prefix>_*


def cpu_variants(model: T2SModel, default: T2SModel, quant: str, core: dict, vits: SynthesizerTrn,
                 vits_bf16: SynthesizerTrn, device: torch.device, n_tokens: int) -> dict:
    """The T2S modes of `t2s_quant` on CPU from the float32 `model`: float32 (`none`), bf16 weights
    (`bf16`) and int8 dynamic (`int8`): speed, greedy-token agreement with float32 and the first
    chunk (float32 vocoder); and the first chunk of the fast profile (int8 T2S, bfloat16 vocoder).
    The engine's default mode (`quant`, already built as `default`) reuses its `core` figures."""
    out = {}
    ref = [t2s_decode(model, device, n_tokens, top_k=1, seed=s)[1] for s in range(3)]
    variants = {"fp32": lambda: model, "bf16": lambda: model.copy().bf16_weights(), "int8": model.quantize_int8}
    variants[MODE_KEYS[quant]] = lambda: default
    for name, make in variants.items():
        m = make()
        if name == MODE_KEYS[quant]:
            out[f"t2s_{name}_ms_per_token"] = core["t2s_ms_per_token"]
            out[f"t2s_{name}_batch8_tokens_per_s"] = core["t2s_batch8_tokens_per_s"]
            out[f"t2s_{name}_first_chunk_ms"] = core["first_chunk_ms"]
        else:
            out[f"t2s_{name}_ms_per_token"] = round(t2s_decode(m, device, n_tokens)[0], 2)
            out[f"t2s_{name}_batch8_tokens_per_s"] = round(t2s_batch8_tokens_per_s(m, device, n_tokens), 1)
            out[f"t2s_{name}_first_chunk_ms"] = round(first_chunk_ms(m, vits, device), 1)
        if name != "fp32":
            toks = [t2s_decode(m, device, n_tokens, top_k=1, seed=s)[1] for s in range(3)]
            out[f"t2s_{name}_greedy_agreement"] = round(statistics.mean(agreement(a, b) for a, b in zip(ref, toks)), 3)
        if name == "int8":  # the CPU fast profile: int8 T2S + bfloat16 vocoder (docs/performance.md)
            out["fast_first_chunk_ms"] = round(first_chunk_ms(m, vits_bf16, device), 1)
        del m
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--quick", action="store_true", help="30 tokens instead of 100 (smoke run)")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # Build the models and run the engine first, with this thread single-threaded: a thread that
    # has run multi-threaded torch ops keeps an OpenMP team alive, which would slow the engine's
    # worker as it would in no real deployment (see tts.scheduler.Scheduler.call).
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    device = torch.device(a.device)
    n = 30 if a.quick else 100
    res: dict = {"device": _device_name(device), "threads": a.threads, "torch": torch.__version__,
                 "tokens": n}
    t0 = time.perf_counter()
    with torch.inference_mode():
        t2s_fp32, vits = build_t2s(device), build_vits(device)
        t2s, res["t2s_quant"] = engine_default_t2s(t2s_fp32, device)
    with tempfile.TemporaryDirectory() as tmp:
        from tts.factory import write_tiny_bert

        tok_dir = write_tiny_bert(Path(tmp) / "tok")  # tokenizer only: the encoder is RoBERTa-large-shaped
        models = {"t2s": t2s, "vits": vits, "ssl": build_ssl(device), "bert": build_bert(device, tok_dir)}
        first, rtf, repeat = first_audio_ms_e2e(models, device, a.threads, Path(tmp))
        res["first_audio_ms_e2e"], res["e2e_rtf"] = round(first, 1), round(rtf, 3)
        res["first_audio_ms_e2e_repeat"] = round(repeat, 1)
        del models
    torch.set_num_threads(a.threads)
    with torch.inference_mode():
        res["t2s_prefill_ms"] = round(t2s_prefill_ms(t2s, device), 1)
        res["t2s_ms_per_token"] = round(t2s_decode(t2s, device, n)[0], 2)
        res["t2s_batch8_tokens_per_s"] = round(t2s_batch8_tokens_per_s(t2s, device, n), 1)
        res["sovits_rtf"] = round(sovits_rtf(vits, device), 3)
        res["first_chunk_ms"] = round(first_chunk_ms(t2s, vits, device), 1)
    with torch.inference_mode():
        vits_bf16 = bf16_vocoder(vits)
        res.update(bf16_vocoder_keys(vits, vits_bf16, device))
        if device.type == "cpu":
            res.update(cpu_variants(t2s_fp32, t2s, res["t2s_quant"], res, vits, vits_bf16, device, n))
    res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    res["bench_seconds"] = round(time.perf_counter() - t0, 1)
    _print_table(res)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def _print_table(res: dict) -> None:
    width = max(len(k) for k in res)
    for k, v in res.items():
        sys.stdout.write(f"{k:<{width}}  {v}\n")


if __name__ == "__main__":
    sys.exit(main())
