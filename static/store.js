// What the page remembers in localStorage: the session to resume, the picked persona and
// speaker, and the visible conversation (to show it again after a reload).

const LS_SESSION = "chat2audio.session_id";
const LS_PREFS = "chat2audio.prefs";
const LS_LOG = "chat2audio.log";
const LOG_KEEP = 60;

export function storedSession() {
  return localStorage.getItem(LS_SESSION);
}

export function storeSession(id) {
  if (id) localStorage.setItem(LS_SESSION, id);
  else localStorage.removeItem(LS_SESSION);
}

export function loadPrefs() {
  try {
    return JSON.parse(localStorage.getItem(LS_PREFS) || "{}");
  } catch (_e) {
    return {};
  }
}

export function savePrefs(patch) {
  localStorage.setItem(LS_PREFS, JSON.stringify({ ...loadPrefs(), ...patch }));
}

/**
 * @param {{role: string, who?: string, text: string}[]} items messages (role user/assistant) and
 *   dividers (role divider) in order
 * @param {string|null} persona the character the conversation is with now
 */
export function saveLog(sessionId, items, persona) {
  localStorage.setItem(LS_LOG, JSON.stringify({ session: sessionId, persona, items: items.slice(-LOG_KEEP) }));
}

/** The saved conversation when it belongs to the stored session, else an empty one. */
export function loadLog() {
  const none = { items: [], persona: null };
  try {
    const saved = JSON.parse(localStorage.getItem(LS_LOG) || "null");
    if (!saved || saved.session !== storedSession()) return none;
    return { items: saved.items || [], persona: saved.persona || null };
  } catch (_e) {
    return none;
  }
}

export function forgetLog() {
  localStorage.removeItem(LS_LOG);
}
