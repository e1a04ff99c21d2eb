// The error banner above the panels.
import { friendlyError } from "./api.js";
import { $ } from "./dom.js";
import { state } from "./state.js";

export function showError(err) {
  state.lastError = { code: err.code || "error", message: err.message || String(err) };
  if (state.lastError.code === "unauthorized") return; // the key prompt says it
  $("error-text").textContent = friendlyError(state.lastError);
  $("error").hidden = false;
}

export function clearError() {
  $("error").hidden = true;
}

export function setupErrors() {
  $("error-close").addEventListener("click", clearError);
}
