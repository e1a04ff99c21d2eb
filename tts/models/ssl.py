"""HuBERT content features for a reference clip (GPT-SoVITS `CNHubert`): 16 kHz wav -> [1, 768, T] at 50 Hz.

The prompt semantic tokens are `SynthesizerTrn.extract_latent(SSLModel(wav16k))`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from tts.errors import CheckpointError

log = logging.getLogger(__name__)

SSL_SR = 16000
# GPT-SoVITS appends 0.3 * 32000 zeros (0.6 s at 16 kHz) to the reference before HuBERT.
TAIL_ZEROS = int(0.3 * 32000)


class SSLModel:
    """A local HF `HubertModel` folder (e.g. chinese-hubert-base); the raw waveform goes in, no normalisation."""

    def __init__(self, model: torch.nn.Module):
        self.model = model.eval().requires_grad_(False)

    @classmethod
    def from_dir(cls, folder: str | Path) -> "SSLModel":
        from transformers import HubertModel
        from transformers.utils.logging import disable_progress_bar

        disable_progress_bar()  # a server's log (or `python -m tts say`'s one-line errors) wants no bars
        p = Path(folder)
        if not (p / "config.json").is_file():
            raise CheckpointError(f"HuBERT model folder {p} has no config.json")
        try:
            model = HubertModel.from_pretrained(str(p), local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"cannot load HuBERT model from {p}: {str(e).splitlines()[0]}") from e
        if model.config.hidden_size != 768:
            raise CheckpointError(f"HuBERT model {p} has hidden size {model.config.hidden_size}; SoVITS needs 768")
        return cls(model)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @torch.inference_mode()
    def __call__(self, wav16k: np.ndarray | torch.Tensor) -> torch.Tensor:
        """wav16k [samples] float mono -> last_hidden_state as [1, 768, T] (T ~ samples / 320)."""
        x = torch.as_tensor(np.asarray(wav16k, dtype=np.float32) if isinstance(wav16k, np.ndarray) else wav16k)
        x = x.reshape(-1).float()
        device = next(self.model.parameters()).device  # the engine may have moved the model to a GPU
        x = torch.cat([x, x.new_zeros(TAIL_ZEROS)])[None].to(device, self.dtype)  # [1, samples + 9600]
        h = self.model(x).last_hidden_state  # [1, T, 768]
        return h.transpose(1, 2).float()
