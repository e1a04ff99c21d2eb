"""HuBERT and BERT feature models from tiny local HF folders written by tts.factory."""
from __future__ import annotations

import pytest
import torch

from tts.errors import CheckpointError, TTSError
from tts.models.bert import BertFeatures
from tts.models.ssl import TAIL_ZEROS, SSLModel


@pytest.fixture(scope="module")
def ssl(demo_models) -> SSLModel:
    return SSLModel.from_dir(demo_models["hubert"])


@pytest.fixture(scope="module")
def bert(demo_models) -> BertFeatures:
    return BertFeatures.from_dir(demo_models["bert"])


def test_ssl_shape_and_tail_zeros(ssl):
    wav = torch.randn(16000 * 3) * 0.1
    feat = ssl(wav.numpy())
    assert feat.shape[:2] == (1, 768) and feat.dtype == torch.float32
    assert feat.shape[2] == (len(wav) + TAIL_ZEROS - 400) // 320 + 1
    with torch.no_grad():
        ref = ssl.model(torch.cat([wav, torch.zeros(9600)])[None]).last_hidden_state.transpose(1, 2)
    assert torch.allclose(feat, ref, atol=1e-5)


def test_ssl_to_prompt_codes(ssl, demo_models):
    from tts.audio import load_reference
    from tts.checkpoint import load_sovits
    from tts.models.vits import SynthesizerTrn

    _, w16 = load_reference(demo_models["ref_audio"])
    codes = SynthesizerTrn.from_checkpoint(load_sovits(demo_models["sovits"])).extract_latent(ssl(w16))
    n_frames = (len(w16) + TAIL_ZEROS - 400) // 320 + 1  # HuBERT conv stack: 400-sample receptive field, hop 320
    assert codes.shape == (1, 1, n_frames // 2)


def test_bert_phone_level_features(bert, demo_models):
    from transformers import AutoModel, AutoTokenizer

    text, word2ph = "你好，世界。", [2, 2, 1, 2, 2, 1]
    feat = bert(text, word2ph)
    assert feat.shape == (1024, sum(word2ph)) and feat.dtype == torch.float32
    assert torch.equal(feat[:, 0], feat[:, 1]) and not torch.equal(feat[:, 1], feat[:, 2])
    tok = AutoTokenizer.from_pretrained(str(demo_models["bert"]))
    # the encoder alone (no MLM head): the tiny checkpoint's tied head bias may load on the meta device
    mlm = AutoModel.from_pretrained(str(demo_models["bert"]), dtype=torch.float32, add_pooling_layer=False)
    with torch.no_grad():
        hs = mlm(**tok(text, return_tensors="pt"), output_hidden_states=True).hidden_states[-3][0, 1:-1]
    assert torch.allclose(feat, hs.repeat_interleave(torch.tensor(word2ph), dim=0).T, atol=1e-5)


def test_bert_truncation_matches_hidden_states_minus_3(tmp_path, demo_models):
    """A deeper (narrow) BERT: only the first L-2 layers run, and that equals hidden_states[-3]."""
    from transformers import AutoModel, BertConfig, BertForMaskedLM

    (tmp_path / "vocab.txt").write_bytes((demo_models["bert"] / "vocab.txt").read_bytes())
    for f in ("tokenizer_config.json", "tokenizer.json"):
        if (demo_models["bert"] / f).exists():
            (tmp_path / f).write_bytes((demo_models["bert"] / f).read_bytes())
    n_vocab = len((tmp_path / "vocab.txt").read_text(encoding="utf-8").splitlines())
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=n_vocab, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                               intermediate_size=16, max_position_embeddings=64)).save_pretrained(str(tmp_path))
    model = BertFeatures.from_dir(tmp_path)
    feat = model("我们", [1, 3])
    from tts.models.onednn import OneDNNLinear, onednn_available

    if onednn_available():  # the oneDNN path is the one checked against the plain encoder below
        assert sum(isinstance(m, OneDNNLinear) for m in model.encoder.modules()) == 2 * 6
    mlm = AutoModel.from_pretrained(str(tmp_path), add_pooling_layer=False)
    with torch.no_grad():
        hs = mlm(**feat_inputs(tmp_path, "我们"), output_hidden_states=True).hidden_states[-3][0, 1:-1]
    assert feat.shape == (32, 4)
    assert torch.allclose(feat, hs.repeat_interleave(torch.tensor([1, 3]), dim=0).T, atol=1e-5)


def feat_inputs(folder, text):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))(text, return_tensors="pt")


def test_bert_rejects_mismatched_word2ph(bert):
    with pytest.raises(TTSError, match="word2ph"):
        bert("你好", [2])


def test_missing_model_folders(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        SSLModel.from_dir(tmp_path)
    with pytest.raises(CheckpointError, match="config.json"):
        BertFeatures.from_dir(tmp_path)


@pytest.mark.parametrize("text,limit,expected", [
    ("你好世界", 10, ["你好世界"]),                               # fits: one window, the text itself
    ("一二三四五六七八九十", 4, ["一二三四", "五六七", "八九十"]),   # no marks: even pieces
    ("一二三,四五六七八九十", 8, ["一二三,", "四五六七八九十"]),    # a cut after a mark
    ("一二三四五,六七八九十", 8, ["一二三四五,", "六七八九十"]),      # the mark nearest the middle
])
def test_bert_windows(text, limit, expected):
    from tts.models.bert import windows

    assert windows(text, limit) == expected


def test_bert_runs_longer_texts_in_windows(bert):
    """The demo BERT has 128 positions: 126 characters a window. A longer text (here 138 characters
    without punctuation, and 400 with) gives one feature per character instead of failing."""
    assert bert.max_chars == 126
    text = "我们一起去公园散步然后再去图书馆看看书最后回家吃晚饭再看一会儿电视然后睡觉明天早上再起来跑步" * 3
    feat = bert(text, [2] * len(text))
    assert feat.shape == (bert.encoder.config.hidden_size, 2 * len(text))
    half = len(text) // 2  # two windows of 69: each equals that window run alone
    assert torch.allclose(feat[:, : 2 * half], bert(text[:half], [2] * half), atol=1e-6)
    assert torch.allclose(feat[:, 2 * half:], bert(text[half:], [2] * half), atol=1e-6)
    long = "你好,世界." * 80
    assert bert(long, [1] * len(long)).shape[1] == len(long)
