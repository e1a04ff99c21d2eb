"""POST /admin/reload with a speaker profile edited into invalid YAML while a WebSocket turn speaks: the
last good version keeps serving (the running turn, /tts, readiness, new sockets), the error names the file
in the reload's answer and in /health; fixing the file and reloading takes the new version."""
from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import httpx
import pytest
import websockets

from agent.config import PROJECT_ROOT
from tests.agent.fake_openai import Reply
from tests.service.conftest import start_server
from tests.service.test_ws import recv_until

ADMIN = {"Authorization": "Bearer adm"}
LONG = "今天的风很温柔。" * 10


@pytest.fixture()
def speakers(tmp_path: Path) -> Path:
    shutil.copytree(PROJECT_ROOT / "speakers" / "Nahida", tmp_path / "speakers" / "Nahida")
    return tmp_path / "speakers"


@pytest.fixture()
def srv(demo_cache, fake_llm, speakers):
    s = start_server(demo_cache, fake_llm, CHAT2AUDIO_AUTH__ADMIN_KEYS='["adm"]',
                     CHAT2AUDIO_PATHS__SPEAKERS_DIR=str(speakers))
    yield s
    s.stop()


async def test_broken_profile_keeps_the_last_good_voice(srv, speakers: Path) -> None:
    profile = speakers / "Nahida" / "profile.yaml"
    good = profile.read_text(encoding="utf-8")
    srv.llm.script(Reply.text(LONG, token_chars=2, token_interval=0.12))  # ~5 s of text: sentences after the reload
    async with httpx.AsyncClient(base_url=srv.url, timeout=120) as c, websockets.connect(srv.ws_url) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
        await ws.send(json.dumps({"type": "input.text", "text": "讲个长故事"}))
        msgs = await recv_until(ws, "audio")  # the turn speaks
        profile.write_text(good + "top_k: [\n", encoding="utf-8")
        report = (await c.post("/admin/reload", headers=ADMIN)).json()
        assert report["speakers"] == ["Nahida"], report
        err = report["errors"]["speakers"]["Nahida"]
        assert "Nahida/profile.yaml" in err and "line" in err, report
        msgs += await recv_until(ws, "turn.done")
        kinds = [m["type"] for m in msgs]
        assert "error" not in kinds, [m for m in msgs if m["type"] == "error"]
        assert kinds.count("sentence.done") == kinds.count("sentence") == 10, kinds

        assert (await c.post("/tts", json={"text": "你好。", "speaker": "Nahida"})).status_code == 200
        assert (await c.get("/health/ready")).status_code == 200
        health = (await c.get("/health")).json()
        assert "Nahida/profile.yaml" in health["tts"]["speaker_errors"]["Nahida"], health
        async with websockets.connect(srv.ws_url) as ws2:
            assert json.loads(await ws2.recv())["type"] == "session.created"

        # fixed: the new version is taken and the error is gone
        profile.write_text(good.replace("name: Nahida", "name: Nahida v2"), encoding="utf-8")
        report = (await c.post("/admin/reload", headers=ADMIN)).json()
        assert report["speakers"] == ["Nahida"] and report["errors"]["speakers"] == {}, report
        names = {s["id"]: s["name"] for s in (await c.get("/speakers")).json()["speakers"]}
        assert names == {"Nahida": "Nahida v2"}
        assert (await c.get("/health")).json()["tts"]["speaker_errors"] == {}


async def test_a_speaker_that_never_loaded_stays_absent(srv, speakers: Path) -> None:
    ghost = speakers / "Ghost"
    shutil.copytree(speakers / "Nahida", ghost)
    (ghost / "profile.yaml").write_text("gpt_model: [\n", encoding="utf-8")
    async with httpx.AsyncClient(base_url=srv.url, timeout=120) as c:
        report = (await c.post("/admin/reload", headers=ADMIN)).json()
        assert report["speakers"] == ["Nahida"] and "Ghost/profile.yaml" in report["errors"]["speakers"]["Ghost"]
        r = await c.post("/tts", json={"text": "你好。", "speaker": "Ghost"})
        assert r.status_code == 500 and r.json()["error"]["code"] == "bad_speaker", r.text
        await asyncio.to_thread(shutil.rmtree, ghost)  # a removed folder: gone, error and all
        report = (await c.post("/admin/reload", headers=ADMIN)).json()
        assert report["speakers"] == ["Nahida"] and report["errors"]["speakers"] == {}, report
        r = await c.post("/tts", json={"text": "你好。", "speaker": "Ghost"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_speaker", r.text
