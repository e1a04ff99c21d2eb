"""Tiny, deterministic models in the real on-disk formats, for tests and the embedded demo.

Every writer is a pure function of its arguments and seed: the same call writes the same bytes.
"""
from __future__ import annotations

from pathlib import Path


TINY_GPT_HIDDEN, TINY_GPT_HEADS, TINY_GPT_LAYERS = 64, 4, 2
TINY_GPT_TOKENS_PER_PHONE = 3.0  # the EOS fires once audio tokens / phones (prompt included) pass this


def _tiny_gpt_config(hidden: int, heads: int, layers: int) -> dict:
    """The "config" dict a GPT-SoVITS s1 training run stores (configs/s1longer-v2.yaml + webui keys)."""
    return {
        "data": {"max_eval_sample": 8, "max_sec": 54, "num_workers": 4, "pad_val": 1024},
        "inference": {"top_k": 15},
        "model": {"EOS": 1024, "dropout": 0, "embedding_dim": hidden, "head": heads, "hidden_dim": hidden,
                  "linear_units": 4 * hidden, "n_layer": layers, "phoneme_vocab_size": 732, "random_bert": 0,
                  "vocab_size": 1025},
        "optimizer": {"decay_steps": 40000, "lr": 0.01, "lr_end": 0.0001, "lr_init": 1e-05, "warmup_steps": 2000},
        "output_dir": "logs/tiny/logs_s1_v2",
        "pretrained_s1": "GPT_SoVITS/pretrained_models/gsv-v2final-pretrained/"
                         "s1bert25hz-5kh-longer-epoch=12-step=369668.ckpt",
        "train": {"batch_size": 4, "epochs": 1, "exp_name": "tiny", "gradient_clip": 1.0,
                  "half_weights_save_dir": "GPT_weights_v2", "if_dpo": False, "if_save_every_weights": True,
                  "if_save_latest": True, "precision": "32", "save_every_n_epoch": 1, "seed": 1234},
        "train_phoneme_path": "logs/tiny/2-name2text.txt",
        "train_semantic_path": "logs/tiny/6-name2semantic.tsv",
    }


def _tiny_gpt_weights(seed: int, hidden: int, heads: int, layers: int) -> dict:
    """Random T2S weights with a hand-wired length clock (see `write_tiny_gpt`)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    c, f, hd = hidden, 4 * hidden, hidden // heads

    def rnd(*shape: int, std: float) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    # channels whose sine-table entries are ~1 (cos of a tiny angle), so positions barely touch them
    k_mark, k_clock, k_ref = c - 5, c - 3, c - 1
    a, r, beta = 3.0, TINY_GPT_TOKENS_PER_PHONE, 100.0
    threshold = 1.0 + a * (1.0 - r) / (1.0 + r)
    w: dict = {"bert_proj.weight": rnd(c, 1024, std=0.02), "bert_proj.bias": torch.zeros(c),
               "ar_text_embedding.word_embeddings.weight": rnd(732, c, std=1.0),
               "ar_text_position.alpha": torch.ones(1),
               "ar_audio_embedding.word_embeddings.weight": rnd(1025, c, std=1.0),
               "ar_audio_position.alpha": torch.ones(1)}
    for k in (k_mark, k_clock, k_ref):
        w["bert_proj.weight"][k] = 0.0
    for name, mark in (("ar_text_embedding", a), ("ar_audio_embedding", -a)):
        emb = w[f"{name}.word_embeddings.weight"]
        emb[:, k_mark], emb[:, k_clock], emb[:, k_ref] = mark, 0.0, threshold
    for i in range(layers):
        p = f"h.layers.{i}."
        in_w, in_b = rnd(3 * c, c, std=c ** -0.5), torch.zeros(3 * c)
        out_w, out_b = rnd(c, c, std=0.5 * c ** -0.5), torch.zeros(c)
        lin2_w = rnd(c, f, std=0.5 * f ** -0.5)
        out_w[[k_clock, k_ref]] = 0.0
        lin2_w[[k_clock, k_ref]] = 0.0
        if i == 0:
            # head 0 attends uniformly (zero q, k) and averages the text(+a)/audio(-a) mark;
            # its mean, written to k_clock, falls as the audio part outgrows the text part
            in_w[0:hd] = 0.0
            in_w[c:c + hd] = 0.0
            in_w[2 * c:2 * c + hd] = 0.0
            in_w[2 * c, k_mark] = 1.0
            out_w[k_clock, 0] = 1.0
        w.update({p + "self_attn.in_proj_weight": in_w, p + "self_attn.in_proj_bias": in_b,
                  p + "self_attn.out_proj.weight": out_w, p + "self_attn.out_proj.bias": out_b,
                  p + "linear1.weight": rnd(f, c, std=c ** -0.5), p + "linear1.bias": torch.zeros(f),
                  p + "linear2.weight": lin2_w, p + "linear2.bias": torch.zeros(c),
                  p + "norm1.weight": torch.ones(c), p + "norm1.bias": torch.zeros(c),
                  p + "norm2.weight": torch.ones(c), p + "norm2.bias": torch.zeros(c)})
    head = rnd(1025, c, std=0.15)
    head[1024] = 0.0
    # LayerNorm (unit gain, zero bias) keeps the sign of k_ref - k_clock, so this is the clock's verdict
    head[1024, k_ref], head[1024, k_clock] = beta, -beta
    w["ar_predict_layer.weight"] = head
    return w


def write_tiny_gpt(path: str | Path, seed: int = 0) -> Path:
    """A tiny GPT-SoVITS v2 T2S `.ckpt` ({"weight","config","info"}, fp16) whose EOS comes after
    roughly 2-4 tokens per phone.

    Hidden 64, 4 heads, 2 layers, 732 phones, 1025 tokens; random weights from `seed`, plus a
    length clock: one attention head of layer 0 averages a text(+)/audio(-) marker channel over
    the whole sequence, and the EOS row of `ar_predict_layer` turns positive once the audio
    tokens (prompt included) exceed `TINY_GPT_TOKENS_PER_PHONE` times the phones (prompt
    phones included). Random logits stay near N(0, 1), the EOS logit swings by about +-100.
    """
    from collections import OrderedDict

    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = _tiny_gpt_weights(seed, TINY_GPT_HIDDEN, TINY_GPT_HEADS, TINY_GPT_LAYERS)
    ckpt = {"weight": OrderedDict(("model." + k, v.to(torch.float16).contiguous()) for k, v in weights.items()),
            "config": _tiny_gpt_config(TINY_GPT_HIDDEN, TINY_GPT_HEADS, TINY_GPT_LAYERS),
            "info": "GPT-e1"}
    torch.save(ckpt, path)
    return path


def write_tiny_sovits(path: str | Path, seed: int = 0) -> Path:
    """A tiny SoVITS v2 `.pth` with its config pickled as `utils.HParams`, `enc_q.*` absent."""
    raise NotImplementedError


def write_tiny_hubert(folder: str | Path, seed: int = 0) -> Path:
    """A tiny HF HubertModel folder (hidden 768 so ssl_proj fits)."""
    raise NotImplementedError


def write_tiny_bert(folder: str | Path, seed: int = 0) -> Path:
    """A tiny HF BERT folder (hidden 1024, Chinese character vocab) for phone-level features."""
    raise NotImplementedError


def write_reference_clip(path: str | Path, seconds: float = 4.0, seed: int = 0) -> Path:
    """A synthetic voiced reference clip (32 kHz mono wav) that passes the 3-10 s validation."""
    raise NotImplementedError


def build_demo(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write every tiny TTS asset into `folder` (skipping those already there); returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "gpt": folder / "demo-gpt.ckpt",
        "sovits": folder / "demo-sovits.pth",
        "hubert": folder / "chinese-hubert-base",
        "bert": folder / "chinese-roberta-wwm-ext-large",
        "ref_audio": folder / "demo-ref.wav",
    }
    writers = {"gpt": write_tiny_gpt, "sovits": write_tiny_sovits, "hubert": write_tiny_hubert,
               "bert": write_tiny_bert, "ref_audio": write_reference_clip}
    for key, p in paths.items():
        if not p.exists():
            writers[key](p, seed=seed)
    return paths
