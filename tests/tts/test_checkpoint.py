"""Checkpoint loader traps: header codes vs PK, HParams without a `utils` module, v1/v2 by embedding rows,
unsupported versions, corrupt files and swapped GPT/SoVITS files."""
from __future__ import annotations

import pickle
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from tts.checkpoint import load_gpt, load_sovits, sovits_version
from tts.errors import CheckpointError, UnsupportedVersionError
from tts.factory import _hparams_pickle_module, _HParamsOnDisk, _tiny_sovits_hps, _tiny_sovits_weights


def _save_sovits(path: Path, weights: dict, extra: dict | None = None) -> Path:
    ckpt = {"weight": OrderedDict((k, v.half()) for k, v in weights.items()),
            "config": _HParamsOnDisk(**_tiny_sovits_hps()), "info": "1epoch_1iteration", **(extra or {})}
    torch.save(ckpt, path, pickle_module=_hparams_pickle_module(), pickle_protocol=2)
    return path


@pytest.fixture(scope="module")
def sovits_bytes(tmp_path_factory) -> bytes:
    """A small file in the SoVITS format (config as utils.HParams, a v2 text embedding): the loader's
    header and version logic runs before any model is built, so the full weights are not needed."""
    p = tmp_path_factory.mktemp("ck") / "small.pth"
    w = {"enc_p.text_embedding.weight": torch.randn(732, 8), "dec.conv_pre.weight": torch.randn(4, 8, 7)}
    return _save_sovits(p, w).read_bytes()


@pytest.fixture(scope="module")
def tiny_weights() -> dict:
    return _tiny_sovits_weights(0)


def test_sovits_loads_fp32_with_plain_dict_config(demo_models):
    ck = load_sovits(demo_models["sovits"])
    assert ck.version == "v2"
    assert type(ck.hps) is dict and type(ck.hps["model"]) is dict and type(ck.hps["data"]) is dict
    assert ck.hps["data"]["hop_length"] == 640 and ck.hps["model"]["upsample_rates"] == [10, 8, 2, 2, 2]
    assert all(v.dtype == torch.float32 for v in ck.weights.values() if v.is_floating_point())
    assert not any(k.startswith("enc_q.") for k in ck.weights)
    assert ck.info == "1epoch_8iteration"


def test_hparams_pickled_as_utils_class_and_no_utils_module_needed(demo_models, sovits_bytes):
    with zipfile.ZipFile(demo_models["sovits"]) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    assert b"cutils\nHParams\n" in pkl  # GLOBAL opcode naming GPT-SoVITS' class
    with pytest.raises(pickle.UnpicklingError):  # the trap a naive loader falls into
        torch.load(demo_models["sovits"], weights_only=True)
    assert "utils" not in sys.modules
    load_sovits(demo_models["sovits"])
    assert "utils" not in sys.modules


@pytest.mark.parametrize("code", [b"00", b"01"])
def test_decodable_header_codes_are_restored_to_pk(tmp_path, sovits_bytes, code):
    p = tmp_path / "m.pth"
    p.write_bytes(code + sovits_bytes[2:])
    ck = load_sovits(p)
    assert ck.version == "v2"  # rows of the text embedding decide, not the header's "v1"
    assert p.read_bytes()[:2] == code  # restored in memory only


@pytest.mark.parametrize("code,version", [(b"02", "v3"), (b"03", "v3-LoRA"), (b"04", "v4-LoRA"),
                                          (b"05", "v2Pro"), (b"06", "v2ProPlus")])
def test_unsupported_header_codes(tmp_path, sovits_bytes, code, version):
    p = tmp_path / "m.pth"
    p.write_bytes(code + sovits_bytes[2:])
    with pytest.raises(UnsupportedVersionError) as e:
        load_sovits(p)
    assert e.value.version == version and version in str(e.value)
    assert sovits_version(p) == version


@pytest.mark.parametrize("extra_key,version", [("cfm.estimator.weight", "v3"), ("bridge.0.weight", "v3"),
                                               ("wns1.in_layers.0.weight", "v3"), ("sv_emb.weight", "v2Pro"),
                                               ("ge_to512.weight", "v2Pro")])
def test_unsupported_versions_with_plain_pk_header_by_keys(tmp_path, extra_key, version):
    w = {"enc_p.text_embedding.weight": torch.randn(732, 8)}
    w[extra_key] = torch.zeros(4, 4)
    p = _save_sovits(tmp_path / "m.pth", w)
    assert p.read_bytes()[:2] == b"PK"
    with pytest.raises(UnsupportedVersionError, match=version):
        load_sovits(p)


def test_lora_file_is_unsupported(tmp_path):
    p = _save_sovits(tmp_path / "m.pth", {"enc_p.text_embedding.weight": torch.randn(732, 8)}, {"lora_rank": 32})
    with pytest.raises(UnsupportedVersionError, match="LoRA"):
        load_sovits(p)


def test_v1_detected_by_embedding_rows_and_runs(tmp_path, tiny_weights):
    from tts.models.vits import SynthesizerTrn

    w = dict(tiny_weights)
    w["enc_p.text_embedding.weight"] = torch.randn(322, 192)
    w["ref_enc.spectral.0.fc.weight"] = torch.randn(128, 1025) / 32  # v1 style encoder reads all bins
    ck = load_sovits(_save_sovits(tmp_path / "v1.pth", w))
    assert ck.version == "v1"
    model = SynthesizerTrn.from_checkpoint(ck)
    ge = model.style(torch.rand(1025, 50))
    audio = model.decode(torch.randint(0, 1024, (8,)), torch.randint(0, 322, (5,)), ge, noise_scale=0.0)
    assert audio.shape == (16 * 640,) and torch.isfinite(audio).all()


@pytest.mark.parametrize("make", [
    lambda b: b[: len(b) // 2],  # truncated
    lambda b: b"",  # empty
    lambda b: b"PK\x03\x04" + bytes(range(256)) * 8,  # zip magic, garbage body
    lambda b: b"hello, this is not a checkpoint at all",
])
def test_corrupt_files_raise_checkpoint_error(tmp_path, sovits_bytes, make):
    p = tmp_path / "bad.pth"
    p.write_bytes(make(sovits_bytes))
    with pytest.raises(CheckpointError) as e:
        load_sovits(p)
    assert not isinstance(e.value, UnsupportedVersionError)
    with pytest.raises(CheckpointError) as e2:
        load_gpt(p)
    for err in (e.value, e2.value):  # says what is wrong, in whole sentences (torch's long text was cut mid-way)
        assert any(w in str(err) for w in ("damaged or not a PyTorch checkpoint", "not a GPT-SoVITS", "empty")), str(err)
        assert not str(err).rstrip(" .)").endswith(("is", "file", ",")), str(err)


def test_missing_and_non_checkpoint_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_sovits(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="not found"):
        load_gpt(tmp_path / "nope.ckpt")
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {"a": torch.zeros(2)}}, other)
    with pytest.raises(CheckpointError, match="weight"):
        load_sovits(other)
    with pytest.raises(CheckpointError, match="weight"):
        load_gpt(other)


def test_disallowed_globals_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "evil.pth"
    torch.save({"weight": {"a": torch.zeros(1)}, "config": {}, "info": Evil()}, p)
    with pytest.raises(CheckpointError, match="not allowed"):
        load_sovits(p)


def test_gpt_loader(demo_models):
    ck = load_gpt(demo_models["gpt"])
    assert ck.version == "v2"
    assert "ar_predict_layer.weight" in ck.weights and not any(k.startswith("model.") for k in ck.weights)
    assert all(v.dtype == torch.float32 for v in ck.weights.values())
    assert ck.config["model"]["phoneme_vocab_size"] == 732


def test_swapped_files_are_named(demo_models):
    with pytest.raises(CheckpointError, match="GPT .ckpt"):
        load_sovits(demo_models["gpt"])
    with pytest.raises(CheckpointError, match="SoVITS .pth"):
        load_gpt(demo_models["sovits"])


def test_swapped_sovits_with_version_header_given_to_gpt(tmp_path, sovits_bytes):
    p = tmp_path / "m.pth"
    p.write_bytes(b"05" + sovits_bytes[2:])
    with pytest.raises(CheckpointError, match="SoVITS"):
        load_gpt(p)
