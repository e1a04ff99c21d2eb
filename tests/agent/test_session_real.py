"""A whole turn with real components: the in-process TransformersClient on the tiny demo chat
model and the real TTS engine on the tiny demo GPT-SoVITS models."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent import events as ev
from agent.demo_llm import build_tiny_chat_model
from agent.llm import TransformersClient
from agent.personas import PersonaRegistry
from agent.session import Session
from agent.splitter import SentenceSplitter, strip_all
from tests.agent.fake_openai import FakeOpenAI, Reply

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    from tts.engine import Engine, EngineConfig
    from tts.factory import build_demo

    models = tmp_path_factory.mktemp("models")
    paths = build_demo(models)
    eng = Engine(EngineConfig(speakers_dir=REPO / "speakers", models_dir=models, bert_dir=paths["bert"],
                              hubert_dir=paths["hubert"], max_len=512))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> TransformersClient:
    client = TransformersClient(build_tiny_chat_model(tmp_path_factory.mktemp("chat")))
    client.load()
    return client


def nahida():
    p = PersonaRegistry(REPO / "personas").get("nahida")
    return p.model_copy(update={"llm": p.llm.model_copy(update={"max_tokens": 24, "temperature": 0.0})})


async def test_turn_with_tiny_llm_and_real_engine(engine, llm: TransformersClient) -> None:
    s = Session(nahida(), "Nahida", llm, engine)
    events = [e async for e in s.run_turn("你好")]
    assert isinstance(events[0], ev.TurnStarted) and isinstance(events[-1], ev.TurnDone)
    errors = [e for e in events if isinstance(e, ev.ErrorEvent)]
    assert all(e.message.startswith("sentence ") for e in errors), errors  # gibberish may be unpronounceable
    raw = "".join(e.delta for e in events if isinstance(e, ev.TextDelta))
    assert raw and events[-1].text == raw.strip()
    started = [e for e in events if isinstance(e, ev.SentenceStarted)]
    done = [e for e in events if isinstance(e, ev.SentenceDone)]
    assert [e.index for e in started] == [e.index for e in done]
    assert len(errors) < len(started) or not started


async def test_scripted_reply_spoken_by_real_engine(engine) -> None:
    reply = "（微笑着）你好呀，旅行者。今天想去哪里？"
    with FakeOpenAI() as srv:
        srv.script(Reply.text(reply, token_chars=2))
        from agent.llm import OpenAIClient

        client = OpenAIClient(srv.base_url, model="fake-model")
        s = Session(nahida(), "Nahida", client, engine)
        events = [e async for e in s.run_turn("你好")]
        await client.aclose()
    assert not [e for e in events if isinstance(e, ev.ErrorEvent)], events
    spoken = [e.text for e in events if isinstance(e, ev.SentenceStarted)]
    sp = SentenceSplitter(nahida().splitter.config())
    assert spoken == sp.push(strip_all(reply)[0]) + sp.flush()
    audio = [e.pcm for e in events if isinstance(e, ev.AudioOut)]
    assert audio and all(a.dtype == np.float32 and a.ndim == 1 for a in audio)
    assert all(e.audio_ms > 0 for e in events if isinstance(e, ev.SentenceDone))
