"""The `chat2audio` command: serve | say | chat | check | fetch-models.

    chat2audio serve [--config FILE] [--host H] [--port P]
    chat2audio say "你好" [--speaker Nahida] [-o out.wav] [--url http://127.0.0.1:8000]
    chat2audio chat [--url http://127.0.0.1:8000] [--play] [--out-dir replies]
    chat2audio check [--config FILE]
    chat2audio fetch-models [--dest DIR]
"""
from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

from agent.config import ConfigError, Settings, load_settings

# Where real weights come from (docs/models.md); `fetch-models` downloads these folders.
HF_REPO = "lj1995/GPT-SoVITS"
HF_FOLDERS = ("chinese-hubert-base/*", "chinese-roberta-wwm-ext-large/*", "gsv-v2final-pretrained/*")


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(getattr(args, "config", None))
    except ConfigError as e:
        raise SystemExit(f"chat2audio: {e}") from None


# ------------------------------------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    from app import main as serve

    argv = [*(["--config", str(args.config)] if args.config else []),
            *(["--host", args.host] if args.host else []), *(["--port", str(args.port)] if args.port else [])]
    serve(argv)
    return 0


# ------------------------------------------------------------------------------------------- say / chat


def _auth_headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def cmd_say(args: argparse.Namespace) -> int:
    out = Path(args.output)
    fmt = out.suffix.lstrip(".").lower() or "wav"
    if args.url:
        import httpx

        body = {"text": args.text, "speaker": args.speaker, "text_lang": args.lang, "media_type": fmt}
        r = httpx.post(args.url.rstrip("/") + "/tts", json=body, headers=_auth_headers(args.api_key), timeout=300)
        if r.status_code != 200:
            _out(f"error {r.status_code}: {r.text}")
            return 1
        out.write_bytes(r.content)
    else:
        from tts.encoders import encode
        from tts.types import SAMPLE_RATE, SynthesisOptions

        async def run(rt: Any) -> bytes:
            sp = rt.speaker_or_default(args.speaker)
            pcm = await rt.synthesize_all(args.text, sp, SynthesisOptions(language=args.lang), "-")
            return encode(pcm, SAMPLE_RATE, fmt)

        out.write_bytes(_with_runtime(_settings(args), run))
    _out(f"wrote {out}")
    return 0


def _with_runtime(settings: Settings, fn: Callable[[Any], Any]) -> Any:
    from agent.runtime import Runtime

    async def main() -> Any:
        rt = Runtime(settings)
        await rt.start()
        try:
            return await fn(rt)
        finally:
            await rt.stop()

    return asyncio.run(main())


def cmd_chat(args: argparse.Namespace) -> int:
    """A terminal chat: each reply is written to --out-dir (and played with --play)."""
    import httpx

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    url = args.url.rstrip("/") + "/chat2audio"
    session_id = None
    _out(f"chatting with {args.speaker or 'the default speaker'} at {args.url}; empty line or Ctrl-D quits")
    for n in range(1, 10**6):
        try:
            text = input("you> ").strip()
        except EOFError:
            break
        if not text:
            break
        body = {"input": text, "speaker": args.speaker, "persona": args.persona, "session_id": session_id}
        r = httpx.post(url, json={k: v for k, v in body.items() if v}, headers=_auth_headers(args.api_key), timeout=300)
        if r.status_code != 200:
            _out(f"error {r.status_code}: {r.text}")
            continue
        session_id = r.headers.get("x-session-id")
        path = out_dir / f"reply-{n:03d}.wav"
        path.write_bytes(r.content)
        _out(f"bot> {unquote(r.headers.get('x-reply-text', ''))}  [{path}]")
        if args.play:
            _play(path)
    return 0


def _play(path: Path) -> None:
    for player in (["aplay", "-q"], ["paplay"], ["ffplay", "-nodisp", "-autoexit", "-loglevel", "quiet"], ["afplay"]):
        if shutil.which(player[0]):
            subprocess.run([*player, str(path)], check=False)
            return
    _out("(no audio player found: install aplay, paplay or ffplay; the reply is saved)")


# ------------------------------------------------------------------------------------------- check


def check_problems(settings: Settings) -> list[str]:
    """Every problem found in the personas and speakers folders (empty: all good)."""
    problems: list[str] = []
    from tts.speakers import PROFILE_FILE, load_speaker

    speakers_dir, models_dir = settings.paths.speakers_dir, settings.paths.models_dir
    speaker_ids: list[str] = []
    if not speakers_dir.is_dir():
        problems.append(f"paths.speakers_dir: {speakers_dir} is not a folder")
    else:
        for folder in sorted(p for p in speakers_dir.iterdir() if (p / PROFILE_FILE).is_file()):
            speaker_ids.append(folder.name)
            try:
                speaker = load_speaker(folder, models_dir)
                problems += [f"speaker {folder.name}: {p}" for p in _speaker_file_problems(speaker)]
            except Exception as e:
                # a missing demo file (not, say, a YAML error that quotes one)
                missing_demo = re.search(r"file '[^']*demo-[^']*' not found", str(e))
                hint = " (run the service once to generate the demo models)" if missing_demo else ""
                problems.append(f"speaker {folder.name} ({folder / PROFILE_FILE}): {e}{hint}")
    try:
        from agent.personas import PersonaRegistry

        registry = PersonaRegistry(settings.paths.personas_dir)
        problems += [f"persona {err}" for err in registry.errors]
        ids = []
        for p in registry.list():
            pid, sp = p.name, p.speaker
            ids.append(pid)
            if sp not in speaker_ids:
                problems.append(f"persona {pid}: speaker {sp!r} not found; available: {', '.join(speaker_ids)}")
        if settings.agent.default_persona not in ids:
            problems.append(f"agent.default_persona {settings.agent.default_persona!r} not found; available: {', '.join(map(str, ids))}")
    except Exception as e:
        problems.append(f"personas ({settings.paths.personas_dir}): {e}")
    for name, what in (("chinese-hubert-base", "HuBERT"), ("chinese-roberta-wwm-ext-large", "BERT")):
        if not (models_dir / name / "config.json").is_file():
            hint = "run the service once to generate the demo ones" if settings.agent.demo else "chat2audio fetch-models"
            problems.append(f"{what} model folder {models_dir / name} is missing or has no config.json ({hint})")
    if settings.agent.default_speaker not in speaker_ids:
        problems.append(f"agent.default_speaker {settings.agent.default_speaker!r} not found; available: {', '.join(speaker_ids)}")
    if settings.llm.backend in ("openai",) and not settings.llm.base_url:
        problems.append("llm.base_url is required with llm.backend=openai (CHAT2AUDIO_LLM__BASE_URL)")
    return problems


def _speaker_file_problems(speaker: Any) -> list[str]:
    """What the first request would find wrong in a speaker's files: each reference clip read and
    measured as the engine does (3-10 s of sound), each checkpoint read by the engine's loaders."""
    from tts.audio import load_reference
    from tts.checkpoint import load_gpt, sovits_version

    problems = []
    clips = {p for ref in (speaker.reference, *speaker.emotions.values()) for p in (ref.audio, *ref.aux)}
    for clip in sorted(clips):
        try:
            load_reference(clip)
        except Exception as e:
            problems.append(str(getattr(e, "message", e)))
    for what, load, path in (("gpt_model", load_gpt, speaker.gpt_path),
                             ("sovits_model", sovits_version, speaker.sovits_path)):
        try:
            load(path)
        except Exception as e:
            problems.append(f"{what}: {getattr(e, 'message', e)}")
    return problems


def cmd_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    problems = check_problems(settings)
    for p in problems:
        _out(f"problem: {p}")
    _out("ok: configuration, personas and speakers are valid" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


# ------------------------------------------------------------------------------------------- fetch-models


def cmd_fetch_models(args: argparse.Namespace) -> int:
    dest = Path(args.dest) if args.dest else _settings(args).paths.models_dir
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        _out("fetch-models needs huggingface_hub: pip install -e '.[fetch]'")
        return 2
    _out(f"downloading {HF_REPO} ({', '.join(f.rstrip('/*') for f in HF_FOLDERS)}) into {dest} ...")
    try:
        snapshot_download(HF_REPO, allow_patterns=list(HF_FOLDERS), local_dir=str(dest))
    except Exception as e:
        _out(f"download failed ({type(e).__name__}): {e}\n"
             "This machine may be offline or huggingface.co unreachable. Download the folders listed in "
             "docs/models.md on a machine with internet and copy them into the models folder.")
        return 1
    _out(f"done: weights are in {dest}; point a speaker profile at them (docs/models.md)")
    return 0


# ------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chat2audio", description="Roleplay voice-chat service")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the HTTP/WebSocket service")
    p.add_argument("--config", type=Path)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("say", help="synthesise one text into an audio file")
    p.add_argument("text")
    p.add_argument("--speaker")
    p.add_argument("--lang", default="auto")
    p.add_argument("-o", "--output", default="say.wav", help="output file; the suffix picks the format")
    p.add_argument("--url", help="a running server (default: synthesise in this process)")
    p.add_argument("--api-key")
    p.add_argument("--config", type=Path)
    p.set_defaults(fn=cmd_say)
    p = sub.add_parser("chat", help="terminal chat with a running server; writes or plays each reply")
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--speaker")
    p.add_argument("--persona")
    p.add_argument("--api-key")
    p.add_argument("--out-dir", default="replies")
    p.add_argument("--play", action="store_true")
    p.set_defaults(fn=cmd_chat)
    p = sub.add_parser("check", help="validate the config, personas and speakers; print every problem")
    p.add_argument("--config", type=Path)
    p.set_defaults(fn=cmd_check)
    p = sub.add_parser("fetch-models", help="download real GPT-SoVITS base weights (needs internet)")
    p.add_argument("--dest", help="target folder (default: the models folder)")
    p.add_argument("--config", type=Path)
    p.set_defaults(fn=cmd_fetch_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.fn(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
