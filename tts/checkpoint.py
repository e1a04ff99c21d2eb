"""Readers for real GPT-SoVITS checkpoints.

- GPT (s1) `.ckpt`: a plain torch zip of {"weight", "config", "info"}; `torch.load(weights_only=True)`.
- SoVITS (s2) `.pth`: {"weight", "config", "info"} whose `config` is a pickled `utils.HParams`
  object. It is read with a restricted unpickler that maps `utils.HParams` to a local dict subclass
  (no `utils` module is ever imported) and allows only the few torch/collections globals a
  checkpoint needs. The first two bytes may be a version code instead of "PK"; they are restored in
  memory before unzipping.

Versions: v1/v2 run here; v3, v4 (full or LoRA), v2Pro and v2ProPlus raise `UnsupportedVersionError`.
"""
from __future__ import annotations

import io
import logging
import pickle
import re
import types
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tts.errors import CheckpointError, UnsupportedVersionError

log = logging.getLogger(__name__)

# Header codes written by GPT-SoVITS' process_ckpt.my_save2 over the zip's "PK".
HEADER_VERSIONS: dict[bytes, str] = {
    b"00": "v1",
    b"01": "v2",
    b"02": "v3",
    b"03": "v3-LoRA",
    b"04": "v4-LoRA",
    b"05": "v2Pro",
    b"06": "v2ProPlus",
}
SUPPORTED_SOVITS = ("v1", "v2")
TEXT_EMBED_KEY = "enc_p.text_embedding.weight"
SYMBOLS_V1, SYMBOLS_V2 = 322, 732


@dataclass(frozen=True)
class GPTCheckpoint:
    weights: dict[str, torch.Tensor]  # fp32, "model." prefix stripped
    config: dict[str, Any]
    version: str  # "v1" | "v2"
    info: str = ""


@dataclass(frozen=True)
class SovitsCheckpoint:
    weights: dict[str, torch.Tensor]  # fp32
    hps: dict[str, Any]  # nested plain dicts
    version: str  # "v1" | "v2"
    info: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class HParamsDict(dict):
    """Stands in for GPT-SoVITS' `utils.HParams` while unpickling (its state is its `__dict__`)."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple):  # (dict_state, slots_state)
            state = state[0] or {}
        if isinstance(state, dict):
            self.update(state)


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): __import__("collections").OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("utils", "HParams"): HParamsDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): __import__("codecs").encode,
}
for _dt in ("float16", "float32", "bfloat16", "float64", "int64", "int32", "uint8", "bool"):
    _ALLOWED_GLOBALS[("torch", _dt)] = getattr(torch, _dt)


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        obj = _ALLOWED_GLOBALS.get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a checkpoint")
        return obj


def _restricted_load(file: Any, **kwargs: Any) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


# torch.load(pickle_module=...) needs an object with `Unpickler` and `load`.
_restricted_pickle = types.ModuleType("tts_restricted_pickle")
_restricted_pickle.Unpickler = _RestrictedUnpickler  # type: ignore[attr-defined]
_restricted_pickle.load = _restricted_load  # type: ignore[attr-defined]


def _read_bytes(path: str | Path, kind: str) -> bytes:
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{kind} checkpoint not found: {p}")
    if not p.is_file():
        raise CheckpointError(f"{kind} checkpoint is not a file: {p}")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read {kind} checkpoint {p}: {e.strerror or e}") from e
    if len(data) < 4:
        raise CheckpointError(f"{kind} checkpoint {p} is empty or truncated ({len(data)} bytes)")
    return data


def _to_plain(obj: Any) -> Any:
    """HParams (and nested dict-likes) -> plain nested dicts/lists."""
    if isinstance(obj, dict):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def _fp32(weights: Any, path: Path, kind: str) -> dict[str, torch.Tensor]:
    if not isinstance(weights, dict) or not weights:
        raise CheckpointError(f"{path} has no weights: not a GPT-SoVITS {kind} checkpoint")
    out: dict[str, torch.Tensor] = {}
    for k, v in weights.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{path}: weight {k!r} is not a tensor")
        out[str(k)] = v.float() if v.is_floating_point() else v
    return out


def _top_level(obj: Any, path: Path, kind: str) -> dict[str, Any]:
    if not isinstance(obj, dict) or "weight" not in obj:
        raise CheckpointError(f"{path} is not a GPT-SoVITS {kind} checkpoint (no 'weight' entry)")
    return obj


# ----------------------------------------------------------------------------------------- GPT


def load_gpt(path: str | Path) -> GPTCheckpoint:
    """Read a GPT-SoVITS T2S `.ckpt`; weights upcast to float32 with the "model." prefix stripped."""
    p = Path(path)
    data = _read_bytes(p, "GPT")
    if data[:2] in HEADER_VERSIONS or _looks_like_sovits_zip(data):
        raise CheckpointError(f"{p} is a SoVITS .pth checkpoint; a GPT .ckpt is expected here")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling/zip failure means a bad file
        raise CheckpointError(f"cannot load GPT checkpoint {p}: the file is damaged or not a PyTorch "
                              f"checkpoint ({_short(e)})") from e
    obj = _top_level(obj, p, "GPT")
    raw = obj["weight"]
    if isinstance(raw, dict) and any(str(k).startswith("enc_p.") for k in raw):
        raise CheckpointError(f"{p} is a SoVITS .pth checkpoint; a GPT .ckpt is expected here")
    weights = _fp32(raw, p, "GPT")
    weights = {k.removeprefix("model."): v for k, v in weights.items()}
    config = obj.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise CheckpointError(f"{p} has no model config: not a GPT-SoVITS GPT checkpoint")
    emb = weights.get("ar_text_embedding.word_embeddings.weight")
    if emb is None or "ar_predict_layer.weight" not in weights:
        raise CheckpointError(f"{p} lacks the T2S embedding/output weights: not a GPT-SoVITS GPT checkpoint")
    version = "v1" if emb.shape[0] == 512 else "v2"
    return GPTCheckpoint(weights=weights, config=_to_plain(config), version=version,
                         info=str(obj.get("info", "")))


def _looks_like_sovits_zip(data: bytes) -> bool:
    """True when the zip's pickle mentions utils.HParams (cheap: only the data.pkl record is read)."""
    if data[:2] != b"PK":
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            pkl = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            return pkl is not None and b"HParams" in z.read(pkl)
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


# -------------------------------------------------------------------------------------- SoVITS


def _load_sovits_raw(p: Path) -> tuple[dict[str, Any], str | None]:
    """Unzip (after restoring "PK") and unpickle; returns the top-level dict and the header version."""
    data = _read_bytes(p, "SoVITS")
    head = data[:2]
    header_version = HEADER_VERSIONS.get(head)
    if header_version is None and head != b"PK":
        raise CheckpointError(f"{p} is not a GPT-SoVITS checkpoint (unknown header {head!r})")
    if header_version is not None:
        data = b"PK" + data[2:]
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", pickle_module=_restricted_pickle,
                         weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot load SoVITS checkpoint {p}: the file is damaged or not a PyTorch "
                              f"checkpoint ({_short(e)})") from e
    return _top_level(obj, p, "SoVITS"), header_version


def _classify(weights: dict[str, Any], hps: dict[str, Any], header: str | None, lora: bool) -> str:
    """Version from header, LoRA marker, module names and text-embedding rows."""
    if header is not None and header not in SUPPORTED_SOVITS:
        return header
    declared = str((hps.get("model") or {}).get("version") or hps.get("version") or "")
    if lora:
        return f"{declared or 'v3'}-LoRA"
    keys = weights.keys()
    if any(k.startswith(("cfm.", "bridge.", "wns1.")) for k in keys):
        return "v4" if declared == "v4" else "v3"
    if any(k.startswith(("sv_emb.", "ge_to512.")) for k in keys):
        return "v2ProPlus" if declared == "v2ProPlus" else "v2Pro"
    emb = weights.get(TEXT_EMBED_KEY)
    return "v1" if emb is not None and emb.shape[0] == SYMBOLS_V1 else "v2"


def sovits_version(path: str | Path) -> str:
    """The GPT-SoVITS version of a SoVITS file ("v1", "v2", "v2Pro", "v3", "v4-LoRA", ...), without
    refusing unsupported ones."""
    p = Path(path)
    obj, header = _load_sovits_raw(p)
    raw, hps = obj["weight"], obj.get("config")
    if not isinstance(raw, dict) or any(str(k).startswith("model.") for k in raw):
        raise CheckpointError(f"{p} is not a SoVITS checkpoint")
    return _classify(raw, hps if isinstance(hps, dict) else {}, header, "lora_rank" in obj)


def load_sovits(path: str | Path) -> SovitsCheckpoint:
    """Read a SoVITS `.pth` (v1/v2); weights upcast to float32, `hps` as nested plain dicts."""
    p = Path(path)
    obj, header = _load_sovits_raw(p)
    raw = obj["weight"]
    if isinstance(raw, dict) and any(str(k).startswith("model.") for k in raw):
        raise CheckpointError(f"{p} is a GPT .ckpt checkpoint; a SoVITS .pth is expected here")
    hps_raw = obj.get("config")
    if not isinstance(hps_raw, dict):
        raise CheckpointError(f"{p} has no config: not a GPT-SoVITS SoVITS checkpoint")
    hps = _to_plain(hps_raw)
    if not isinstance(raw, dict):
        raise CheckpointError(f"{p} has no weights: not a GPT-SoVITS SoVITS checkpoint")
    version = _classify(raw, hps, header, "lora_rank" in obj)
    if version not in SUPPORTED_SOVITS:
        raise UnsupportedVersionError(version, str(p))
    weights = _fp32(raw, p, "SoVITS")
    if TEXT_EMBED_KEY not in weights or not isinstance(hps.get("model"), dict):
        raise CheckpointError(f"{p} lacks enc_p.text_embedding or a model config: not a SoVITS generator")
    extra = {k: v for k, v in obj.items() if k not in ("weight", "config", "info")}
    return SovitsCheckpoint(weights=weights, hps=hps, version=version, info=str(obj.get("info", "")),
                            extra=_to_plain(extra))


def _short(e: BaseException) -> str:
    if isinstance(e, pickle.UnpicklingError) and "weights_only" in str(e):
        # torch's text advises weights_only=False (running code from the file): not what to do here
        return "not a checkpoint this loader can read (corrupt, or it holds objects other than tensors and settings)"
    text = " ".join(str(e).split()) or type(e).__name__
    sentence = re.match(r".{1,200}?[.!?](?=\s|$)", text)  # whole sentences only: a cut one misleads
    if sentence:
        return sentence.group(0)
    return text if len(text) <= 200 else text[:200].rsplit(" ", 1)[0].rstrip(",;:") + " ..."
