"""The real app on uvicorn on a free loopback port, on the embedded default (tiny demo models built
once per test session into a tmp cache), with the LLM pointed at the scripted OpenAI server through
the CHAT2AUDIO_* env overrides."""
from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.config import DEFAULT_CONFIG, load_settings
from tests.agent.fake_openai import FakeOpenAI, Reply

REPLY = "你好呀，我是纳西妲。今天想聊点什么呢？我们一起去须弥城看看吧！"


@dataclass
class Server:
    url: str
    ws_url: str
    llm: FakeOpenAI
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(cache: Path, llm: FakeOpenAI, **overrides: str) -> Server:
    from app import server as make_server

    env = {"CHAT2AUDIO_LLM__BACKEND": "openai", "CHAT2AUDIO_LLM__BASE_URL": llm.base_url,
           "CHAT2AUDIO_PATHS__CACHE_DIR": str(cache), "CHAT2AUDIO_TTS__WARMUP": "false", **overrides}
    port = free_port()
    settings = load_settings(DEFAULT_CONFIG, env=env, cli={"server.port": port})
    server = make_server(settings, log_level="warning", ws_ping_interval=None)
    thread = threading.Thread(target=server.run, name="chat2audio-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 240
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the app did not start (see the log above)")
        time.sleep(0.05)
    return Server(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws", llm, server, thread)


@pytest.fixture(scope="session")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny demo models, built once for every service test."""
    from tts.factory import build_demo

    cache = tmp_path_factory.mktemp("cache")
    build_demo(cache / "models")
    return cache


@pytest.fixture(scope="session")
def fake_llm() -> FakeOpenAI:
    with FakeOpenAI(default=Reply.text(REPLY, token_chars=3), token_interval=0.005) as srv:
        yield srv


@pytest.fixture(scope="session")
def server(demo_cache: Path, fake_llm: FakeOpenAI) -> Server:
    srv = start_server(demo_cache, fake_llm)
    yield srv
    srv.stop()


@pytest.fixture()
def client(server: Server) -> httpx.Client:
    with httpx.Client(base_url=server.url, timeout=120) as c:
        yield c
