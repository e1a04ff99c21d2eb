"""Fixtures for the reliability tests: the real app under uvicorn on a free loopback port (embedded
default, tiny demo models; started by the service tests' `start_server`) with the LLM pointed at a
scripted OpenAI server that answers each user message with a reply derived from it, so that
concurrent sessions get distinct, predictable replies."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.fake_openai import FakeOpenAI, Reply
from tests.reliability.helpers import reply_for
from tests.service.conftest import Server, demo_cache, start_server  # noqa: F401 (demo_cache: a fixture)


class EchoLLM(FakeOpenAI):
    """A FakeOpenAI whose default reply is `reply_for(last user message)`; scripted replies come first."""

    def _next_reply(self) -> Reply:
        with self._lock:
            if self._replies:
                return self._replies.popleft()
        messages = (self.requests[-1].get("messages") if self.requests else None) or [{}]
        last = messages[-1] if isinstance(messages[-1], dict) else {}
        user = str(last.get("content", ""))
        return Reply.text(reply_for(user), token_chars=3)


class LogCapture(logging.Handler):
    """Every formatted record of the root logger (uvicorn's and the app's), kept in memory."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a record that cannot be formatted is kept raw
            self.lines.append(repr(record.msg))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture(scope="session")
def echo_llm() -> Iterator[EchoLLM]:
    with EchoLLM(token_interval=0.003) as srv:
        yield srv


@pytest.fixture(scope="session")
def rserver(demo_cache: Path, echo_llm: EchoLLM) -> Iterator[Server]:
    """The app with default limits (4 concurrent turns per key, so load tests also meet `busy`)."""
    srv = start_server(demo_cache, echo_llm)
    yield srv
    srv.stop()
