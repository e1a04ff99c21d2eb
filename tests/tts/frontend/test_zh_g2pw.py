"""G2PW path: a tiny ONNX model with the real model's inputs/outputs decides polyphone readings."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from tts.frontend import zh
from tts.frontend.g2pw import G2PW, G2PWError

# ---------------------------------------------------------------- a minimal ONNX writer (protobuf wire format)


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, value) -> bytes:
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(num << 3 | 2) + _varint(len(data)) + data


def _value_info(name: str, elem_type: int, dims: list) -> bytes:
    shape = b"".join(_field(1, _field(2, d) if isinstance(d, str) else _field(1, d)) for d in dims)
    tensor_type = _field(1, elem_type) + _field(2, shape)
    return _field(1, name) + _field(2, _field(1, tensor_type))


def _tensor(name: str, array: np.ndarray) -> bytes:
    dims = b"".join(_field(1, d) for d in array.shape)
    return dims + _field(2, 1) + _field(8, name) + _field(9, array.astype("<f4").tobytes())


def _node(op: str, inputs: list[str], outputs: list[str]) -> bytes:
    return b"".join(_field(1, i) for i in inputs) + b"".join(_field(2, o) for o in outputs) + _field(4, op)


def write_tiny_g2pw_onnx(path, char_logits: np.ndarray, position_logits: np.ndarray) -> None:
    """probs = softmax(char_logits[char_ids] + position_logits[position_ids]) * phoneme_mask."""
    FLOAT, INT64 = 1, 7
    nodes = [
        _node("Gather", ["W_char", "char_ids"], ["c"]),
        _node("Gather", ["W_pos", "position_ids"], ["p"]),
        _node("Add", ["c", "p"], ["logits"]),
        _node("Softmax", ["logits"], ["s"]),
        _node("Mul", ["s", "phoneme_mask"], ["probs"]),
    ]
    inputs = [_value_info(n, INT64, ["B", "T"]) for n in ("input_ids", "token_type_ids", "attention_mask")]
    inputs += [_value_info("phoneme_mask", FLOAT, ["B", char_logits.shape[1]]),
               _value_info("char_ids", INT64, ["B"]), _value_info("position_ids", INT64, ["B"])]
    graph = b"".join(_field(1, n) for n in nodes) + _field(2, "tiny_g2pw")
    graph += _field(5, _tensor("W_char", char_logits)) + _field(5, _tensor("W_pos", position_logits))
    graph += b"".join(_field(11, i) for i in inputs)
    graph += _field(12, _value_info("probs", FLOAT, ["B", char_logits.shape[1]]))
    model = _field(1, 7) + _field(2, "test") + _field(7, graph) + _field(8, _field(1, "") + _field(2, 13))
    path.write_bytes(model)


# ---------------------------------------------------------------- fixtures

POLY = [("都", "ㄉㄡ1"), ("都", "ㄉㄨ1"), ("行", "ㄒㄧㄥ2"), ("行", "ㄏㄤ2")]
BOPOMOFO = {"ㄉㄡ": "dou", "ㄉㄨ": "du", "ㄒㄧㄥ": "xing", "ㄏㄤ": "hang", "ㄨㄛ": "wo"}


@pytest.fixture(scope="module")
def g2pw_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("g2pw")
    labels = sorted({p for _, p in POLY})
    chars = sorted({c for c, _ in POLY})
    logits = np.zeros((len(chars), len(labels)), dtype=np.float32)
    logits[chars.index("都"), labels.index("ㄉㄨ1")] = 5.0  # pypinyin says dou1
    logits[chars.index("行"), labels.index("ㄉㄡ1")] = 9.0  # not a reading of 行: masked out
    logits[chars.index("行"), labels.index("ㄏㄤ2")] = 5.0  # pypinyin says xing2
    write_tiny_g2pw_onnx(folder / "g2pW.onnx", logits, np.zeros((64, len(labels)), dtype=np.float32))
    (folder / "POLYPHONIC_CHARS.txt").write_text("\n".join(f"{c}\t{p}" for c, p in POLY), encoding="utf-8")
    (folder / "MONOPHONIC_CHARS.txt").write_text("我\tㄨㄛ3\n", encoding="utf-8")
    (folder / "bopomofo_to_pinyin_wo_tune_dict.json").write_text(json.dumps(BOPOMOFO), encoding="utf-8")
    (folder / "char_bopomofo_dict.json").write_text("{}", encoding="utf-8")
    (folder / "config.py").write_text("use_mask = True\nuse_char_phoneme = False\n", encoding="utf-8")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("他们們都行我去。.,")
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return folder


@pytest.fixture
def configured(g2pw_dir):
    zh.configure(g2pw_dir)
    try:
        yield
    finally:
        zh.configure(None)


def test_predict_uses_model_and_mask(g2pw_dir):
    model = G2PW.from_dir(g2pw_dir)
    readings = model.predict("我都行.")
    assert readings == ["wo3", "du1", "hang2", "."]


def test_g2p_with_g2pw(configured):
    phones, word2ph, norm = zh.clean_text("他们都行。")
    assert norm == "他们都行."
    assert phones == "t a1 m en5 d u1 h ang2 .".split()
    assert len(word2ph) == len(norm)


def test_g2p_without_g2pw():
    phones, _, _ = zh.clean_text("他们都行。")
    assert phones == "t a1 m en5 d ou1 x ing2 .".split()


def test_word_corrections_override_model(configured):
    phones, _, _ = zh.clean_text("银行")  # listed in the correction table: yin2 hang2
    assert phones == "y in2 h ang2".split()


def test_incomplete_folder_raises(tmp_path):
    with pytest.raises(G2PWError, match="lacks"):
        G2PW.from_dir(tmp_path)
    with pytest.raises(G2PWError):
        zh.configure(tmp_path)
    phones, _, _ = zh.clean_text("都行")  # still on pypinyin
    assert phones[:2] == ["d", "ou1"]


def test_vocab_tokenizer_matches_bert(g2pw_dir):
    from transformers import BertTokenizer

    from tts.frontend.g2pw import _VocabTokenizer

    ours = _VocabTokenizer.from_file(g2pw_dir / "vocab.txt")
    bert = BertTokenizer(str(g2pw_dir / "vocab.txt"))
    for piece in ["都", "們", "。", "x", "…", " "]:
        assert (ours.tokenize(piece) or ["[UNK]"]) == (bert.tokenize(piece) or ["[UNK]"])
    assert ours.convert_tokens_to_ids(["[CLS]", "都", "zz"]) == bert.convert_tokens_to_ids(["[CLS]", "都", "zz"])


def test_varint_roundtrip_sanity():
    assert _varint(300) == bytes([0xAC, 0x02])
    assert struct.pack("<f", 1.0) == np.float32(1.0).tobytes()


def test_engine_config_switches_zh_to_g2pw(g2pw_dir, tmp_path):
    from tts.engine import Engine, EngineConfig
    from tts.errors import TTSError

    engine = Engine(EngineConfig(g2pw_dir=g2pw_dir))
    try:
        assert zh.clean_text("他们都行。")[0] == "t a1 m en5 d u1 h ang2 .".split()
    finally:
        engine.close()
        zh.configure(None)
    assert zh.clean_text("他们都行。")[0] != "t a1 m en5 d u1 h ang2 .".split()  # back to pypinyin
    with pytest.raises(TTSError):
        Engine(EngineConfig(g2pw_dir=tmp_path / "no-such-model"))
