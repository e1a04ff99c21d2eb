"""WebSocket conversation against the real app: events and fields, interrupt, malformed events, binary audio."""
from __future__ import annotations

import asyncio
import base64
import json
import struct

import httpx
import pytest
import websockets

from tests.agent.fake_openai import Reply

LONG = "今天的风很温柔。" * 12


async def recv_until(ws, kind: str, timeout: float = 60.0, binary: list | None = None) -> list[dict]:
    """Messages up to and including the first of type `kind`."""
    out = []
    while True:
        raw = await asyncio.wait_for(ws.recv(), timeout)
        if isinstance(raw, bytes):
            (n,) = struct.unpack_from("<I", raw)
            msg = json.loads(raw[4:4 + n])
            if binary is not None:
                binary.append(raw[4 + n:])
        else:
            msg = json.loads(raw)
        out.append(msg)
        if msg["type"] == kind:
            return out


async def test_conversation(server):
    async with websockets.connect(server.ws_url) as ws:
        created = json.loads(await ws.recv())
        assert created["type"] == "session.created"
        assert {"session_id", "persona", "speaker", "sample_rate", "format"} <= created.keys()
        assert (created["speaker"], created["persona"], created["format"]) == ("Nahida", "nahida", "pcm16")
        await ws.send(json.dumps({"type": "input.text", "text": "你好"}))
        msgs = await recv_until(ws, "turn.done")
    kinds = [m["type"] for m in msgs]
    assert kinds[0] == "turn.started" and isinstance(msgs[0]["turn_id"], str)
    assert "text.delta" in kinds and "sentence" in kinds and "audio" in kinds and "sentence.done" in kinds
    done = msgs[-1]
    assert done["interrupted"] is False and done["text"]
    audio = [m for m in msgs if m["type"] == "audio"]
    assert all({"turn_id", "index", "seq", "sample_rate", "format", "data"} <= m.keys() for m in audio)
    first = [m for m in audio if m["index"] == 0]
    assert [m["seq"] for m in first] == list(range(len(first)))
    assert len(base64.b64decode(audio[0]["data"])) % 2 == 0
    sent = [m for m in msgs if m["type"] == "sentence.done"]
    assert all(m["audio_ms"] > 0 for m in sent)


async def test_interrupt_by_new_input(server):
    server.llm.script(Reply.text(LONG, token_chars=2, token_interval=0.02))
    async with websockets.connect(server.ws_url) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "input.text", "text": "讲个长故事"}))
        first = await recv_until(ws, "text.delta")
        turn1 = first[0]["turn_id"]
        await ws.send(json.dumps({"type": "input.text", "text": "停，换个话题"}))
        msgs = await recv_until(ws, "turn.started")
        done1 = [m for m in msgs if m["type"] == "turn.done"]
        assert len(done1) == 1 and done1[0]["turn_id"] == turn1 and done1[0]["interrupted"] is True
        turn2 = msgs[-1]["turn_id"]
        assert turn2 != turn1
        rest = await recv_until(ws, "turn.done")
        assert rest[-1]["turn_id"] == turn2 and rest[-1]["interrupted"] is False
        # an explicit interrupt with nothing running is harmless
        await ws.send(json.dumps({"type": "interrupt"}))


async def test_malformed_events_keep_the_connection(server):
    async with websockets.connect(server.ws_url) as ws:
        await ws.recv()
        for bad in ["nope", "[]", '{"type": "dance"}', '{"type": "input.text"}',
                    '{"type": "session.update", "speaker": "Nobody"}', '{"type": "session.update", "persona": "x"}',
                    json.dumps({"type": "input.text", "text": "x" * 5000})]:
            await ws.send(bad)
            err = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert err["type"] == "error" and err["code"] and err["message"], (bad, err)
        await ws.send(json.dumps({"type": "session.update", "audio_transport": "binary"}))
        upd = json.loads(await ws.recv())
        assert upd["type"] == "session.updated" and upd["speaker"] == "Nahida"
        await ws.send(json.dumps({"type": "input.text", "text": "你好"}))
        pcm: list[bytes] = []
        msgs = await recv_until(ws, "turn.done", binary=pcm)
        assert any(m["type"] == "audio" for m in msgs) and pcm and all(len(p) % 2 == 0 for p in pcm)
        await ws.send(json.dumps({"type": "playback", "turn_id": msgs[0]["turn_id"], "played_ms": 100}))


async def test_resume_session(server):
    """Resuming by id keeps that session's persona and history (omitted fields stay as they are);
    a new id starts with the connection's current persona."""
    async with websockets.connect(server.ws_url) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "session.update", "persona": "sensei"}))
        upd = json.loads(await ws.recv())
        sid = upd["session_id"]
        assert upd["persona"] == "sensei"
        await ws.send(json.dumps({"type": "input.text", "text": "记住我"}))
        await recv_until(ws, "turn.done")
    async with websockets.connect(server.ws_url) as ws:
        first = json.loads(await ws.recv())
        assert first["persona"] != "sensei"  # a fresh connection starts on the default
        await ws.send(json.dumps({"type": "session.update", "session_id": sid}))
        upd = json.loads(await ws.recv())
        assert upd["type"] == "session.updated" and upd["session_id"] == sid and upd["persona"] == "sensei"
        assert upd["resumed"] is True
        n = len(server.llm.requests)
        await ws.send(json.dumps({"type": "input.text", "text": "还记得吗"}))
        await recv_until(ws, "turn.done")
        messages = server.llm.requests[n]["messages"]
        assert any(m["role"] == "user" and "记住我" in m["content"] for m in messages), "the history was kept"
        await ws.send(json.dumps({"type": "session.update", "session_id": "brand-new-1"}))
        upd = json.loads(await ws.recv())
        assert upd["session_id"] == "brand-new-1" and upd["persona"] == "sensei" and upd["resumed"] is False


async def test_oversized_message_closes_with_1009(server):
    async with websockets.connect(server.ws_url, max_size=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "input.text", "text": "a" * (16 * 2**20)}))  # over WS_MAX_MESSAGE
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 30)
    assert closed.value.rcvd.code == 1009


def send_together(ws, *messages: dict) -> None:
    """The messages' frames in one TCP write: the server reads them in one go, as from a client that sends
    messages back to back."""
    for m in messages:
        ws.protocol.send_text(json.dumps(m).encode())
    ws.transport.write(b"".join(ws.protocol.data_to_send()))


async def test_interrupt_right_after_input(server):
    """An `interrupt` (or a new `input.text`) read right behind an `input.text` stops that turn at once:
    the turn task had not started yet, and the interrupt used to wait 3 s for it instead."""
    server.llm.script(Reply.text(LONG, token_chars=2, token_interval=0.05))
    async with websockets.connect(server.ws_url) as ws:
        await ws.recv()
        t0 = asyncio.get_running_loop().time()
        send_together(ws, {"type": "input.text", "text": "讲个长故事"}, {"type": "interrupt"})
        msgs = await recv_until(ws, "turn.done")
        assert msgs[0]["type"] == "turn.started" and msgs[-1]["interrupted"] is True
        assert asyncio.get_running_loop().time() - t0 < 2.0
        send_together(ws, {"type": "input.text", "text": "第一句"}, {"type": "input.text", "text": "第二句"})
        first = await recv_until(ws, "turn.done")
        assert first[-1]["interrupted"] is True
        second = await recv_until(ws, "turn.done")
        assert second[0]["type"] == "turn.started" and second[-1]["interrupted"] is False


async def test_refused_message_leaves_the_turn_running(server):
    """A text over the limit or an unknown speaker/persona gets an `error`, and a `session.update` that
    changes nothing its `session.updated`; the reply in progress goes on."""
    server.llm.script(Reply.text("今天的风很温柔。" * 4, token_chars=2, token_interval=0.01))
    async with websockets.connect(server.ws_url) as ws:
        created = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "input.text", "text": "讲个故事"}))
        await recv_until(ws, "sentence")
        for bad in [{"type": "input.text", "text": "x" * 5000}, {"type": "session.update", "speaker": "Nobody"},
                    {"type": "session.update", "persona": "nobody"}]:
            await ws.send(json.dumps(bad))
        sid = created["session_id"]
        for same in [{"session_id": sid}, {"persona": "nahida"}, {"speaker": "Nahida"}]:  # nothing changes
            await ws.send(json.dumps({"type": "session.update", **same}))
        msgs = await recv_until(ws, "turn.done")
        errors = [m["code"] for m in msgs if m["type"] == "error"]
        assert errors == ["text_too_long", "unknown_speaker", "unknown_persona"]
        assert sum(m["type"] == "session.updated" for m in msgs) == 3
        assert msgs[-1]["interrupted"] is False


async def test_odd_messages_get_errors(server):
    """Deep nesting, a missing type and non-finite numbers are answered with an `error`, connection open."""
    def invalid_json_count() -> float:
        text = httpx.get(server.url + "/metrics", timeout=30).text
        line = next((ln for ln in text.splitlines() if ln.startswith('chat2audio_errors_total{code="invalid_json"}')), "")
        return float(line.split()[-1]) if line else 0.0

    before = invalid_json_count()
    async with websockets.connect(server.ws_url) as ws:
        await ws.recv()
        cases = [('{"type":"input.text","text":"hi","x":' + "[" * 5000 + "]" * 5000 + "}", "invalid_json"),
                 ('{"text": "hi"}', "invalid_event"),
                 ('{"type":"playback","turn_id":"x","played_ms":Infinity}', "invalid_event"),
                 ('{"type":"playback","turn_id":"x","played_ms":NaN}', "invalid_event")]
        for raw, code in cases:
            await ws.send(raw)
            err = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert (err["type"], err["code"]) == ("error", code), (raw[:40], err)
        await ws.send(json.dumps({"type": "input.text", "text": "你好"}))
        assert (await recv_until(ws, "turn.done"))[-1]["interrupted"] is False
    assert invalid_json_count() == before + 1  # the socket's errors are counted like the HTTP routes'


async def test_pages_of_other_sites_may_not_open_a_socket(server):
    """A browser lets any page open a WebSocket to the user's machine: the service accepts its own pages and
    clients that send no Origin (game engines, scripts), and refuses other origins with a clear error."""
    async with websockets.connect(server.ws_url, origin="https://evil.example") as ws:
        err = json.loads(await ws.recv())
        assert err["type"] == "error" and err["code"] == "forbidden_origin" and "server.cors_origins" in err["message"]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == 4403
    for kw in ({"origin": server.url}, {}):  # the service's own page; a client without Origin
        async with websockets.connect(server.ws_url, **kw) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created", kw


def test_origin_rule():
    from agent.ws import origin_allowed

    assert origin_allowed("https://app.game", "svc:8000", ["https://app.game/"])  # listed in server.cors_origins
    assert origin_allowed("https://any.site", "svc:8000", ["*"])
    assert not origin_allowed("https://app.game.evil", "svc:8000", ["https://app.game"])
    assert not origin_allowed("null", "svc:8000", [])  # sandboxed pages and files
