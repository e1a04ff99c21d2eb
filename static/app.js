// chat2audio web page: live voice chat over WS /ws and a TTS-only "Speech" tab.
// Plain ES module, no build step. Protocol: docs/protocol.md.
import { Player, decodePcm16 } from "./player.js";
import { api, apiKey, setApiKey, friendlyError, wsUrl, onKeyNeeded } from "./api.js";
import { fillSelect, normalizeList, setupSpeech, setupTabs } from "./speech.js";
import { tagLabel, visibleText } from "./text.js";
import { forgetLog, loadLog, loadPrefs, saveLog, savePrefs, storedSession, storeSession } from "./store.js";

const $ = (id) => document.getElementById(id);

const state = {
  ws: null,
  connected: false,
  connState: "connecting",
  retry: 0,
  retryTimer: 0,
  sessionId: null,
  sampleRate: 32000,
  persona: "",
  speaker: "",
  personas: [],
  turns: [], // Turn records, oldest first
  current: null, // the Turn receiving events
  pending: [], // {text, at, cancelled, el} per input.text sent and not yet answered by turn.started
  logPersona: null, // the character the shown conversation is with (a switch starts a new one)
  maxTextChars: 2000, // the server's limits.max_text_chars (its default, unless /health says otherwise)
  lastError: null,
  fresh: false, // next connection starts a new session instead of resuming
  created: null, // the last session.created (to retry the resume when a stored choice is refused)
};
const player = new Player();

// ---------------------------------------------------------------- status for tests

function turnSnapshot(t) {
  return {
    turnId: t.turnId,
    userText: t.userText,
    text: t.raw,
    shownText: shownText(t),
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

function deepFreeze(o) {
  for (const v of Object.values(o)) if (v && typeof v === "object") deepFreeze(v);
  return Object.freeze(o);
}

// ---------------------------------------------------------------- errors

function showError(err) {
  state.lastError = { code: err.code || "error", message: err.message || String(err) };
  if (state.lastError.code === "unauthorized") return; // the key prompt says it
  $("error-text").textContent = friendlyError(state.lastError);
  $("error").hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

// ---------------------------------------------------------------- connection

function setConn(s, text) {
  state.connState = s;
  state.connected = s === "connected";
  $("conn").dataset.state = s;
  $("conn-text").textContent = text;
}

function connect() {
  clearTimeout(state.retryTimer);
  state.sessionId = null; // known again once the server confirms it
  setConn("connecting", "Connecting…");
  let opened = false;
  const ws = new WebSocket(wsUrl("ws"));
  state.ws = ws;
  ws.onopen = () => {
    opened = true;
    state.retry = 0;
  };
  ws.onmessage = (m) => {
    if (ws !== state.ws) return;
    let ev;
    try {
      ev = JSON.parse(m.data);
    } catch (_e) {
      return; // binary frames are not requested by this page
    }
    handleEvent(ev);
  };
  ws.onclose = (e) => {
    if (ws !== state.ws) return;
    state.ws = null;
    abandonTurn();
    if (e.code === 4401 || e.code === 1008) return askKeyThenReconnect();
    if (!opened) {
      // The handshake failed: find out whether a key is what is missing.
      api("speakers").then(scheduleReconnect, scheduleReconnect);
      return;
    }
    scheduleReconnect();
  };
}

function scheduleReconnect() {
  if (state.ws) return;
  const delay = Math.min(10000, 500 * 2 ** state.retry++);
  setConn("reconnecting", `Disconnected, retrying in ${Math.ceil(delay / 1000)} s…`);
  state.retryTimer = setTimeout(connect, delay);
}

function askKeyThenReconnect() {
  setConn("offline", "API key needed");
  onKeyNeeded();
}

function reconnectNow(fresh = false) {
  state.fresh = fresh;
  const ws = state.ws;
  state.ws = null;
  if (ws) ws.close();
  abandonTurn();
  state.retry = 0;
  connect();
}

function send(ev) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
  state.ws.send(JSON.stringify(ev));
  return true;
}

// ---------------------------------------------------------------- server events

const handlers = {
  "session.created": onSession,
  "session.updated": onSession,
  "turn.started": onTurnStarted,
  "text.delta": (ev) => withTurn(ev, (t) => appendText(t, ev.delta)),
  emotion: (ev) => withTurn(ev, (t) => onTag(t, ev)),
  sentence: (ev) => withTurn(ev, (t) => onSentence(t, ev)),
  audio: (ev) => withTurn(ev, (t) => onAudio(t, ev)),
  "sentence.done": (ev) => withTurn(ev, (t) => onSentenceDone(t, ev)),
  "turn.done": (ev) => withTurn(ev, (t) => onTurnDone(t, ev)),
  error: onServerError,
};

function handleEvent(ev) {
  const h = handlers[ev.type];
  if (h) h(ev);
}

function onSession(ev) {
  const created = ev.type === "session.created";
  if (ev.sample_rate) state.sampleRate = ev.sample_rate;
  if (created) setConn("connected", "Connected");
  const stored = storedSession();
  const prefs = loadPrefs();
  if (created) {
    state.created = ev;
    const update = {};
    if (stored && stored !== ev.session_id && !state.fresh) update.session_id = stored;
    if (prefs.persona && prefs.persona !== ev.persona) update.persona = prefs.persona;
    if (prefs.speaker && prefs.speaker !== ev.speaker) update.speaker = prefs.speaker;
    state.fresh = false;
    if (Object.keys(update).length) send({ type: "session.update", ...update });
    if (update.session_id) return; // wait for session.updated to adopt the resumed id
  }
  if (ev.session_id && ev.session_id !== state.sessionId) {
    const prev = storedSession();
    if (prev && prev !== ev.session_id) clearLog(); // another conversation (e.g. the server forgot ours)
    state.sessionId = ev.session_id;
    storeSession(ev.session_id);
  }
  if (ev.resumed === false && $("log").querySelector(".msg:not(.unsent)")) {
    // the same id, but the server no longer had the conversation (it restarted): say so
    addDivider("New conversation: the server no longer had the earlier one");
    persistLog();
  }
  if (ev.persona) {
    setPicker("persona", ev.persona);
    notePersona(ev.persona);
  }
  if (ev.speaker) setPicker("speaker", ev.speaker);
}

/**
 * The server confirmed the session's character. Another one than the shown conversation's means a
 * new conversation: the server dropped the history on the switch, so the log says so with a divider
 * (kept in the stored log). However it came (the picker, a voice bound to another character, a resume
 * with a remembered choice), the rule is the same.
 */
function notePersona(id) {
  const was = state.logPersona;
  state.logPersona = id;
  if (!was || was === id) return;
  const items = $("log").querySelectorAll(".msg:not(.unsent), .divider");
  if (!items.length) return; // nothing said yet: nothing to separate
  const last = items[items.length - 1];
  const text = `New conversation with ${personaName(id)}`;
  if (last.classList.contains("divider")) {
    last.querySelector(".divider-text").textContent = text; // nothing said since the last switch
  } else {
    addDivider(text);
  }
  persistLog();
}

function onServerError(ev) {
  const t = ev.turn_id ? findTurn(ev.turn_id) : null;
  if (ev.code === "unknown_session" || ev.code === "session_not_found") {
    storeSession(null); // the server forgot it: keep the new one
    return;
  }
  if (t && !t.done) t.el.classList.add("failed");
  if (!ev.turn_id && (ev.code === "unknown_speaker" || ev.code === "unknown_persona")) {
    savePrefs({ [ev.code === "unknown_speaker" ? "speaker" : "persona"]: "" }); // do not ask for it again
    if (!state.sessionId && state.created) onSession(state.created); // the resume was refused: retry without it
  }
  const refused = ev.turn_id ? null : refusedInput(ev.code);
  showError(ev);
  if (refused) giveBack(refused);
}

// Errors that refuse an input.text before its turn.started. The server checks the text as it
// arrives (the refusal answers the latest input sent); `busy` comes when the turn would start
// (it answers the oldest input still waiting). Other errors without a turn (a refused
// session.update) leave the inputs alone.
const REFUSED_ON_ARRIVAL = new Set(["text_too_long", "empty_text", "session_limit", "shutting_down"]);

function refusedInput(code) {
  if (!state.pending.length) return null;
  if (code === "busy") return state.pending.shift();
  if (REFUSED_ON_ARRIVAL.has(code)) return state.pending.pop();
  return null;
}

/** A refused input: its bubble says "not sent", it leaves the stored log, its text goes back to the box. */
function giveBack(p) {
  p.el.classList.add("unsent");
  persistLog();
  const input = $("input");
  const back = !input.value.trim(); // never overwrite what was typed since
  if (back) {
    input.value = p.text;
    updateCount();
  }
  p.el.querySelector(".meta").textContent = back ? "Not sent: the text is back in the message box" : "Not sent";
  input.focus();
  updateButtons();
}

function findTurn(id) {
  return state.turns.find((t) => t.turnId === id) || null;
}

function withTurn(ev, fn) {
  const t = findTurn(ev.turn_id);
  if (!t) return;
  if (t.interrupted && ev.type !== "turn.done") return; // stale after barge-in
  fn(t);
  updateButtons();
}

// ---------------------------------------------------------------- turns

function onTurnStarted(ev) {
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

function appendText(t, delta) {
  t.raw += delta;
  renderTurn(t);
}

/** The reply as shown: tags out; a tag still being written is held back until the turn ends. */
function shownText(t) {
  return visibleText(t.raw, t.done);
}

function onTag(t, ev) {
  const label = tagLabel(ev.name || "", ev.value || "");
  if (!label || t.tags[t.tags.length - 1] === label) return; // the same mood again: one badge
  t.tags.push(label);
  renderTags(t.el, t.tags);
}

function onSentence(t, ev) {
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

function onAudio(t, ev) {
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

function onSentenceDone(t, ev) {
  const s = t.sentences.get(ev.index);
  if (s) {
    s.done = true;
    s.audioMs = ev.audio_ms;
  }
}

function onTurnDone(t, ev) {
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

function abandonTurn() {
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

function playedMs(t) {
  const now = player.now();
  let ms = 0;
  for (const c of t.chunks) ms += Math.max(0, Math.min(now - c.start, c.duration)) * 1000;
  return ms;
}

/** The turn the character is writing or speaking, if any. */
function liveTurn() {
  const t = state.current;
  return t && !t.interrupted && (!t.done || player.busy()) ? t : null;
}

function turnActive() {
  return state.pending.some((p) => !p.cancelled) || !!liveTurn();
}

/** Barge-in: silence now, tell the server what was heard, then stop the turn. */
function interrupt() {
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

function speakingSentence() {
  const t = state.current;
  if (!t || t.interrupted) return null;
  const now = player.now();
  for (const s of t.sentences.values()) if (s.start !== null && s.start <= now && now < s.end) return s;
  return null;
}

// ---------------------------------------------------------------- conversation view

function addMessage(role, text) {
  $("log-hint")?.remove();
  const el = document.createElement("article");
  el.className = `msg ${role}`;
  const head = document.createElement("div");
  head.className = "head";
  const who = document.createElement("h2");
  who.className = "who";
  who.textContent = role === "user" ? "You" : personaLabel();
  const tags = document.createElement("span");
  tags.className = "tags";
  head.append(who, tags);
  const body = document.createElement("p");
  body.className = "body";
  body.textContent = text;
  const meta = document.createElement("p");
  meta.className = "meta";
  el.append(head, body, meta);
  $("log").append(el);
  el.scrollIntoView({ block: "end" });
  return el;
}

function addDivider(text) {
  $("log-hint")?.remove();
  const el = document.createElement("div");
  el.className = "divider";
  const main = document.createElement("p");
  main.className = "divider-text";
  main.textContent = text;
  const note = document.createElement("p");
  note.className = "divider-note";
  note.textContent = "Earlier messages are not remembered.";
  el.append(main, note);
  $("log").append(el);
  el.scrollIntoView({ block: "end" });
  return el;
}

/** Badges for the reply's tags (e.g. its emotions), after the speaker's name. */
function renderTags(el, labels) {
  const box = el.querySelector(".tags");
  box.replaceChildren(...labels.map((label) => {
    const b = document.createElement("span");
    b.className = "tag";
    b.textContent = label;
    return b;
  }));
  box.title = labels.length ? `Tags in this reply: ${labels.join(", ")}` : "";
}

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

let lastSpoken = null;
function tick() {
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

function updateButtons() {
  $("stop").disabled = !turnActive();
}

function personaLabel() {
  return state.persona ? personaName(state.persona) : "Character";
}

function personaName(id) {
  return state.personas.find((x) => x.id === id)?.label || id;
}

function persistLog() {
  const items = [...$("log").querySelectorAll(".msg:not(.unsent), .divider")].map((el) =>
    el.classList.contains("divider")
      ? { role: "divider", text: el.querySelector(".divider-text").textContent }
      : {
        role: el.classList.contains("user") ? "user" : "assistant",
        who: el.querySelector(".who").textContent,
        text: el.querySelector(".body").textContent,
        tags: [...el.querySelectorAll(".tag")].map((b) => b.textContent),
      });
  saveLog(state.sessionId, items, state.logPersona);
}

function restoreLog() {
  const saved = loadLog();
  state.logPersona = saved.persona;
  for (const it of saved.items) {
    if (it.role === "divider") {
      addDivider(it.text);
      continue;
    }
    const text = it.role === "assistant" ? visibleText(it.text, true) : it.text; // older logs kept the tags
    const el = addMessage(it.role, text);
    el.querySelector(".who").textContent = it.who;
    if (Array.isArray(it.tags)) renderTags(el, it.tags);
    el.classList.add("restored");
  }
}

function clearLog() {
  const hint = document.createElement("p");
  hint.className = "hint";
  hint.id = "log-hint";
  hint.textContent = "Say something to start talking.";
  $("log").replaceChildren(hint);
  state.logPersona = null;
  forgetLog();
}

// ---------------------------------------------------------------- composer

function submitMessage() {
  const input = $("input");
  const text = input.value.trim();
  if (!text) return;
  const chars = [...text].length; // as the server counts them (the box's maxlength counts UTF-16 units)
  if (chars > state.maxTextChars) {
    showError({ code: "text_too_long", message: `${chars} characters; the limit is ${state.maxTextChars}` });
    return;
  }
  player.unlock(state.sampleRate);
  if (liveTurn()) interrupt(); // silence it and report what was heard; the server also ends it
  if (!send({ type: "input.text", text })) {
    showError({ code: "not_connected", message: "Not connected to the server yet." });
    return;
  }
  clearError();
  const el = addMessage("user", text);
  state.pending.push({ text, at: performance.now(), cancelled: false, el });
  persistLog();
  input.value = "";
  updateCount();
  updateButtons();
}

/** The length counter under the box, shown near the limit (the box stops taking text at it). */
function updateCount() {
  const n = $("input").value.length;
  const max = state.maxTextChars;
  const count = $("input-count");
  count.hidden = n < 0.9 * max;
  count.textContent = n >= max ? `${n} / ${max}: the most one message can hold` : `${n} / ${max}`;
}

function setMaxTextChars(n) {
  if (!Number.isInteger(n) || n < 1) return;
  state.maxTextChars = n;
  $("input").maxLength = n;
  $("tts-text").maxLength = n; // POST /tts has the same limit
  updateCount();
}

/** The server's text limit, where /health reports it (`limits.max_text_chars`). */
async function loadLimits() {
  try {
    const health = await (await api("health")).json();
    setMaxTextChars(health?.limits?.max_text_chars);
  } catch (_e) {
    /* keep the default */
  }
}

function setupComposer() {
  const input = $("input");
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    submitMessage();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && turnActive()) {
      e.preventDefault();
      interrupt();
      return;
    }
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submitMessage();
    }
  });
  // Typing while the character speaks interrupts it (barge-in).
  input.addEventListener("input", () => {
    updateCount();
    if (input.value.trim() && liveTurn()) interrupt();
  });
  $("stop").addEventListener("click", () => {
    interrupt();
    input.focus();
  });
  $("new-chat").addEventListener("click", () => {
    storeSession(null);
    state.sessionId = null;
    player.stopAll();
    clearLog();
    reconnectNow(true);
  });
}

// ---------------------------------------------------------------- personas and speakers

function setPicker(kind, id) {
  state[kind] = id;
  for (const sel of kind === "speaker" ? [$("speaker"), $("tts-speaker")] : [$("persona")]) {
    if (![...sel.options].some((o) => o.value === id)) sel.append(new Option(id, id));
    if (sel.id !== "tts-speaker" || !sel.dataset.touched) sel.value = id;
  }
}

async function loadLists() {
  const prefs = loadPrefs();
  try {
    const [personas, speakers] = await Promise.all([api("personas"), api("speakers")]);
    state.personas = normalizeList(await personas.json());
    const speakerList = normalizeList(await speakers.json());
    fillSelect($("persona"), state.personas, state.persona || prefs.persona);
    fillSelect($("speaker"), speakerList, state.speaker || prefs.speaker);
    fillSelect($("tts-speaker"), speakerList, state.speaker || prefs.speaker);
  } catch (e) {
    if (e.code !== "unauthorized") showError(e); // the key prompt says it already
  }
}

function setupPickers() {
  $("persona").addEventListener("change", (e) => {
    const id = e.target.value;
    if (turnActive()) interrupt(); // the server ends the turn on a switch: silence it here too
    state.persona = id;
    const update = { type: "session.update", persona: id };
    const bound = state.personas.find((p) => p.id === id)?.speaker;
    if (bound && [...$("speaker").options].some((o) => o.value === bound)) {
      setPicker("speaker", bound);
      update.speaker = bound;
    }
    savePrefs({ persona: id, speaker: state.speaker });
    send(update);
  });
  $("speaker").addEventListener("change", (e) => {
    if (turnActive()) interrupt();
    state.speaker = e.target.value;
    savePrefs({ speaker: state.speaker });
    send({ type: "session.update", speaker: state.speaker });
  });
  $("tts-speaker").addEventListener("change", (e) => (e.target.dataset.touched = "1"));
}

// ---------------------------------------------------------------- tabs and settings

function setupSettings() {
  $("api-key").value = apiKey();
  $("settings-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setApiKey($("api-key").value.trim());
    $("settings-status").textContent = "Saved.";
    afterKeyChange();
  });
  $("api-key-clear").addEventListener("click", () => {
    $("api-key").value = "";
    setApiKey("");
    $("settings-status").textContent = "Cleared.";
  });
  $("error-close").addEventListener("click", clearError);
}

function afterKeyChange() {
  clearError();
  $("api-key").value = apiKey();
  loadLists();
  reconnectNow();
}

// ---------------------------------------------------------------- start

function main() {
  setupTabs();
  setupSettings();
  setupComposer();
  setupPickers();
  setupSpeech(showError);
  document.addEventListener("chat2audio:key", afterKeyChange);
  restoreLog();
  setMaxTextChars(state.maxTextChars);
  loadLimits();
  loadLists();
  connect();
  setInterval(tick, 50);
}

main();
