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
import logging
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator
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


class _Problem(Exception):
    """An ordinary mistake (a bad flag, an unreachable server, an error answer): one line, exit status 1."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message, self.status = message, status


def _fail(message: str, status: int | None = None) -> int:
    """Print `error: ...` (`error 404: ...` for an HTTP answer) as one line on stderr; returns 1."""
    head = "error" if status is None else f"error {status}"
    sys.stderr.write(" ".join(f"{head}: {message}".split()) + "\n")  # one line, whatever the message holds
    sys.stderr.flush()
    return 1


def _http_error(r: Any) -> _Problem:
    """The service's error message (else the body) with the status."""
    try:
        message = r.json()["error"]["message"]
    except Exception:  # noqa: BLE001 - not the service's error shape: show the body
        message = r.text[:500]
    return _Problem(message, r.status_code)


def _unreachable(url: str, e: Exception) -> str:
    return f"cannot reach {url}: {str(e) or type(e).__name__}"


def _say_output(output: str) -> tuple[Path, str]:
    """The output file and its format, checked before any work: a known format, an existing folder."""
    from tts.encoders import output_file

    try:
        return output_file(output)
    except ValueError as e:
        raise _Problem(f"-o {output}: {e}") from None


def _say_request(args: argparse.Namespace, settings: Settings) -> None:
    """What `say` can find wrong before loading any model: the language, the text, the speaker."""
    from tts.errors import EmptyTextError, UnknownSpeakerError, UnsupportedLanguageError
    from tts.speakers import PROFILE_FILE, speaker_folders
    from tts.text_split import split_text
    from tts.types import LANGUAGES, SynthesisOptions

    if args.lang.lower() not in LANGUAGES:  # the engine's check, as it makes it
        raise _Problem(UnsupportedLanguageError(args.lang, LANGUAGES).message)
    if not split_text(args.text, SynthesisOptions().split_method):
        raise _Problem(EmptyTextError().message)
    folder = settings.paths.speakers_dir
    if args.speaker and not (folder / args.speaker / PROFILE_FILE).is_file():
        known = [p.name for p in speaker_folders(folder)]
        raise _Problem(UnknownSpeakerError(args.speaker, known).message)


def cmd_say(args: argparse.Namespace) -> int:
    try:
        out, fmt = _say_output(args.output)
        audio = _say_remote(args, fmt) if args.url else _say_here(args, fmt)
    except _Problem as e:
        return _fail(e.message, e.status)
    try:
        out.write_bytes(audio)
    except OSError as e:
        return _fail(f"cannot write {args.output}: {e.strerror or e}")
    _out(f"wrote {out}")
    return 0


def _say_remote(args: argparse.Namespace, fmt: str) -> bytes:
    import httpx

    body = {"text": args.text, "speaker": args.speaker, "text_lang": args.lang, "media_type": fmt}
    try:
        r = httpx.post(args.url.rstrip("/") + "/tts", json=body, headers=_auth_headers(args.api_key), timeout=300)
    except (httpx.HTTPError, httpx.InvalidURL) as e:
        raise _Problem(_unreachable(args.url, e)) from None
    if r.status_code != 200:
        raise _http_error(r)
    return r.content


def _say_here(args: argparse.Namespace, fmt: str) -> bytes:
    from agent.runtime import ApiError
    from tts.encoders import encode
    from tts.errors import TTSError
    from tts.types import SAMPLE_RATE, SynthesisOptions

    settings = _settings(args)
    _say_request(args, settings)

    async def run(rt: Any) -> bytes:
        sp = rt.speaker_or_default(args.speaker)
        pcm = await rt.synthesize_all(args.text, sp, SynthesisOptions(language=args.lang), "-")
        return encode(pcm, SAMPLE_RATE, fmt)

    try:
        return _with_runtime(settings, run)
    except (TTSError, ApiError) as e:  # what the first request would be told, e.g. a speaker that did not load
        raise _Problem(e.message) from None


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
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return _fail(f"--out-dir {out_dir}: {e.strerror or e}")
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
        try:
            r = httpx.post(url, json={k: v for k, v in body.items() if v}, headers=_auth_headers(args.api_key),
                           timeout=300)
        except (httpx.HTTPError, httpx.InvalidURL) as e:
            return _fail(_unreachable(args.url, e))
        if r.status_code != 200:
            e = _http_error(r)
            _fail(e.message, e.status)
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
    from tts.errors import SpeakerConfigError
    from tts.speakers import PROFILE_FILE, load_speaker, speaker_folders

    speakers_dir, models_dir = settings.paths.speakers_dir, settings.paths.models_dir
    speaker_ids: list[str] = []
    if not speakers_dir.is_dir():
        problems.append(f"paths.speakers_dir: {speakers_dir} is not a folder")
    else:
        for folder in speaker_folders(speakers_dir):
            speaker_ids.append(folder.name)
            try:
                speaker = load_speaker(folder, models_dir)
                problems += [f"speaker {folder.name}: {p}" for p in _speaker_file_problems(speaker)]
            except Exception as e:
                # a missing demo file (not, say, a YAML error that quotes one)
                missing_demo = re.search(r"file '[^']*demo-[^']*' not found", str(e))
                hint = " (run the service once to generate the demo models)" if missing_demo else ""
                message = getattr(e, "message", None) or str(e)
                if not isinstance(e, SpeakerConfigError):  # its message names the speaker and file already
                    message = f"speaker {folder.name} ({folder.name}/{PROFILE_FILE}): {message}"
                problems.append(f"{message}{hint}")
    try:
        from agent.personas import PersonaRegistry

        with _quiet("agent.personas"):  # its errors are logged too; here each is one `problem:` line
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
    device_problem = _device_problem(settings.tts.device)
    if device_problem:
        problems.append(f"tts.device: {device_problem}")
    return problems


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def _device_problem(device: str) -> str | None:
    """Why `device` (already a valid device string) cannot be used on this machine, or None."""
    import torch

    kind, _, index = device.partition(":")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            return (f"{device!r}, but CUDA is not available on this machine (torch {torch.__version__}); "
                    "the server would start degraded; use cpu")
        if index and int(index) >= count:
            return f"{device!r}, but this machine has {count} CUDA device(s) (cuda:0 to cuda:{count - 1})"
    elif kind in ("mps", "xpu"):
        backend = torch.backends.mps if kind == "mps" else getattr(torch, "xpu", None)
        if backend is None or not backend.is_available():
            return f"{device!r}, but {kind} is not available on this machine; use cpu"
    return None


def _speaker_file_problems(speaker: Any) -> list[str]:
    """What the first request would find wrong in a speaker's files: each reference clip read and
    measured as the engine does (3-10 s of sound), each checkpoint read by the engine's loaders."""
    from tts.audio import load_reference
    from tts.checkpoint import load_gpt, load_sovits

    problems = []
    clips = {p for ref in (speaker.reference, *speaker.emotions.values()) for p in (ref.audio, *ref.aux)}
    for clip in sorted(clips):
        try:
            load_reference(clip)
        except Exception as e:
            problems.append(str(getattr(e, "message", e)))
    for what, load, path in (("gpt_model", load_gpt, speaker.gpt_path),
                             ("sovits_model", load_sovits, speaker.sovits_path)):
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
