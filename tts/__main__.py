"""Command line: `python -m tts say ...` and `python -m tts demo-assets DIR`.

    python -m tts demo-assets demo/
    python -m tts say "你好，世界。" --speaker demo/speakers/demo --out hello.wav
    python -m tts say "Hello." --gpt G.ckpt --sovits S.pth --ref-audio ref.wav \
        --ref-text "参考文本。" --ref-lang zh --lang en --hubert chinese-hubert-base --out a.wav

Errors (bad reference clip, unsupported checkpoint, unknown speaker, ...) print one line
naming the problem and exit with status 2.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

HUBERT_DIR_NAME = "chinese-hubert-base"
BERT_DIR_NAME = "chinese-roberta-wwm-ext-large"
DEMO_REF_TEXT = "这是一个用于测试的参考音频。"
MODELS_SUBDIR = "cache/models"  # the service's models folder (paths.cache_dir/models) in the project layout


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tts", description="GPT-SoVITS v1/v2 compatible TTS")
    sub = ap.add_subparsers(dest="cmd", required=True)
    say = sub.add_parser("say", help="synthesise text to an audio file")
    say.add_argument("text")
    say.add_argument("--out", "-o", required=True,
                     help="output file; the suffix picks the format: wav (also without a suffix), flac, ogg, opus, "
                          "mp3, pcm")
    say.add_argument("--speaker", help="a speaker folder (with profile.yaml) or an id in --speakers-dir")
    say.add_argument("--speakers-dir", default="speakers")
    say.add_argument("--models-dir",
                     help=f"folder profile paths may point into (default: <root>/{MODELS_SUBDIR}, the service's "
                          "models folder, when it exists, else <root>; <root> is the folder holding the speakers "
                          "folder when that is named 'speakers', else the speaker folder's parent)")
    say.add_argument("--gpt", help="GPT .ckpt (instead of --speaker)")
    say.add_argument("--sovits", help="SoVITS .pth (instead of --speaker)")
    say.add_argument("--ref-audio")
    say.add_argument("--ref-text", default="")
    say.add_argument("--ref-lang", default="zh")
    say.add_argument("--lang", help="text language (default: the profile's target_language, else zh)")
    say.add_argument("--hubert", help=f"HuBERT folder (default: <models>/{HUBERT_DIR_NAME})")
    say.add_argument("--bert", help=f"BERT folder (default: <models>/{BERT_DIR_NAME})")
    say.add_argument("--emotion")
    say.add_argument("--seed", type=int)
    say.add_argument("--speed", type=float)
    say.add_argument("--top-k", type=int)
    say.add_argument("--top-p", type=float)
    say.add_argument("--temperature", type=float)
    say.add_argument("--no-split", action="store_true", help="speak the text as one sentence")
    say.add_argument("--fragment-interval", type=float, default=0.3)
    say.add_argument("--device", default="cpu")
    say.add_argument("--dtype", default="float32")
    say.add_argument("--cache-dir", help="on-disk prompt cache")
    say.add_argument("-v", "--verbose", action="store_true")
    demo = sub.add_parser("demo-assets", help="write the tiny demo models, a reference clip and a demo speaker")
    demo.add_argument("folder")
    demo.add_argument("--seed", type=int, default=0)
    return ap


def _default_dir(explicit: str | None, models: Path | None, name: str) -> Path | None:
    if explicit:
        return Path(explicit)
    if models is not None and (models / name).is_dir():
        return models / name
    return None


class UsageError(Exception):
    """A flag that cannot work (e.g. an output folder that does not exist): one line, status 2."""


def _default_models(speakers_dir: Path) -> Path:
    """<root>/cache/models when it is a folder (the project layout), else <root>; <root> is the parent
    of a folder named `speakers` (`<root>/speakers/<id>`), else `speakers_dir` itself."""
    speakers_dir = speakers_dir.resolve()
    root = speakers_dir.parent if speakers_dir.name == "speakers" else speakers_dir
    return root / MODELS_SUBDIR if (root / MODELS_SUBDIR).is_dir() else root


def _speaker(a: argparse.Namespace):
    """(Speaker, models_dir) from --speaker DIR|ID or from the explicit flags."""
    from tts.errors import SpeakerConfigError
    from tts.speakers import ReferenceSet, Speaker, SpeakerProfile, SpeakerRegistry, load_speaker

    if a.speaker:
        p = Path(a.speaker)
        folder = (p / "profile.yaml").is_file()
        models = Path(a.models_dir) if a.models_dir else _default_models(p.resolve().parent if folder
                                                                         else Path(a.speakers_dir))
        try:
            if folder:
                return load_speaker(p, models), models
            return SpeakerRegistry(a.speakers_dir, models).get(a.speaker), models
        except SpeakerConfigError as e:  # e.g. a profile path not found in the speaker or models folder
            hint = "" if a.models_dir or "models folder" not in e.message else \
                f" (the models folder was {models}: give --models-dir)"
            raise SpeakerConfigError(e.message + hint) from None
    missing = [f for f in ("gpt", "sovits", "ref_audio") if not getattr(a, f)]
    if missing:
        raise SpeakerConfigError("give --speaker, or all of --gpt, --sovits and --ref-audio "
                                 f"(missing: {', '.join('--' + m.replace('_', '-') for m in missing)})")
    paths = {}
    for f in ("gpt", "sovits", "ref_audio"):
        path = Path(getattr(a, f)).resolve()
        if not path.is_file():
            raise SpeakerConfigError(f"--{f.replace('_', '-')}: file {getattr(a, f)} not found")
        paths[f] = path
    prof = SpeakerProfile(gpt_model=str(paths["gpt"]), sovits_model=str(paths["sovits"]),
                          ref_audio=str(paths["ref_audio"]), ref_text=a.ref_text, ref_language=a.ref_lang,
                          target_language=a.lang or "zh")
    ref = ReferenceSet(paths["ref_audio"], a.ref_text, prof.ref_language)
    sp = Speaker("cli", paths["ref_audio"].parent, prof, paths["gpt"], paths["sovits"], ref)
    return sp, paths["gpt"].parent


def _output(out: str) -> tuple[Path, str]:
    """The output file and its format, checked before any model is loaded."""
    from tts.encoders import output_file

    try:
        return output_file(out)
    except ValueError as e:
        raise UsageError(f"--out {out}: {e}") from None


def cmd_say(a: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from tts.encoders import encode
    from tts.engine import Engine, EngineConfig
    from tts.types import SAMPLE_RATE, SynthesisOptions

    out, fmt = _output(a.out)
    try:
        torch.device(a.device)
    except RuntimeError:
        raise UsageError(f"--device {a.device!r} is not a device; use cpu, cuda or cuda:N") from None
    sp, models = _speaker(a)
    cfg = EngineConfig(device=a.device, dtype=a.dtype, models_dir=models,
                       cache_dir=Path(a.cache_dir) if a.cache_dir else None,
                       hubert_dir=_default_dir(a.hubert, models, HUBERT_DIR_NAME),
                       bert_dir=_default_dir(a.bert, models, BERT_DIR_NAME), max_batch=1, max_queue=1)
    opts = SynthesisOptions(language=a.lang, speed=a.speed, top_k=a.top_k, top_p=a.top_p,
                            temperature=a.temperature, seed=a.seed, emotion=a.emotion, split=not a.no_split,
                            fragment_interval=a.fragment_interval, stream=False)
    t0 = time.perf_counter()
    with Engine(cfg) as engine:
        parts = [c.pcm for c in engine.synthesize(a.text, sp, opts)]
    audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    out.write_bytes(encode(audio, SAMPLE_RATE, fmt))
    print(f"wrote {a.out}: {len(audio) / SAMPLE_RATE:.2f} s of audio in {time.perf_counter() - t0:.2f} s")
    return 0


def cmd_demo_assets(a: argparse.Namespace) -> int:
    from tts.factory import build_demo

    folder = Path(a.folder)
    paths = build_demo(folder, seed=a.seed)
    spk = folder / "speakers" / "demo"
    spk.mkdir(parents=True, exist_ok=True)
    (spk / "profile.yaml").write_text(
        f"name: Demo (random weights, no intelligible speech)\n"
        f"gpt_model: {paths['gpt'].name}\nsovits_model: {paths['sovits'].name}\n"
        f"ref_audio: {paths['ref_audio'].name}\nref_text: {DEMO_REF_TEXT}\n"
        "ref_language: zh\ntarget_language: zh\nseed: 0\n", encoding="utf-8")
    for key, p in paths.items():
        print(f"{key}: {p}")
    print(f'try: python -m tts say "你好，世界。" --speaker {spk} --out hello.wav')
    return 0


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.INFO if getattr(a, "verbose", False) else logging.CRITICAL,
                        format="%(levelname)s %(name)s: %(message)s")
    from tts.errors import TTSError

    try:
        return cmd_say(a) if a.cmd == "say" else cmd_demo_assets(a)
    except TTSError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
