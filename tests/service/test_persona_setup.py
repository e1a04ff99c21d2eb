"""Personas as an operator meets them: a missing default persona is reported (not ready, 500 naming the
setting) instead of failing every conversation as the client's fault; a persona file added while the
service runs can be used without a reload."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx

from tests.service.conftest import start_server

ROOT = Path(__file__).resolve().parents[2]


def test_missing_default_persona_and_new_files(demo_cache, fake_llm, tmp_path, caplog):
    personas = tmp_path / "personas"
    shutil.copytree(ROOT / "personas", personas)
    srv = start_server(demo_cache, fake_llm, CHAT2AUDIO_AGENT__DEFAULT_PERSONA="nahidaa",
                       CHAT2AUDIO_PATHS__PERSONAS_DIR=str(personas))
    try:
        with httpx.Client(base_url=srv.url, timeout=120) as c:
            assert "started, not ready (agent.default_persona 'nahidaa' is not loaded" in caplog.text
            h = c.get("/health").json()
            assert not h["ready"] and "'nahidaa' is not loaded" in h["persona_problem"]
            assert c.get("/health/ready").status_code == 503
            r = c.post("/chat2audio", json={"input": "你好", "format": "pcm"})
            assert r.status_code == 500 and r.json()["error"]["code"] == "unknown_persona"
            assert "agent.default_persona" in r.json()["error"]["message"]
            ok = c.post("/chat2audio", json={"input": "你好", "persona": "nahida", "format": "pcm"})
            assert ok.status_code == 200, ok.text

            text = (personas / "assistant.yaml").read_text()
            (personas / "newp.yaml").write_text(text.replace("name: assistant", "name: newp"))
            (personas / "nahidaa.yaml").write_text(text.replace("name: assistant", "name: nahidaa"))
            time.sleep(2.1)  # files are looked at again at most every 2 s
            r = c.post("/chat2audio", json={"input": "你好", "persona": "newp", "format": "pcm"})
            assert r.status_code == 200, r.text  # named before any other request looked at the folder
            assert {"newp", "nahidaa"} <= {p["id"] for p in c.get("/personas").json()["personas"]}
            r = c.post("/chat2audio", json={"input": "你好", "format": "pcm"})
            assert r.status_code == 200, r.text
            assert c.get("/health").json()["ready"]
    finally:
        srv.stop()
