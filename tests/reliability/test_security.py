"""Security: with API keys configured only the public paths answer without one (HTTP and WebSocket);
keys never reach the log (query-string keys included); limits on body size, text length, sessions per
key and turns per session; /admin/* needs an admin key."""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.reliability.conftest import EchoLLM, LogCapture
from tests.reliability.helpers import check_turn, recv, reply_for, turn
from tests.service.conftest import Server, start_server

KEY, ADMIN_KEY = "k-7f3a9c-secret", "adm-51e0d2-secret"
AUTH, ADMIN = {"Authorization": f"Bearer {KEY}"}, {"Authorization": f"Bearer {ADMIN_KEY}"}
PUBLIC = ("/", "/health", "/openapi.json", "/docs", "/static/app.js")
LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "chat2audio", "agent", "tts")


@pytest.fixture(scope="module")
def logs() -> Iterator[LogCapture]:
    cap = LogCapture()
    cap.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    levels = {}
    for name in LOGGERS:
        lg = logging.getLogger(name)
        levels[name] = lg.level
        lg.addHandler(cap)
        lg.setLevel(logging.DEBUG if name else logging.INFO)
    yield cap
    for name in LOGGERS:
        logging.getLogger(name).removeHandler(cap)
        logging.getLogger(name).setLevel(levels[name])


@pytest.fixture(scope="module")
def secured(demo_cache: Path, echo_llm: EchoLLM, logs: LogCapture) -> Iterator[Server]:
    srv = start_server(demo_cache, echo_llm, CHAT2AUDIO_AUTH__API_KEYS=json.dumps([KEY]),
                       CHAT2AUDIO_AUTH__ADMIN_KEYS=json.dumps([ADMIN_KEY]),
                       CHAT2AUDIO_LIMITS__MAX_BODY_BYTES="4096", CHAT2AUDIO_LIMITS__MAX_TEXT_CHARS="200",
                       CHAT2AUDIO_LIMITS__MAX_SESSIONS_PER_KEY="2", CHAT2AUDIO_LIMITS__MAX_TURNS_PER_SESSION="2")
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error"):  # uvicorn's logging config replaced the handlers
        lg = logging.getLogger(name)
        lg.setLevel(logging.DEBUG)
        if logs not in lg.handlers:
            lg.addHandler(logs)
    yield srv
    srv.stop()


def test_only_public_paths_answer_without_a_key(secured):
    with httpx.Client(base_url=secured.url, timeout=60) as c:
        for path in PUBLIC:
            assert c.get(path).status_code == 200, path
        schema = c.get("/openapi.json").json()
        checked = 0
        for path, ops in schema["paths"].items():
            if path in PUBLIC or path.startswith("/health"):
                continue
            for method in ops:
                r = c.request(method.upper(), path, json={})
                assert r.status_code in (401, 403), (method, path, r.status_code)
                assert r.json()["error"]["code"] in ("unauthorized", "forbidden")
                r = c.request(method.upper(), path, json={}, headers={"Authorization": "Bearer wrong"})
                assert r.status_code in (401, 403), (method, path, r.status_code)
                checked += 1
        assert checked >= 8
        assert c.get("/metrics").status_code == 401
        assert c.get("/speakers", params={"api_key": "wrong"}).status_code == 401
        assert c.get("/speakers", headers=AUTH).status_code == 200


def test_admin_needs_an_admin_key(secured):
    with httpx.Client(base_url=secured.url, timeout=60) as c:
        assert c.post("/admin/reload").status_code == 401
        assert c.post("/admin/reload", headers=AUTH).status_code == 403
        assert c.post("/admin/reload", headers=ADMIN).status_code == 200


async def test_websocket_auth(secured):
    for kwargs in ({}, {"additional_headers": {"Authorization": "Bearer wrong"}}):
        async with websockets.connect(secured.ws_url, open_timeout=30, **kwargs) as ws:
            msg, _ = await recv(ws, 30)
            assert msg["type"] == "error" and msg["code"] == "unauthorized", msg
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
    async with websockets.connect(secured.ws_url + "?api_key=wrong", open_timeout=30) as ws:
        assert (await recv(ws, 30))[0]["code"] == "unauthorized"
    async with websockets.connect(f"{secured.ws_url}?api_key={KEY}", open_timeout=30) as ws:
        assert (await recv(ws, 30))[0]["type"] == "session.created"
        t = await turn(ws, "R1-1")
        check_turn(t, reply_for("R1-1"))


async def test_limits(secured):
    async with httpx.AsyncClient(base_url=secured.url, timeout=60, headers=AUTH) as c:
        big = {"input": "你好" * 3000, "speaker": "Nahida"}
        r = await c.post("/chat2audio", json=big)
        assert r.status_code == 413 and r.json()["error"]["code"], r.text[:200]

        async def chunks():  # no content-length: the limit must hold for chunked bodies too
            yield b'{"input": "'
            for _ in range(100):
                yield b"a" * 1000
            yield b'", "speaker": "Nahida"}'

        r = await c.post("/chat2audio", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413, (r.status_code, r.text[:200])
        for path, body in (("/chat2audio", {"input": "长" * 201, "speaker": "Nahida"}),
                           ("/tts", {"text": "长" * 201, "speaker": "Nahida"})):
            r = await c.post(path, json=body)
            assert r.status_code == 413 and r.json()["error"]["code"] == "text_too_long", (path, r.text[:200])
    url = f"{secured.ws_url}?api_key={KEY}"
    async with websockets.connect(url) as ws1, websockets.connect(url) as ws2:
        await recv(ws1, 30)
        await recv(ws2, 30)
        async with websockets.connect(url) as ws3:
            msg, _ = await recv(ws3, 30)
            assert msg["type"] == "error" and msg["code"] == "busy", msg
        await ws1.send(json.dumps({"type": "input.text", "text": "长" * 201}))
        msg, _ = await recv(ws1, 30)
        assert msg["type"] == "error" and msg["code"] == "text_too_long", msg
        for i in range(2):
            check_turn(await turn(ws1, f"R5-{i}"), reply_for(f"R5-{i}"))
        t = await turn(ws1, "R5-2")
        assert t.errors and t.errors[0]["code"] == "session_limit", t.messages


def test_keys_never_logged(secured, logs):
    with httpx.Client(base_url=secured.url, timeout=60) as c:
        c.get("/speakers", params={"api_key": KEY})
        c.get("/speakers", headers=AUTH)
        c.post("/admin/reload", headers=ADMIN)
        c.get(f"/nope?api_key={ADMIN_KEY}")

    async def ws() -> None:
        async with websockets.connect(f"{secured.ws_url}?api_key={KEY}") as w:
            await recv(w, 30)
        async with websockets.connect(f"{secured.ws_url}?x=1&api_key={ADMIN_KEY}&y=2") as w:
            await recv(w, 30)

    asyncio.run(ws())
    server = [line for line in logs.lines if not line.startswith("httpx ")]  # the test client's own log is not the server's
    assert any("/speakers" in line or "/ws" in line for line in server), "nothing was logged: the capture is broken"
    assert any("api_key=***" in line for line in server), "no query-string key was logged (redacted)"
    assert not [line for line in server if KEY in line or ADMIN_KEY in line]
