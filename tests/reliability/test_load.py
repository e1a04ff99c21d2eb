"""Load: concurrent WebSocket sessions plus HTTP requests against the real app (tiny models, scripted
LLM). Every turn completes or is refused with `busy`; every sentence's audio arrives exactly once and
in order; no session sees another's sentences; every client wait is bounded."""
from __future__ import annotations

import asyncio
import random
import time
from urllib.parse import unquote

import httpx
import websockets

from tests.reliability.helpers import check_turn, recv, reply_for, turn

SESSIONS = 6
TURNS = 2
DEADLINE_S = 240.0


async def wait_idle(url: str, timeout: float = 20.0) -> dict:
    """/health once no turn and no TTS request is running any more."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        t0 = time.monotonic()
        while True:
            h = (await c.get("/health")).json()
            if h["active_turns"] == 0 and h["tts"].get("active_requests", 0) == 0 and h["tts"].get("queue_depth", 0) == 0:
                return h
            assert time.monotonic() - t0 < timeout, f"work still running after the clients finished: {h}"
            await asyncio.sleep(0.2)


async def ws_session(url: str, s: int, stats: dict) -> None:
    async with websockets.connect(url, open_timeout=30, close_timeout=5, max_size=2**24) as ws:
        created, _ = await recv(ws, 30)
        assert created["type"] == "session.created"
        for t in range(TURNS):
            for attempt in range(10_000):  # bounded by DEADLINE_S
                result = await turn(ws, f"R{s}-{t}")
                if result.done is not None:
                    break
                (err,) = result.errors
                assert err["code"] == "busy" and err["message"], err
                stats["busy"] += 1
                await asyncio.sleep(min(1.0, 0.05 * (attempt + 1)) * random.random())
            else:
                raise AssertionError(f"session {s} turn {t} refused every time")
            check_turn(result, reply_for(f"R{s}-{t}"))
            assert all(f"{s}号会话" in x for x in result.sentences), (s, result.sentences)
            assert f"第{t}轮" in result.sentences[0], (t, result.sentences)
            stats["turns"] += 1
            stats["sentences"] += len(result.sentences)
            stats["first_audio"].append(result.first_audio_s)
            stats["elapsed"].append(round(result.elapsed_s, 2))


async def http_load(url: str, stop: asyncio.Event, stats: dict) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        i = 0
        while not stop.is_set():
            i += 1
            await asyncio.sleep(0.05)
            reqs = [c.get("/health"), c.get("/speakers"), c.get("/metrics"),
                    c.post("/tts", json={"text": "你好。", "speaker": "Nahida", "text_lang": "zh"}),
                    c.post("/chat2audio", json={"input": f"R{100 + i}-0", "speaker": "Nahida", "format": "pcm"})]
            for r in await asyncio.gather(*reqs):
                stats["http"][r.status_code] = stats["http"].get(r.status_code, 0) + 1
                if r.status_code == 429:
                    assert r.json()["error"]["code"] == "busy", r.text
                    continue
                assert r.status_code == 200, (r.request.url, r.status_code, r.text[:300])
                if r.request.url.path == "/chat2audio":
                    assert unquote(r.headers["x-reply-text"]) == reply_for(f"R{100 + i}-0")
                    assert len(r.content) > 0 and len(r.content) % 2 == 0
                if r.request.url.path == "/tts":
                    assert r.headers["content-type"].startswith("audio/wav") and r.content[:4] == b"RIFF"


async def test_concurrent_sessions_and_http(rserver):
    stats: dict = {"turns": 0, "busy": 0, "sentences": 0, "first_audio": [], "elapsed": [], "http": {}}
    stop = asyncio.Event()
    t0 = time.monotonic()
    http = asyncio.create_task(http_load(rserver.url, stop, stats))
    try:
        await asyncio.wait_for(asyncio.gather(*(ws_session(rserver.ws_url, s, stats) for s in range(SESSIONS))),
                               DEADLINE_S)
    finally:
        stop.set()
        await asyncio.wait_for(http, 120)
    assert stats["turns"] == SESSIONS * TURNS
    assert stats["http"].get(200, 0) > 0 and not any(code >= 500 for code in stats["http"])
    h = await wait_idle(rserver.url)
    assert h["tts"]["worker_alive"] and h["ready"]
    print(f"load: {stats['turns']} turns, {stats['sentences']} sentences, {stats['busy']} busy refusals, "
          f"http {stats['http']}, {time.monotonic() - t0:.1f} s")


async def test_full_tts_queue_refuses_turns_whole(demo_cache, echo_llm):
    """With a TTS queue of one request, concurrent turns are refused `busy` before they start or run whole:
    an admitted turn's sentences wait for room instead of leaving holes in the reply (every sentence has
    its audio, no error inside a turn), over WebSocket and HTTP alike."""
    from tests.reliability.conftest import start_server

    srv = start_server(demo_cache, echo_llm, CHAT2AUDIO_TTS__MAX_QUEUE="1",
                       CHAT2AUDIO_LIMITS__MAX_CONCURRENT_TURNS_PER_KEY="16")
    outcomes: list[str] = []

    async def ws_turn(s: int) -> None:
        async with websockets.connect(srv.ws_url, open_timeout=30, max_size=2**24) as ws:
            await recv(ws, 30)
            result = await turn(ws, f"R{s}-0")
            if result.done is None:
                (err,) = result.errors
                assert err["code"] == "busy" and "turn.started" not in result.kinds, result.kinds
                outcomes.append("busy")
                return
            check_turn(result, reply_for(f"R{s}-0"))
            outcomes.append("done")

    async def http_turn(c: httpx.AsyncClient, s: int) -> None:
        r = await c.post("/chat2audio", json={"input": f"R{s}-0", "format": "pcm"})
        assert r.status_code in (200, 429), r.text
        outcomes.append("busy" if r.status_code == 429 else "done")

    try:
        async with httpx.AsyncClient(base_url=srv.url, timeout=120) as c:
            await asyncio.wait_for(asyncio.gather(*(ws_turn(s) for s in range(6)),
                                                  *(http_turn(c, 50 + s) for s in range(4))), DEADLINE_S)
        assert outcomes.count("done") >= 1 and len(outcomes) == 10, outcomes
    finally:
        srv.stop()
