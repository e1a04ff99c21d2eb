// HTTP helpers: API key handling and errors in plain words.
// The page itself is public; the API may want a key (Bearer on fetch, ?api_key= on the WebSocket).

const LS_KEY = "chat2audio.api_key";

export class ApiError extends Error {
  constructor(code, message, status = 0) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

export function apiKey() {
  return localStorage.getItem(LS_KEY) || "";
}

export function setApiKey(key) {
  if (key) localStorage.setItem(LS_KEY, key);
  else localStorage.removeItem(LS_KEY);
}

/** URL of an endpoint relative to the page, so the app also works under a path prefix. */
export function httpUrl(path) {
  return new URL(path, document.baseURI).toString();
}

export function wsUrl(path) {
  const u = new URL(path, document.baseURI);
  u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  const key = apiKey();
  if (key) u.searchParams.set("api_key", key);
  return u.toString();
}

/** fetch with the key; non-2xx becomes an ApiError; 401/403 also asks the user for a key. */
export async function api(path, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let r;
  try {
    r = await fetch(httpUrl(path), { ...opts, headers });
  } catch (e) {
    throw new ApiError("network", `Cannot reach the server (${e.message}).`);
  }
  if (r.ok) return r;
  let code = `http_${r.status}`;
  let message = r.statusText || `HTTP ${r.status}`;
  try {
    const body = await r.json();
    const err = body.error || body;
    if (typeof err === "object") {
      code = err.code || code;
      message = err.message || (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail ?? err));
    }
  } catch (_e) {
    /* not JSON */
  }
  if (r.status === 401) {
    onKeyNeeded();
    code = "unauthorized";
  }
  throw new ApiError(code, message, r.status);
}

/** Show the key prompt; submitting it stores the key and fires `chat2audio:key` on document. */
export function onKeyNeeded() {
  const rejected = !!apiKey(); // a key was sent and refused
  const form = document.getElementById("key-form");
  const label = form.querySelector("label");
  label.textContent = rejected
    ? "The saved API key was not accepted. Enter a valid key:"
    : "This server needs an API key. Enter it to continue:";
  if (!form.hidden) return;
  form.hidden = false;
  const input = document.getElementById("key-prompt-input");
  input.value = "";
  input.focus();
  form.onsubmit = (e) => {
    e.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    setApiKey(key);
    form.hidden = true;
    document.dispatchEvent(new CustomEvent("chat2audio:key"));
  };
}

const PLAIN = {
  busy: "The server is busy right now. Please try again in a moment.",
  unauthorized: "An API key is needed (or the saved one was not accepted).",
  forbidden: "This API key is not allowed to do that.",
  network: "Cannot reach the server. Check your connection.",
  not_connected: "Not connected to the server yet. Wait a moment and try again.",
  text_too_long: "That text is too long. Please shorten it.",
  unknown_speaker: "That voice does not exist on the server.",
  unknown_persona: "That character does not exist on the server.",
  unsupported_language: "That language is not supported for this voice.",
  bad_reference_audio: "The voice's reference recording could not be used.",
  bad_speaker: "This voice is not configured correctly on the server.",
  tts_error: "Speech synthesis failed.",
  tts_failed: "Speech synthesis failed.",
  auth_failed: "The server could not log in to its language model.",
  connect_failed: "The server cannot reach its language model.",
  timeout: "The language model took too long to answer.",
  upstream_error: "The language model had an error.",
  bad_response: "The language model sent a reply the server could not read.",
  disconnected: "The language model stopped in the middle of the reply.",
  model_not_found: "The language model is not available on the server.",
  generation_failed: "The language model failed to write a reply.",
  llm_failed: "The language model failed to write a reply.",
  invalid_json: "The page sent something the server did not understand.",
  invalid_event: "The page sent something the server did not understand.",
  unknown_event: "The page sent something the server did not understand.",
  invalid_request: "Some values are not accepted.",
};

/** One sentence a person can act on; the server's own message follows when it adds detail. */
export function friendlyError(err) {
  const code = err.code || "error";
  const msg = err.message || "";
  const plain = PLAIN[code];
  if (!plain) return msg || `Something went wrong (${code}).`;
  return msg && msg !== plain ? `${plain} (${msg})` : plain;
}
