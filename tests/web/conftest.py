"""Fixtures for the browser tests: the real app under uvicorn on a free loopback port (embedded
default, LLM pointed at the scripted OpenAI server; started by the service tests' `start_server`)
and Debian chromium driven by playwright."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.fake_openai import FakeOpenAI, Reply
from tests.service.conftest import Server, demo_cache, start_server  # noqa: F401 (demo_cache: a fixture)

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--autoplay-policy=no-user-gesture-required"]

# A long reply streamed slowly, so that Stop lands mid-reply.
LONG_REPLY = " ".join(f"Sentence number {i} is here, and it keeps going for a while." for i in range(1, 41))


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
    with FakeOpenAI(default=Reply.text(LONG_REPLY, token_chars=4), token_interval=0.1) as srv:
        yield srv


@pytest.fixture(scope="session")
def app_server(demo_cache: Path, fake_llm: FakeOpenAI, chromium_path: str) -> Iterator[Server]:  # noqa: F811
    srv = start_server(demo_cache, fake_llm)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def keyed_server(demo_cache: Path, fake_llm: FakeOpenAI, chromium_path: str) -> Iterator[Server]:  # noqa: F811
    srv = start_server(demo_cache, fake_llm, CHAT2AUDIO_AUTH__API_KEYS='["web-test-key"]')
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Screenshots go here (CHAT2AUDIO_SCREENSHOTS overrides, to keep them after the run)."""
    where = os.environ.get("CHAT2AUDIO_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
