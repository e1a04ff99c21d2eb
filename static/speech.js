// The "Speech" tab (TTS only, for auditioning lines), the tab strip, and the pickers' lists.
import { api } from "./api.js";
import { $ } from "./dom.js";

export function setupSpeech(showError) {
  $("speech-form").addEventListener("submit", (e) => synthesize(e, showError));
}

let lastUrl = null;
async function synthesize(e, showError) {
  e.preventDefault();
  const fmt = $("tts-format").value;
  const speaker = $("tts-speaker").value;
  const num = (id) => Number($(id).value);
  const body = {
    text: $("tts-text").value,
    text_lang: $("tts-lang").value,
    speaker,
    speed_factor: num("tts-speed"),
    top_k: num("tts-topk"),
    top_p: num("tts-topp"),
    temperature: num("tts-temp"),
    seed: num("tts-seed"),
    media_type: fmt,
  };
  const status = $("tts-status");
  status.textContent = "Synthesizing…";
  $("tts-go").disabled = true;
  const t0 = performance.now();
  try {
    const headers = { "Content-Type": "application/json" };
    const r = await api("tts", { method: "POST", body: JSON.stringify(body), headers });
    const blob = await r.blob();
    if (lastUrl) URL.revokeObjectURL(lastUrl);
    lastUrl = URL.createObjectURL(blob);
    const audio = $("tts-audio");
    audio.src = lastUrl;
    audio.hidden = false;
    const dl = $("tts-download");
    dl.href = lastUrl;
    dl.download = `${speaker || "speech"}-${Date.now()}.${fmt}`;
    dl.hidden = false;
    status.textContent = `Done in ${Math.round(performance.now() - t0)} ms (${Math.round(blob.size / 1024)} KiB).`;
    audio.play().catch(() => {});
  } catch (err) {
    status.textContent = "Failed.";
    if (err.code !== "unauthorized") showError(err);
  } finally {
    $("tts-go").disabled = false;
  }
}

export function setupTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (tab) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (e) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      select(next);
      next.focus();
    });
  });
}

/** Lists come as arrays of ids or objects, possibly wrapped ({personas: [...]}, {data: [...]}). */
export function normalizeList(body) {
  let list = body;
  if (!Array.isArray(list) && list && typeof list === "object") {
    const key = ["personas", "speakers", "voices", "data", "items"].find((k) => Array.isArray(list[k]));
    list = key ? list[key] : Object.entries(list).map(([id, v]) => ({ id, ...(typeof v === "object" ? v : {}) }));
  }
  return (list || []).map((x) => {
    if (typeof x === "string") return { id: x, label: x };
    const id = x.id ?? x.name ?? x.speaker ?? x.voice_id;
    return {
      id, label: x.display_name || x.name || id, speaker: x.speaker || x.default_speaker || x.voice || null,
      error: x.error || null,
    };
  });
}

export function fillSelect(sel, items, current) {
  sel.replaceChildren(...items.map((it) => {
    const label = it.label === it.id ? it.id : `${it.label} (${it.id})`;
    const opt = new Option(it.error ? `${label} — unavailable` : label, it.id);
    if (it.error) {
      opt.disabled = true;
      opt.title = it.error;
    }
    return opt;
  }));
  if (current && items.some((it) => it.id === current)) sel.value = current;
}
