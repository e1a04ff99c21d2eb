// The session's settings: the character and voice pickers (their lists, and the server's choice
// shown in them) and the API key form on the Settings tab.
import { api, apiKey, setApiKey } from "./api.js";
import { $ } from "./dom.js";
import { clearError, showError } from "./errors.js";
import { fillSelect, normalizeList } from "./speech.js";
import { send, state } from "./state.js";
import { loadPrefs, savePrefs } from "./store.js";
import { interrupt, turnActive } from "./turns.js";

export function setPicker(kind, id) {
  state[kind] = id;
  for (const sel of kind === "speaker" ? [$("speaker"), $("tts-speaker")] : [$("persona")]) {
    if (![...sel.options].some((o) => o.value === id)) sel.append(new Option(id, id));
    if (sel.id !== "tts-speaker" || !sel.dataset.touched) sel.value = id;
  }
}

export async function loadLists() {
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

export function setupPickers() {
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

// ---------------------------------------------------------------- API key

/**
 * Wires the Settings tab's key form. A new key, from it or from the key prompt (`chat2audio:key`),
 * reloads the lists and has `reconnect` open the socket again with it.
 */
export function setupSettings(reconnect) {
  const afterKeyChange = () => {
    clearError();
    $("api-key").value = apiKey();
    loadLists();
    reconnect();
  };
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
  document.addEventListener("chat2audio:key", afterKeyChange);
}
