"""A conversation: persona, speaker, history, and the turn pipeline.

One turn runs LLM -> think filter -> stripper -> splitter -> TTS as overlapping stages joined by
bounded asyncio queues (the TTS speaks sentence k while the LLM writes k+1), and yields the
events of agent/events.py in order. `interrupt()` cancels both stages at once (the engine stops
at its next decode step). History is bounded by the persona's turn and token budgets; after an
interrupt (or an LLM failure) a turn is remembered only by the sentences whose audio was
delivered, or heard when the client reported its playback position.
"""
from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from agent import events as ev
from agent.llm import LLMClient, LLMError
from agent.personas import Persona, PersonaError
from agent.protocol import SESSION_ID_PATTERN
from agent.splitter import SentenceSplitter, Stripper, Tag, ThinkFilter, count_units, is_cjk
from tts.errors import BusyError, EmptyTextError, TTSError
from tts.types import SynthesisOptions

log = logging.getLogger(__name__)

SESSION_ID_RE = re.compile(SESSION_ID_PATTERN)
SENTENCE_ROOM_WAIT_S = 60.0  # how long a sentence of a running turn waits for room in a full TTS queue
_END, _INTERRUPTED = object(), object()


class SessionLimitError(Exception):
    code = "too_many_sessions"
    http_status = 503

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def estimate_tokens(text: str) -> int:
    """A tokenizer-free estimate: one token per CJK character, one per ~4 other characters."""
    cjk = sum(1 for c in text if is_cjk(c))
    other = sum(1 for c in text if not c.isspace() and not is_cjk(c))
    return cjk + math.ceil(other / 4)


def join_sentences(parts: list[str]) -> str:
    """Join stripped sentences: a space between Latin neighbours, nothing next to CJK."""
    out = ""
    for p in parts:
        if out and p and not (is_cjk(out[-1]) or is_cjk(p[0]) or out[-1] in "。！？；…」』”）"):
            out += " "
        out += p
    return out


@dataclass
class _Sentence:
    index: int
    text: str
    emotion: str | None
    audio_ms: float = 0.0  # synthesised
    yielded_ms: float = 0.0  # handed to the consumer
    ok: bool = False  # synthesised without error
    delivered: bool = False  # its sentence.done was handed to the consumer


@dataclass
class _TurnRecord:
    turn_id: str
    user: str
    raw: str = ""  # the visible reply (think removed, stage directions kept)
    sentences: list[_Sentence] = field(default_factory=list)
    interrupted: bool = False
    failed: bool = False
    played_ms: float | None = None

    def memory(self) -> str:
        """What the assistant is remembered to have said in this turn."""
        if not (self.interrupted or self.failed):
            return self.raw.strip()
        if self.played_ms is None:
            return join_sentences([s.text for s in self.sentences if s.delivered and s.ok])
        heard, start = [], 0.0
        for s in self.sentences:
            if s.yielded_ms <= 0:
                continue
            if self.played_ms >= start + 0.5 * s.yielded_ms:
                heard.append(s.text)
            start += s.yielded_ms
        return join_sentences(heard)


@dataclass
class _Active:
    record: _TurnRecord
    out: asyncio.Queue
    tasks: list[asyncio.Task] = field(default_factory=list)


class Session:
    """Persona + speaker + history. Use `run_turn(text)`; one turn at a time (a new turn interrupts
    the running one)."""

    def __init__(self, persona: Persona, speaker: str, llm: LLMClient, engine: Any, session_id: str | None = None,
                 owner: str = "-", personas: Any = None, sentence_queue: int = 4, event_queue: int = 64,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.id = session_id or uuid.uuid4().hex
        self.persona, self.speaker_id, self.owner = persona, speaker, owner
        self.llm, self.engine, self.personas = llm, engine, personas
        self.sentence_queue, self.event_queue = sentence_queue, event_queue
        self.clock = clock
        self.last_active = clock()
        self.turns = 0
        self._records: list[_TurnRecord] = []
        self._active: _Active | None = None

    @property
    def persona_id(self) -> str:
        return self.persona.name

    @property
    def busy(self) -> bool:
        return self._active is not None

    # -- history ----------------------------------------------------------------------------------

    def _refresh_persona(self) -> Persona:
        """Pick up a reloaded persona file (the last good version stays if it broke)."""
        if self.personas is not None:
            try:
                if hasattr(self.personas, "maybe_reload"):
                    self.personas.maybe_reload()
                self.persona = self.personas.get(self.persona.name)
            except PersonaError:
                pass
        return self.persona

    def set_persona(self, persona: Persona) -> None:
        """Switch character; the history of the previous one is dropped."""
        if persona.name != self.persona.name:
            self.interrupt()
            self._records.clear()
        self.persona = persona

    def clear_history(self) -> None:
        self._records.clear()

    def history(self) -> list[dict[str, str]]:
        """The remembered user/assistant messages, oldest first, within the persona's budgets."""
        p = self.persona
        pairs = [(r.user, r.memory()) for r in self._records]
        pairs = [(u, a) for u, a in pairs if a]
        pairs = pairs[-p.max_history_turns:] if p.max_history_turns else []
        budget = p.max_history_tokens - estimate_tokens(p.system_prompt)
        kept: list[dict[str, str]] = []
        for user, assistant in reversed(pairs):
            cost = estimate_tokens(user) + estimate_tokens(assistant) + 8
            if cost > budget:
                break
            budget -= cost
            kept[:0] = [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        if p.greeting and estimate_tokens(p.greeting) + 4 <= budget:
            kept.insert(0, {"role": "assistant", "content": p.greeting})
        return kept

    def messages_for(self, text: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.persona.system_prompt}, *self.history(),
                {"role": "user", "content": text}]

    def playback(self, turn_id: str, played_ms: float) -> None:
        """The client heard `played_ms` of the turn's audio (from its start)."""
        for r in self._records:
            if r.turn_id == turn_id:
                r.played_ms = max(0.0, float(played_ms))
                return

    # -- turns ------------------------------------------------------------------------------------

    def interrupt(self) -> None:
        """Stop the running turn's LLM and TTS work now; its generator then ends with TurnDone(interrupted)."""
        act = self._active
        if act is None:
            return
        act.record.interrupted = True
        for t in act.tasks:
            if not t.cancelling():  # a second cancel would cut the stage's own cleanup (closing the LLM stream)
                t.cancel()
        while not act.out.empty():  # what the consumer has not taken was never delivered
            act.out.get_nowait()
        act.out.put_nowait(_INTERRUPTED)

    async def run_turn(self, text: str) -> AsyncIterator[ev.Event]:
        """Events of one turn: TurnStarted, TextDelta/EmotionTag..., SentenceStarted, AudioOut...,
        SentenceDone, ..., then TurnDone (ErrorEvents where something failed)."""
        self.interrupt()
        persona = self._refresh_persona()
        record = _TurnRecord(uuid.uuid4().hex[:16], text)
        messages = self.messages_for(text)
        self._records.append(record)
        self._trim_records()
        self.turns += 1
        self.last_active = self.clock()
        act = _Active(record, asyncio.Queue(self.event_queue))
        self._active = act
        sentences: asyncio.Queue = asyncio.Queue(self.sentence_queue)
        act.tasks = [asyncio.create_task(self._llm_stage(act, persona, messages, sentences), name="turn-llm"),
                     asyncio.create_task(self._tts_stage(act, persona, sentences), name="turn-tts")]
        by_index: dict[int, _Sentence] = {}
        finished = False
        try:
            yield ev.TurnStarted(record.turn_id)
            while True:
                item = await act.out.get()
                if item is _END or item is _INTERRUPTED:
                    break
                if isinstance(item, ev.SentenceStarted):
                    by_index[item.index] = next(s for s in record.sentences if s.index == item.index)
                elif isinstance(item, ev.AudioOut):
                    by_index[item.index].yielded_ms += 1000.0 * len(item.pcm) / item.sample_rate
                elif isinstance(item, ev.SentenceDone):
                    by_index[item.index].delivered = True
                yield item
            finished = True
        finally:
            if not finished:
                record.interrupted = True
            await self._stop(act)
        self.last_active = self.clock()
        yield ev.TurnDone(record.turn_id, record.memory(), record.interrupted)

    async def _stop(self, act: _Active) -> None:
        for t in act.tasks:
            if not t.cancelling():
                t.cancel()
        # asyncio.wait, not gather: when the task running this is itself cancelled (an HTTP client
        # gone), gather would cancel the stages a second time and cut their cleanup short
        # (closing the LLM stream); wait leaves them to finish on their own
        pending = [t for t in act.tasks if not t.done()]
        if pending:
            await asyncio.wait(pending)
        for t in act.tasks:
            if t.done() and not t.cancelled():
                t.exception()  # retrieved, so asyncio does not warn about it
        if self._active is act:
            self._active = None

    def _trim_records(self) -> None:
        keep = max(1, self.persona.max_history_turns) + 1
        if len(self._records) > keep:
            del self._records[:len(self._records) - keep]

    async def _llm_stage(self, act: _Active, persona: Persona, messages: list[dict], sentences: asyncio.Queue) -> None:
        """LLM deltas -> TextDelta events and sentences for the TTS stage (then None)."""
        rec, out = act.record, act.out
        think, stripper, splitter = ThinkFilter(), Stripper(), SentenceSplitter(persona.splitter.config())
        # emotion tags apply from their position on: positions count non-space characters of the
        # stripped text, which the splitter never loses, so each sentence's span is known
        state: dict[str, Any] = {"emotion": None, "index": 0, "pushed": 0, "emitted": 0, "tags": []}

        async def feed(visible: str, final: bool) -> None:
            if visible:
                rec.raw += visible
                await out.put(ev.TextDelta(rec.turn_id, visible))
            pieces = stripper.push(visible) + (stripper.flush() if final else [])
            texts: list[str] = []
            for piece in pieces:
                if isinstance(piece, Tag):
                    await out.put(ev.EmotionTag(rec.turn_id, piece.name, piece.value))
                    if piece.name in ("emotion", "emo", "mood"):
                        state["tags"].append((state["pushed"], persona.speaker_emotion(piece.value)))
                    continue
                state["pushed"] += _nonspace(piece)
                texts += splitter.push(piece)
            if final:
                texts += splitter.flush()
            for sentence in texts:
                state["emitted"] += _nonspace(sentence)
                while state["tags"] and state["tags"][0][0] < state["emitted"]:
                    state["emotion"] = state["tags"].pop(0)[1]
                if count_units(sentence) == 0:
                    continue  # punctuation only: nothing to say
                s = _Sentence(state["index"], sentence, state["emotion"])
                state["index"] += 1
                rec.sentences.append(s)
                await sentences.put(s)

        stream = self.llm.stream(messages, persona.llm.params())
        try:
            async for delta in stream:
                await feed(think.push(_printable(delta)), final=False)
            await feed(think.flush(), final=True)
        except LLMError as e:
            rec.failed = True
            await out.put(ev.ErrorEvent(e.code, e.message, rec.turn_id))
        except Exception as e:  # a bug or an unexpected client failure: reported, the turn still ends
            log.exception("LLM stage failed")
            rec.failed = True
            await out.put(ev.ErrorEvent("llm_failed", f"LLM failed: {e!r}", rec.turn_id))
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
        await sentences.put(None)

    async def _tts_stage(self, act: _Active, persona: Persona, sentences: asyncio.Queue) -> None:
        """Sentences -> SentenceStarted, AudioOut..., SentenceDone (an error on one sentence moves on)."""
        rec, out = act.record, act.out
        while (s := await sentences.get()) is not None:
            await out.put(ev.SentenceStarted(rec.turn_id, s.index, s.text, s.emotion))
            options = SynthesisOptions(language=persona.language, emotion=s.emotion, split=False)
            error: ev.ErrorEvent | None = None
            seq = 0
            try:
                stream = await self._sentence_stream(s.text, options)
                try:
                    async for chunk in stream:
                        s.audio_ms += chunk.duration_ms
                        await out.put(ev.AudioOut(rec.turn_id, s.index, seq, chunk.pcm, chunk.sample_rate))
                        seq += 1
                finally:
                    close = getattr(stream, "aclose", None)
                    if close is not None:
                        await close()
            except EmptyTextError:  # nothing speakable in it (e.g. only Korean or symbols): skipped quietly
                pass
            except TTSError as e:
                error = ev.ErrorEvent(e.code, f"sentence {s.index}: {e.message}", rec.turn_id)
            except Exception as e:
                log.exception("TTS failed on sentence %d", s.index)
                error = ev.ErrorEvent("tts_failed", f"sentence {s.index}: {e!r}", rec.turn_id)
            s.ok = error is None
            if error is not None:
                await out.put(error)
            await out.put(ev.SentenceDone(rec.turn_id, s.index, s.audio_ms))
        await out.put(_END)

    async def _sentence_stream(self, text: str, options: SynthesisOptions) -> Any:
        """The engine's stream of one sentence. A full TTS queue makes the sentence wait for room, up to
        SENTENCE_ROOM_WAIT_S: the turn was admitted when there was room (`Runtime.check_turn`), and a later
        sentence is better than a reply with a hole in it."""
        deadline = time.monotonic() + SENTENCE_ROOM_WAIT_S
        delay = 0.02
        while True:
            try:
                return self.engine.astream(text, self.speaker_id, options)
            except BusyError:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(0.25, delay * 2)


# control characters (C0 but tab and newline, DEL, C1) that a model may emit: never spoken, shown or remembered
_CONTROLS = {c: None for c in [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0)]}
_CONTROLS[0x0D] = "\n"


def _printable(text: str) -> str:
    return text.translate(_CONTROLS)


def _nonspace(text: str) -> int:
    return sum(1 for c in text if not c.isspace())


class SessionStore:
    """Sessions by owner (API key) and id, with idle expiry and a maximum count. Each key has its own ids:
    two keys that both name a session "npc-42" have two sessions.

    Args:
        engine, llm: shared by every session.
        personas: a PersonaRegistry (persona names are resolved through it).
        settings: the service settings (limits.session_ttl_s is the idle expiry when `idle_s` is None).
    """

    def __init__(self, engine: Any, llm: LLMClient, personas: Any, settings: Any = None, *,
                 max_sessions: int = 1000, idle_s: float | None = None, sentence_queue: int = 4,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.engine, self.llm, self.personas = engine, llm, personas
        limits = getattr(settings, "limits", None)
        self.idle_s = idle_s if idle_s is not None else float(getattr(limits, "session_ttl_s", 3600.0))
        self.max_sessions = max_sessions
        self.sentence_queue = sentence_queue
        self.clock = clock
        self._sessions: dict[tuple[str, str], Session] = {}  # (owner, id) -> session

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str | None, owner: str = "-") -> Session | None:
        self.expire()
        return self._sessions.get((owner, session_id)) if session_id else None

    def interrupt_all(self) -> None:
        """Interrupt every session with a turn running (shutdown)."""
        for s in list(self._sessions.values()):
            if s.busy:
                s.interrupt()

    def remove(self, session_id: str, owner: str = "-") -> None:
        s = self._sessions.pop((owner, session_id), None)
        if s is not None:
            s.interrupt()

    def expire(self) -> int:
        """Drop sessions idle for longer than idle_s (never one with a running turn)."""
        now = self.clock()
        dead = [k for k, s in self._sessions.items() if not s.busy and now - s.last_active > self.idle_s]
        for k in dead:
            del self._sessions[k]
        return len(dead)

    def open(self, session_id: str | None = None, persona: str | Persona | None = None, speaker: str | None = None,
             owner: str = "-") -> Session:
        """The session `session_id` of this owner (persona/speaker updated when given), or a new one."""
        self.expire()
        existing = self._sessions.get((owner, session_id)) if session_id else None
        if existing is not None:
            if persona is not None:
                existing.set_persona(self._persona(persona))
            if speaker is not None:
                existing.speaker_id = speaker
            existing.last_active = self.clock()
            return existing
        p = self._persona(persona)
        sid = session_id if session_id and SESSION_ID_RE.match(session_id) else None
        self._make_room()
        s = Session(p, speaker or p.speaker, self.llm, self.engine, session_id=sid, owner=owner,
                    personas=self.personas, sentence_queue=self.sentence_queue, clock=self.clock)
        self._sessions[(owner, s.id)] = s
        return s

    def _persona(self, persona: str | Persona | None) -> Persona:
        if isinstance(persona, Persona):
            return persona
        if persona is None:
            names = self.personas.names()
            if not names:
                raise PersonaError("no persona is loaded")
            persona = names[0]
        return self.personas.get(persona)

    def _make_room(self) -> None:
        if len(self._sessions) < self.max_sessions:
            return
        idle = sorted((s for s in self._sessions.values() if not s.busy), key=lambda s: s.last_active)
        if not idle:
            raise SessionLimitError(f"{len(self._sessions)} sessions are active; the limit is {self.max_sessions}")
        del self._sessions[(idle[0].owner, idle[0].id)]
