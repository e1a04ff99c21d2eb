// The conversation log: its message bubbles and dividers, and the copy of it kept in
// localStorage (to show it again after a reload).
import { $ } from "./dom.js";
import { state } from "./state.js";
import { forgetLog, loadLog, saveLog } from "./store.js";
import { visibleText } from "./text.js";

export function addMessage(role, text) {
  const el = document.createElement("article");
  el.className = `msg ${role}`;
  const head = document.createElement("div");
  head.className = "head";
  const who = document.createElement("h2");
  who.className = "who";
  who.textContent = role === "user" ? "You" : personaName(state.persona);
  const tags = document.createElement("span");
  tags.className = "tags";
  head.append(who, tags);
  const body = document.createElement("p");
  body.className = "body";
  body.textContent = text;
  const meta = document.createElement("p");
  meta.className = "meta";
  el.append(head, body, meta);
  return appendToLog(el);
}

function addDivider(text) {
  const el = document.createElement("div");
  el.className = "divider";
  const main = document.createElement("p");
  main.className = "divider-text";
  main.textContent = text;
  const note = document.createElement("p");
  note.className = "divider-note";
  note.textContent = "Earlier messages are not remembered.";
  el.append(main, note);
  return appendToLog(el);
}

/** Adds `el` at the end of the log (which then no longer needs its hint) and scrolls to it. */
function appendToLog(el) {
  $("log-hint")?.remove();
  $("log").append(el);
  el.scrollIntoView({ block: "end" });
  return el;
}

/** What the log keeps: the dividers and the messages that were sent (or answered). */
export function logItems() {
  return $("log").querySelectorAll(".msg:not(.unsent), .divider");
}

/** Badges for the reply's tags (e.g. its emotions), after the speaker's name. */
export function renderTags(el, labels) {
  const box = el.querySelector(".tags");
  box.replaceChildren(...labels.map((label) => {
    const b = document.createElement("span");
    b.className = "tag";
    b.textContent = label;
    return b;
  }));
  box.title = labels.length ? `Tags in this reply: ${labels.join(", ")}` : "";
}

/** A character's name as shown: its label where the list has one, else its id ("Character" for none). */
function personaName(id) {
  if (!id) return "Character";
  return state.personas.find((x) => x.id === id)?.label || id;
}

/**
 * The server confirmed the session's character. Another one than the shown conversation's means a
 * new conversation: the server dropped the history on the switch, so the log says so with a divider
 * (kept in the stored log). However it came (the picker, a voice bound to another character, a resume
 * with a remembered choice), the rule is the same.
 */
export function notePersona(id) {
  const was = state.logPersona;
  state.logPersona = id;
  if (!was || was === id) return;
  markNewConversation(`New conversation with ${personaName(id)}`);
}

/**
 * Says in the log that a new conversation starts here (kept in the stored log): a trailing divider
 * (nothing said since it) is reworded, else one is added. A log with nothing in it gets none.
 */
export function markNewConversation(text) {
  const last = [...logItems()].at(-1);
  if (!last) return; // nothing said yet: nothing to separate
  if (last.classList.contains("divider")) {
    last.querySelector(".divider-text").textContent = text;
  } else {
    addDivider(text);
  }
  persistLog();
}

export function persistLog() {
  const items = [...logItems()].map((el) =>
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

export function restoreLog() {
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

export function clearLog() {
  const hint = document.createElement("p");
  hint.className = "hint";
  hint.id = "log-hint";
  hint.textContent = "Say something to start talking.";
  $("log").replaceChildren(hint);
  state.logPersona = null;
  forgetLog();
}
