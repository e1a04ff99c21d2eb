"""Tiny, deterministic models in the real on-disk formats, for tests and the embedded demo.

Every writer is a pure function of its arguments and seed: the same call writes the same bytes.
`size="v2"` writes the same kinds of models at the real GPT-SoVITS v2 sizes (T2S 24 layers / 512 /
16 heads, SoVITS from s2.json, HuBERT-base, a RoBERTa-large-shaped BERT), still random: for
benchmarks of the whole service (`bench/service_bench.py --size v2`), about 1.1 GB on disk.
"""
from __future__ import annotations

from pathlib import Path


TINY_GPT_HIDDEN, TINY_GPT_HEADS, TINY_GPT_LAYERS = 64, 4, 2
# hidden, heads, layers, branch scale (`_tiny_gpt_weights`)
GPT_DIMS = {"tiny": (TINY_GPT_HIDDEN, TINY_GPT_HEADS, TINY_GPT_LAYERS, 0.5), "v2": (512, 16, 24, 0.1)}
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


def _tiny_gpt_weights(seed: int, hidden: int, heads: int, layers: int, branch: float = 0.5) -> dict:
    """Random T2S weights with a hand-wired length clock (see `write_tiny_gpt`). `branch` scales the
    attention and FFN outputs against the residual stream: every post-norm LayerNorm divides the
    clock by the stream's spread, so deep models need a small one for the clock to reach the head."""
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
        out_w, out_b = rnd(c, c, std=branch * c ** -0.5), torch.zeros(c)
        lin2_w = rnd(c, f, std=branch * f ** -0.5)
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


def write_tiny_gpt(path: str | Path, seed: int = 0, size: str = "tiny") -> Path:
    """A tiny GPT-SoVITS v2 T2S `.ckpt` ({"weight","config","info"}, fp16) whose EOS comes after
    roughly 2-4 tokens per phone.

    Hidden 64, 4 heads, 2 layers (`size="v2"`: 512, 16, 24, the real size), 732 phones, 1025
    tokens; random weights from `seed`, plus a
    length clock: one attention head of layer 0 averages a text(+)/audio(-) marker channel over
    the whole sequence, and the EOS row of `ar_predict_layer` turns positive once the audio
    tokens (prompt included) exceed `TINY_GPT_TOKENS_PER_PHONE` times the phones (prompt
    phones included). Random logits stay near N(0, 1), the EOS logit swings by about +-100.
    """
    from collections import OrderedDict

    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dims = GPT_DIMS[size]
    weights = _tiny_gpt_weights(seed, *dims)
    ckpt = {"weight": OrderedDict(("model." + k, v.to(torch.float16).contiguous()) for k, v in weights.items()),
            "config": _tiny_gpt_config(*dims[:3]),
            "info": "GPT-e1"}
    torch.save(ckpt, path)
    return path


TINY_SOVITS_MODEL = {  # GPT-SoVITS s2 "model" section, shrunk; hidden 192 and gin 512 are hard-coded by MRTE
    "inter_channels": 192, "hidden_channels": 192, "filter_channels": 192, "n_heads": 2, "n_layers": 2,
    "kernel_size": 3, "p_dropout": 0.1, "resblock": "1", "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "upsample_rates": [10, 8, 2, 2, 2],
    "upsample_initial_channel": 64, "upsample_kernel_sizes": [16, 16, 8, 2, 2], "n_layers_q": 3,
    "use_spectral_norm": False, "gin_channels": 512, "semantic_frame_rate": "25hz", "freeze_quantizer": True,
    "version": "v2",
}
SOVITS_MODELS = {"tiny": TINY_SOVITS_MODEL,  # ... and the real v2 one (configs/s2.json)
                 "v2": {**TINY_SOVITS_MODEL, "filter_channels": 768, "n_layers": 6, "upsample_initial_channel": 512}}
# Layers GPT-SoVITS keeps under weight norm (stored as weight_g / weight_v pairs).
_WEIGHT_NORM_RE = r"^(dec\.ups\.\d+|dec\.resblocks\.\d+\.convs[12]?\.\d+|flow\.flows\.\d+\.enc\.(in_layers\.\d+|res_skip_layers\.\d+|cond_layer))\.weight$"


def _tiny_sovits_hps(size: str = "tiny") -> dict:
    """The `hps` a GPT-SoVITS s2 training run stores (configs/s2.json + webui keys)."""
    return {
        "train": {"log_interval": 100, "eval_interval": 500, "seed": 1234, "epochs": 8, "learning_rate": 0.0001,
                  "betas": [0.8, 0.99], "eps": 1e-09, "batch_size": 4, "fp16_run": False, "lr_decay": 0.999875,
                  "segment_size": 20480, "init_lr_ratio": 1, "warmup_epochs": 0, "c_mel": 45, "c_kl": 1.0,
                  "text_low_lr_rate": 0.4, "grad_ckpt": False, "if_save_latest": True,
                  "if_save_every_weights": True, "save_every_epoch": 4, "gpu_numbers": "0", "lora_rank": "32"},
        "data": {"max_wav_value": 32768.0, "sampling_rate": 32000, "filter_length": 2048, "hop_length": 640,
                 "win_length": 2048, "n_mel_channels": 128, "mel_fmin": 0.0, "mel_fmax": None, "add_blank": True,
                 "n_speakers": 300, "cleaned_text": True, "exp_dir": "logs/tiny"},
        "model": dict(SOVITS_MODELS[size]),
        "s2_ckpt_dir": "logs/tiny", "content_module": "cnhubert", "save_weight_dir": "SoVITS_weights_v2",
        "name": "tiny", "version": "v2", "pretrain": None, "resume_step": None,
    }


class _HParamsOnDisk:
    """Pickles as GPT-SoVITS' `utils.HParams` (attributes = the config); no `utils` module is needed."""

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, _HParamsOnDisk(**v) if isinstance(v, dict) else v)


def _hparams_pickle_module():
    """A pickle module for torch.save whose Pickler writes `_HParamsOnDisk` as the global utils.HParams."""
    import pickle
    import types

    class Pickler(pickle._Pickler):  # the pure-Python pickler lets save_global be overridden
        def save_global(self, obj, name=None):
            if obj is _HParamsOnDisk:
                self.write(pickle.GLOBAL + b"utils\nHParams\n")
                self.memoize(obj)
                return
            super().save_global(obj, name)

    mod = types.ModuleType("hparams_pickle")
    mod.Pickler, mod.Unpickler, mod.load, mod.dump = Pickler, pickle.Unpickler, pickle.load, pickle.dump
    return mod


def _tiny_sovits_weights(seed: int, size: str = "tiny") -> dict:
    """Random weights (fp32) under GPT-SoVITS' names, scaled by fan-in so the audio neither vanishes nor clips."""
    import re

    import torch

    from tts.models.vits import SynthesizerTrn, VitsConfig

    cfg = VitsConfig.from_hps(_tiny_sovits_hps(size), n_symbols=732, version="v2")
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in SynthesizerTrn(cfg).state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    out: dict = {}
    for k, shape in shapes.items():
        leaf = k.rsplit(".", 1)[-1]
        if leaf == "gamma":
            t = torch.ones(shape)
        elif leaf in ("beta", "bias"):
            t = 0.02 * torch.randn(shape, generator=g)
        elif leaf == "embed" or k.endswith("text_embedding.weight"):
            t = torch.randn(shape, generator=g)
        else:
            fan_in = shape[1] * (shape[2] if len(shape) > 2 else 1)
            if k.startswith("dec.ups."):  # transposed conv [in, out, k]: each output sees in * k / stride taps
                fan_in = shape[0] * shape[2] / TINY_SOVITS_MODEL["upsample_rates"][int(k.split(".")[2])]
            t = torch.randn(shape, generator=g) / fan_in**0.5
            if k == "dec.conv_post.weight":  # keep tanh out of saturation: speech-like level, no clipping
                t = t * 0.15
        if re.match(_WEIGHT_NORM_RE, k):
            norm = t.reshape(shape[0], -1).norm(dim=1).reshape(-1, *([1] * (len(shape) - 1)))
            out[k[: -len("weight")] + "weight_g"], out[k[: -len("weight")] + "weight_v"] = norm, t
        else:
            out[k] = t
    cb = "quantizer.vq.layers.0._codebook."
    out[cb + "inited"] = torch.ones(1)
    out[cb + "cluster_size"] = torch.ones(shapes[cb + "embed"][0])
    out[cb + "embed_avg"] = out[cb + "embed"].clone()
    return out


def write_tiny_sovits(path: str | Path, seed: int = 0, size: str = "tiny") -> Path:
    """A tiny SoVITS v2 `.pth` with its config pickled as `utils.HParams`, `enc_q.*` absent.

    Same format as GPT-SoVITS' `process_ckpt.savee`: {"weight": fp16 tensors, "config": HParams,
    "info"}; inter/hidden 192, 2 encoder layers, upsample_initial_channel 64 (about 5 MB);
    `size="v2"`: the s2.json sizes (6 layers, filter 768, upsample_initial_channel 512).
    """
    from collections import OrderedDict

    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = OrderedDict((k, v.to(torch.float16).contiguous()) for k, v in _tiny_sovits_weights(seed, size).items())
    ckpt = {"weight": weights, "config": _HParamsOnDisk(**_tiny_sovits_hps(size)), "info": "1epoch_8iteration"}
    torch.save(ckpt, path, pickle_module=_hparams_pickle_module(), pickle_protocol=2)
    return path


def write_tiny_hubert(folder: str | Path, seed: int = 0, size: str = "tiny") -> Path:
    """A tiny HF HubertModel folder (hidden 768 so ssl_proj fits): 1 layer, narrow conv front end, fp16;
    `size="v2"`: HuBERT-base (12 layers, FFN 3072, 512-channel conv front end)."""
    import torch
    from transformers import HubertConfig, HubertModel

    folder = Path(folder)
    if size == "v2":
        cfg = HubertConfig(feat_extract_norm="group", do_stable_layer_norm=False, vocab_size=32)
    else:
        cfg = HubertConfig(hidden_size=768, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                           conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=16,
                           feat_extract_norm="group", do_stable_layer_norm=False, vocab_size=32)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = HubertModel(cfg).eval()
    model.half().save_pretrained(str(folder))
    return folder


# Common Chinese characters for the tiny BERT vocabulary (one token per character, as the real one).
_TINY_BERT_CHARS = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么"
    "心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分"
    "将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重"
    "被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住"
    "员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制"
    "解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非"
    "流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量"
    "空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委"
    "早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坐集编宝谈府拉黑且随格尽剑讲"
    "布杀微怕母调局根曾准团段终乐切级克精哪官示冷域读"
)
_TINY_BERT_PUNCT = "，。！？、；：“”‘’（）《》…—-,.!?;:'\"()0123456789abcdefghijklmnopqrstuvwxyz"


def write_tiny_bert(folder: str | Path, seed: int = 0, size: str = "tiny") -> Path:
    """A tiny HF BERT folder (hidden 1024, Chinese character vocab) for phone-level features.

    Two layers (the minimum for GPT-SoVITS' hidden_states[-3]), 4 heads, FFN 64, 128 positions, a
    BertTokenizer vocab of common Chinese characters + punctuation; saved as BertForMaskedLM in fp16.
    `size="v2"`: RoBERTa-large-shaped (24 layers, 16 heads, FFN 4096, 512 positions), same vocab.
    """
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(dict.fromkeys(_TINY_BERT_CHARS + _TINY_BERT_PUNCT))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(str(folder))
    layers, heads, ffn, positions = (24, 16, 4096, 512) if size == "v2" else (2, 4, 64, 128)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=1024, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=ffn, max_position_embeddings=positions, type_vocab_size=2)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BertForMaskedLM(cfg).eval()
    model.half().save_pretrained(str(folder))
    return folder


def write_reference_clip(path: str | Path, seconds: float = 4.0, seed: int = 0) -> Path:
    """A synthetic voiced reference clip (32 kHz mono wav) that passes the 3-10 s validation.

    A vowel-like harmonic tone (f0 ~ 120-160 Hz with vibrato, harmonics shaped by three formants),
    syllable-rate amplitude envelope, a little breath noise, 30 ms fades; peak 0.5, 16-bit PCM.
    """
    import numpy as np
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sr = 32000
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.5 * t + rng.uniform(0, 2 * np.pi)) + 3 * np.sin(2 * np.pi * 5.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    formants = np.array([700.0, 1220.0, 2600.0]) * rng.uniform(0.9, 1.1, 3)
    x = np.zeros_like(t)
    for h in range(1, 40):
        fh = h * 140.0
        gain = sum(np.exp(-((fh - f) / 120.0) ** 2) for f in formants) + 0.05 / h
        x += gain * np.sin(h * phase)
    x += 0.02 * rng.standard_normal(len(t))
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 3.0 * t) ** 2
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.03)
    x *= env * fade
    x = 0.5 * x / np.max(np.abs(x))
    sf.write(str(path), x.astype(np.float32), sr, subtype="PCM_16")
    return path


def build_demo(folder: str | Path, seed: int = 0, size: str = "tiny") -> dict[str, Path]:
    """Write every tiny TTS asset into `folder` (skipping those already there); returns their paths.
    `size="v2"`: the models at the real v2 sizes, random weights (the same file names)."""
    if size not in GPT_DIMS:
        raise ValueError(f"unknown size {size!r}; use tiny or v2")
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
            writers[key](p, seed=seed, **({} if key == "ref_audio" else {"size": size}))
    return paths
