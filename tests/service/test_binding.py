"""Which persona and speaker a request or a `session.update` ends up with (docs/protocol.md, docs/api.md),
on a service with three voices: Nahida (the shipped personas all use it), Marta (one persona of its own)
and Quiet (no persona)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import websockets

from agent.config import PROJECT_ROOT
from tests.service.conftest import Server, start_server
from tests.service.test_ws import recv_until

MARTA = """name: marta
display_name: Marta
description: The innkeeper of the test village.
speaker: Marta
language: zh
system_prompt: You are Marta, an innkeeper.
"""


@pytest.fixture(scope="module")
def bserver(tmp_path_factory: pytest.TempPathFactory, demo_cache: Path, fake_llm) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("binding")
    shutil.copytree(PROJECT_ROOT / "personas", root / "personas")
    (root / "personas" / "marta.yaml").write_text(MARTA, encoding="utf-8")
    profile = (PROJECT_ROOT / "speakers" / "Nahida" / "profile.yaml").read_text(encoding="utf-8")
    for name in ("Nahida", "Marta", "Quiet"):  # the demo weights are found in the models folder
        (root / "speakers" / name).mkdir(parents=True)
        (root / "speakers" / name / "profile.yaml").write_text(profile.replace("name: Nahida", f"name: {name}"),
                                                             encoding="utf-8")
    srv = start_server(demo_cache, fake_llm, CHAT2AUDIO_PATHS__SPEAKERS_DIR=str(root / "speakers"),
                       CHAT2AUDIO_PATHS__PERSONAS_DIR=str(root / "personas"))
    yield srv
    srv.stop()


async def update(ws, **fields) -> dict:
    await ws.send(json.dumps({"type": "session.update", **fields}))
    msg = json.loads(await ws.recv())
    assert msg["type"] == "session.updated", msg
    return msg


async def test_session_update_binding(bserver):
    async with websockets.connect(bserver.ws_url) as ws:
        created = json.loads(await ws.recv())
        assert (created["persona"], created["speaker"]) == ("nahida", "Nahida")
        upd = await update(ws, persona="marta")  # a persona alone brings its own voice
        assert (upd["persona"], upd["speaker"]) == ("marta", "Marta")
        upd = await update(ws, speaker="Nahida")  # a voice alone: the default persona is bound to it
        assert (upd["persona"], upd["speaker"]) == ("nahida", "Nahida")
        upd = await update(ws, persona="sensei")
        assert (upd["persona"], upd["speaker"]) == ("sensei", "Nahida")
        await ws.send(json.dumps({"type": "input.text", "text": "记住我"}))
        await recv_until(ws, "turn.done")
        n = len(bserver.llm.requests)
        upd = await update(ws, speaker="Quiet")  # no persona of its own: the character stays, with its memory
        assert (upd["persona"], upd["speaker"]) == ("sensei", "Quiet")
        upd = await update(ws, speaker="Nahida")  # the current persona is bound to it: it stays
        assert (upd["persona"], upd["speaker"]) == ("sensei", "Nahida")
        await ws.send(json.dumps({"type": "input.text", "text": "还记得吗"}))
        await recv_until(ws, "turn.done")
        messages = bserver.llm.requests[n]["messages"]
        assert any(m["role"] == "user" and "记住我" in m["content"] for m in messages), "the history was kept"
        upd = await update(ws, speaker="Marta")  # Marta's own persona
        assert (upd["persona"], upd["speaker"]) == ("marta", "Marta")
        upd = await update(ws, session_id="npc-7", persona="nahida")  # a new id with a persona: its voice
        assert (upd["session_id"], upd["persona"], upd["speaker"]) == ("npc-7", "nahida", "Nahida")
        await ws.send(json.dumps({"type": "session.update", "session_id": "no spaces"}))
        err = json.loads(await ws.recv())
        assert (err["type"], err["code"]) == ("error", "invalid_event") and "session_id" in err["message"]


def test_http_speaker_picks_the_default_persona(bserver):
    """The seed request names the speaker Nahida: four personas use that voice, and the default one
    (nahida) answers, not the first by name."""
    with httpx.Client(base_url=bserver.url, timeout=120) as c:
        n = len(bserver.llm.requests)
        r = c.post("/chat2audio", json={"input": "做个自我介绍吧", "speaker": "Nahida", "format": "pcm"})
        assert r.status_code == 200, r.text[:300]
        system = bserver.llm.requests[n]["messages"][0]["content"]
        assert "纳西妲" in system, system[:200]
        r = c.post("/chat2audio", json={"input": "你好", "speaker": "Marta", "format": "pcm"})
        assert r.status_code == 200 and "Marta" in bserver.llm.requests[n + 1]["messages"][0]["content"]
        r = c.post("/chat2audio", json={"input": "你好", "session_id": "my session"})
        assert r.status_code == 422 and "session_id" in r.json()["error"]["message"], r.text
