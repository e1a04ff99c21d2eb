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

/** @param {{role: string, who: string, text: string}[]} items */
export function saveLog(sessionId, items) {
  localStorage.setItem(LS_LOG, JSON.stringify({ session: sessionId, items: items.slice(-LOG_KEEP) }));
}

/** The saved messages when they belong to the stored session, else []. */
export function loadLog() {
  try {
    const saved = JSON.parse(localStorage.getItem(LS_LOG) || "null");
    return saved && saved.session === storedSession() ? saved.items || [] : [];
  } catch (_e) {
    return [];
  }
}

export function forgetLog() {
  localStorage.removeItem(LS_LOG);
}
