"""Faults: the LLM server refuses, stalls, stops mid-stream, sends an error event after HTTP 200 or
garbage; the client disconnects mid-turn; a speaker's reference clip or checkpoint disappears or is
corrupt; a persona file is edited into invalid YAML while the service runs. Each gives the client a
clear error and leaves the service healthy for everyone else."""
from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import websockets

from agent.config import PROJECT_ROOT
from tests.agent.fake_openai import Reply
from tests.reliability.conftest import EchoLLM
from tests.reliability.helpers import check_turn, recv, reply_for, turn
from tests.reliability.test_load import wait_idle
from tests.service.conftest import Server, start_server

LONG = "今天的风很温柔。" * 12
ADMIN = {"Authorization": "Bearer adm"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, demo_cache: Path) -> Path:
    """Speakers Nahida (the shipped profile), Broken, Corrupt and Short (own copies of the demo files, to be
    damaged by the tests), and a copy of the shipped personas."""
    root = tmp_path_factory.mktemp("faults")
    shutil.copytree(PROJECT_ROOT / "personas", root / "personas")
    shutil.copytree(PROJECT_ROOT / "speakers" / "Nahida", root / "speakers" / "Nahida")
    for name in ("Broken", "Corrupt", "Short"):
        d = root / "speakers" / name
        d.mkdir()
        for f in ("demo-gpt.ckpt", "demo-sovits.pth", "demo-ref.wav"):
            shutil.copy(demo_cache / "models" / f, d / f)
        (d / "profile.yaml").write_text((PROJECT_ROOT / "speakers" / "Nahida" / "profile.yaml").read_text(
            encoding="utf-8").replace("name: Nahida", f"name: {name}"), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def fllm() -> Iterator[EchoLLM]:
    srv = EchoLLM(token_interval=0.003).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def fserver(demo_cache: Path, fllm: EchoLLM, folders: Path) -> Iterator[Server]:
    srv = start_server(demo_cache, fllm, CHAT2AUDIO_AUTH__ADMIN_KEYS='["adm"]', CHAT2AUDIO_LLM__TIMEOUT_S="3",
                       CHAT2AUDIO_PATHS__SPEAKERS_DIR=str(folders / "speakers"),
                       CHAT2AUDIO_PATHS__PERSONAS_DIR=str(folders / "personas"))
    yield srv
    srv.stop()


async def healthy_turn(url: str, speaker: str | None = None) -> None:
    """A fresh session still gets a complete, correct turn."""
    async with websockets.connect(url, open_timeout=30) as ws:
        await recv(ws, 30)
        if speaker:
            await ws.send(json.dumps({"type": "session.update", "speaker": speaker}))
            assert (await recv(ws, 30))[0]["type"] == "session.updated"
        t = await turn(ws, "R1-1")
        check_turn(t, reply_for("R1-1"))


def assert_error_turn(t, codes: tuple[str, ...]) -> None:
    """An in-turn `error` with a known code and a message, then `turn.done`."""
    assert t.done is not None, t.kinds
    errs = t.errors
    assert errs and errs[0]["code"] in codes and errs[0]["message"], errs
    assert all(e.get("turn_id") == t.done["turn_id"] for e in errs)


@pytest.mark.parametrize("reply, codes", [
    (Reply.text(LONG, disconnect_after=6), ("disconnected",)),
    (Reply.text(LONG, error_after=6), ("upstream_error",)),
    (Reply.text(LONG, garbage_after=6), ("bad_response",)),
    (Reply(status=500), ("upstream_error",)),
    (Reply(status=401), ("auth_failed",)),
    (Reply.text("你好。", delay_s=5.0), ("timeout", "connect_failed", "disconnected")),
    (Reply.text(LONG, token_interval=5.0), ("timeout", "disconnected")),
    (Reply.text(LONG, stall_after=6, stall_interval=0.5), ("timeout",)),  # keep-alive comments, no text
], ids=["disconnect", "error-after-200", "garbage", "http-500", "http-401", "no-answer", "stall-mid-stream",
        "keep-alive-without-text"])
async def test_llm_faults(fserver, fllm, reply, codes):
    # the client's LLM retries a failure before any text: script enough copies for every attempt
    fllm.script(*[reply] * 4)
    async with websockets.connect(fserver.ws_url, open_timeout=30) as ws:
        await recv(ws, 30)
        t = await turn(ws, "讲个故事", timeout=60)
        assert_error_turn(t, codes)
        with fllm._lock:
            fllm._replies.clear()
        # the same connection carries on
        t2 = await turn(ws, "R2-3")
        check_turn(t2, reply_for("R2-3"))
    async with httpx.AsyncClient(base_url=fserver.url, timeout=60) as c:
        fllm.script(*[reply] * 4)
        r = await c.post("/chat2audio", json={"input": "你好", "speaker": "Nahida"})
        with fllm._lock:
            fllm._replies.clear()
        assert r.status_code in (200, 502), r.status_code  # an LLM failure is the upstream's: bad gateway
        if r.status_code != 200:  # a failure after the first audio still returns what was said
            assert r.json()["error"]["code"] in codes, r.text
    await wait_idle(fserver.url)


async def test_client_disconnect_cancels_work(fserver, fllm):
    fllm.script(Reply.text(LONG * 4, token_chars=2, token_interval=0.1))  # ~20 s of LLM stream
    gone, completed = fllm.client_gone, fllm.completed
    ws = await websockets.connect(fserver.ws_url, open_timeout=30)
    await recv(ws, 30)
    await ws.send(json.dumps({"type": "input.text", "text": "讲个长故事"}))
    while (await recv(ws, 60))[0]["type"] != "audio":
        pass
    await ws.close()
    assert fllm.completed == completed, f"the reply ended before the first audio ({time.monotonic() - t_start:.1f} s)"
    h = await wait_idle(fserver.url, timeout=10)
    assert h["tts"]["active_items"] == 0 and h["tts"]["worker_alive"], h
    t0 = time.monotonic()
    while fllm.client_gone == gone and time.monotonic() - t0 < 5:
        await asyncio.sleep(0.1)
    assert fllm.client_gone > gone, "the LLM stream kept running after the client left"
    await healthy_turn(fserver.ws_url)


async def test_http_stream_disconnect_cancels_work(fserver, fllm):
    fllm.script(Reply.text(LONG * 4, token_chars=2, token_interval=0.1))
    gone, completed = fllm.client_gone, fllm.completed
    async with httpx.AsyncClient(base_url=fserver.url, timeout=60) as c:
        async with c.stream("POST", "/chat2audio", json={"input": "讲个长故事", "speaker": "Nahida",
                                                          "stream": True, "format": "pcm"}) as r:
            assert r.status_code == 200
            async for chunk in r.aiter_bytes():
                if chunk:
                    break
    assert fllm.completed == completed, "the reply ended before the first audio"
    await wait_idle(fserver.url, timeout=10)


async def test_http_stream_disconnect_closes_llm_stream(fserver, fllm):
    fllm.script(Reply.text(LONG * 4, token_chars=2, token_interval=0.1))
    gone = fllm.client_gone
    async with httpx.AsyncClient(base_url=fserver.url, timeout=60) as c:
        async with c.stream("POST", "/chat2audio", json={"input": "讲个长故事", "speaker": "Nahida",
                                                          "stream": True, "format": "pcm"}) as r:
            async for chunk in r.aiter_bytes():
                if chunk:
                    break
    t0 = time.monotonic()
    while fllm.client_gone == gone and time.monotonic() - t0 < 5:
        await asyncio.sleep(0.1)
    assert fllm.client_gone > gone, "the LLM stream kept running after the HTTP client left"


async def test_speaker_files_disappear_or_corrupt(fserver, folders):
    (folders / "speakers" / "Broken" / "demo-ref.wav").unlink()
    (folders / "speakers" / "Corrupt" / "demo-gpt.ckpt").write_bytes(b"not a checkpoint" * 64)
    sf.write(folders / "speakers" / "Short" / "demo-ref.wav", np.full(32000, 0.1, np.float32), 32000)  # 1 s
    async with httpx.AsyncClient(base_url=fserver.url, timeout=60) as c:
        # a clip the speaker's profile names that is too short: the server's setup too (500), named
        for body in ({}, {"aux_ref_audio_paths": ["Short/demo-ref.wav"]}):
            r = await c.post("/tts", json={"text": "你好。", "speaker": "Short" if not body else "Nahida", **body})
            err = r.json()["error"]
            assert err["code"] == "bad_reference_audio" and "too short" in err["message"], err
            assert r.status_code == (500 if not body else 400), (body, r.text)  # a clip the request named: 400
        for speaker in ("Broken", "Corrupt"):
            for stream in (False, True):
                r = await c.post("/tts", json={"text": "你好。", "speaker": speaker, "streaming_mode": stream})
                # the speaker's own files broke: the server's side, with the file named
                assert r.status_code == 500, (speaker, stream, r.status_code, r.text[:300])
                err = r.json()["error"]
                assert err["code"] in ("synthesis_failed", "bad_checkpoint"), err
                assert ("demo-ref.wav" if speaker == "Broken" else "demo-gpt.ckpt") in err["message"], err
        r = await c.post("/tts", json={"text": "你好。", "speaker": "Nahida"})
        assert r.status_code == 200 and r.content[:4] == b"RIFF"
    for speaker in ("Broken", "Corrupt"):
        async with websockets.connect(fserver.ws_url, open_timeout=30) as ws:
            await recv(ws, 30)
            await ws.send(json.dumps({"type": "session.update", "speaker": speaker}))
            assert (await recv(ws, 30))[0]["type"] == "session.updated"
            t = await turn(ws, "R1-1")
            assert t.done is not None and t.errors, t.kinds
            assert all(e["message"] for e in t.errors)
    await healthy_turn(fserver.ws_url, "Nahida")
    await wait_idle(fserver.url)


async def test_persona_edited_into_invalid_yaml(fserver, folders):
    path = folders / "personas" / "nahida.yaml"
    good = path.read_text(encoding="utf-8")
    try:
        path.write_text(good + "\n  : [unclosed\n\tbad: {", encoding="utf-8")
        async with httpx.AsyncClient(base_url=fserver.url, timeout=60) as c:
            assert (await c.post("/admin/reload")).status_code in (401, 403)
            r = await c.post("/admin/reload", headers=ADMIN)
            assert r.status_code == 200, r.text
            report = r.json()
            assert "nahida" in report["personas"], report
            assert any("nahida.yaml" in e for e in report["errors"]["personas"]), report
            ids = [p["id"] for p in (await c.get("/personas")).json()["personas"]]
            assert "nahida" in ids
        await healthy_turn(fserver.ws_url)  # the default persona is nahida: the last good version serves
    finally:
        path.write_text(good, encoding="utf-8")


async def test_persona_with_a_missing_speaker_is_a_reload_warning(fserver, fllm, folders):
    path = folders / "personas" / "ghost.yaml"
    path.write_text("name: ghost\nspeaker: Nobody\nsystem_prompt: 你是幽灵。\n", encoding="utf-8")
    try:
        async with httpx.AsyncClient(base_url=fserver.url, timeout=60) as c:
            report = (await c.post("/admin/reload", headers=ADMIN)).json()
        assert "ghost" in report["personas"], report
        assert any("'ghost'" in w and "'Nobody'" in w for w in report["warnings"]), report
        async with httpx.AsyncClient(base_url=fserver.url, timeout=60) as c:
            n = len(fllm.requests)
            r = await c.post("/chat2audio", json={"input": "你好", "persona": "ghost"})
            assert r.status_code == 500 and "'Nobody'" in r.json()["error"]["message"], r.text
            assert len(fllm.requests) == n, "refused before the LLM is asked"
    finally:
        path.unlink()


async def test_llm_refuses_connections(fserver, fllm):
    """Last in the module: it stops and restarts the scripted server."""
    port = fllm.port
    fllm.stop()
    try:
        async with httpx.AsyncClient(base_url=fserver.url, timeout=60) as c:
            before = await _metrics(c)
        async with websockets.connect(fserver.ws_url, open_timeout=30) as ws:
            await recv(ws, 30)
            t = await turn(ws, "你好", timeout=60)
            assert_error_turn(t, ("connect_failed",))
        async with httpx.AsyncClient(base_url=fserver.url, timeout=60) as c:
            r = await c.post("/chat2audio", json={"input": "你好", "speaker": "Nahida"})
            assert r.status_code == 502 and r.json()["error"]["code"] == "connect_failed", r.text
            after = await _metrics(c)  # each failed turn counted once, as failed
            key, failed = 'chat2audio_errors_total{code="connect_failed"}', 'chat2audio_turns_total{outcome="failed"}'
            assert after[key] - before.get(key, 0) == 2 and after[failed] - before.get(failed, 0) == 2
            await asyncio.sleep(5.1)  # past the health check's cache
            h = (await c.get("/health")).json()
            assert h["live"] and not h["ready"] and not h["llm"]["reachable"], h
            assert (await c.get("/health/ready")).status_code == 503
    finally:
        fllm.port = port
        fllm._ready.clear()
        fllm.start()
    await healthy_turn(fserver.ws_url)


async def _metrics(c: httpx.AsyncClient) -> dict[str, float]:
    """The counters and gauges of /metrics by their full name with labels."""
    text = (await c.get("/metrics")).text
    return {ln.rsplit(" ", 1)[0]: float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln and ln[0] != "#"}


async def test_health_answers_promptly_while_the_llm_hangs(demo_cache: Path):
    """An LLM that accepts connections and never answers: /health does not wait for it (one probe in
    the background, at most 0.5 s of waiting), reports it unreachable, and the TTS keeps working."""
    import socket
    import types

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # never accepted: connects succeed, no byte ever comes back
    llm = types.SimpleNamespace(base_url=f"http://127.0.0.1:{silent.getsockname()[1]}/v1")
    srv = start_server(demo_cache, llm, CHAT2AUDIO_LLM__TIMEOUT_S="2")
    try:
        async with httpx.AsyncClient(base_url=srv.url, timeout=30) as c:
            for _ in range(3):
                t0 = time.monotonic()
                h = (await c.get("/health")).json()
                assert time.monotonic() - t0 < 1.5 and not h["llm"]["reachable"] and not h["ready"], h
                await asyncio.sleep(2.6)  # past the probe's timeout (2 s) and, by the third, its 5 s cache
            r = await c.post("/tts", json={"text": "你好。", "speaker": "Nahida", "media_type": "pcm"})
            assert r.status_code == 200 and len(r.content) > 0
    finally:
        srv.stop()
        silent.close()
