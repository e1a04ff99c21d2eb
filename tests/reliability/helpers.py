"""Client-side checks shared by the reliability tests: WebSocket turns with every ordering rule of
docs/protocol.md checked, per-message and per-turn timeouts (nothing waits forever), and the
scripted reply each user message gets."""
from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
import time
from dataclasses import dataclass, field
from typing import Any

TAG = re.compile(r"^R(\d+)-(\d+)$")


def reply_for(user: str) -> str:
    """The scripted LLM's answer to `user`: "R<s>-<t>" gets two sentences naming session s and turn t
    (so a sentence that reaches the wrong session or turn is recognisable); anything else a short line."""
    m = TAG.match(user.strip())
    if m:
        s, t = m.groups()
        return f"这是{s}号会话第{t}轮。{s}号会话说完了！"
    return "好的，我知道了。"


def nonspace(text: str) -> str:
    return "".join(c for c in text if not c.isspace())


@dataclass
class Turn:
    """One turn as the client saw it."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    pcm: dict[int, bytes] = field(default_factory=dict)  # sentence index -> its s16le audio
    first_audio_s: float | None = None
    elapsed_s: float = 0.0

    @property
    def kinds(self) -> list[str]:
        return [m["type"] for m in self.messages]

    @property
    def done(self) -> dict[str, Any] | None:
        return next((m for m in self.messages if m["type"] == "turn.done"), None)

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == "error"]

    @property
    def sentences(self) -> list[str]:
        return [m["text"] for m in self.messages if m["type"] == "sentence"]

    @property
    def audio_s(self) -> float:
        return sum(len(b) for b in self.pcm.values()) / 2 / 32000


def decode(raw: str | bytes) -> tuple[dict[str, Any], bytes | None]:
    """A server frame: JSON text, or binary = uint32 LE header length | JSON header | s16le PCM."""
    if isinstance(raw, bytes):
        (n,) = struct.unpack_from("<I", raw)
        return json.loads(raw[4:4 + n]), raw[4 + n:]
    msg = json.loads(raw)
    return msg, (base64.b64decode(msg["data"]) if msg.get("type") == "audio" else None)


async def recv(ws: Any, timeout: float = 60.0) -> tuple[dict[str, Any], bytes | None]:
    return decode(await asyncio.wait_for(ws.recv(), timeout))


async def turn(ws: Any, text: str, timeout: float = 120.0, msg_timeout: float = 60.0) -> Turn:
    """Send `input.text` and read until its `turn.done`, or a turn-less `error` (refused turn)."""
    t0 = time.monotonic()
    await ws.send(json.dumps({"type": "input.text", "text": text}))
    out = Turn()
    while True:
        left = timeout - (time.monotonic() - t0)
        if left <= 0:
            raise TimeoutError(f"turn {text!r} did not finish in {timeout} s: {out.kinds[-10:]}")
        msg, pcm = await recv(ws, min(msg_timeout, left))
        out.messages.append(msg)
        if msg["type"] == "audio":
            if out.first_audio_s is None:
                out.first_audio_s = time.monotonic() - t0
            out.pcm[msg["index"]] = out.pcm.get(msg["index"], b"") + (pcm or b"")
        if msg["type"] == "turn.done" or (msg["type"] == "error" and not msg.get("turn_id")
                                          and "turn.started" not in out.kinds):
            out.elapsed_s = time.monotonic() - t0
            return out


def check_turn(t: Turn, expected: str | None = None) -> None:
    """Every rule of one completed turn: one turn id; sentence indices 0..n-1 in order; each
    sentence's audio after its `sentence` and before its `sentence.done`, seq 0..k-1, exactly once;
    `sentence.done` once per sentence with the audio's duration; `turn.done` last; no text lost."""
    kinds = t.kinds
    assert kinds[0] == "turn.started", kinds[:5]
    assert kinds[-1] == "turn.done" and kinds.count("turn.done") == 1, kinds[-5:]
    tid = t.messages[0]["turn_id"]
    assert all(m.get("turn_id", tid) == tid for m in t.messages), "a message of another turn arrived"
    open_index: int | None = None
    seq = 0
    seen: list[int] = []
    done: list[int] = []
    for m in t.messages[1:-1]:
        if m["type"] == "sentence":
            assert open_index is None, f"sentence {m['index']} started before sentence {open_index} was done"
            assert m["index"] == len(seen), f"sentence index {m['index']}, expected {len(seen)}"
            seen.append(m["index"])
            open_index, seq = m["index"], 0
        elif m["type"] == "audio":
            assert m["index"] == open_index, f"audio of sentence {m['index']} outside its sentence ({open_index})"
            assert m["seq"] == seq, f"sentence {m['index']}: seq {m['seq']}, expected {seq}"
            assert m["sample_rate"] == 32000 and m["format"] == "pcm16"
            seq += 1
        elif m["type"] == "sentence.done":
            assert m["index"] == open_index, f"sentence.done {m['index']} while sentence {open_index} is open"
            ms = 1000.0 * len(t.pcm.get(m["index"], b"")) / 2 / 32000
            assert abs(m["audio_ms"] - ms) <= 1.0, (m, ms)
            done.append(m["index"])
            open_index = None
        elif m["type"] == "error":
            raise AssertionError(f"error inside a turn: {m}")
    assert open_index is None and done == seen, (seen, done)
    assert all(len(t.pcm.get(i, b"")) > 0 for i in seen), "a sentence without audio"
    assert t.done["interrupted"] is False
    if expected is not None:
        assert nonspace("".join(t.sentences)) == nonspace(expected), (t.sentences, expected)
        assert nonspace(t.done["text"]) == nonspace(expected)
