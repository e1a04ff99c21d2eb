"""The parity command of ../shared/parity/CONTRACT.md (run from the project root):

    python -m tts.parity --gpt G.ckpt --sovits S.pth --gpt-inputs gpt_in.npz \
        --sovits-inputs sovits_in.npz --out out.npz

Loads both checkpoints with the project's own loaders, runs the project's own models on CPU in
float32 and writes every output the contract names.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np


def gpt_outputs(gpt_path: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """T2S cases, the batched case and the symbol fingerprint."""
    raise NotImplementedError("gpt parity")


def sovits_outputs(sovits_path: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Reference spectrogram, extract_latent codes and the decode tags."""
    raise NotImplementedError("sovits parity")


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
