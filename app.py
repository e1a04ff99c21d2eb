"""chat2audio service: `create_app(settings) -> FastAPI`, and `python app.py [--config] [--host] [--port]`.

The lifespan builds the TTS engine, persona registry, LLM client and session store once (`runtime.Runtime`
on `app.state.runtime`); routes validate, call it and map results or typed errors to responses.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import socket
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, TypeVar
from urllib.parse import quote

import numpy as np
import uvicorn
from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from agent import events as ev
from agent.asgi import GuardMiddleware, StreamingResponse, count_error, error_response
from agent.auth import LimitError, install_log_redaction
from agent.config import ConfigError, Settings, load_settings
from agent.metrics import CONTENT_TYPE as METRICS_TYPE
from agent.protocol import ChatRequest, ErrorBody, SpeechRequest, TTSRequest, validation_message
from agent.personas import PersonaError
from agent.runtime import ApiError, Runtime
from agent.session import SessionLimitError
from agent.ws import add_ws_route
from tts.encoders import MEDIA_TYPES, StreamEncoder, can_stream, check_format, encode, output_rate
from tts.errors import TTSError
from tts.types import SAMPLE_RATE

log = logging.getLogger("chat2audio")
T = TypeVar("T")

AUDIO_TYPES = sorted(set(MEDIA_TYPES.values()))
ERRORS = {code: {"model": ErrorBody, "description": text} for code, text in [
    (400, "Bad request"), (401, "Missing or invalid API key"), (403, "Forbidden"), (404, "Unknown speaker, persona or route"),
    (413, "Body or text too long"), (422, "Invalid fields"), (429, "Busy: retry later"),
    (503, "Shutting down: retry elsewhere")]}


def _audio_responses(extra: tuple[str, ...] = ()) -> dict[int | str, dict[str, Any]]:
    content = {t: {"schema": {"type": "string", "format": "binary"}} for t in (*AUDIO_TYPES, *extra)}
    return {200: {"content": content, "description": "Audio"}, **ERRORS}





# --------------------------------------------------------------------------------------------- app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        install_log_redaction()  # after the server configured logging: keys in ?api_key= never reach a log
        runtime = Runtime(settings)
        await runtime.start()
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="chat2audio", version="0.1.0", lifespan=lifespan,
                  description="Roleplay voice chat: a streaming LLM voiced by a GPT-SoVITS-compatible TTS.")
    app.state.settings = settings
    _install_middleware(app, settings)
    _install_error_handlers(app)
    _add_http_routes(app, settings)
    add_ws_route(app)
    static = settings.paths.static_dir
    if static.is_dir():
        app.mount("/static", StaticFiles(directory=static), name="static")
    return app


def _rt(request: Request | WebSocket) -> Runtime:
    return request.app.state.runtime


def _install_middleware(app: FastAPI, settings: Settings) -> None:
    app.add_middleware(GuardMiddleware, max_body=settings.limits.max_body_bytes)

    if settings.server.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.server.cors_origins,
                           allow_credentials=settings.server.cors_allow_credentials,
                           allow_methods=["*"], allow_headers=["*"],
                           expose_headers=["X-Session-Id", "X-Reply-Text", "X-Sample-Rate"])


def _install_error_handlers(app: FastAPI) -> None:
    def respond(request: Request, status: int, code: str, message: str) -> JSONResponse:
        return count_error(getattr(request.app.state, "runtime", None), error_response(status, code, message))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errs):
            return respond(request, 400, "invalid_json", "request body is not valid JSON")
        for e in errs:
            loc = tuple(e.get("loc", ()))
            if loc[:1] == ("body",) and loc[1:] in (("format",), ("media_type",), ("response_format",)) \
                    and isinstance(e.get("input"), str):
                try:
                    check_format(e["input"])
                except TTSError as bad:  # aac, or an unknown name: the same 400 as the other routes give
                    return respond(request, 400, bad.code, f"{loc[-1]}: {bad.message}")
            if loc == ("body",) and "json" not in request.headers.get("content-type", ""):
                return respond(request, 422, "invalid_request", "the body must be a JSON object sent with "
                               f"Content-Type: application/json (got {request.headers.get('content-type')!r})")
        return respond(request, 422, "invalid_request", validation_message(errs))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        code, message = codes.get(exc.status_code, "http_error"), str(exc.detail)
        if exc.status_code == 400 and message == "There was an error parsing the body":  # e.g. not UTF-8
            code, message = "invalid_json", "request body is not valid JSON (UTF-8)"
        response = respond(request, exc.status_code, code, message)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(TTSError)
    async def tts_error(request: Request, exc: TTSError) -> JSONResponse:
        status = exc.http_status if 400 <= exc.http_status < 600 and exc.http_status != 499 else 400
        return respond(request, status, exc.code, exc.message)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        if exc.counted:  # a turn's error event: run_turn counted it
            return error_response(exc.status, exc.code, exc.message)
        if exc.code == "client_gone":  # no access line is written for an answer nobody reads
            log.info("%s %s: the client closed the connection before the answer; its work was stopped",
                     request.method, request.url.path)
        return respond(request, exc.status, exc.code, exc.message)

    @app.exception_handler(PersonaError)
    async def persona_error(request: Request, exc: PersonaError) -> JSONResponse:
        return respond(request, getattr(exc, "http_status", 400), exc.code, exc.message)

    @app.exception_handler(SessionLimitError)
    async def session_limit(request: Request, exc: SessionLimitError) -> JSONResponse:
        return respond(request, 429, "busy", exc.message)

    @app.exception_handler(LimitError)
    async def limit_error(request: Request, exc: LimitError) -> JSONResponse:
        return respond(request, 429, "busy", exc.message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return respond(request, 500, "internal_error", f"internal error ({type(exc).__name__}); see the server log")


# --------------------------------------------------------------------------------------------- HTTP routes


def _add_http_routes(app: FastAPI, settings: Settings) -> None:
    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        page = settings.paths.static_dir / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html")
        return PlainTextResponse("chat2audio is running; API docs at /docs")

    # also HEAD (uptime probes often send it), kept out of the schema: one operation per route there
    @app.head("/health", include_in_schema=False)
    @app.get("/health", summary="Liveness and readiness")
    async def health(request: Request) -> JSONResponse:
        report = await _rt(request).health()
        return JSONResponse(report)

    @app.head("/health/live", include_in_schema=False)
    @app.get("/health/live", summary="Liveness: the process serves requests")
    async def live() -> dict:
        return {"live": True}

    @app.head("/health/ready", include_in_schema=False)
    @app.get("/health/ready", summary="Readiness: the default speaker can speak and the LLM is reachable "
             "(503 otherwise)", responses={503: {"description": "Not ready"}})
    async def ready(request: Request) -> JSONResponse:
        report = await _rt(request).health()
        return JSONResponse(report, status_code=200 if report["ready"] else 503)

    @app.get("/metrics", summary="Prometheus metrics",
             responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
    async def metrics(request: Request) -> Response:
        return Response(_rt(request).metrics.render(), media_type=METRICS_TYPE)

    @app.get("/speakers", summary="Speakers (voices)", responses=ERRORS)
    async def speakers(request: Request) -> dict:
        return {"speakers": _rt(request).speaker_list()}

    @app.get("/personas", summary="Personas (characters)", responses=ERRORS)
    async def personas(request: Request) -> dict:
        return {"personas": _rt(request).persona_list()}

    @app.post("/admin/reload", summary="Re-read speakers and personas (admin key)", responses=ERRORS)
    async def reload(request: Request) -> dict:
        return await _rt(request).reload()

    @app.post("/chat2audio", summary="One chat turn, answered as audio", responses=_audio_responses())
    async def chat2audio(body: ChatRequest, request: Request) -> Response:
        return await _chat2audio(_rt(request), request, body, _principal(request))

    @app.post("/tts", summary="Text to speech (GPT-SoVITS api_v2 fields)", responses=_audio_responses())
    async def tts(body: TTSRequest, request: Request) -> Response:
        rt = _rt(request)
        speaker, options = rt.tts_request(body)
        return await _synthesis_response(rt, request, _principal(request), body.text, speaker, options,
                                         body.media_type, bool(body.streaming_mode))

    @app.post("/v1/audio/speech", summary="OpenAI-compatible speech",
              responses=_audio_responses(("text/event-stream",)))
    async def speech(body: SpeechRequest, request: Request) -> Response:
        rt = _rt(request)
        speaker, options = rt.speech_request(body)
        fmt = {"opus": "ogg"}.get(body.response_format, body.response_format)
        rate = 24000 if fmt == "pcm" else None  # OpenAI: pcm is 24 kHz s16le
        check_format(fmt)
        if body.stream_format == "sse" and not can_stream(fmt):
            raise ApiError(400, "unsupported_format", f"response_format {body.response_format} cannot be streamed as "
                           "server-sent events; use stream_format audio, or mp3, opus, wav or pcm")
        if body.stream_format == "sse":
            return await _speech_sse(rt, request, _principal(request), body.input, speaker, options, fmt, rate)
        return await _synthesis_response(rt, request, _principal(request), body.input, speaker, options, fmt,
                                         stream=True, out_rate=rate)

    @app.get("/v1/audio/voices", summary="OpenAI-style voice list", responses=ERRORS)
    async def voices(request: Request) -> dict:
        return {"voices": [{"id": s["id"], "name": s["name"]} for s in _rt(request).speaker_list()]}

    @app.get("/v1/models", summary="Models (for OpenAI clients that list them)", responses=ERRORS)
    async def models(request: Request) -> dict:
        return {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "chat2audio"}
                                           for m in ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")]}


def _principal(request: Request) -> str:
    p = getattr(request.state, "principal", None)
    return p.key_id if p is not None else "-"


async def _unless_gone(request: Request, work: Awaitable[T]) -> T:
    """`work`, cancelled if the client hangs up first: a turn or synthesis nobody waits for any more stops
    now and frees its key's slot (a streaming response notices by itself once it sends).

    `work` runs in this task, not in one of its own: a synthesis stream ends its request when the task that
    reads it ends (`AsyncChunkStream`), so its first chunk must be read by the task that goes on reading."""
    me = asyncio.current_task()
    assert me is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await request.receive())["type"] != "http.disconnect":
            pass
        gone = True
        me.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        result = await work
    except asyncio.CancelledError:
        if not gone:
            raise
        me.uncancel()
        raise ApiError(499, "client_gone", "the client closed the connection") from None
    finally:
        watcher.cancel()
    if gone:  # the hang-up came as the work ended (and the work swallowed the cancellation)
        me.uncancel()
        raise ApiError(499, "client_gone", "the client closed the connection")
    return result


async def _chat2audio(rt: Runtime, request: Request, body: ChatRequest, key_id: str) -> Response:
    fmt = check_format(body.format)
    stream = body.stream and can_stream(fmt)  # flac cannot stream: it is sent whole
    session = rt.open_session(body.session_id, body.persona, body.speaker, key_id)
    headers = {"X-Session-Id": session.id, "X-Sample-Rate": str(output_rate(fmt, SAMPLE_RATE))}
    turn = rt.run_turn(session, body.input, key_id)
    if not stream:
        pcm, text = await _unless_gone(request, _collect_turn(turn, rt))
        headers["X-Reply-Text"] = _header_text(text)
        return Response(encode(pcm, SAMPLE_RATE, fmt), media_type=MEDIA_TYPES[fmt], headers=headers)
    first = await _unless_gone(request, _first_audio(turn))
    return StreamingResponse(_encode_stream(first, turn, StreamEncoder(fmt, SAMPLE_RATE)),
                             media_type=MEDIA_TYPES[fmt], headers=headers)


def _header_text(text: str, limit: int = 6000) -> str:
    """Percent-encoded UTF-8, cut on a character boundary so that clients' header limits hold."""
    out = quote(text, safe="")
    while len(out) > limit:
        text = text[: max(0, len(text) - max(1, (len(out) - limit) // 9))]
        out = quote(text + "…", safe="")
    return out


async def _collect_turn(turn: AsyncIterator[ev.Event], rt: Runtime) -> tuple[np.ndarray, str]:
    parts: list[np.ndarray] = []
    text = ""
    try:
        async for event in turn:
            if isinstance(event, ev.AudioOut):
                parts.append(event.pcm)
            elif isinstance(event, ev.TurnDone):
                text = event.text
                if event.interrupted and rt.draining:
                    raise ApiError(503, "shutting_down", "the service shut down during this turn; retry elsewhere")
                if event.interrupted:  # a newer turn of the same session took over: this answer is cut short
                    raise ApiError(409, "interrupted", "a newer turn of this session interrupted this one")
            elif isinstance(event, ev.ErrorEvent):
                raise ApiError.from_event(event)
    finally:
        await turn.aclose()  # type: ignore[attr-defined]  # now, not at garbage collection: the key's turn slot
    return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), text


async def _first_audio(turn: AsyncIterator[ev.Event]) -> list[np.ndarray]:
    """Pull events until the first audio so that errors before it still become 4xx responses."""
    try:
        async for event in turn:
            if isinstance(event, ev.ErrorEvent):
                raise ApiError.from_event(event)
            if isinstance(event, ev.AudioOut):
                return [event.pcm]
    except BaseException:
        await turn.aclose()  # type: ignore[attr-defined]
        raise
    return []


async def _encode_stream(first: list[np.ndarray], turn: AsyncIterator[ev.Event],
                         enc: StreamEncoder) -> AsyncIterator[bytes]:
    try:
        for pcm in first:
            yield enc.push(pcm)
        async for event in turn:
            if isinstance(event, ev.AudioOut):
                data = enc.push(event.pcm)
                if data:
                    yield data
            elif isinstance(event, ev.ErrorEvent):
                log.warning("stream ended early: %s: %s", event.code, event.message)
                break
        yield enc.close()
    finally:
        await turn.aclose()  # type: ignore[attr-defined]


async def _synthesis_response(rt: Runtime, request: Request, key_id: str, text: str, speaker: Any, options: Any,
                              fmt: str, stream: bool, out_rate: int | None = None) -> Response:
    fmt = check_format(fmt)
    if stream and can_stream(fmt):  # flac cannot stream: it is sent whole
        enc = StreamEncoder(fmt, SAMPLE_RATE, out_rate)
        chunks = rt.synthesize(text, speaker, options, key_id)
        first = await _unless_gone(request, _first_chunk(chunks))
        return StreamingResponse(_chunk_stream(first, chunks, enc), media_type=enc.media_type)
    pcm = await _unless_gone(request, rt.synthesize_all(text, speaker, options, key_id))
    return Response(encode(pcm, SAMPLE_RATE, fmt, out_rate), media_type=MEDIA_TYPES[fmt])


async def _first_chunk(chunks: AsyncIterator[np.ndarray]) -> list[np.ndarray]:
    try:
        return [await chunks.__anext__()]
    except StopAsyncIteration:
        return []
    except BaseException:
        await chunks.aclose()  # type: ignore[attr-defined]
        raise


async def _chunk_stream(first: list[np.ndarray], chunks: AsyncIterator[np.ndarray],
                        enc: StreamEncoder) -> AsyncIterator[bytes]:
    try:
        for pcm in first:
            yield enc.push(pcm)
        async for pcm in chunks:
            data = enc.push(pcm)
            if data:
                yield data
        yield enc.close()
    except TTSError as e:
        log.warning("stream ended early: %s: %s", e.code, e.message)
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


async def _speech_sse(rt: Runtime, request: Request, key_id: str, text: str, speaker: Any, options: Any,
                      fmt: str, rate: int | None) -> Response:
    enc = StreamEncoder(fmt, SAMPLE_RATE, rate)
    chunks = rt.synthesize(text, speaker, options, key_id)
    first = await _unless_gone(request, _first_chunk(chunks))

    async def events() -> AsyncIterator[bytes]:
        async for data in _chunk_stream(first, chunks, enc):
            if data:
                delta = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}
                yield f"data: {json.dumps(delta)}\n\n".encode()
        usage = {"input_tokens": len(text), "output_tokens": 0, "total_tokens": len(text)}
        yield f"data: {json.dumps({'type': 'speech.audio.done', 'usage': usage})}\n\n".encode()

    return StreamingResponse(events(), media_type="text/event-stream")


# --------------------------------------------------------------------------------------------- main


class Server(uvicorn.Server):
    """uvicorn's server, with a graceful end for WebSocket turns: uvicorn closes open WebSockets (1012)
    as soon as it shuts down, so after the listening sockets close the runtime is drained first
    (`Runtime.drain`: running turns get `server.shutdown_grace_s`, then end with `turn.done`)."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for listener in self.servers:  # stop accepting; uvicorn's own shutdown repeats this harmlessly
            listener.close()
        runtime = getattr(self.config.app.state, "runtime", None) if isinstance(self.config.app, FastAPI) else None
        if runtime is not None and not self.force_exit:
            await runtime.drain()
        await super().shutdown(sockets)


# larger WebSocket messages close the socket with 1009; smaller ones are parsed and, when invalid or
# over `limits.max_text_chars`, answered with an `error` event on a connection that stays open
WS_MAX_MESSAGE = 16 * 2**20


def server(settings: Settings, **config: Any) -> Server:
    """The app on uvicorn with the settings' host, port, log level, shutdown grace and the WebSocket
    message cap `WS_MAX_MESSAGE`; `config` overrides uvicorn.Config."""
    kw: dict[str, Any] = dict(host=settings.server.host, port=settings.server.port, log_level=settings.server.log_level,
                              timeout_graceful_shutdown=int(settings.server.shutdown_grace_s) + 1,
                              ws_max_size=WS_MAX_MESSAGE)
    return Server(uvicorn.Config(create_app(settings), **{**kw, **config}))


def main(argv: list[str] | None = None) -> None:
    """`python app.py [--config FILE] [--host H] [--port P]`: serve with uvicorn."""
    parser = argparse.ArgumentParser(description="chat2audio voice-chat service")
    parser.add_argument("--config", type=Path, default=None, help="YAML config (default: configs/default.yaml)")
    parser.add_argument("--host", default=None, help="bind address (default: server.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: server.port, 8000)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config, cli={"server.host": args.host, "server.port": args.port})
    except ConfigError as e:
        raise SystemExit(f"chat2audio: {e}") from None
    logging.basicConfig(level=settings.server.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()
    problem = port_problem(settings.server.host, settings.server.port)
    if problem:  # now, not after loading the models (uvicorn binds once its startup is done)
        raise SystemExit(f"chat2audio: {problem}")
    server(settings).run()


def port_problem(host: str, port: int) -> str | None:
    """Why the service could not listen on host:port, if it could not (a port in use, an address that is
    not this machine's); the test socket is closed again at once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as e:
        return f"cannot listen on {host}:{port}: {e.strerror or e}"
    for family, kind, proto, _, addr in infos[:1]:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                s.bind(addr)
            except OSError as e:
                return f"cannot listen on {host}:{port}: {e.strerror or e} (server.host / server.port, --host / --port)"
    return None


if __name__ == "__main__":
    main()
