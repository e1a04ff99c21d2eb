"""Fixtures for the browser tests: the real app under uvicorn on a free loopback port (embedded
default, LLM pointed at the scripted OpenAI server) and Debian chromium driven by playwright."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.agent.fake_openai import FakeOpenAI, Reply

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--autoplay-policy=no-user-gesture-required"]
START_TIMEOUT_S = 240  # first start generates the demo models into the cache

# A long reply streamed slowly, so that Stop lands mid-reply.
LONG_REPLY = " ".join(f"Sentence number {i} is here, and it keeps going for a while." for i in range(1, 25))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """`python app.py` in a subprocess; `url` is its base URL with a trailing slash."""

    def __init__(self, llm: FakeOpenAI, env: dict[str, str] | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"chat2audio-web-{self.port}.log"
        full_env = {**os.environ, "CHAT2AUDIO_LLM__BACKEND": "openai", "CHAT2AUDIO_LLM__BASE_URL": llm.base_url,
                    "CHAT2AUDIO_LLM__MODEL": llm.models[0], "PYTHONUNBUFFERED": "1", **(env or {})}
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen([sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(self.port)],
                                     cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "health/live", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"app did not start in {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium); the browser tests need it")
    return path


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(default=Reply.text(LONG_REPLY, token_chars=4), token_interval=0.04) as srv:
        yield srv


def _serve(llm: FakeOpenAI, env: dict[str, str] | None = None) -> Iterator[AppServer]:
    if not (ROOT / "app.py").is_file():
        pytest.skip("app.py is not there yet")
    server = AppServer(llm, env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def app_server(fake_llm: FakeOpenAI, chromium_path: str) -> Iterator[AppServer]:
    yield from _serve(fake_llm)


@pytest.fixture(scope="session")
def keyed_server(fake_llm: FakeOpenAI, chromium_path: str) -> Iterator[AppServer]:
    yield from _serve(fake_llm, {"CHAT2AUDIO_AUTH__API_KEYS": '["web-test-key"]'})


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Screenshots go here (CHAT2AUDIO_SCREENSHOTS overrides, to keep them after the run)."""
    where = os.environ.get("CHAT2AUDIO_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
