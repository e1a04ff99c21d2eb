"""Graceful shutdown with a turn in flight: the server stops promptly and cleanly."""
from __future__ import annotations

import asyncio
import json
import logging
import time

import websockets

from tests.agent.fake_openai import Reply
from tests.service.conftest import start_server


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
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 30)
        except websockets.ConnectionClosed:
            pass
    await asyncio.to_thread(srv.thread.join, 30)
    assert not srv.thread.is_alive() and time.monotonic() - t0 < 20
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
