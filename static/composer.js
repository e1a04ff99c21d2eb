// The message box: sending a message, its length limit and counter, a refused message given back.
import { api } from "./api.js";
import { $ } from "./dom.js";
import { clearError, showError } from "./errors.js";
import { addMessage, persistLog } from "./log.js";
import { player, send, state } from "./state.js";
import { interrupt, liveTurn, turnActive, updateButtons } from "./turns.js";

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
export async function loadLimits() {
  try {
    const health = await (await api("health")).json();
    setMaxTextChars(health?.limits?.max_text_chars);
  } catch (_e) {
    /* keep the default */
  }
}

/** A refused input: its bubble says "not sent", it leaves the stored log, its text goes back to the box. */
export function giveBack(p) {
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

/** Wires the message box and its buttons; `onNewChat` is what the New chat button does. */
export function setupComposer(onNewChat) {
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
  $("new-chat").addEventListener("click", onNewChat);
}
