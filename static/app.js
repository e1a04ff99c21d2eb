// chat2audio web page: live voice chat over WS /ws and a TTS-only "Speech" tab.
// Plain ES module, no build step. Protocol: docs/protocol.md.
//
// This module starts the page; the chat lives in modules of its own, all sharing state.js:
//   session.js   the WebSocket and the server's session/error events
//   turns.js     a reply turn: streamed text, audio scheduling, barge-in
//   log.js       the conversation log's DOM and its stored copy
//   composer.js  the message box and its limit
//   settings.js  the character/voice pickers and the API key form
//   errors.js    the error banner
//   status.js    window.chat2audioStatus for the browser tests
//   dom.js       $(id), the element with that id
import { setupSpeech, setupTabs } from "./speech.js";
import { loadLimits, setupComposer } from "./composer.js";
import { setupErrors, showError } from "./errors.js";
import { restoreLog } from "./log.js";
import { connect, newChat, reconnectNow } from "./session.js";
import { loadLists, setupPickers, setupSettings } from "./settings.js";
import { exposeStatus } from "./status.js";
import { tick } from "./turns.js";

function main() {
  exposeStatus();
  setupTabs();
  setupSettings(reconnectNow);
  setupErrors();
  setupComposer(newChat);
  setupPickers();
  setupSpeech(showError);
  restoreLog();
  loadLimits();
  loadLists();
  connect();
  setInterval(tick, 50);
}

main();
