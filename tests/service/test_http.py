"""HTTP endpoints of the real app: the seed request, formats, streaming, OpenAI speech, errors."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile as sf

from tests.service.conftest import REPLY

SEED = {"input": "做个自我介绍吧", "speaker": "Nahida"}


def audio(data: bytes, fmt: str = "wav", rate: int = 32000) -> tuple[np.ndarray, int]:
    if fmt == "pcm":
        return np.frombuffer(data, "<i2").astype(np.float32) / 32767, rate
    return sf.read(io.BytesIO(data), dtype="float32")


def test_seed_request(client):
    r = client.post("/chat2audio", json=SEED)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    assert r.headers["x-session-id"]
    assert unquote(r.headers["x-reply-text"]) == REPLY
    y, sr = audio(r.content)
    assert sr == 32000 and len(y) > 0.3 * sr and np.abs(y).max() > 0.01


def test_session_continues(client, server):
    r1 = client.post("/chat2audio", json={**SEED, "format": "pcm"})
    sid = r1.headers["x-session-id"]
    n = len(server.llm.requests)
    r2 = client.post("/chat2audio", json={"input": "再说一遍", "speaker": "Nahida", "session_id": sid, "format": "pcm"})
    assert r2.status_code == 200 and r2.headers["x-session-id"] == sid
    messages = server.llm.requests[n]["messages"]
    assert any(m["role"] == "assistant" for m in messages), "the history carries the first reply"


@pytest.mark.parametrize("fmt,rate", [("wav", 32000), ("pcm", 32000), ("flac", 32000), ("ogg", 48000), ("mp3", 32000)])
def test_formats_whole(client, fmt, rate):
    r = client.post("/chat2audio", json={**SEED, "format": fmt})
    assert r.status_code == 200, r.text
    y, sr = audio(r.content, fmt)
    assert sr == rate and len(y) > 0.3 * sr
    assert r.headers["x-sample-rate"] == str(rate)  # the rate of the audio sent (ogg: 48 kHz)


@pytest.mark.parametrize("fmt", ["wav", "pcm", "ogg", "mp3"])
def test_formats_streaming(client, fmt):
    with client.stream("POST", "/chat2audio", json={**SEED, "stream": True, "format": fmt}) as r:
        assert r.status_code == 200
        parts = [c for c in r.iter_bytes() if c]
    data = b"".join(parts)
    if fmt == "wav":
        assert data[40:44] == b"\xff\xff\xff\xff"
    y, sr = audio(data, fmt)
    assert len(y) > 0.3 * sr


def test_streaming_flac_is_sent_whole(client):
    """FLAC cannot be one continuous stream that readers decode; stream=true sends the whole file."""
    r = client.post("/chat2audio", json={**SEED, "stream": True, "format": "flac"})
    assert r.status_code == 200, r.text
    assert "X-Reply-Text" in r.headers and r.headers["content-type"] == "audio/flac"
    y, sr = audio(r.content)
    assert sr == 32000 and len(y) > 0


def test_tts_api_v2(client):
    body = {"text": "你好，世界。", "text_lang": "zh", "speaker": "Nahida", "media_type": "wav",
            "speed_factor": 1.0, "top_k": 5, "seed": 1}
    r = client.post("/tts", json=body)
    assert r.status_code == 200, r.text
    y, sr = audio(r.content)
    assert sr == 32000 and len(y) > 0
    r = client.post("/tts", json={**body, "ref_audio_path": "/etc/passwd"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_path"
    r = client.post("/tts", json={**body, "ref_audio_path": "Nahida/missing.wav"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "reference_not_found"
    r = client.post("/tts", json={**body, "aux_ref_audio_paths": ["/etc/passwd"]})  # aux clips alone are read too
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden_path"


def test_openai_speech(client):
    r = client.get("/v1/audio/voices")
    assert {"id": "Nahida", "name": "Nahida"} in r.json()["voices"]
    body = {"model": "tts-1", "input": "你好。", "voice": "Nahida"}
    r = client.post("/v1/audio/speech", json=body)
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"
    assert len(audio(r.content, "mp3")[0]) > 0
    r = client.post("/v1/audio/speech", json={**body, "response_format": "pcm", "speed": 1.5})
    assert r.status_code == 200 and len(r.content) % 2 == 0 and len(r.content) > 2 * 2400  # 24 kHz s16le
    for fmt in ("wav", "flac", "opus"):
        r = client.post("/v1/audio/speech", json={**body, "response_format": fmt})
        assert r.status_code == 200, (fmt, r.text)
        assert len(audio(r.content, fmt)[0]) > 0
    r = client.post("/v1/audio/speech", json={**body, "response_format": "flac", "stream_format": "sse"})
    assert r.status_code == 400 and "stream_format audio" in r.json()["error"]["message"]
    r = client.post("/v1/audio/speech", json={**body, "response_format": "aac"})
    assert r.status_code == 400 and "aac" in r.json()["error"]["message"]
    with client.stream("POST", "/v1/audio/speech", json={**body, "response_format": "pcm", "stream_format": "sse"}) as r:
        lines = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
    assert '"speech.audio.delta"' in lines[0] and '"speech.audio.done"' in lines[-1]


LONG = "你好，旅行者。今天的天气很好，我们一起去须弥城看看吧。路上小心，别忘了带上水和干粮。"


def test_streamed_synthesis_is_whole(client):
    """A streamed /tts or /v1/audio/speech answer carries all of the text's audio, not its first chunk."""
    body = {"text": LONG, "text_lang": "zh", "speaker": "Nahida", "media_type": "pcm", "seed": 7}
    whole = client.post("/tts", json=body)
    assert whole.status_code == 200, whole.text
    with client.stream("POST", "/tts", json={**body, "streaming_mode": True}) as r:
        assert r.status_code == 200
        streamed = b"".join(r.iter_bytes())
    assert len(whole.content) > 2 * 32000 * 1.5  # several sentences: well past one first chunk
    assert len(streamed) == len(whole.content)  # same seed, same tokens: the same length
    speech = {"model": "tts-1", "input": LONG, "voice": "Nahida"}
    flac = client.post("/v1/audio/speech", json={**speech, "response_format": "flac"})  # sent whole
    seconds = len(audio(flac.content, "flac")[0]) / 24000
    with client.stream("POST", "/v1/audio/speech", json={**speech, "response_format": "pcm"}) as r:
        pcm = b"".join(r.iter_bytes())
    assert abs(len(pcm) / 2 / 24000 - seconds) < 0.5 * seconds, "streamed speech is about as long as whole"
    with client.stream("POST", "/v1/audio/speech", json={**speech, "response_format": "pcm", "stream_format": "sse"}) as r:
        deltas = [json.loads(ln[6:]) for ln in r.iter_lines() if ln.startswith("data: ")]
    sse = sum(len(base64.b64decode(d["audio"])) for d in deltas if d["type"] == "speech.audio.delta")
    assert abs(sse / 2 / 24000 - seconds) < 0.5 * seconds


def test_lists_health_metrics(client):
    assert client.get("/speakers").json()["speakers"][0]["id"] == "Nahida"
    assert any(p["id"] == "nahida" for p in client.get("/personas").json()["personas"])
    h = client.get("/health").json()
    assert h["live"] and h["ready"] and h["demo"] and "no intelligible speech" in h["notice"]
    assert h["limits"] == {"max_text_chars": 2000}  # what a client (the web page) may send
    assert client.get("/health/ready").status_code == 200
    assert [client.head(p).status_code for p in ("/health", "/health/live", "/health/ready")] == [200] * 3
    client.post("/chat2audio", json={**SEED, "format": "pcm"})
    m = client.get("/metrics")
    count = [ln for ln in m.text.splitlines() if ln.startswith("chat2audio_time_to_first_audio_seconds_count")]
    assert count and int(count[0].split()[1]) >= 1
    rtf = [ln for ln in m.text.splitlines() if ln.startswith("chat2audio_tts_rtf_count")]
    assert rtf and int(float(rtf[0].split()[1])) >= 1, "chat turns record the TTS real-time factor"
    assert 'chat2audio_turns_total{outcome="completed"}' in m.text
    assert 'chat2audio_http_requests_total{route="/chat2audio",status="200"}' in m.text
    assert m.headers["content-type"].startswith("text/plain")
    assert client.post("/admin/reload").status_code == 403  # no admin keys configured


BAD = [
    ("POST", "/chat2audio", b"{not json", 400, "invalid_json"),
    ("POST", "/chat2audio", {}, 422, "invalid_request"),
    ("POST", "/chat2audio", {"input": ""}, 422, "invalid_request"),
    ("POST", "/chat2audio", {"input": 5, "speaker": ["x"]}, 422, "invalid_request"),
    ("POST", "/chat2audio", {"input": "hi", "speaker": "Nobody"}, 404, "unknown_speaker"),
    ("POST", "/chat2audio", {"input": "hi", "persona": "nobody"}, 404, "unknown_persona"),
    ("POST", "/chat2audio", {"input": "hi", "format": "wma"}, 400, "unsupported_format"),
    ("POST", "/chat2audio", {"input": "hi", "format": "aac"}, 400, "unsupported_format"),
    ("POST", "/tts", {"text": "hi", "media_type": "aac"}, 400, "unsupported_format"),
    ("POST", "/chat2audio", {"input": "啊" * 100_000}, 413, "text_too_long"),
    ("POST", "/tts", {"text": "hi", "text_split_method": "cut9"}, 422, "invalid_request"),
    ("POST", "/chat2audio", b'\xff\xfe{"input": "hi"}', 400, "invalid_json"),
    ("POST", "/chat2audio", {"input": "x" * 5000}, 413, "text_too_long"),
    ("POST", "/chat2audio", {"input": "   "}, 422, "invalid_request"),
    ("POST", "/tts", {"text": "hi", "text_lang": "klingon"}, 422, "invalid_request"),
    ("POST", "/v1/audio/speech", {"input": "hi", "voice": ""}, 422, "invalid_request"),
    ("TRACE", "/admin/reload", None, 405, "method_not_allowed"),
    ("POST", "/tts", {"text": "hi", "speed_factor": 9}, 422, "invalid_request"),
    ("POST", "/tts", {"text": "hi", "ref_audio_path": "../../etc/passwd"}, 403, "forbidden_path"),
    ("POST", "/v1/audio/speech", {"input": "hi", "voice": "alloy"}, 404, "unknown_speaker"),
    ("POST", "/v1/audio/speech", {"input": "x" * 4097, "voice": "Nahida"}, 413, "text_too_long"),
    ("POST", "/v1/audio/speech", {"input": "hi", "voice": "Nahida", "speed": 0.1}, 422, "invalid_request"),
    ("POST", "/v1/audio/speech", {"input": "hi", "voice": "Nahida", "response_format": "wma"}, 400,
     "unsupported_format"),
    ("GET", "/nope", None, 404, "not_found"),
    ("GET", "/chat2audio", None, 405, "method_not_allowed"),
    ("POST", "/tts", b"x" * 2_000_000, 413, "body_too_large"),
    ("POST", "/tts", {"text": "hi", "ref_audio_path": "a" * 5000}, 400, "bad_path"),
    ("POST", "/tts", {"text": "hi", "aux_ref_audio_paths": ["b" * 5000]}, 400, "bad_path"),
    ("POST", "/tts", {"text": "hi", "seed": 99999999999999999999}, 422, "invalid_request"),
    ("POST", "/chat2audio", {"input": "hi", "session_id": "my session 1"}, 422, "invalid_request"),
]


def test_invalid_fields_are_named_in_plain_words(client):
    r = client.post("/chat2audio", json={"input": "   "})
    assert r.status_code == 422 and r.json()["error"]["message"] == "input: must not be empty or only spaces"
    r = client.post("/tts", content=b'{"text": "hi", "speed_factor": NaN}', headers={"content-type": "application/json"})
    assert r.status_code == 422 and "speed_factor: must be a finite number" in r.json()["error"]["message"]


@pytest.mark.parametrize("method,path,body,status,code", BAD, ids=[f"{b[1]}-{b[4]}" for b in BAD])
def test_bad_requests_get_json_4xx(client, method, path, body, status, code):
    kw = {"content": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}
    if isinstance(body, bytes):
        kw["headers"] = {"content-type": "application/json"}
    r = client.request(method, path, **kw)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"]
    if status == 405:
        assert r.headers["allow"]
    if code in ("unknown_speaker", "unknown_persona"):
        assert "available" in err["message"]
    assert client.get("/health/live").status_code == 200


def test_speech_takes_openai_length(client):
    """OpenAI's limit for `input` is 4096 characters, above the service's default max_text_chars (2000)."""
    r = client.post("/v1/audio/speech", json={"input": "好。" * 1250, "voice": "Nahida", "response_format": "pcm"},
                    timeout=600)
    assert r.status_code == 200, r.text[:300]


def test_error_messages_name_the_problem(client):
    r = client.post("/chat2audio", content=b'{"input": "hi"}', headers={"content-type": "text/plain"})
    assert r.status_code == 422 and "Content-Type: application/json" in r.json()["error"]["message"]
    r = client.post("/tts", json={"text": "hi", "ref_audio_path": "Nahida/ref.wav\u0000x"})
    assert r.status_code == 403 and "NUL" in r.json()["error"]["message"]
    r = client.post("/tts", json={"text": "hi", "aux_ref_audio_paths": ["/etc/passwd"]})
    assert r.status_code == 403 and r.json()["error"]["message"].startswith("aux_ref_audio_paths")


def test_check_command_on_the_demo(demo_cache, capsys):
    from agent.cli import check_problems
    from agent.config import DEFAULT_CONFIG, load_settings

    settings = load_settings(DEFAULT_CONFIG, env={"CHAT2AUDIO_PATHS__CACHE_DIR": str(demo_cache)})
    assert check_problems(settings) == []
    bad = load_settings(DEFAULT_CONFIG, env={"CHAT2AUDIO_PATHS__CACHE_DIR": str(demo_cache / "nothing"),
                                             "CHAT2AUDIO_AGENT__DEFAULT_PERSONA": "nobody"})
    problems = check_problems(bad)
    assert any("Nahida" in p and "not found" in p and "run the service once" in p for p in problems)
    assert any("nobody" in p for p in problems)
    assert any("HuBERT model folder" in p for p in problems)


def test_check_reads_the_speakers_files(demo_cache, tmp_path):
    """`check` finds what the first request would: a clip that is no audio, a corrupt checkpoint."""
    import shutil

    from agent.cli import check_problems
    from agent.config import DEFAULT_CONFIG, PROJECT_ROOT, load_settings

    good = tmp_path / "speakers" / "Nahida"
    shutil.copytree(PROJECT_ROOT / "speakers" / "Nahida", good)
    bad = tmp_path / "speakers" / "Bad"
    bad.mkdir()
    (bad / "profile.yaml").write_text((good / "profile.yaml").read_text(encoding="utf-8").replace(
        "name: Nahida", "name: Bad").replace("demo-gpt.ckpt", "bad.ckpt").replace("demo-ref.wav", "bad.wav"),
        encoding="utf-8")
    (bad / "bad.ckpt").write_bytes(b"not a checkpoint" * 64)
    (bad / "bad.wav").write_text("not audio", encoding="utf-8")
    settings = load_settings(DEFAULT_CONFIG, env={"CHAT2AUDIO_PATHS__CACHE_DIR": str(demo_cache),
                                                  "CHAT2AUDIO_PATHS__SPEAKERS_DIR": str(tmp_path / "speakers")})
    problems = check_problems(settings)
    assert len(problems) == 2 and all(p.startswith("speaker Bad: ") for p in problems), problems
    assert any("bad.wav" in p for p in problems) and any("gpt_model" in p and "bad.ckpt" in p for p in problems)


def test_client_hanging_up_stops_a_whole_turn(client, server, caplog):
    """A non-streaming client that gives up: its turn stops (the LLM stream is closed) and its slot is
    free at once, not when the reply would have been complete."""
    import httpx

    from tests.agent.fake_openai import Reply

    caplog.set_level("INFO", logger="chat2audio")
    server.llm.script(Reply.text("今天的风很温柔。" * 12, token_chars=2, token_interval=0.05))  # ~2.5 s
    gone = server.llm.client_gone
    with httpx.Client(base_url=server.url, timeout=0.5) as quick:
        with pytest.raises(httpx.ReadTimeout):
            quick.post("/chat2audio", json={**SEED, "format": "pcm"})
    deadline = time.monotonic() + 1.5
    while server.llm.client_gone == gone and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.llm.client_gone > gone, "the LLM stream of the abandoned turn was not closed"
    assert client.get("/health").json()["active_turns"] == 0
    assert 'chat2audio_errors_total{code="client_gone"}' in client.get("/metrics").text  # counted
    assert "POST /chat2audio: the client closed the connection" in caplog.text  # and logged


def test_a_whole_turn_cut_short_by_a_newer_one_is_a_409(client, server):
    """Two turns on one session at once: the newer one wins, the older answer says it was interrupted
    instead of a 200 with cut audio and no text."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.agent.fake_openai import Reply

    server.llm.script(Reply.text("今天的风很温柔。" * 12, token_chars=2, token_interval=0.05))
    body = {**SEED, "format": "pcm", "session_id": "two-at-once"}
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.post, "/chat2audio", json=body)
        deadline = time.monotonic() + 10
        while not client.get("/health").json()["active_turns"] and time.monotonic() < deadline:
            time.sleep(0.02)
        second = client.post("/chat2audio", json=body)
        r = first.result()
    assert second.status_code == 200, second.text[:200]
    assert r.status_code == 409 and r.json()["error"]["code"] == "interrupted", r.text[:200]


def test_not_ready_when_the_default_speaker_cannot_speak(demo_cache, fake_llm):
    """Readiness means the service can answer: a default speaker that is not loaded is 503 with the reason
    (it was 200 'ok' while every synthesis failed)."""
    import httpx

    from tests.service.conftest import start_server

    srv = start_server(demo_cache, fake_llm, CHAT2AUDIO_AGENT__DEFAULT_SPEAKER="Ghost")
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            r = c.get("/health/ready")
            assert r.status_code == 503, r.text
            h = c.get("/health").json()
            assert h["ready"] is False and h["models_loaded"] is False and "'Ghost'" in h["tts_problem"]
            assert c.get("/health/live").status_code == 200
    finally:
        srv.stop()


def test_default_persona_without_its_speaker(demo_cache, fake_llm, tmp_path):
    """The default persona bound to a speaker that is not loaded: not ready, and a WebSocket, which
    opens a session on that persona, is told why and closed (it was an unhandled error)."""
    import shutil

    import httpx

    from agent.config import PROJECT_ROOT
    from tests.service.conftest import start_server

    shutil.copytree(PROJECT_ROOT / "personas", tmp_path / "personas")
    nahida = tmp_path / "personas" / "nahida.yaml"
    nahida.write_text(nahida.read_text(encoding="utf-8").replace("speaker: Nahida", "speaker: Ghost"), encoding="utf-8")
    srv = start_server(demo_cache, fake_llm, CHAT2AUDIO_PATHS__PERSONAS_DIR=str(tmp_path / "personas"))
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            assert c.get("/health/ready").status_code == 503
            assert "'nahida'" in c.get("/health").json()["tts_problem"]
        asyncio.run(_ws_refused(srv.ws_url))
    finally:
        srv.stop()


async def _ws_refused(url: str) -> None:
    import json

    import websockets

    async with websockets.connect(url) as ws:
        err = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert (err["type"], err["code"]) == ("error", "unknown_speaker") and "'Ghost'" in err["message"], err
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd.code == 1011


def test_broken_setup_is_not_ready_and_a_server_error(demo_cache, fake_llm, tmp_path):
    """A models folder without HuBERT: the warm-up fails, so the service is not ready, and synthesis
    answers 500 bad_checkpoint (the server's setup), not a 400 that blames the request."""
    import shutil

    import httpx

    from tests.service.conftest import start_server

    shutil.copytree(demo_cache / "models", tmp_path / "models",
                    ignore=shutil.ignore_patterns("chinese-hubert-base", "demo-chat"))
    srv = start_server(tmp_path, fake_llm, CHAT2AUDIO_TTS__WARMUP="true", CHAT2AUDIO_AGENT__DEMO="false")
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            assert c.get("/health/ready").status_code == 503
            assert "HuBERT" in c.get("/health").json()["tts_problem"]
            r = c.post("/tts", json={"text": "你好。", "speaker": "Nahida"})
            assert r.status_code == 500 and r.json()["error"]["code"] == "bad_checkpoint", r.text
    finally:
        srv.stop()


def test_reload_that_breaks_the_default_speaker_is_not_ready(demo_cache, fake_llm, tmp_path):
    """Readiness follows /admin/reload: a reload that breaks the default speaker's checkpoint (loaded
    lazily, so the reload itself finds nothing) makes the service not ready, and mending it ready again."""
    import shutil

    import httpx

    from agent.config import PROJECT_ROOT
    from tests.service.conftest import start_server

    folder = tmp_path / "speakers" / "Nahida"
    shutil.copytree(PROJECT_ROOT / "speakers" / "Nahida", folder)
    ckpt = folder / "demo-gpt.ckpt"  # its own copy: found in the speaker folder before the models folder
    shutil.copy(demo_cache / "models" / "demo-gpt.ckpt", ckpt)
    srv = start_server(demo_cache, fake_llm, CHAT2AUDIO_TTS__WARMUP="true", CHAT2AUDIO_AUTH__ADMIN_KEYS='["adm"]',
                       CHAT2AUDIO_PATHS__SPEAKERS_DIR=str(tmp_path / "speakers"))
    admin = {"Authorization": "Bearer adm"}
    try:
        with httpx.Client(base_url=srv.url, timeout=120) as c:
            assert c.get("/health/ready").status_code == 200
            good = ckpt.read_bytes()
            ckpt.write_bytes(b"not a checkpoint" * 64)
            assert c.post("/admin/reload", headers=admin).status_code == 200
            assert c.get("/health/ready").status_code == 503
            assert "demo-gpt.ckpt" in c.get("/health").json()["tts_problem"]
            ckpt.write_bytes(good)
            assert c.post("/admin/reload", headers=admin).status_code == 200
            assert c.get("/health/ready").status_code == 200
    finally:
        srv.stop()
