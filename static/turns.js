// A reply turn from turn.started to turn.done: its text, tags and sentences as they stream in,
// its audio scheduled on the player, what of it was heard, and barge-in (interrupt).
import { $ } from "./dom.js";
import { decodePcm16 } from "./player.js";
import { addMessage, persistLog, renderTags } from "./log.js";
import { player, send, state } from "./state.js";
import { tagLabel, visibleText } from "./text.js";

export function findTurn(id) {
  return state.turns.find((t) => t.turnId === id) || null;
}

export function withTurn(ev, fn) {
  const t = findTurn(ev.turn_id);
  if (!t) return;
  if (t.interrupted && ev.type !== "turn.done") return; // stale after barge-in
  fn(t);
  updateButtons();
}

export function onTurnStarted(ev) {
  const p = state.pending.shift();
  const t = {
    turnId: ev.turn_id,
    userText: p ? p.text : "",
    sentAt: p ? p.at : performance.now(),
    raw: "", // the text.delta's as sent: tags included (shownText(t) is what the bubble shows)
    tags: [], // badges of the reply's [name:value] tags, in order
    marks: [], // {index, start, end} ranges of shown text per spoken sentence
    cursor: 0,
    sentences: new Map(),
    chunks: [], // {start, duration, index}
    firstAudioMs: null,
    interrupted: !!(p && p.cancelled), // Stop was pressed before the reply began
    done: false,
    el: null,
  };
  t.el = addMessage("assistant", "");
  t.el.setAttribute("aria-busy", "true");
  state.turns.push(t);
  if (state.turns.length > 50) state.turns.shift();
  state.current = t;
  player.resetStream();
  updateButtons();
}

export function appendText(t, delta) {
  t.raw += delta;
  renderTurn(t);
}

/** The reply as shown: tags out; a tag still being written is held back until the turn ends. */
function shownText(t) {
  return visibleText(t.raw, t.done);
}

export function onTag(t, ev) {
  if (!ev.value) return; // a tag without a value: no badge
  const label = tagLabel(ev.name || "", ev.value);
  if (t.tags.at(-1) === label) return; // the same mood again: one badge
  t.tags.push(label);
  renderTags(t.el, t.tags);
}

export function onSentence(t, ev) {
  const s = newSentence(ev.index, ev.text, ev.emotion);
  t.sentences.set(ev.index, s);
  const needle = (ev.text || "").trim();
  let at = needle ? shownText(t).indexOf(needle, t.cursor) : -1;
  if (at >= 0) {
    t.marks.push({ index: ev.index, start: at, end: at + needle.length });
    t.cursor = at + needle.length;
    renderTurn(t);
  }
}

/** A spoken sentence: `start`/`end` are context times of its audio, known once scheduled. */
function newSentence(index, text, emotion) {
  return { index, text, emotion: emotion || null, start: null, end: null, chunks: 0, audioMs: null, done: false };
}

export function onAudio(t, ev) {
  if (t.firstAudioMs === null) {
    t.firstAudioMs = Math.round(performance.now() - t.sentAt);
    setMeta(t, `first audio ${t.firstAudioMs} ms`);
  }
  const samples = decodePcm16(ev.data);
  if (!samples.length) return;
  const { start, duration, gap } = player.schedule(samples, ev.sample_rate || state.sampleRate);
  t.chunks.push({ start, duration, gap, index: ev.index });
  let s = t.sentences.get(ev.index);
  if (!s) {
    s = newSentence(ev.index, "", null);
    t.sentences.set(ev.index, s);
  }
  if (s.start === null) s.start = start;
  s.end = start + duration;
  s.chunks += 1;
}

export function onSentenceDone(t, ev) {
  const s = t.sentences.get(ev.index);
  if (s) {
    s.done = true;
    s.audioMs = ev.audio_ms;
  }
}

export function onTurnDone(t, ev) {
  t.done = true;
  t.serverInterrupted = !!ev.interrupted;
  t.interrupted = t.interrupted || t.serverInterrupted;
  t.el.setAttribute("aria-busy", "false");
  if (!t.raw && ev.text) t.raw = ev.text;
  if (t.interrupted) markInterrupted(t);
  else renderTurn(t); // a held-back tail that never became a tag is shown now
  persistLog();
  updateButtons();
}

export function abandonTurn() {
  const t = state.current;
  state.pending = [];
  if (t && !t.done) {
    t.done = true;
    t.el.setAttribute("aria-busy", "false");
    t.el.classList.add("failed");
    setMeta(t, "connection lost");
    renderTurn(t);
  }
  updateButtons();
}

export function playedMs(t) {
  const now = player.now();
  let ms = 0;
  for (const c of t.chunks) ms += Math.max(0, Math.min(now - c.start, c.duration)) * 1000;
  return ms;
}

/** The turn the character is writing or speaking, if any. */
export function liveTurn() {
  const t = state.current;
  return t && !t.interrupted && (!t.done || player.busy()) ? t : null;
}

export function turnActive() {
  return state.pending.some((p) => !p.cancelled) || !!liveTurn();
}

/** Barge-in: silence now, tell the server what was heard, then stop the turn. */
export function interrupt() {
  const t = liveTurn();
  player.stopAll();
  const waiting = state.pending.filter((p) => !p.cancelled);
  if (waiting.length) {
    // Sent but not started yet: the server stops it as soon as it starts.
    waiting.forEach((p) => (p.cancelled = true));
    if (!t || t.done) send({ type: "interrupt" });
  }
  if (!t) {
    updateButtons();
    return;
  }
  const heard = Math.round(playedMs(t));
  t.interrupted = true;
  t.stoppedAt = player.now();
  send({ type: "playback", turn_id: t.turnId, played_ms: heard });
  if (!t.done) send({ type: "interrupt" });
  markInterrupted(t);
  updateButtons();
}

function markInterrupted(t) {
  t.el.classList.add("interrupted");
  const stop = t.stoppedAt ?? player.now();
  for (const m of t.marks) {
    const s = t.sentences.get(m.index);
    if (!s || s.start === null || s.start >= stop) m.unspoken = true;
  }
  renderTurn(t);
  const ttfa = t.firstAudioMs === null ? "" : ` · first audio ${t.firstAudioMs} ms`;
  setMeta(t, `interrupted${ttfa}`);
}

export function speakingSentence() {
  const t = state.current;
  if (!t || t.interrupted) return null;
  const now = player.now();
  for (const s of t.sentences.values()) if (s.start !== null && s.start <= now && now < s.end) return s;
  return null;
}

// ---------------------------------------------------------------- the reply bubble

// The sentence shown as being spoken, as "turnId:index" (tick() keeps it current).
let lastSpoken = null;

function setMeta(t, text) {
  t.el.querySelector(".meta").textContent = text;
}

function renderTurn(t) {
  const body = t.el.querySelector(".body");
  const text = shownText(t);
  const frag = document.createDocumentFragment();
  let pos = 0;
  for (const m of t.marks) {
    if (m.start > pos) frag.append(text.slice(pos, m.start));
    const span = document.createElement("span");
    const speaking = lastSpoken === `${t.turnId}:${m.index}`;
    span.className = "sent" + (m.unspoken ? " unspoken" : "") + (speaking ? " speaking" : "");
    span.dataset.index = m.index;
    span.textContent = text.slice(m.start, m.end);
    frag.append(span);
    pos = m.end;
  }
  const tail = text.slice(pos);
  if (tail && t.interrupted && t.done) {
    const span = document.createElement("span");
    span.className = "unspoken";
    span.textContent = tail;
    frag.append(span);
  } else {
    frag.append(tail);
  }
  body.replaceChildren(frag);
  const log = $("log");
  if (log.scrollHeight - log.scrollTop - log.clientHeight < 120) log.scrollTop = log.scrollHeight;
}

export function tick() {
  const s = speakingSentence();
  const key = s ? `${state.current.turnId}:${s.index}` : null;
  if (key !== lastSpoken) {
    document.querySelectorAll(".sent.speaking").forEach((el) => el.classList.remove("speaking"));
    if (s) state.current.el.querySelector(`.sent[data-index="${s.index}"]`)?.classList.add("speaking");
    $("speaking").textContent = s ? `Speaking: ${s.text}` : "";
    lastSpoken = key;
  }
  updateButtons();
}

export function updateButtons() {
  $("stop").disabled = !turnActive();
}
