// window.chat2audioStatus: a read-only snapshot of the chat for the browser tests (tests/web).
import { player, state } from "./state.js";
import { playedMs, speakingSentence } from "./turns.js";

function turnSnapshot(t) {
  return {
    turnId: t.turnId,
    userText: t.userText,
    text: t.raw,
    tags: [...t.tags],
    sentences: [...t.sentences.values()].map((s) => ({
      index: s.index, text: s.text, chunks: s.chunks, audioMs: s.audioMs, done: s.done,
    })),
    audioChunksScheduled: t.chunks.length,
    underruns: Math.max(0, t.chunks.filter((c) => c.gap).length - 1), // first chunk always starts after a lead
    chunkStarts: t.chunks.map((c) => c.start),
    chunkDurations: t.chunks.map((c) => c.duration),
    scheduledMs: Math.round(t.chunks.reduce((a, c) => a + c.duration, 0) * 1000),
    playedMs: Math.round(playedMs(t)),
    firstAudioMs: t.firstAudioMs,
    interrupted: t.interrupted,
    serverInterrupted: !!t.serverInterrupted, // turn.done said interrupted: true
    done: t.done,
  };
}

/** Defines `window.chat2audioStatus`, a getter that snapshots the state on each read. */
export function exposeStatus() {
  Object.defineProperty(window, "chat2audioStatus", {
    get() {
      return deepFreeze({
        connected: state.connected,
        connection: state.connState,
        sessionId: state.sessionId,
        persona: state.persona,
        speaker: state.speaker,
        sampleRate: state.sampleRate,
        audioContextRate: player.rate, // equals sampleRate: chunks are played without per-chunk resampling
        turns: state.turns.map(turnSnapshot),
        playing: player.busy(),
        speakingSentence: speakingSentence()?.index ?? null,
        lastError: state.lastError,
      });
    },
  });
}

function deepFreeze(o) {
  for (const v of Object.values(o)) if (v && typeof v === "object") deepFreeze(v);
  return Object.freeze(o);
}
