"""Turn orchestration: ordering, overlap, interrupt, history truncation, errors (fake LLM and engine)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from agent import events as ev
from agent.llm import LLMError, LLMParams, OpenAIClient
from agent.personas import Persona
from agent.session import Session, SessionLimitError, SessionStore, estimate_tokens, join_sentences
from agent.splitter import SentenceSplitter, strip_all
from tests.agent.fake_openai import FakeOpenAI, Reply
from tts.errors import BusyError, TTSError, UnknownSpeakerError
from tts.types import AudioChunk, SynthesisOptions

SR = 32000


@dataclass
class FakeLLM:
    """Streams scripted tokens with a delay; can fail after N tokens; records requests and closes."""

    tokens: list[str]
    delay: float = 0.0
    fail_after: int | None = None
    requests: list[list[dict]] = field(default_factory=list)
    closed: int = 0
    finished_at: float | None = None

    async def stream(self, messages: list[dict], params: LLMParams) -> AsyncIterator[str]:
        self.requests.append(messages)
        try:
            for n, tok in enumerate(self.tokens):
                if self.fail_after == n:
                    raise LLMError("upstream_error", "scripted failure")
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield tok
            self.finished_at = time.monotonic()
        finally:
            self.closed += 1

    async def aclose(self) -> None:
        pass


@dataclass
class FakeEngine:
    """`astream` yields `chunks` chunks of 20 ms per sentence; a sentence containing `fail_on` raises."""

    chunks: int = 3
    delay: float = 0.0
    fail_on: str | None = None
    calls: list[tuple[str, str, SynthesisOptions]] = field(default_factory=list)
    started_at: list[float] = field(default_factory=list)
    cancelled: int = 0

    def astream(self, text: str, speaker: str, options: SynthesisOptions) -> AsyncIterator[AudioChunk]:
        if speaker != "Nahida":
            raise UnknownSpeakerError(speaker, ["Nahida"])
        self.calls.append((text, speaker, options))
        return self._gen(text)

    async def _gen(self, text: str) -> AsyncIterator[AudioChunk]:
        self.started_at.append(time.monotonic())
        try:
            for k in range(self.chunks):
                if self.fail_on and self.fail_on in text and k == 1:
                    raise TTSError("scripted TTS failure")
                if self.delay:
                    await asyncio.sleep(self.delay)
                yield AudioChunk(np.full(SR // 50, 0.1, np.float32), SR, 0, k, k == self.chunks - 1, text=text)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


def persona(**kw: object) -> Persona:
    base = dict(name="nahida", speaker="Nahida", language="zh", system_prompt="你是纳西妲。",
                emotions={"happy": "joy"}, splitter={"eager_first": False, "min_units": 1})
    base.update(kw)
    return Persona.model_validate(base)


def tokens(text: str, n: int = 2) -> list[str]:
    return [text[i:i + n] for i in range(0, len(text), n)]


async def run(session: Session, text: str) -> list:
    return [e async for e in session.run_turn(text)]


def check_order(events: list) -> None:
    assert isinstance(events[0], ev.TurnStarted) and isinstance(events[-1], ev.TurnDone)
    assert all(e.turn_id == events[0].turn_id for e in events)
    state: dict[int, str] = {}
    last_started = -1
    for e in events:
        if isinstance(e, ev.SentenceStarted):
            assert e.index == last_started + 1 and e.index not in state
            state[e.index], last_started = "open", e.index
        elif isinstance(e, ev.AudioOut):
            assert state.get(e.index) == "open"
        elif isinstance(e, ev.SentenceDone):
            assert state.get(e.index) == "open"
            state[e.index] = "done"
    seqs: dict[int, list[int]] = {}
    for e in events:
        if isinstance(e, ev.AudioOut):
            seqs.setdefault(e.index, []).append(e.seq)
    assert all(v == list(range(len(v))) for v in seqs.values())


REPLY = "（微笑着）你好呀，旅行者！[emotion:happy]今天天气真好。*转圈* 我们一起去散步吧？"


async def test_events_in_order_and_directions_never_spoken() -> None:
    llm, engine = FakeLLM(tokens(REPLY)), FakeEngine()
    s = Session(persona(), "Nahida", llm, engine)
    events = await run(s, "你好")
    check_order(events)
    assert "".join(e.delta for e in events if isinstance(e, ev.TextDelta)) == REPLY
    spoken = [e.text for e in events if isinstance(e, ev.SentenceStarted)]
    assert spoken == ["你好呀，旅行者！", "今天天气真好。", "我们一起去散步吧？"]
    assert [c[0] for c in engine.calls] == spoken
    assert all(c[2].split is False and c[2].language == "zh" for c in engine.calls)
    assert [e.emotion for e in events if isinstance(e, ev.SentenceStarted)] == [None, "joy", "joy"]
    assert [(e.name, e.value) for e in events if isinstance(e, ev.EmotionTag)] == [("emotion", "happy")]
    done = events[-1]
    assert done.interrupted is False and done.text == REPLY
    assert [e.audio_ms for e in events if isinstance(e, ev.SentenceDone)] == pytest.approx([60.0] * 3)
    assert llm.requests[0][0] == {"role": "system", "content": "你是纳西妲。"}


async def test_stages_overlap() -> None:
    text = "第一句话在这里。第二句话在这里。第三句话在这里。第四句话在这里。"
    llm, engine = FakeLLM(tokens(text, 1), delay=0.01), FakeEngine(delay=0.005)
    events = await run(Session(persona(), "Nahida", llm, engine), "hi")
    check_order(events)
    assert llm.finished_at is not None and engine.started_at[0] < llm.finished_at - 0.1
    first_audio = next(i for i, e in enumerate(events) if isinstance(e, ev.AudioOut))
    last_delta = max(i for i, e in enumerate(events) if isinstance(e, ev.TextDelta))
    assert first_audio < last_delta  # audio of sentence 0 went out while the LLM was still writing


async def test_interrupt_stops_llm_and_tts_and_remembers_delivered_only() -> None:
    text = "第一句。第二句。第三句。第四句。第五句。第六句。"
    llm, engine = FakeLLM(tokens(text, 1), delay=0.01), FakeEngine(chunks=4, delay=0.01)
    s = Session(persona(), "Nahida", llm, engine)
    events = []
    t0 = time.monotonic()
    async for e in s.run_turn("讲个故事"):
        events.append(e)
        if isinstance(e, ev.SentenceDone) and e.index == 1:
            s.interrupt()
    check_order(events)
    done = events[-1]
    assert done.interrupted is True and done.text == "第一句。第二句。"
    assert time.monotonic() - t0 < 2
    assert llm.closed == 1 and llm.finished_at is None  # the LLM stream was closed early
    assert not any(isinstance(e, ev.SentenceStarted) and e.index > 2 for e in events)
    llm2 = FakeLLM(tokens("好的。"))
    s.llm = llm2
    await run(s, "继续")
    msgs = llm2.requests[0]
    assert msgs[1:] == [{"role": "user", "content": "讲个故事"}, {"role": "assistant", "content": "第一句。第二句。"},
                        {"role": "user", "content": "继续"}]


async def test_interrupt_from_another_task_mid_audio_cancels_engine() -> None:
    llm, engine = FakeLLM(tokens("很长的一句话要慢慢说完。后面还有。", 1)), FakeEngine(chunks=50, delay=0.02)
    s = Session(persona(), "Nahida", llm, engine)
    got: list = []

    async def consume() -> None:
        async for e in s.run_turn("hi"):
            got.append(e)

    task = asyncio.create_task(consume())
    while not any(isinstance(e, ev.AudioOut) for e in got):
        await asyncio.sleep(0.005)
    s.interrupt()
    await asyncio.wait_for(task, 1.0)
    assert isinstance(got[-1], ev.TurnDone) and got[-1].interrupted and got[-1].text == ""
    assert engine.cancelled == 1
    assert sum(isinstance(e, ev.AudioOut) for e in got) < 10


async def test_playback_position_limits_memory_to_heard() -> None:
    llm, engine = FakeLLM(tokens("一二三。四五六。七八九。")), FakeEngine(chunks=3)  # 60 ms a sentence
    s = Session(persona(), "Nahida", llm, engine)
    events = []
    async for e in s.run_turn("数数"):
        events.append(e)
        if isinstance(e, ev.SentenceDone) and e.index == 2:
            s.interrupt()
    turn_id = events[0].turn_id
    assert events[-1].text == "一二三。四五六。七八九。"  # all three delivered
    s.playback(turn_id, 95.0)  # heard sentence 0 and more than half of sentence 1
    assert s.history()[-1]["content"] == "一二三。四五六。"
    s.playback(turn_id, 70.0)
    assert s.history()[-1]["content"] == "一二三。"


async def test_cancelling_the_consumer_counts_as_interrupt() -> None:
    llm, engine = FakeLLM(tokens("第一句。第二句。第三句。", 1), delay=0.01), FakeEngine(delay=0.01)
    s = Session(persona(), "Nahida", llm, engine)
    agen = s.run_turn("hi")
    async for e in agen:
        if isinstance(e, ev.SentenceDone):
            break
    await agen.aclose()
    assert not s.busy and llm.closed == 1
    assert s.history()[-2:] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "第一句。"}]


async def test_llm_failure_gives_error_and_turn_done() -> None:
    llm, engine = FakeLLM(tokens("第一句说完了。第二句没说完", 1), fail_after=10), FakeEngine()
    events = await run(Session(persona(), "Nahida", llm, engine), "hi")
    check_order(events)
    errors = [e for e in events if isinstance(e, ev.ErrorEvent)]
    assert [e.code for e in errors] == ["upstream_error"]
    assert [e.text for e in events if isinstance(e, ev.SentenceStarted)] == ["第一句说完了。"]
    assert events[-1].text == "第一句说完了。" and events[-1].interrupted is False


async def test_llm_failure_before_any_text() -> None:
    llm = FakeLLM(["x"], fail_after=0)
    s = Session(persona(), "Nahida", llm, FakeEngine())
    events = await run(s, "hi")
    assert [type(e) for e in events] == [ev.TurnStarted, ev.ErrorEvent, ev.TurnDone]
    assert s.history() == []


async def test_tts_failure_on_one_sentence_continues() -> None:
    llm, engine = FakeLLM(tokens("好的第一句。坏的第二句。好的第三句。")), FakeEngine(fail_on="坏")
    events = await run(Session(persona(), "Nahida", llm, engine), "hi")
    check_order(events)
    errors = [e for e in events if isinstance(e, ev.ErrorEvent)]
    assert len(errors) == 1 and errors[0].code == "tts_error" and "sentence 1" in errors[0].message
    assert [e.index for e in events if isinstance(e, ev.SentenceDone)] == [0, 1, 2]
    assert events[-1].interrupted is False


async def test_full_tts_queue_makes_a_sentence_wait() -> None:
    """A sentence of a running turn that finds the TTS queue full waits for room: no hole in the reply."""

    @dataclass
    class FullFor(FakeEngine):
        refusals: int = 3  # the second sentence is refused this many times, then admitted

        def astream(self, text: str, speaker: str, options: SynthesisOptions) -> AsyncIterator[AudioChunk]:
            if "二" in text and self.refusals:
                self.refusals -= 1
                raise BusyError("TTS queue is full")
            return super().astream(text, speaker, options)

    engine = FullFor()
    events = await run(Session(persona(), "Nahida", FakeLLM(tokens("第一句。第二句。第三句。")), engine), "hi")
    check_order(events)
    assert not [e for e in events if isinstance(e, ev.ErrorEvent)] and engine.refusals == 0
    assert [e.audio_ms for e in events if isinstance(e, ev.SentenceDone)] == [60, 60, 60]


async def test_control_characters_never_reach_speech_text_or_history() -> None:
    """Raw control characters from the model (seen from small models) are dropped from what is spoken,
    shown and remembered; a carriage return counts as a line break."""
    s = Session(persona(), "Nahida", FakeLLM(["你好\x03呀。", "\x13今天\x1a好。\r\n", "再见\x85。"]), FakeEngine())
    events = await run(s, "hi")
    sentences = [e.text for e in events if isinstance(e, ev.SentenceStarted)]
    shown = "".join(e.delta for e in events if isinstance(e, ev.TextDelta))
    assert sentences == ["你好呀。", "今天好。", "再见。"], sentences
    for text in (shown, events[-1].text, s.history()[-1]["content"]):
        assert not any(ord(c) < 32 and c not in "\n\t" or 0x7F <= ord(c) < 0xA0 for c in text), repr(text)


async def test_unknown_speaker_is_an_error_per_sentence() -> None:
    events = await run(Session(persona(), "Nobody", FakeLLM(tokens("一句。")), FakeEngine()), "hi")
    assert any(isinstance(e, ev.ErrorEvent) and e.code == "unknown_speaker" for e in events)
    assert isinstance(events[-1], ev.TurnDone)


async def test_think_never_spoken_nor_remembered() -> None:
    llm = FakeLLM(tokens("<think>先想一想用户要什么</think>答案是四。", 3))
    s = Session(persona(), "Nahida", llm, FakeEngine())
    events = await run(s, "2+2")
    assert "".join(e.delta for e in events if isinstance(e, ev.TextDelta)) == "答案是四。"
    assert s.history()[-1]["content"] == "答案是四。"


async def test_new_turn_interrupts_running_one() -> None:
    llm, engine = FakeLLM(tokens("第一句。第二句。第三句。", 1), delay=0.02), FakeEngine()
    s = Session(persona(), "Nahida", llm, engine)
    first = s.run_turn("one")
    await first.__anext__()
    await first.__anext__()
    s.llm = FakeLLM(tokens("新的。"))
    second = await run(s, "two")
    assert isinstance(second[-1], ev.TurnDone) and not second[-1].interrupted
    rest = [e async for e in first]
    assert isinstance(rest[-1], ev.TurnDone) and rest[-1].interrupted


async def test_history_budgets() -> None:
    p = persona(max_history_turns=2, max_history_tokens=1000, greeting="欢迎！")
    s = Session(p, "Nahida", FakeLLM(tokens("好。")), FakeEngine())
    for k in range(4):
        await run(s, f"问题{k}")
    hist = s.history()
    assert hist[0] == {"role": "assistant", "content": "欢迎！"}
    assert [m["content"] for m in hist if m["role"] == "user"] == ["问题2", "问题3"]
    s.persona = persona(max_history_turns=10, max_history_tokens=estimate_tokens("你是纳西妲。") + 20)
    assert [m["content"] for m in s.history() if m["role"] == "user"] == ["问题3"]
    msgs = s.messages_for("新问题")
    assert msgs[0]["role"] == "system" and msgs[-1] == {"role": "user", "content": "新问题"}


async def test_with_openai_client_and_fake_server() -> None:
    reply = "Hello there, traveler! *wipes a mug* What can I get you? Ale is two copper."
    with FakeOpenAI(token_interval=0.002) as srv:
        srv.script(Reply.text(reply, token_chars=3))
        client = OpenAIClient(srv.base_url, model="fake-model")
        p = persona(name="tavern", language="en", splitter={})
        events = await run(Session(p, "Nahida", client, FakeEngine()), "hi")
        await client.aclose()
    check_order(events)
    spoken = [e.text for e in events if isinstance(e, ev.SentenceStarted)]
    sp = SentenceSplitter(p.splitter.config())
    assert spoken == sp.push(strip_all(reply)[0]) + sp.flush()
    assert "wipes" not in " ".join(spoken) and spoken[0] == "Hello there, traveler!"


def test_join_sentences() -> None:
    assert join_sentences(["Hi there.", "How are you?"]) == "Hi there. How are you?"
    assert join_sentences(["你好。", "Hi."]) == "你好。Hi."


# -- store ---------------------------------------------------------------------------------------


class Registry:
    def __init__(self, *ps: Persona):
        self.ps = {p.name: p for p in ps}

    def names(self) -> list[str]:
        return sorted(self.ps)

    def get(self, name: str) -> Persona:
        from agent.personas import UnknownPersonaError

        if name not in self.ps:
            raise UnknownPersonaError(name, list(self.ps))
        return self.ps[name]


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def test_store_expiry_owner_and_limits() -> None:
    clock = Clock()
    reg = Registry(persona(), persona(name="other", speaker="Nahida"))
    store = SessionStore(FakeEngine(), FakeLLM(tokens("好。")), reg, max_sessions=3, idle_s=100, clock=clock)
    a = store.open(persona="nahida", owner="k1")
    assert a.persona_id == "nahida" and a.speaker_id == "Nahida"
    assert store.open(session_id=a.id, owner="k1") is a
    clock.t = 1
    b = store.open(session_id=a.id, owner="k2")
    assert b is not a and b.id == a.id and b.owner == "k2"  # every key has its own ids: never a's session
    assert store.get(a.id, "k1") is a and store.get(a.id, "k2") is b and store.get(a.id) is None
    clock.t = 2
    await run(a, "hi")
    assert a.history()
    same = store.open(session_id=a.id, persona="other", owner="k1")
    assert same is a and a.persona_id == "other" and a.history() == []  # new character, new memory
    mine = store.open(session_id="client-chosen_1", owner="k1")
    assert mine.id == "client-chosen_1" and len(store) == 3
    clock.t = 3
    bad = store.open(session_id="../bad id", owner="k1")
    assert bad.id != "../bad id" and len(store) == 3
    assert store.get(b.id, "k2") is None and store.get(a.id, "k1") is a  # the least recently active one made room
    clock.t = 102.5
    assert store.get(a.id, "k1") is None and store.get(bad.id, "k1") is bad  # a idle since t=2
    clock.t = 1000
    assert store.expire() >= 1 and len(store) == 0


async def test_store_full_of_busy_sessions_refuses() -> None:
    store = SessionStore(FakeEngine(), FakeLLM(tokens("好。"), delay=0.05), Registry(persona()), max_sessions=1)
    s = store.open()
    agen = s.run_turn("hi")
    await agen.__anext__()
    assert s.busy
    with pytest.raises(SessionLimitError):
        store.open()
    await agen.aclose()
    assert store.open() is not s
