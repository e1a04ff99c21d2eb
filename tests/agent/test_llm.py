"""OpenAIClient against a real HTTP server on 127.0.0.1 streaming vLLM's chunk format."""
from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest

from agent.llm import LLMError, LLMParams, LLMTimeouts, OpenAIClient, VLLMServer, _StopMatcher
from tests.agent.fake_openai import FakeOpenAI, Reply

MSGS = [{"role": "system", "content": "你是纳西妲。"}, {"role": "user", "content": "你好"}]


@pytest.fixture
def server():
    with FakeOpenAI() as srv:
        yield srv


async def collect(client: OpenAIClient, params: LLMParams | None = None) -> list[str]:
    return [d async for d in client.stream(MSGS, params or LLMParams())]


async def test_streams_deltas_and_sends_params(server: FakeOpenAI) -> None:
    server.script(Reply.text("你好呀，旅行者！", token_chars=2))
    client = OpenAIClient(server.base_url, model="fake-model")
    params = LLMParams(temperature=0.7, top_p=0.9, max_tokens=64, repetition_penalty=1.1, stop=("\n\n",))
    deltas = await collect(client, params)
    await client.aclose()
    assert deltas == ["你好", "呀，", "旅行", "者！"]
    body = server.requests[-1]
    assert body["stream"] is True and body["model"] == "fake-model" and body["messages"] == MSGS
    assert body["temperature"] == 0.7 and body["top_p"] == 0.9 and body["max_tokens"] == 64
    assert body["repetition_penalty"] == 1.1 and body["stop"] == ["\n\n"]
    assert body["chat_template_kwargs"] == {"enable_thinking": False}


async def test_reasoning_and_think_tags_never_yielded(server: FakeOpenAI) -> None:
    server.script(Reply(tokens=("<thi", "nk>secret plan</th", "ink>", "Hi", " there."), reasoning=("deep", " thought")))
    client = OpenAIClient(server.base_url, model="fake-model")
    text = "".join(await collect(client))
    await client.aclose()
    assert text == "Hi there."


async def test_no_done_no_role_no_usage_is_still_complete(server: FakeOpenAI) -> None:
    server.script(Reply.text("abc def", done=False, role_chunk=False, usage_chunk=False))
    client = OpenAIClient(server.base_url, model="fake-model")
    assert "".join(await collect(client)) == "abc def"
    await client.aclose()


async def test_first_model_used_when_none_configured(server: FakeOpenAI) -> None:
    server.models = ("qwen-roleplay", "other")
    client = OpenAIClient(server.base_url)
    assert await client.list_models() == ["qwen-roleplay", "other"]
    await collect(client)
    await client.aclose()
    assert server.requests[-1]["model"] == "qwen-roleplay"


@pytest.mark.parametrize("knob,code", [({"error_after": 2}, "upstream_error"), ({"garbage_after": 1}, "bad_response"),
                                       ({"disconnect_after": 2}, "disconnected")])
async def test_mid_stream_failures_after_first_token_raise(server: FakeOpenAI, knob: dict, code: str) -> None:
    server.script(Reply.text("one two three four", **knob))
    client = OpenAIClient(server.base_url, model="fake-model", backoff_s=0.01)
    got: list[str] = []
    with pytest.raises(LLMError) as ei:
        async for d in client.stream(MSGS, LLMParams()):
            got.append(d)
    await client.aclose()
    assert ei.value.code == code
    assert got and len(server.requests) == 1  # never retried once text was given out


async def test_retry_before_first_token(server: FakeOpenAI) -> None:
    server.script(Reply(status=503), Reply(status=500), Reply.text("ok now"))
    client = OpenAIClient(server.base_url, model="fake-model", retries=2, backoff_s=0.01)
    assert "".join(await collect(client)) == "ok now"
    await client.aclose()
    assert len(server.requests) == 3


async def test_retries_exhausted(server: FakeOpenAI) -> None:
    server.script(Reply(status=503), Reply(status=503))
    client = OpenAIClient(server.base_url, model="fake-model", retries=1, backoff_s=0.01)
    with pytest.raises(LLMError) as ei:
        await collect(client)
    await client.aclose()
    assert ei.value.code == "upstream_error" and "503" in ei.value.message


async def test_client_error_not_retried(server: FakeOpenAI) -> None:
    server.script(Reply(status=400))
    client = OpenAIClient(server.base_url, model="fake-model", backoff_s=0.01)
    with pytest.raises(LLMError) as ei:
        await collect(client)
    await client.aclose()
    assert ei.value.code == "bad_request" and len(server.requests) == 1


async def test_api_key() -> None:
    with FakeOpenAI(api_key="sekrit") as srv:
        bad = OpenAIClient(srv.base_url, model="fake-model", api_key="wrong")
        with pytest.raises(LLMError) as ei:
            await collect(bad)
        assert ei.value.code == "auth_failed"
        good = OpenAIClient(srv.base_url, model="fake-model", api_key="sekrit")
        assert "".join(await collect(good)) == "Hello!"
        await bad.aclose()
        await good.aclose()


async def test_connect_failed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = OpenAIClient(f"http://127.0.0.1:{port}/v1", model="m", retries=1, backoff_s=0.01)
    with pytest.raises(LLMError) as ei:
        await collect(client)
    await client.aclose()
    assert ei.value.code == "connect_failed"


async def test_read_timeout(server: FakeOpenAI) -> None:
    """A silent server times out once: no retry, so the wait is bounded by one read timeout."""
    server.script(Reply(delay_s=1.0), Reply(delay_s=1.0))
    client = OpenAIClient(server.base_url, model="fake-model", retries=2,
                          timeouts=LLMTimeouts(connect=1, read=0.2))
    n = len(server.requests)
    with pytest.raises(LLMError) as ei:
        await collect(client)
    await client.aclose()
    assert ei.value.code == "timeout" and len(server.requests) == n + 1


async def test_timeout_between_tokens_after_first(server: FakeOpenAI) -> None:
    server.script(Reply.text("slow reply here", token_chars=5, token_interval=0.6, role_chunk=False))
    client = OpenAIClient(server.base_url, model="fake-model", retries=2, timeouts=LLMTimeouts(read=0.3))
    got: list[str] = []
    with pytest.raises(LLMError) as ei:
        async for d in client.stream(MSGS, LLMParams()):
            got.append(d)
    await client.aclose()
    assert ei.value.code == "timeout" and got == ["slow "] and len(server.requests) == 1


async def test_closing_the_stream_stops_the_server_side(server: FakeOpenAI) -> None:
    server.script(Reply.text("x" * 200, token_chars=1, token_interval=0.02))
    client = OpenAIClient(server.base_url, model="fake-model")
    agen = client.stream(MSGS, LLMParams())
    assert await agen.__anext__() == "x"
    await agen.aclose()
    for _ in range(100):
        if server.client_gone:
            break
        await asyncio.sleep(0.02)
    await client.aclose()
    assert server.client_gone == 1 and server.completed == 0


async def test_cancelling_the_task_stops_the_stream(server: FakeOpenAI) -> None:
    server.script(Reply.text("y" * 200, token_chars=1, token_interval=0.02))
    client = OpenAIClient(server.base_url, model="fake-model")
    got: list[str] = []

    async def consume() -> None:
        async for d in client.stream(MSGS, LLMParams()):
            got.append(d)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.15)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if server.client_gone:
            break
        await asyncio.sleep(0.02)
    await client.aclose()
    assert 0 < len(got) < 200 and server.client_gone == 1


async def test_non_streaming_endpoint_of_fake(server: FakeOpenAI) -> None:
    import httpx

    server.script(Reply.text("whole answer"))
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{server.base_url}/chat/completions", json={"model": "m", "messages": MSGS})
    assert r.json()["choices"][0]["message"]["content"] == "whole answer"


def test_stop_matcher_holds_partial_match() -> None:
    m = _StopMatcher(("<END>",))
    assert m.push("abc<E") == "abc"
    assert m.push("N") == ""
    assert m.push("X more") == "<ENX more"
    assert m.push("tail<END>gone") == "tail" and m.stopped
    assert m.push("after") == ""


async def test_vllm_server_start_failure_reports_log_tail(tmp_path) -> None:
    import sys

    srv = VLLMServer(sys.executable, "no-such-model", port=1, health_timeout=30, log_path=tmp_path / "v.log")
    with pytest.raises(LLMError) as ei:
        await srv.start()  # this Python has no vllm: the process exits at once
    assert ei.value.code == "vllm_start_failed" and "vllm" in ei.value.message.lower()


# -- silence: llm.timeout_s counts from the last text, not the last byte -----------------------------


@pytest.mark.parametrize("stall_with", ["comment", "empty", "role", "empty_content", "reasoning"])
@pytest.mark.parametrize("stall_after", [3, 0])
async def test_keep_alive_without_text_times_out(server: FakeOpenAI, stall_with: str, stall_after: int) -> None:
    """A server that keeps the stream busy (pings, empty deltas, reasoning) but says nothing more
    fails with `timeout` after one silence period, without a retry."""
    server.script(Reply(tokens=("one ", "two ", "three ", "four"), stall_after=stall_after, stall_with=stall_with,
                        token_interval=0.02))
    client = OpenAIClient(server.base_url, model="fake-model", retries=2, backoff_s=0.01,
                          timeouts=LLMTimeouts(read=0.5))
    got: list[str] = []
    t0 = time.monotonic()

    async def consume() -> None:
        async for d in client.stream(MSGS, LLMParams()):
            got.append(d)

    with pytest.raises(LLMError) as ei:
        await asyncio.wait_for(consume(), 5.0)  # before the fix: no error at all, this wait ran out
    elapsed = time.monotonic() - t0
    await client.aclose()
    assert ei.value.code == "timeout" and "0.5" in ei.value.message
    assert got == ["one ", "two ", "three "][:stall_after] and len(server.requests) == 1
    assert 0.45 < elapsed < 2.5


async def test_slow_steady_text_and_slow_consumer_do_not_time_out(server: FakeOpenAI) -> None:
    """The silence timer restarts at every text delta (a reply longer than timeout_s is fine), and it
    stops while the consumer holds a delta: a full sentence queue (TTS back-pressure) is not the LLM's
    silence, only the time spent waiting for the server is."""
    server.script(Reply.text("abcdefgh", token_chars=1, token_interval=0.15),
                  Reply.text("ijklmn", token_chars=2, token_interval=0.8, role_chunk=False))
    client = OpenAIClient(server.base_url, model="fake-model", timeouts=LLMTimeouts(read=0.5))
    assert "".join(await collect(client)) == "abcdefgh"  # ~1.3 s in all
    got = []
    async for d in client.stream(MSGS, LLMParams()):
        got.append(d)
        await asyncio.sleep(0.6)  # held longer than timeout_s; then ~0.2 s of waiting for the next delta
    await client.aclose()
    assert got == ["ij", "kl", "mn"]


# -- logging: one warning per failed request, naming code, status and the server's message -------------


def llm_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "agent.llm" and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("reply,code,status,says", [
    (Reply(status=503), "upstream_error", "503", "refused (503)"),
    (Reply(status=400), "bad_request", "400", "refused (400)"),
    (Reply.text("one two three", error_after=1), "upstream_error", "200", "scripted failure mid-stream"),
    (Reply.text("one two three", garbage_after=1), "bad_response", "200", "this is not json"),
    (Reply.text("one two three", disconnect_after=1), "disconnected", "200", "ended abruptly"),
    (Reply.text("one two three", stall_after=1), "timeout", "200", "no text for 0.3"),
    (Reply(delay_s=1.0), "timeout", "-", "no text for 0.3"),
], ids=["5xx", "400", "error-after-200", "garbage", "disconnect", "stall", "no-answer"])
async def test_failure_logged_once(server: FakeOpenAI, caplog: pytest.LogCaptureFixture, reply: Reply, code: str,
                                   status: str, says: str) -> None:
    caplog.set_level(logging.WARNING, logger="agent.llm")
    server.script(reply)
    client = OpenAIClient(server.base_url, model="fake-model", retries=0, timeouts=LLMTimeouts(read=0.3))
    with pytest.raises(LLMError) as ei:
        await collect(client)
    await client.aclose()
    assert ei.value.code == code
    [line] = llm_warnings(caplog)
    assert code in line and f"HTTP {status}" in line and says in line and "fake-model" in line, line


async def test_final_failure_after_retries_logged_once(server: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="agent.llm")
    server.script(Reply(status=503), Reply(status=502), Reply(status=500))
    client = OpenAIClient(server.base_url, model="fake-model", retries=2, backoff_s=0.01)
    with pytest.raises(LLMError):
        await collect(client)
    await client.aclose()
    lines = llm_warnings(caplog)
    assert len(lines) == 3 and all("retry" in x for x in lines[:2]), lines  # one per attempt, no repeat
    assert "upstream_error" in lines[2] and "HTTP 500" in lines[2] and "after 3 attempt" in lines[2], lines


async def test_wrong_key_and_unknown_model_logged_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeOpenAI(api_key="sekrit", strict_models=True) as srv:
        for key, model, code, status, says in [("wrong-key-123", "fake-model", "auth_failed", 401, "invalid api key"),
                                               ("sekrit", "no-such-model", "model_not_found", 404, "does not exist")]:
            caplog.clear()
            client = OpenAIClient(srv.base_url, model=model, api_key=key)
            with pytest.raises(LLMError) as ei:
                await collect(client)
            await client.aclose()
            assert ei.value.code == code and ei.value.status == status and key not in str(ei.value)
            [line] = llm_warnings(caplog)
            assert code in line and f"HTTP {status}" in line and says in line and model in line, line
            assert all(key not in r.getMessage() for r in caplog.records)


async def test_no_warning_for_success_or_early_close(server: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="agent.llm")
    server.script(Reply.text("fine"), Reply.text("x" * 50, token_chars=1, token_interval=0.02))
    client = OpenAIClient(server.base_url, model="fake-model")
    assert "".join(await collect(client)) == "fine"
    agen = client.stream(MSGS, LLMParams())
    await agen.__anext__()
    await agen.aclose()
    await client.aclose()
    assert llm_warnings(caplog) == []
