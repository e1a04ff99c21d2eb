"""The WebSocket endpoint `WS /ws` (docs/protocol.md): one `Connection` per socket.

A connection reads client events, runs at most one turn at a time through `Runtime.run_turn` and sends
server events from a bounded queue, so a slow client holds its own turn back and nothing else.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from agent import events as ev
from agent.auth import AuthError, LimitError, key_from
from agent.personas import PersonaError
from agent.protocol import (InputText, Interrupt, Playback, ProtocolError, SessionUpdate, audio_message, dumps,
                            parse_client_event, server_message)
from agent.runtime import ApiError, Runtime
from agent.session import SessionLimitError
from tts.errors import TTSError
from tts.types import SAMPLE_RATE

log = logging.getLogger("chat2audio")


def add_ws_route(app: FastAPI) -> None:
    """`WS /ws`: authenticate, hold a connection slot of the key, serve one `Connection`."""
    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        rt: Runtime = websocket.app.state.runtime
        await websocket.accept()
        origin = websocket.headers.get("origin")
        if not origin_allowed(origin, websocket.headers.get("host"), rt.settings.server.cors_origins):
            message = (f"origin {origin[:200]!r} may not open this WebSocket; add it to server.cors_origins "
                       "(browsers let any page open a WebSocket, so the service checks where pages come from)")
            await websocket.send_text(dumps({"type": "error", "code": "forbidden_origin", "message": message}))
            await websocket.close(code=4403)
            return
        try:
            principal = rt.auth.check(key_from(websocket.headers, websocket.query_params))
        except AuthError as e:
            await websocket.send_text(dumps({"type": "error", "code": e.code, "message": e.message}))
            await websocket.close(code=4401 if e.status == 401 else 4403)
            return
        try:
            with rt.limiter.connection(principal.key_id):
                try:
                    conn = Connection(rt, websocket, principal.key_id)
                except SessionLimitError as e:
                    raise LimitError(e.message) from e
                except (ApiError, PersonaError) as e:  # no session can open: the default persona or speaker is missing
                    await websocket.send_text(dumps({"type": "error", "code": e.code, "message": e.message}))
                    await websocket.close(code=1011)
                    return
                await conn.serve()
        except LimitError as e:
            await websocket.send_text(dumps({"type": "error", "code": "busy", "message": e.message}))
            await websocket.close(code=1013)


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """Whether a socket opened from a page of `origin` is accepted: no Origin (not a browser), the service's
    own pages (the origin's host is the Host the socket was opened to), or one of `server.cors_origins`
    (`*`: any). A page of another site could otherwise talk to a service on the user's own machine."""
    if origin is None or "*" in allowed or origin.rstrip("/") in {o.rstrip("/") for o in allowed}:
        return True
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()


class Connection:
    """One WebSocket conversation: a reader (this coroutine), a sender task draining a bounded queue
    (back-pressure: a slow client makes the turn wait, memory stays bounded) and at most one turn task."""

    def __init__(self, rt: Runtime, websocket: WebSocket, key_id: str):
        self.rt, self.ws, self.key_id = rt, websocket, key_id
        # items: (turn_id of an audio message or None, frame); bounded: back-pressure on the turn
        self.queue: asyncio.Queue[tuple[str | None, str | bytes]] = asyncio.Queue(rt.settings.limits.ws_send_queue)
        self.transport = "base64"
        self.session = rt.open_session(None, None, None, key_id)
        self.turn: asyncio.Task | None = None
        self.turn_id: str | None = None
        self.closed = False
        self.sending = False

    def flushed(self) -> bool:
        """Nothing is waiting to be sent (shutdown waits for this before the socket is closed)."""
        return self.closed or (self.queue.empty() and not self.sending)

    async def serve(self) -> None:
        sender = asyncio.create_task(self._send_loop())
        self.rt.metrics.active_sessions.inc()
        self.rt.connections.add(self)
        try:
            await self._emit({"type": "session.created", **self._session_info()})
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("text") if message.get("text") is not None else message.get("bytes")
                try:
                    await self._handle(raw or "")
                except Exception:  # a fault handling one message is reported; the conversation goes on
                    log.exception("WebSocket message handling failed")
                    await self._error("internal_error", "internal error handling this message; see the server log")
        except (WebSocketDisconnect, RuntimeError):  # the socket is gone (receive after a disconnect)
            pass
        finally:
            self.rt.metrics.active_sessions.dec()
            self.rt.connections.discard(self)
            self.closed = True  # nothing more is sent; free the queue so a waiting turn can end
            sender.cancel()
            while not self.queue.empty():
                self.queue.get_nowait()
            await self._stop_turn()

    def _session_info(self) -> dict[str, Any]:
        s = self.session
        return {"session_id": s.id, "persona": s.persona_id, "speaker": s.speaker_id,
                "sample_rate": SAMPLE_RATE, "format": "pcm16", "audio_transport": self.transport}

    async def _emit(self, message: dict[str, Any] | str | bytes, audio_of: str | None = None) -> None:
        if self.closed:
            return
        await self.queue.put((audio_of, dumps(message) if isinstance(message, dict) else message))

    def _drop_audio(self, turn_id: str) -> None:
        """After an interrupt, audio of that turn still waiting in the queue is never sent."""
        kept = []
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if item[0] != turn_id:
                kept.append(item)
        for item in kept:
            self.queue.put_nowait(item)

    async def _send_loop(self) -> None:
        while True:
            _, frame = await self.queue.get()
            self.sending = True
            try:
                if isinstance(frame, bytes):
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_text(frame)
            except Exception:  # the client is gone; the reader loop ends the connection
                return
            finally:
                self.sending = False

    async def _handle(self, raw: str | bytes) -> None:
        try:
            event = parse_client_event(raw)
            if isinstance(event, InputText):
                self.rt.check_turn(self.session, event.text)  # a refused text leaves the running turn alone
                await self._stop_turn()
                self.turn = asyncio.create_task(self._run_turn(event.text))
            elif isinstance(event, Interrupt):
                await self._stop_turn()
            elif isinstance(event, Playback):
                self.session.playback(event.turn_id, event.played_ms)
            elif isinstance(event, SessionUpdate):
                await self._update(event)
        except (ProtocolError, ApiError, TTSError, LimitError, PersonaError, SessionLimitError) as e:
            await self._error(getattr(e, "code", "error"), getattr(e, "message", str(e)))

    async def _error(self, code: str, message: str) -> None:
        """An `error` event, counted in the error metrics as the HTTP routes' errors are."""
        self.rt.metrics.errors.inc(code)
        await self._emit({"type": "error", "code": code, "message": message})

    async def _update(self, event: SessionUpdate) -> None:
        extra: dict[str, Any] = {}
        if event.session_id:  # whether the server still had it (a restart forgets sessions)
            extra["resumed"] = self.rt.find_session(event.session_id, self.key_id) is not None
        sid = event.session_id or self.session.id
        same = sid == self.session.id and (self.rt.bind(event.persona, event.speaker, self.session)
                                           == (self.session.persona_id, self.session.speaker_id))
        if (event.session_id or event.persona or event.speaker) and not same:  # what changes nothing goes on
            self.rt.check_binding(event.persona, event.speaker)  # an invalid change leaves the running turn alone
            await self._stop_turn()
            # omitted fields stay as they are (Runtime.open_session): a resumed session keeps its own persona,
            # speaker and history; a new session id starts with this connection's current persona and speaker
            self.session = self.rt.open_session(sid, event.persona, event.speaker, self.key_id, current=self.session)
        if event.audio_transport:
            self.transport = event.audio_transport
        await self._emit({"type": "session.updated", **self._session_info(), **extra})

    async def _run_turn(self, text: str) -> None:
        try:
            # aclosing: a cancelled turn task stops the turn's stages now, not when the generator is collected
            async with contextlib.aclosing(self.rt.run_turn(self.session, text, self.key_id)) as events:
                async for event in events:
                    if isinstance(event, ev.AudioOut):
                        await self._emit(audio_message(event, self.transport), audio_of=event.turn_id)
                        continue
                    if isinstance(event, ev.TurnStarted):
                        self.turn_id = event.turn_id
                    await self._emit(server_message(event))
                    if isinstance(event, ev.TurnDone):
                        self.turn_id = None
        except (ApiError, TTSError, LimitError, PersonaError, SessionLimitError) as e:
            await self._error(getattr(e, "code", "busy"), e.message)

    async def _stop_turn(self) -> None:
        """Interrupt the running turn and wait until its `turn.done` is queued."""
        task, self.turn = self.turn, None
        if task is None or task.done():
            return
        for _ in range(3):  # a turn task that has not run yet (input.text just before): let it start its turn
            if self.turn_id is not None or task.done():
                break
            await asyncio.sleep(0)
        self.session.interrupt()
        if self.turn_id:
            self._drop_audio(self.turn_id)
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=3.0)
        except Exception:
            task.cancel()
        if self.turn_id:  # the turn did not end by itself: close it for the client
            await self._emit({"type": "turn.done", "turn_id": self.turn_id, "text": "", "interrupted": True})
            self.turn_id = None
