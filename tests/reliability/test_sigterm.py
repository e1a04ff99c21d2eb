"""SIGTERM during active turns: `python app.py` as a subprocess exits cleanly within a bound, its
clients see their connections end (no hang), and no process is left behind."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import websockets

from agent.config import PROJECT_ROOT
from tests.agent.fake_openai import FakeOpenAI, Reply
from tests.reliability.helpers import recv
from tests.service.conftest import free_port

EXIT_BOUND_S = 30.0


@pytest.fixture()
def slow_llm():
    with FakeOpenAI(default=Reply.text("很长很长的故事。" * 40, token_chars=2), token_interval=0.05) as srv:
        yield srv


async def test_sigterm_during_turns(demo_cache: Path, slow_llm: FakeOpenAI, tmp_path: Path):
    port = free_port()
    env = {**os.environ, "CHAT2AUDIO_LLM__BACKEND": "openai", "CHAT2AUDIO_LLM__BASE_URL": slow_llm.base_url,
           "CHAT2AUDIO_PATHS__CACHE_DIR": str(demo_cache), "CHAT2AUDIO_TTS__WARMUP": "false",
           "CHAT2AUDIO_SERVER__SHUTDOWN_GRACE_S": "2", "CHAT2AUDIO_SERVER__LOG_LEVEL": "info"}
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=PROJECT_ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=5) as c:
            t0 = time.monotonic()
            while True:
                assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
                assert time.monotonic() - t0 < 240, "the service did not start"
                try:
                    if (await c.get(url + "/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.3)
        sockets = [await websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=30) for _ in range(2)]
        for ws in sockets:
            await recv(ws, 30)
            await ws.send(json.dumps({"type": "input.text", "text": "讲个长故事"}))
        for ws in sockets:
            while (await recv(ws, 120))[0]["type"] != "text.delta":
                pass
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)

        async def until_closed(ws) -> list[str]:
            kinds = []
            try:
                while True:
                    kinds.append(json.loads(await asyncio.wait_for(ws.recv(), EXIT_BOUND_S))["type"])
            except websockets.ConnectionClosed:
                return kinds

        seen = await asyncio.wait_for(asyncio.gather(*(until_closed(ws) for ws in sockets)), EXIT_BOUND_S)
        assert all("turn.done" in kinds for kinds in seen), seen  # each turn was ended before its socket closed
        code = await asyncio.to_thread(proc.wait, EXIT_BOUND_S)
        took = time.monotonic() - t_term
        out = (tmp_path / "server.log").read_text()
        # uvicorn shuts down gracefully, then re-raises the signal so the parent sees "terminated by SIGTERM"
        assert code in (0, -signal.SIGTERM), (code, out[-3000:])
        assert "Finished server process" in out or code == -signal.SIGTERM, out[-3000:]
        assert took < EXIT_BOUND_S
        assert "Traceback" not in out and "ERROR" not in out, out[-3000:]
        assert "Waiting for application shutdown" in out and "Application shutdown complete" in out, out[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        log.close()
