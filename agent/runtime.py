"""What the service's routes call: the engine, personas, LLM client and sessions, built once per process.

`Runtime.start()` (the app's lifespan) generates the demo models when the embedded default asks for
them, loads everything, and `stop()` cancels running turns and releases the models. Heavy imports
(torch, the engine) happen inside `start()`, so importing this module stays cheap.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator

import numpy as np

from agent import events as ev
from agent.llm import LLM_ERROR_CODES
from agent.auth import Authenticator, KeyLimiter
from agent.config import Settings
from agent.metrics import Metrics
from agent.protocol import SpeechRequest, TTSRequest
from tts.errors import ReferenceAudioError, TextTooLongError, TTSError
from tts.types import SynthesisOptions

log = logging.getLogger("chat2audio")

DEMO_NOTICE = ("DEMO WEIGHTS: the embedded default runs randomly initialised models; they make no "
               "intelligible speech and no meaningful text. See docs/models.md for real weights.")
DEMO_CHAT_DIR = "demo-chat"
SPEECH_MAX_CHARS = 4096  # POST /v1/audio/speech `input`, as OpenAI's


class ApiError(Exception):
    """An error the routes turn into `{"error": {"code", "message"}}` with `status`."""

    def __init__(self, status: int, code: str, message: str, counted: bool = False):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.counted = counted  # already in the error metrics (an error event of a turn)

    @classmethod
    def from_event(cls, event: ev.ErrorEvent) -> ApiError:
        """The HTTP answer to an error inside a turn. The request itself was checked before the turn
        began, so what fails inside is the server's side: the LLM (502), the engine being full (429), or
        the speech of a sentence the LLM wrote (500, e.g. a persona's speaker missing, a sentence over the
        engine's length limit): not a 4xx that would blame the client's request."""
        if event.code == "busy":
            return cls(429, event.code, event.message, counted=True)
        status = 502 if event.code in LLM_ERROR_CODES else 500
        return cls(status, event.code, event.message, counted=True)


def exposure_warning(settings: Settings) -> str | None:
    """A warning when the service listens beyond this machine with no API keys: anyone who reaches the port
    may use the LLM and the TTS."""
    host = settings.server.host
    if settings.auth.api_keys or host in ("localhost", "::1") or host.startswith("127."):
        return None
    return (f"server.host is {host}: the service is reachable from other machines and auth.api_keys is empty, "
            "so anyone who reaches it can use it; set keys (docs/deploy.md)")


class Runtime:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.auth = Authenticator(settings.auth.api_keys, settings.auth.admin_keys)
        self.limiter = KeyLimiter(settings.limits.max_concurrent_turns_per_key, settings.limits.max_sessions_per_key)
        self.metrics = Metrics()
        self.demo = False
        self.engine: Any = None
        self.personas: Any = None
        self.llm: Any = None
        self.sessions: Any = None
        self._vllm: Any = None
        self._llm_model = settings.llm.model
        self._llm_check: tuple[float, bool, str] = (0.0, False, "not checked")
        self._llm_probe: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self.draining = False  # shutdown has begun: new turns are refused
        self.tts_problem: str | None = None  # why the default speaker's warm-up failed (not ready)
        self.connections: set[Any] = set()  # live WebSocket connections (their `flushed()` is awaited on drain)

    # ------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        s = self.settings
        s.paths.models_dir.mkdir(parents=True, exist_ok=True)
        if s.agent.demo:
            await _in_own_thread(self._build_demo)
        from agent.personas import PersonaRegistry
        from tts.engine import Engine, EngineConfig

        self.engine = await asyncio.to_thread(Engine, _engine_config(EngineConfig, s))
        if s.tts.warmup and hasattr(self.engine, "warmup"):
            t0 = time.perf_counter()
            failed = await asyncio.to_thread(self.engine.warmup, [s.agent.default_speaker])
            self.tts_problem = next(iter(failed.values()), None)
            log.info("TTS warm-up took %.1f s", time.perf_counter() - t0)
        self.personas = PersonaRegistry(s.paths.personas_dir)
        self.llm = await self._build_llm()
        self.sessions = self._build_store()
        self.metrics.bind_queue_depth(lambda: self.engine.health().get("queue_depth", 0))
        if self.demo:
            log.warning(DEMO_NOTICE)
        for warning in [*self.binding_warnings(), *filter(None, [exposure_warning(s)])]:
            log.warning("%s", warning)
        counts = (len(self.engine.speakers()), len(self.persona_list()), s.llm.backend)
        problem = self._tts_problem() or self._persona_problem()
        if problem:  # it serves, but /health/ready answers 503 until this is mended
            log.warning("started, not ready (%s): %d speakers, %d personas, LLM %s", problem, *counts)
        else:
            log.info("started: %d speakers, %d personas, LLM %s", *counts)

    def _build_demo(self) -> None:
        from tts.factory import build_demo

        models = self.settings.paths.models_dir
        if not all((models / n).exists() for n in ("demo-gpt.ckpt", "demo-sovits.pth", "demo-ref.wav")):
            log.info("generating the demo TTS models into %s (first start)", models)
        build_demo(models)
        self.demo = True
        if self.settings.llm.backend == "transformers" and not self.settings.llm.model:
            chat = models / DEMO_CHAT_DIR
            if not (chat / "config.json").exists():
                from agent.demo_llm import build_tiny_chat_model

                log.info("generating the demo chat model into %s (first start)", chat)
                build_tiny_chat_model(chat)

    async def _build_llm(self) -> Any:
        from agent.llm import LLMTimeouts, OpenAIClient, TransformersClient, VLLMServer

        c = self.settings.llm
        if c.backend == "transformers":
            folder = Path(c.model) if c.model else self.settings.paths.models_dir / DEMO_CHAT_DIR
            client = TransformersClient(folder, device=c.device)
            await _in_own_thread(client.load)
            self._llm_model = str(folder)
            return client
        base_url = c.base_url
        if c.backend == "vllm" and not base_url:
            if not c.model:
                raise ValueError("llm.backend=vllm without llm.base_url needs llm.model (a folder or hub id)")
            self._vllm = VLLMServer(c.vllm_python, c.model, port=c.vllm_port, extra_args=tuple(c.vllm_args))
            await self._vllm.start()
            base_url = self._vllm.base_url
        if not base_url:
            raise ValueError(f"llm.backend={c.backend} needs llm.base_url (env CHAT2AUDIO_LLM__BASE_URL)")
        client = OpenAIClient(base_url, model=c.model or "", api_key=c.api_key,
                              timeouts=LLMTimeouts(read=c.timeout_s))
        try:
            self._llm_model = await client.resolve_model()
        except Exception as e:  # the server may come up later; readiness reports it meanwhile
            log.warning("LLM at %s not reachable yet: %s", base_url, e)
        return client

    def _build_store(self) -> Any:
        from agent.session import SessionStore

        return SessionStore(engine=self.engine, llm=self.llm, personas=self.personas, settings=self.settings)

    async def drain(self) -> None:
        """Shutdown, before the server closes its connections: refuse new turns, give the running ones
        `server.shutdown_grace_s` to end, interrupt those still running (each ends with `turn.done`,
        interrupted) and let the WebSockets send what they hold. Without this a WebSocket turn would
        be cut at once: the server closes open sockets with 1012 as soon as it shuts down."""
        self.draining = True
        if await self._wait_turns(self.settings.server.shutdown_grace_s) and self.sessions is not None:
            self.sessions.interrupt_all()
            await self._wait_turns(2.0)
        deadline = time.monotonic() + 1.0
        while any(not c.flushed() for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def _wait_turns(self, timeout: float) -> set[asyncio.Task]:
        """Wait up to `timeout` s for the running turns to end; returns those still running."""
        tasks = [t for t in self._tasks if not t.done()]
        if not tasks:
            return set()
        return (await asyncio.wait(tasks, timeout=timeout))[1]

    async def stop(self) -> None:
        for t in await self._wait_turns(self.settings.server.shutdown_grace_s):
            t.cancel()
        if self._llm_probe is not None:
            self._llm_probe.cancel()
        if self.llm is not None:
            await self.llm.aclose()
        if self._vllm is not None:
            await asyncio.to_thread(self._vllm.stop)
        if self.engine is not None:
            self.engine.close()

    # ------------------------------------------------------------------------------- status

    async def health(self) -> dict[str, Any]:
        llm_ok, llm_detail = await self._llm_reachable()
        engine = self.engine.health() if self.engine is not None else {}
        tts_problem = self._tts_problem()
        models_loaded = self.engine is not None and bool(engine.get("worker_alive", True)) and tts_problem is None
        persona_problem = self._persona_problem()
        ready = models_loaded and llm_ok and persona_problem is None
        report: dict[str, Any] = {
            "status": "ok" if ready else "degraded", "live": True, "ready": ready, "demo": self.demo,
            "models_loaded": models_loaded,
            "llm": {"backend": self.settings.llm.backend, "model": self._llm_model, "reachable": llm_ok,
                    "detail": llm_detail},
            "tts": engine, "speakers": len(self.speaker_list()), "personas": len(self.persona_list()),
            "active_turns": self.limiter.active_turns(),
            "limits": {"max_text_chars": self.settings.limits.max_text_chars},
        }
        if tts_problem is not None:
            report["tts_problem"] = tts_problem
        if persona_problem is not None:
            report["persona_problem"] = persona_problem
        if self.demo:
            report["notice"] = DEMO_NOTICE
        return report

    def _tts_problem(self) -> str | None:
        """Why the default speaker cannot speak, if it cannot: not loaded (a broken profile), or its
        warm-up synthesis failed (missing HuBERT/BERT folders, an unusable device)."""
        if self.engine is None:
            return "the TTS engine is not started"
        default, loaded = self.settings.agent.default_speaker, self.engine.speakers()
        if default not in loaded:
            err = (self.engine.health().get("speaker_errors") or {}).get(default)
            return f"default speaker {default!r} is not loaded" + (f": {err}" if err else "")
        persona, speaker = self.bind(None, None)  # what a conversation that names nothing uses
        if speaker not in loaded:
            return f"the default persona {persona!r} uses speaker {speaker!r}, which is not loaded"
        return self.tts_problem

    async def _llm_reachable(self) -> tuple[bool, str]:
        if self.llm is None:
            return False, "not started"
        if self.settings.llm.backend == "transformers":
            return True, "in-process"
        # one probe at a time, at most every 5 s; a health request waits for it at most 0.5 s and
        # otherwise answers with the last result (a hung LLM must not make /health hang for 3 s)
        if time.monotonic() - self._llm_check[0] >= 5.0 and (self._llm_probe is None or self._llm_probe.done()):
            self._llm_probe = asyncio.create_task(self._probe_llm())
        if self._llm_probe is not None and not self._llm_probe.done():
            await asyncio.wait([self._llm_probe], timeout=0.5)
        return self._llm_check[1], self._llm_check[2]

    async def _probe_llm(self) -> None:
        try:
            models = await asyncio.wait_for(self.llm.list_models(), timeout=3.0)
            ok, detail = True, f"{len(models)} model(s)"
            if not self._llm_model and models:
                self._llm_model = await self.llm.resolve_model()
        except Exception as e:
            ok, detail = False, f"{type(e).__name__}: {getattr(e, 'message', e)}"
        self._llm_check = (time.monotonic(), ok, detail)

    def speaker_list(self) -> list[dict[str, Any]]:
        if self.engine is None:
            return []
        out = []
        for sid in self.engine.speakers():
            try:
                sp = self.engine.speaker(sid)
                out.append({"id": sid, "name": sp.profile.name or sid, "language": sp.profile.target_language,
                            "emotions": sorted(sp.emotions)})
            except TTSError as e:
                out.append({"id": sid, "name": sid, "error": e.message})
        return out

    def persona_list(self) -> list[dict[str, Any]]:
        if self.personas is None:
            return []
        self.personas.maybe_reload()  # files added or changed show up without a reload (checked every 2 s)
        return [_persona_info(p) for p in self.personas.list()]

    async def reload(self) -> dict[str, Any]:
        speaker_errors = await asyncio.to_thread(self.engine.reload)
        if self.settings.tts.warmup:  # the edited files may mend, or break, the default speaker: readiness says
            failed = await asyncio.to_thread(self.engine.warmup, [self.settings.agent.default_speaker])
            self.tts_problem = next(iter(failed.values()), None)
        report = await asyncio.to_thread(self.personas.reload)
        return {"speakers": self.engine.speakers(), "personas": [p["id"] for p in self.persona_list()],
                "errors": {"speakers": speaker_errors or {}, "personas": _errors(report.errors)},
                "warnings": self.binding_warnings()}

    def binding_warnings(self) -> list[str]:
        """A default persona that is not loaded (every conversation that names none would fail) and personas
        whose speaker is not loaded (they load, but every turn of theirs would fail)."""
        loaded = set(self.engine.speakers()) if self.engine is not None else set()
        infos = self.persona_list()
        missing = self._persona_problem()
        return ([missing] if missing else []) + [
            f"persona {p['id']!r} uses speaker {p['speaker']!r}, which is not loaded"
            for p in infos if p.get("speaker") and p["speaker"] not in loaded]

    def _persona_problem(self) -> str | None:
        """Why a conversation that names no persona cannot start, if it cannot."""
        default = self.settings.agent.default_persona
        ids = [p["id"] for p in self.persona_list()]
        if default in ids:
            return None
        return (f"agent.default_persona {default!r} is not loaded (loaded: {', '.join(ids) or 'none'}, from "
                f"{self.settings.paths.personas_dir.name}/)")

    # ------------------------------------------------------------------------------- requests

    def check_turn(self, session: Any, text: str) -> None:
        """Why `run_turn(session, text)` would be refused before it starts, if it would."""
        self.check_text(text)
        if self.draining:
            raise ApiError(503, "shutting_down", "the service is shutting down; retry on another instance")
        limit = self.settings.limits.max_turns_per_session
        if session.turns >= limit:
            raise ApiError(429, "session_limit", f"this session reached its limit of {limit} turns; start a new one")
        self.check_tts_room()

    def check_tts_room(self) -> None:
        """A turn is refused `busy` before it starts while the TTS queue is full: once admitted, its
        sentences wait for room (see `Session`) rather than leave holes in the reply."""
        limit = getattr(getattr(self.engine, "config", None), "max_queue", None)
        if limit is not None and self.engine.health().get("queue_depth", 0) >= limit:
            raise ApiError(429, "busy", f"the TTS queue is full ({limit} requests waiting); try again later")

    def check_text(self, text: str, limit: int | None = None) -> None:
        limit = limit or self.settings.limits.max_text_chars
        if len(text) > limit:
            raise TextTooLongError(f"text is {len(text)} characters; the limit is {limit}")
        if not text.strip():
            raise ApiError(400, "empty_text", "text is empty")

    def speaker_or_default(self, speaker: str | None) -> Any:
        return self.engine.speaker(speaker or self.settings.agent.default_speaker)

    def tts_request(self, body: TTSRequest) -> tuple[Any, SynthesisOptions]:
        self.check_text(body.text)
        speaker = self.speaker_or_default(body.speaker)
        if body.ref_audio_path or body.aux_ref_audio_paths:
            speaker = self._with_reference(speaker, body)
        options = SynthesisOptions(language=body.text_lang, speed=body.speed_factor, top_k=body.top_k,
                                   top_p=body.top_p, temperature=body.temperature,
                                   repetition_penalty=body.repetition_penalty, seed=body.seed,
                                   stream=bool(body.streaming_mode), split_method=body.text_split_method,
                                   fragment_interval=body.fragment_interval)
        return speaker, options

    def _with_reference(self, speaker: Any, body: TTSRequest) -> Any:
        from tts.speakers import ReferenceSet

        aux = tuple(self._allowed_path(p, "aux_ref_audio_paths") for p in body.aux_ref_audio_paths)
        if not body.ref_audio_path:  # aux clips only: the speaker's own reference, its style averaged with them
            ref = speaker.reference
            return dataclasses.replace(speaker, reference=dataclasses.replace(ref, aux=ref.aux + aux))
        path = self._allowed_path(body.ref_audio_path)
        lang = body.prompt_lang or speaker.reference.language
        return dataclasses.replace(speaker, reference=ReferenceSet(path, body.prompt_text, lang, aux))

    def _allowed_path(self, value: str, field: str = "ref_audio_path") -> Path:
        """A reference clip path (of request field `field`), confined to the speakers folder and
        `paths.ref_audio_dirs` (403 outside them, 404 when no such file is inside)."""
        roots = [self.settings.paths.speakers_dir.resolve(), *(d.resolve() for d in self.settings.paths.ref_audio_dirs)]
        allowed = ", ".join(str(r) for r in roots)
        raw = Path(value)
        if "\x00" in value:
            raise ApiError(403, "forbidden_path", f"{field} {value!r} may not contain a NUL character")
        if ".." in raw.parts:
            raise ApiError(403, "forbidden_path", f"{field} {value!r} may not contain '..'; allowed folders: {allowed}")
        for cand in ([raw] if raw.is_absolute() else [r / raw for r in roots]):
            try:
                real = cand.resolve()
                if not any(real.is_relative_to(r) for r in roots):
                    raise ApiError(403, "forbidden_path", f"{field} {value[:200]!r} is outside the allowed folders "
                                   f"({allowed})")
                if real.is_file():
                    return real
            except OSError as e:  # e.g. a name too long for the file system
                raise ApiError(400, "bad_path", f"{field} {value[:200]!r}: {e.strerror or e}") from None
        raise ApiError(404, "reference_not_found", f"{field} {value!r}: no such file in the allowed folders ({allowed})")

    def speech_request(self, body: SpeechRequest) -> tuple[Any, SynthesisOptions]:
        self.check_text(body.input, limit=SPEECH_MAX_CHARS)
        return self.engine.speaker(body.voice_id()), SynthesisOptions(speed=body.speed)

    async def synthesize(self, text: str, speaker: Any, options: SynthesisOptions,
                         key_id: str) -> AsyncIterator[np.ndarray]:
        """Audio chunks of `text`; holds one of the key's turn slots while it runs."""
        with self.limiter.turn(key_id):
            t0 = time.perf_counter()
            stream = self.engine.astream(text, speaker, options)
            seconds, first = 0.0, True
            self.metrics.active_turns.inc()
            try:
                async for chunk in stream:
                    if first:
                        self.metrics.time_to_first_audio.observe(time.perf_counter() - t0)
                        first = False
                    seconds += len(chunk.pcm) / chunk.sample_rate
                    yield chunk.pcm
                if seconds > 0:
                    self.metrics.rtf.observe((time.perf_counter() - t0) / seconds)
            except ReferenceAudioError as e:
                if not self._own_reference(speaker):
                    raise  # a clip the request named: the client's (400)
                raise ApiError(500, e.code, f"{e.message} (the speaker's own reference, set in its profile.yaml: "
                               "the server's setup)") from None
            finally:
                self.metrics.active_turns.dec()
                await _aclose(stream)

    def _own_reference(self, speaker: Any) -> bool:
        """Whether `speaker` (an id, or a Speaker a request may have given other reference clips) speaks with
        the reference of its profile."""
        if isinstance(speaker, str):
            return True
        try:
            return self.engine.speaker(speaker.id).reference == speaker.reference
        except (TTSError, AttributeError):
            return False

    async def synthesize_all(self, text: str, speaker: Any, options: SynthesisOptions, key_id: str) -> np.ndarray:
        parts = [pcm async for pcm in self.synthesize(text, speaker, options, key_id)]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    # ------------------------------------------------------------------------------- sessions

    def open_session(self, session_id: str | None, persona: str | None, speaker: str | None, key_id: str,
                     current: Any = None) -> Any:
        """An existing session (same key) or a new one; persona/speaker validated with the valid ones listed.

        What is not named is kept: from the existing session `session_id`, else from `current` (a WebSocket
        connection's session before the change), else the defaults. A persona named alone brings its own
        speaker; a speaker named alone, a persona bound to it (the kept or default persona when it is one of
        them). A persona that stays the same keeps the session's history.
        """
        self.check_binding(persona, speaker)
        existing = self.find_session(session_id, key_id)
        if existing is not None and persona is None and speaker is None:
            return existing
        persona, speaker = self.bind(persona, speaker, existing or current)
        if persona == self.settings.agent.default_persona and (problem := self._persona_problem()):
            # no persona named, and the configured default is missing: the server's setup, not the request
            raise ApiError(500, "unknown_persona", f"{problem}; see POST /admin/reload's warnings")
        loaded = self.engine.speakers()
        if speaker not in loaded:  # a persona's own speaker (a named one was checked above): the server's setup
            raise ApiError(500, "unknown_speaker", f"persona {persona!r} uses speaker {speaker!r}, which is not "
                           f"loaded (available: {', '.join(loaded) or 'none'}); see POST /admin/reload's warnings")
        return self.sessions.open(session_id=session_id, persona=persona, speaker=speaker, owner=key_id)

    def check_binding(self, persona: str | None, speaker: str | None) -> None:
        """Unknown speaker or persona: an error listing the valid ones."""
        if speaker is not None:
            self.engine.speaker(speaker)  # UnknownSpeakerError lists the valid ones
        if persona is not None:
            self._check_persona(persona)

    def find_session(self, session_id: str | None, key_id: str) -> Any:
        """This key's live session `session_id`, else None (every key has its own session ids)."""
        return self.sessions.get(session_id, key_id)

    def bind(self, persona: str | None, speaker: str | None, current: Any = None) -> tuple[str, str]:
        """The rules of `open_session` for a new or changed binding (`current`: the session it changes)."""
        if persona is None and speaker is None and current is not None:
            return current.persona_id, current.speaker_id
        infos = self.persona_list()
        default = self.settings.agent.default_persona
        if persona is None and speaker is not None:
            # the current persona, else the default one, when it is bound to this speaker; else the first
            # persona bound to it; else the current one (many personas may share one voice)
            bound = [p["id"] for p in infos if p.get("speaker") == speaker]
            kept = current.persona_id if current is not None else None
            persona = next((p for p in (kept, default) if p in bound), bound[0] if bound else kept)
        persona = persona or default
        if speaker is None:
            speaker = next((p.get("speaker") for p in infos if p["id"] == persona and p.get("speaker")), None)
            speaker = speaker or (current.speaker_id if current is not None else None)
        return persona, speaker or self.settings.agent.default_speaker

    def _check_persona(self, persona: str) -> None:
        from agent.personas import UnknownPersonaError

        try:
            try:
                self.personas.get(persona)
            except UnknownPersonaError:  # perhaps a file added since the last look
                self.personas.maybe_reload()
                self.personas.get(persona)
        except UnknownPersonaError as e:
            raise ApiError(404, e.code, e.message) from e

    async def run_turn(self, session: Any, text: str, key_id: str) -> AsyncIterator[ev.Event]:
        """The turn's events, with per-key limits and metrics; always ends with `turn.done` or `error`."""
        self.check_turn(session, text)
        with self.limiter.turn(key_id):
            t0 = time.perf_counter()
            first_text = first_audio = True
            sentence_t0: float | None = None
            outcome = "interrupted"  # unless the turn ends otherwise: the consumer stopped early (client gone)
            task = asyncio.current_task()
            if task is not None:
                self._tasks.add(task)
            self.metrics.active_turns.inc()
            try:
                # aclosing: closing this generator (HTTP client gone) stops the session's LLM and TTS
                # stages now, not when the garbage collector finalises the inner generator
                async with contextlib.aclosing(session.run_turn(text)) as events:
                    async for event in events:
                        now = time.perf_counter()
                        if isinstance(event, ev.TextDelta) and first_text:
                            self.metrics.llm_first_token.observe(now - t0)
                            first_text = False
                        elif isinstance(event, ev.AudioOut) and first_audio:
                            self.metrics.time_to_first_audio.observe(now - t0)
                            first_audio = False
                        elif isinstance(event, ev.SentenceStarted):
                            sentence_t0 = now
                        elif isinstance(event, ev.SentenceDone) and sentence_t0 is not None and event.audio_ms > 0:
                            self.metrics.rtf.observe((now - sentence_t0) * 1000.0 / event.audio_ms)
                        elif isinstance(event, ev.TurnDone) and outcome != "failed":
                            outcome = "interrupted" if event.interrupted else "completed"
                        elif isinstance(event, ev.ErrorEvent):
                            outcome = "failed"
                            self.metrics.errors.inc(event.code)
                        yield event
            finally:
                self.metrics.turns.inc(outcome)
                self.metrics.active_turns.dec()
                if task is not None:
                    self._tasks.discard(task)


async def _aclose(stream: Any) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()


async def _in_own_thread(fn: Any) -> Any:
    """`fn()` in a thread that ends with it. Torch work there (building the demo models, loading
    an in-process LLM) would otherwise leave an OpenMP thread team alive in the shared executor,
    and a second team slows every parallel region of the TTS worker (tts.scheduler.Scheduler.call)."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="setup")
    try:
        return await asyncio.wrap_future(pool.submit(fn))
    finally:
        pool.shutdown(wait=False)  # its thread ends once `fn` returns, without blocking the event loop


def _engine_config(cls: Any, s: Settings) -> Any:
    """Map settings onto the engine's config dataclass."""
    values = {"device": s.tts.device, "dtype": s.tts.dtype, "speakers_dir": s.paths.speakers_dir,
              "models_dir": s.paths.models_dir, "cache_dir": s.paths.cache_dir / "prompts",
              "bert_dir": s.paths.models_dir / "chinese-roberta-wwm-ext-large",
              "hubert_dir": s.paths.models_dir / "chinese-hubert-base", "g2pw_dir": s.tts.g2pw_dir,
              "max_batch": s.tts.max_batch, "max_queue": s.tts.max_queue, "threads": s.tts.threads,
              "t2s_quant": s.tts.t2s_quant, "vocoder_dtype": s.tts.vocoder_dtype,
              "first_chunk_tokens": s.tts.first_chunk_tokens,
              "chunk_tokens": s.tts.chunk_tokens, "max_text_chars": max(s.limits.max_text_chars, SPEECH_MAX_CHARS),
              "text_cache_size": s.tts.text_cache_size, "model_cache_size": s.tts.model_cache_size}
    return cls(**{k: v for k, v in values.items() if v is not None})


def _persona_info(p: Any) -> dict[str, Any]:
    return {"id": p.name, "name": p.display_name or p.name, "speaker": p.speaker, "language": p.language,
            "description": p.description, "greeting": p.greeting}


def _errors(errors: Any) -> list[str]:
    return [str(e) for e in (errors or ())]
