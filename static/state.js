// The chat page's shared state: the socket and session, the turns, and the one audio player.
// Every chat module imports it from here; nothing else is shared between them.
import { Player } from "./player.js";

export const state = {
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

export const player = new Player();

/** Sends a client event on the open socket; false (nothing sent) while there is none. */
export function send(ev) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
  state.ws.send(JSON.stringify(ev));
  return true;
}
