r"""The parity command of the GPT-SoVITS v2 parity set (its CONTRACT.md; run from the project root):

    python -m tts.parity --gpt G.ckpt --sovits S.pth --gpt-inputs gpt_in.npz \
        --sovits-inputs sovits_in.npz --out out.npz

Loads both checkpoints with the project's own loaders, runs the project's own models on CPU in
float32 and writes every output the contract names.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np


def _gpt_params(inputs: dict[str, np.ndarray], prefix: str, greedy: bool = False):  # -> SamplingParams
    """Sampling settings of one case; the phone-proportional cap is off (the contract fixes the stop rule)."""
    from tts.models.sampling import SamplingParams

    def get(name: str, default: float) -> float:
        return inputs[prefix + name].item() if prefix + name in inputs else default

    early = int(get("early_stop_num", -1))
    return SamplingParams(top_k=1 if greedy else int(get("top_k", 1)), top_p=float(get("top_p", 1.0)),
                          temperature=float(get("temperature", 1.0)),
                          repetition_penalty=float(get("repetition_penalty", 1.0)), seed=0,
                          early_stop_num=early, max_new_tokens=max(early, 1500), tokens_per_phone=None)


def gpt_outputs(gpt_path: str, inputs: dict[str, np.ndarray], model: Any = None) -> dict[str, np.ndarray]:
    """T2S cases, the batched case and the symbol fingerprint. `model`: a T2SModel to run instead of
    the checkpoint's float32 one (the tests hold the CPU speed modes to the parity set's tokens)."""
    import hashlib

    import torch

    from tts.checkpoint import load_gpt
    from tts.frontend.symbols import symbols_v2
    from tts.models.sampling import DecodeItem, decode, decode_batch
    from tts.models.t2s import T2SModel

    if model is None:
        model = T2SModel.from_checkpoint(load_gpt(gpt_path)).float()

    def item(phones: str, bert: str, prompt: str) -> DecodeItem:
        return DecodeItem(torch.from_numpy(np.asarray(inputs[phones], np.int64)),
                          torch.from_numpy(np.asarray(inputs[bert], np.float32)),
                          torch.from_numpy(np.asarray(inputs[prompt], np.int64)).reshape(-1))

    out: dict[str, np.ndarray] = {}
    cases = sorted(k[len("gpt_"):-len("_all_phones")] for k in inputs
                   if k.startswith("gpt_") and k.endswith("_all_phones") and not k.startswith("gpt_batch"))
    for c in cases:
        p = f"gpt_{c}_"
        res = decode(model, item(p + "all_phones", p + "bert", p + "prompt_semantic"), _gpt_params(inputs, p),
                     record_logits=True)
        out[p + "tokens"] = res.tokens.numpy().astype(np.int64)
        out[p + "step_logits"] = res.logits.numpy().astype(np.float32)
    if "gpt_batch_0_all_phones" in inputs:
        items = [item(f"gpt_batch_{i}_all_phones", f"gpt_batch_{i}_bert", "gpt_batch_prompt_semantic")
                 for i in (0, 1)]
        for i, res in enumerate(decode_batch(model, items, _gpt_params(inputs, "gpt_batch_", greedy=True))):
            out[f"gpt_batch_tokens_{i}"] = res.tokens.numpy().astype(np.int64)
    index = {s: i for i, s in enumerate(symbols_v2)}
    out["symbols_v2_count"] = np.int64(len(symbols_v2))
    out["symbols_v2_sha256"] = np.str_(hashlib.sha256("\n".join(symbols_v2).encode("utf-8")).hexdigest())
    if "symbols_v2_spot_names" in inputs:
        out["symbols_v2_spot_ids"] = np.array([index.get(str(s), -1) for s in inputs["symbols_v2_spot_names"]],
                                              np.int64)
    return out


def sovits_outputs(sovits_path: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Reference spectrogram, extract_latent codes and the decode tags."""
    import torch

    from tts.audio import spectrogram
    from tts.checkpoint import load_sovits
    from tts.models.vits import SynthesizerTrn

    model = SynthesizerTrn.from_checkpoint(load_sovits(sovits_path))
    t = torch.from_numpy
    out: dict[str, np.ndarray] = {}
    ref_spec = spectrogram(inputs["ref_wav_32k"])
    out["ref_spec"] = ref_spec
    if "ssl_feature" in inputs:
        ssl = t(np.asarray(inputs["ssl_feature"], dtype=np.float32)).reshape(1, 768, -1)
        out["extract_latent_codes"] = model.extract_latent(ssl).numpy().astype(np.int64)
    ge_one = model.style(t(ref_spec))
    ge_two = None
    if "aux_wav_32k" in inputs:
        ge_two = model.style([t(ref_spec), t(spectrogram(inputs["aux_wav_32k"]))])
    for tag in ("ns05", "ns0", "speed125", "e2e", "tworefs"):
        if f"decode_{tag}_noise_scale" not in inputs or (tag == "tworefs" and ge_two is None):
            continue
        if tag == "e2e":
            codes, phones = inputs["e2e_pred_semantic"], inputs["e2e_text_phones"]
        else:
            codes, phones = inputs["decode_codes"], inputs["decode_phones"]
        ge = ge_two if tag == "tworefs" else ge_one
        eps = inputs.get(f"decode_{tag}_eps")
        audio = model.decode(t(np.asarray(codes, dtype=np.int64)), t(np.asarray(phones, dtype=np.int64)), ge,
                             noise_scale=float(inputs[f"decode_{tag}_noise_scale"]),
                             speed=float(inputs.get(f"decode_{tag}_speed", 1.0)),
                             eps=None if eps is None else t(np.asarray(eps, dtype=np.float32)),
                             generator=torch.Generator().manual_seed(0))
        out[f"decode_{tag}_audio"] = audio.numpy().astype(np.float32)
        out[f"decode_{tag}_ge"] = ge.reshape(-1).numpy().astype(np.float32)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tts.parity", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpt", required=True)
    ap.add_argument("--sovits", required=True)
    ap.add_argument("--gpt-inputs", required=True)
    ap.add_argument("--sovits-inputs", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    import torch

    torch.set_grad_enabled(False)
    with np.load(a.gpt_inputs) as g, np.load(a.sovits_inputs) as s:
        gi, si = {k: g[k] for k in g.files}, {k: s[k] for k in s.files}
    out: dict[str, np.ndarray] = {}
    out.update(gpt_outputs(a.gpt, gi))
    out.update(sovits_outputs(a.sovits, si))
    np.savez(a.out, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
