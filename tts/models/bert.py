"""Phone-level BERT features for Chinese text (GPT-SoVITS `get_bert_feature`).

The reference takes `hidden_states[-3]` of chinese-roberta-wwm-ext-large. A BERT layer stack has no
final norm, so that is the output of the encoder truncated to its first L-2 layers: only those run
here, and the masked-LM head (a 1024 x 21128 projection) never does.

A text longer than the model's positions (`max_position_embeddings` minus CLS and SEP: 510 characters
for the real model) runs in windows, cut after punctuation where possible, and the per-character
features are concatenated: a text that fits runs as one window, exactly as the reference does.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Sequence

import torch

from tts.errors import CheckpointError, TTSError
from tts.models.onednn import pack_linears

log = logging.getLogger(__name__)

# Where a window may end: after a mark of the zh normaliser's output (and CJK/ASCII marks, spaces).
_BREAKS = frozenset("!?…,.-;:、，。！？；：\n ")


def windows(text: str, limit: int) -> list[str]:
    """`text` cut into pieces of at most `limit` characters that concatenate back to it.

    Pieces are about equally long; each cut falls after the break mark (punctuation or space)
    nearest to the even split point, or there exactly when none is within reach.
    """
    assert limit > 0
    out: list[str] = []
    start, n = 0, len(text)
    while n - start > limit:
        rest = n - start
        target = start + math.ceil(rest / math.ceil(rest / limit))  # even split of what is left
        lo, hi = start + max(1, limit // 2), start + limit  # a piece ends after text[end - 1]
        breaks = [end for end in range(lo, hi + 1) if text[end - 1] in _BREAKS]
        end = min(breaks, key=lambda e: (abs(e - target), -e)) if breaks else target
        out.append(text[start:end])
        start = end
    out.append(text[start:])
    return out


class BertFeatures:
    """`from_dir(folder)(norm_text, word2ph) -> [1024, sum(word2ph)]` float32.

    With `onednn` (default) the encoder's Linears run through oneDNN-prepacked weights on CPU
    (`tts.models.onednn`): about 2.3x faster on a sentence, features equal up to rounding (~1e-6).
    """

    def __init__(self, tokenizer, encoder: torch.nn.Module, onednn: bool = True):
        self.tokenizer = tokenizer
        self.encoder = encoder.eval().requires_grad_(False)
        # characters per window: every position but CLS and SEP
        self.max_chars = int(getattr(encoder.config, "max_position_embeddings", 512)) - 2
        if onednn:
            pack_linears(self.encoder)

    @classmethod
    def from_dir(cls, folder: str | Path) -> "BertFeatures":
        from transformers import AutoModelForMaskedLM, AutoTokenizer
        from transformers.utils.logging import disable_progress_bar

        disable_progress_bar()  # a server's log (or `python -m tts say`'s one-line errors) wants no bars
        p = Path(folder)
        if not (p / "config.json").is_file():
            raise CheckpointError(f"BERT model folder {p} has no config.json")
        try:
            tok = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
            mlm = AutoModelForMaskedLM.from_pretrained(str(p), local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"cannot load BERT model from {p}: {str(e).splitlines()[0]}") from e
        encoder = mlm.base_model  # BertModel without the MLM head
        layers = encoder.encoder.layer
        if len(layers) < 2:
            raise CheckpointError(f"BERT model {p} has {len(layers)} layers; hidden_states[-3] needs at least 2")
        encoder.encoder.layer = layers[: len(layers) - 2]  # hidden_states[-3] == output of layer L-2
        return cls(tok, encoder)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.encoder.parameters()).dtype

    @torch.inference_mode()
    def __call__(self, norm_text: str, word2ph: Sequence[int]) -> torch.Tensor:
        """One vector per character, repeated word2ph[i] times -> [1024, sum(word2ph)].

        Texts longer than `max_chars` run in windows (`windows`), so any length works.
        """
        if len(word2ph) != len(norm_text):
            raise TTSError(f"word2ph has {len(word2ph)} entries for {len(norm_text)} characters")
        h = torch.cat([self._encode(w) for w in windows(norm_text, self.max_chars)])  # [n_chars, 1024]
        reps = torch.as_tensor(list(word2ph), dtype=torch.long, device=h.device)
        return h.repeat_interleave(reps, dim=0).T.contiguous()  # [1024, sum(word2ph)]

    def _encode(self, text: str) -> torch.Tensor:
        """[len(text), 1024]: the features of one window, CLS and SEP dropped."""
        device = next(self.encoder.parameters()).device  # the engine may have moved the encoder to a GPU
        inputs = {k: v.to(device) for k, v in self.tokenizer(text, return_tensors="pt").items()}
        h = self.encoder(**inputs).last_hidden_state[0, 1:-1].float()  # [n_tokens, 1024]
        if h.shape[0] != len(text):
            raise TTSError(f"BERT tokenised {len(text)} characters into {h.shape[0]} tokens; "
                           "phone-level features need one token per character")
        return h
