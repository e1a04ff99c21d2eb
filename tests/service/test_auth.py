"""Auth on: public routes stay open, everything else needs a key; WebSocket via header or ?api_key=."""
from __future__ import annotations

import json

import httpx
import pytest
import websockets

from tests.agent.fake_openai import Reply
from tests.service.conftest import start_server


@pytest.fixture(scope="module")
def secured(demo_cache, fake_llm):
    srv = start_server(demo_cache, fake_llm, CHAT2AUDIO_AUTH__API_KEYS='["k1", "k2"]', CHAT2AUDIO_AUTH__ADMIN_KEYS='["adm"]',
                       CHAT2AUDIO_LIMITS__MAX_CONCURRENT_TURNS_PER_KEY="1")
    yield srv
    srv.stop()


def test_http_auth(secured):
    with httpx.Client(base_url=secured.url, timeout=120) as c:
        for path in ("/", "/health", "/openapi.json", "/docs", "/static/index.html"):
            assert c.get(path).status_code == 200, path
        r = c.get("/speakers")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert c.get("/speakers", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/speakers", headers={"Authorization": "Bearer k1"}).status_code == 200
        body = {"input": "做个自我介绍吧", "speaker": "Nahida"}
        assert c.post("/chat2audio", json=body).status_code == 401
        assert c.post("/chat2audio", json=body, headers={"Authorization": "Bearer k1"}).status_code == 200
        assert c.post("/admin/reload", headers={"Authorization": "Bearer k1"}).status_code == 403
        r = c.post("/admin/reload", headers={"Authorization": "Bearer adm"})
        assert r.status_code == 200 and "Nahida" in r.json()["speakers"]
        assert c.post("/tts", content=b"x" * 2_000_000, headers={"Authorization": "Bearer k1"}).status_code == 413
        # answers of the guard (a missing key, a body too large) are counted as requests like any other
        metrics = c.get("/metrics", headers={"Authorization": "Bearer k1"}).text
        for route, status in (("/speakers", 401), ("/chat2audio", 401), ("/admin/reload", 403), ("/tts", 413)):
            assert f'chat2audio_http_requests_total{{route="{route}",status="{status}"}}' in metrics, (route, status)


async def test_ws_auth(secured):
    async with websockets.connect(secured.ws_url) as ws:
        err = json.loads(await ws.recv())
        assert err["type"] == "error" and err["code"] == "unauthorized"
    async with websockets.connect(secured.ws_url + "?api_key=k1") as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
    async with websockets.connect(secured.ws_url, additional_headers={"Authorization": "Bearer k1"}) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"


async def test_busy_per_key(secured):
    """One turn at a time per key: a second request with the same key gets 429 busy, another key does not."""
    secured.llm.script(Reply.text("很长的故事。" * 20, token_chars=2, token_interval=0.03))
    async with websockets.connect(secured.ws_url + "?api_key=k1") as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "input.text", "text": "讲故事"}))
        assert json.loads(await ws.recv())["type"] == "turn.started"
        async with httpx.AsyncClient(base_url=secured.url, timeout=120) as c:
            body = {"model": "tts-1", "input": "你好。", "voice": "Nahida", "response_format": "pcm"}
            r = await c.post("/v1/audio/speech", json=body, headers={"Authorization": "Bearer k1"})
            assert r.status_code == 429 and r.json()["error"]["code"] == "busy"
            r = await c.post("/v1/audio/speech", json=body, headers={"Authorization": "Bearer k2"})
            assert r.status_code == 200
        await ws.send(json.dumps({"type": "interrupt"}))
        while (msg := json.loads(await ws.recv()))["type"] != "turn.done":
            pass
        assert msg["interrupted"] is True


def test_session_ids_are_per_key(secured):
    """Two keys naming the same session id have two conversations: neither is refused or given a random id,
    and neither sees the other's history."""
    body = {"input": "记住我", "speaker": "Nahida", "session_id": "npc-guard-42", "format": "pcm"}

    def said(key: str) -> int:  # the user lines in the history the LLM got for this turn
        n = len(secured.llm.requests)
        r = c.post("/chat2audio", json=body, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200 and r.headers["x-session-id"] == "npc-guard-42", key
        return sum(m["role"] == "user" and m["content"] == "记住我" for m in secured.llm.requests[n]["messages"])

    with httpx.Client(base_url=secured.url, timeout=120) as c:
        assert [said("k1"), said("k2"), said("k2"), said("k1")] == [1, 1, 2, 2]
