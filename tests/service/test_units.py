"""Unit tests of the service's own logic: auth, limits, redaction, metrics format, protocol parsing."""
import base64
import json
import logging

import numpy as np
import pytest

from agent import events as ev
from agent.auth import Authenticator, AuthError, KeyLimiter, LimitError, RedactingFilter, is_public, key_from, redact
from agent.metrics import Metrics
from agent.protocol import BINARY_HEADER, ProtocolError, audio_message, parse_client_event, server_message


def test_auth_off_and_on():
    off = Authenticator([], [])
    assert not off.enabled and off.check(None).key_id == "-"
    on = Authenticator(["k1", "k2"], ["adm"])
    assert on.check("k2").key_id == "key#2" and on.check("adm").admin
    for key, status in [(None, 401), ("nope", 401)]:
        with pytest.raises(AuthError) as e:
            on.check(key)
        assert e.value.status == status
    with pytest.raises(AuthError) as e:
        on.check("k1", admin=True)
    assert e.value.status == 403
    with pytest.raises(AuthError, match="admin_keys"):
        off.check("x", admin=True)


def test_key_sources_and_public_paths():
    assert key_from({"authorization": "Bearer abc"}) == "abc"
    assert key_from({"authorization": "bearer  abc "}) == "abc"
    assert key_from({}, {"api_key": "q"}) == "q"
    assert key_from({}, None) is None
    assert is_public("/") and is_public("/static/app.js") and is_public("/health")
    assert not is_public("/speakers") and not is_public("/admin/reload")


def test_limiter():
    lim = KeyLimiter(max_turns=1, max_sessions=1)
    with lim.turn("a"):
        with pytest.raises(LimitError):
            with lim.turn("a"):
                pass
        with lim.turn("b"):
            assert lim.active_turns() == 2
    with lim.turn("a"):
        pass


def test_redaction():
    assert redact("GET /ws?api_key=s3cr3t&x=1 HTTP/1.1") == "GET /ws?api_key=***&x=1 HTTP/1.1"
    rec = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s"', ("1.2.3.4", "GET", "/ws?api_key=zz"), None)
    RedactingFilter().filter(rec)
    assert "zz" not in rec.getMessage()


def test_metrics_text_format():
    m = Metrics()
    m.time_to_first_audio.observe(0.12)
    m.errors.inc("busy")
    m.errors.inc("busy")
    m.bind_queue_depth(lambda: 3)
    text = m.render()
    assert 'chatw' not in text and "# TYPE chat2audio_time_to_first_audio_seconds histogram" in text
    assert 'chat2audio_time_to_first_audio_seconds_bucket{le="0.2"} 1' in text
    assert 'chat2audio_time_to_first_audio_seconds_bucket{le="+Inf"} 1' in text
    assert 'chat2audio_errors_total{code="busy"} 2' in text
    assert "chat2audio_tts_queue_depth 3" in text
    for line in text.splitlines():
        assert line.startswith("#") or len(line.split(" ")) == 2, line


@pytest.mark.parametrize("raw,code", [
    ("not json", "invalid_json"),
    ("[1]", "invalid_event"),
    ('{"type": "dance"}', "unknown_event"),
    ('{"text": "hi"}', "invalid_event"),
    ('{"type": "input.text"}', "invalid_event"),
    ('{"type": "input.text", "text": ""}', "invalid_event"),
    ('{"type": "playback", "turn_id": "t", "played_ms": -1}', "invalid_event"),
    ('{"type": "session.update", "audio_transport": "carrier-pigeon"}', "invalid_event"),
])
def test_bad_client_events(raw, code):
    with pytest.raises(ProtocolError) as e:
        parse_client_event(raw)
    assert e.value.code == code and e.value.message


@pytest.mark.parametrize("raw,words", [
    ('{"type": "input.text", "text": "   "}', "input.text: text: must not be empty or only spaces"),
    ('{"type": "playback", "turn_id": "t", "played_ms": NaN}', "played_ms: must be a finite number"),
    ('{"type": "session.update", "speaker": 5}', "session.update: speaker: "),
    ("héllo".encode("utf-16-be") + b"\xd8\x00", "binary message is not UTF-8 JSON"),
])
def test_client_event_errors_name_the_field_in_plain_words(raw, words):
    with pytest.raises(ProtocolError) as e:
        parse_client_event(raw)
    assert words in e.value.message, e.value.message


def test_good_client_events():
    assert parse_client_event('{"type": "input.text", "text": "你好"}').text == "你好"
    u = parse_client_event('{"type": "session.update", "speaker": "Nahida", "audio_transport": "binary"}')
    assert u.speaker == "Nahida" and u.audio_transport == "binary" and u.persona is None
    assert parse_client_event('{"type": "interrupt"}').type == "interrupt"


def test_server_messages():
    pcm = np.array([0.0, 0.5, -1.0], np.float32)
    a = ev.AudioOut("t1", 0, 2, pcm, 32000)
    msg = json.loads(audio_message(a, "base64"))
    assert msg == {"type": "audio", "turn_id": "t1", "index": 0, "seq": 2, "sample_rate": 32000,
                   "format": "pcm16", "data": msg["data"]}
    assert np.frombuffer(base64.b64decode(msg["data"]), "<i2").tolist() == [0, 16384, -32767]
    frame = audio_message(a, "binary")
    (n,) = BINARY_HEADER.unpack_from(frame)
    head = json.loads(frame[4:4 + n])
    assert head["seq"] == 2 and "data" not in head and len(frame) == 4 + n + 6
    assert server_message(ev.TurnDone("t1", "hi", True)) == {"type": "turn.done", "turn_id": "t1", "text": "hi",
                                                              "interrupted": True}
    assert server_message(ev.SentenceStarted("t1", 0, "hi")) == {"type": "sentence", "turn_id": "t1", "index": 0,
                                                                 "text": "hi"}
    assert server_message(ev.ErrorEvent("busy", "m")) == {"type": "error", "code": "busy", "message": "m"}
