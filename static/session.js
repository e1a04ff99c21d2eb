// The session with the server: the WebSocket (connect, reconnect with backoff, the key it may need),
// the server's events dispatched to their handlers, and the session and error events themselves.
import { api, onKeyNeeded, wsUrl } from "./api.js";
import { giveBack } from "./composer.js";
import { $ } from "./dom.js";
import { showError } from "./errors.js";
import { clearLog, logItems, markNewConversation, notePersona } from "./log.js";
import { setPicker } from "./settings.js";
import { player, send, state } from "./state.js";
import { loadPrefs, savePrefs, storedSession, storeSession } from "./store.js";
import {
  abandonTurn, appendText, findTurn, onAudio, onSentence, onSentenceDone, onTag, onTurnDone, onTurnStarted, withTurn,
} from "./turns.js";

// ---------------------------------------------------------------- connection

function setConn(s, text) {
  state.connState = s;
  state.connected = s === "connected";
  $("conn").dataset.state = s;
  $("conn-text").textContent = text;
}

export function connect() {
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

export function reconnectNow(fresh = false) {
  state.fresh = fresh;
  const ws = state.ws;
  state.ws = null;
  if (ws) ws.close();
  abandonTurn();
  state.retry = 0;
  connect();
}

/** New chat: forget this conversation and connect for a new session. */
export function newChat() {
  storeSession(null);
  state.sessionId = null;
  player.stopAll();
  clearLog();
  reconnectNow(true);
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
  if (ev.resumed === false && [...logItems()].some((el) => el.classList.contains("msg"))) {
    // the same id, but the server no longer had the conversation (it restarted): say so
    markNewConversation("New conversation: the server no longer had the earlier one");
  }
  if (ev.persona) {
    setPicker("persona", ev.persona);
    notePersona(ev.persona);
  }
  if (ev.speaker) setPicker("speaker", ev.speaker);
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
