"""Graceful shutdown with turns in flight: WebSocket turns get `server.shutdown_grace_s` to finish
(then end with `turn.done`, interrupted), new turns are refused meanwhile, and the server stops
promptly and cleanly."""
from __future__ import annotations

import asyncio
import json
import logging
import time

import websockets

from tests.agent.fake_openai import Reply
from tests.service.conftest import start_server
from tests.service.test_ws import recv_until


async def _until_closed(ws) -> list[dict]:
    out = []
    try:
        while True:
            raw = await asyncio.wait_for(ws.recv(), 30)
            out.append(json.loads(raw))
    except websockets.ConnectionClosed:
        return out


async def test_shutdown_during_a_turn(demo_cache, fake_llm, caplog):
    srv = start_server(demo_cache, fake_llm, CHAT2AUDIO_SERVER__SHUTDOWN_GRACE_S="1")
    fake_llm.script(Reply.text("很长很长的故事。" * 30, token_chars=2, token_interval=0.03))
    caplog.set_level(logging.ERROR)
    async with websockets.connect(srv.ws_url) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "input.text", "text": "讲故事"}))
        assert json.loads(await ws.recv())["type"] == "turn.started"
        t0 = time.monotonic()
        srv.server.should_exit = True
        msgs = await _until_closed(ws)
    done = [m for m in msgs if m["type"] == "turn.done"]
    assert done and done[-1]["interrupted"] is True, [m["type"] for m in msgs]  # too long for the grace
    await asyncio.to_thread(srv.thread.join, 30)
    assert not srv.thread.is_alive() and time.monotonic() - t0 < 20
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


async def test_shutdown_lets_a_running_turn_finish(demo_cache, fake_llm):
    srv = start_server(demo_cache, fake_llm, CHAT2AUDIO_SERVER__SHUTDOWN_GRACE_S="30")
    fake_llm.script(Reply.text("你好呀。今天天气很好。", token_chars=2, token_interval=0.05))
    async with websockets.connect(srv.ws_url) as ws, websockets.connect(srv.ws_url) as other:
        await ws.recv()
        await other.recv()
        await ws.send(json.dumps({"type": "input.text", "text": "你好"}))
        assert json.loads(await ws.recv())["type"] == "turn.started"
        srv.server.should_exit = True
        await asyncio.sleep(0.3)
        await other.send(json.dumps({"type": "input.text", "text": "还有我"}))  # during the drain
        refused = await recv_until(other, "error")
        assert refused[-1]["code"] == "shutting_down"
        msgs = await _until_closed(ws)
    types = [m["type"] for m in msgs]
    assert "audio" in types and types.count("turn.done") == 1, types
    assert next(m for m in msgs if m["type"] == "turn.done")["interrupted"] is False
    await asyncio.to_thread(srv.thread.join, 30)
    assert not srv.thread.is_alive()
