"""The web page in headless Chromium against the real app: chat with streamed text and audio,
Stop mid-reply, session resume, the Speech tab's download, server errors and the API-key flow,
refused messages given back, the text limit, character switches and reply tags.

The page exposes a read-only `window.chat2audioStatus` snapshot that these tests read."""
from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import pytest
import soundfile as sf

from tests.agent.fake_openai import FakeOpenAI, Reply

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

STATUS = "window.chat2audioStatus"
LAST_TURN = f"{STATUS}.turns[{STATUS}.turns.length - 1]"


def status(page) -> dict:
    return page.evaluate(STATUS)


def last_turn(page) -> dict:
    return page.evaluate(LAST_TURN)


def open_page(browser, url: str, width: int = 1000, height: int = 800, before=None, init_script: str | None = None):
    """A fresh browser context on the page; `init_script` runs in the page before its own scripts (e.g. to
    seed localStorage), `before(page)` runs before it loads (e.g. to route its socket)."""
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    if init_script is not None:
        page.add_init_script(init_script)
    if before is not None:
        before(page)
    page.goto(url)
    page.js_errors = errors  # checked by the tests: the page must not throw
    return context, page


def wait_connected(page, timeout_ms: int = 20000) -> None:
    page.wait_for_function(f"{STATUS}.connected && !!{STATUS}.sessionId", timeout=timeout_ms)


def say(page, fake_llm: FakeOpenAI, text: str, reply: Reply) -> None:
    """Send `text` from the message box, the LLM answering with `reply`, and wait until that turn is done."""
    fake_llm.script(reply)
    page.fill("#input", text)
    page.press("#input", "Enter")
    page.wait_for_function(f"(text) => {STATUS}.turns.length > 0 && {LAST_TURN}.userText === text && {LAST_TURN}.done",
                           arg=text, timeout=120000)


def stored_log(page) -> list[dict]:
    return page.evaluate("JSON.parse(localStorage.getItem('chat2audio.log') || '{\"items\": []}').items")


def refuse_inputs(page, refusals: dict[str, str]) -> None:
    """Route the page's WebSocket through the test: an input.text starting with a key of `refusals` is
    answered with that error code, as the server refuses one (no turn_id, no turn.started); every other
    message passes through to the real server."""
    def route(ws) -> None:
        server = ws.connect_to_server()

        def from_page(message) -> None:
            event = json.loads(message) if isinstance(message, str) else {}
            code = next((c for k, c in refusals.items() if event.get("type") == "input.text"
                         and event["text"].startswith(k)), None)
            if code is None:
                server.send(message)
            else:
                ws.send(json.dumps({"type": "error", "code": code, "message": f"refused by the test ({code})"}))

        ws.on_message(from_page)
        server.on_message(ws.send)

    page.route_web_socket(re.compile(r"/ws(\?.*)?$"), route)


def pick(page, select_id: str, wanted: str) -> None:
    """Select the option whose value is `wanted` (case-insensitive)."""
    page.wait_for_function(f"document.querySelectorAll('#{select_id} option').length > 0 && "
                           f"[...document.querySelectorAll('#{select_id} option')].some(o => o.value)")
    values = page.eval_on_selector_all(f"#{select_id} option", "os => os.map(o => o.value)")
    match = [v for v in values if v.lower() == wanted.lower()]
    assert match, f"{wanted!r} not offered in #{select_id}: {values}"
    page.select_option(f"#{select_id}", match[0])


def test_chat_stream_then_stop(browser, app_server, fake_llm: FakeOpenAI, shots: Path) -> None:
    context, page = open_page(browser, app_server.url)
    try:
        wait_connected(page)
        pick(page, "persona", "nahida")
        pick(page, "speaker", "Nahida")
        page.wait_for_function(f"{STATUS}.speaker.toLowerCase() === 'nahida' && {STATUS}.persona === 'nahida'")
        page.screenshot(path=str(shots / "01-loaded.png"))

        gone_before = fake_llm.client_gone
        page.fill("#input", "Hello, Nahida!")
        page.press("#input", "Enter")  # Enter sends
        assert page.input_value("#input") == ""
        page.wait_for_selector(".msg.user >> text=Hello, Nahida!")

        # Text arrives as it is written, sentences are announced, audio gets scheduled.
        page.wait_for_function(f"{STATUS}.turns.length > 0 && {LAST_TURN}.text.length > 0", timeout=60000)
        page.wait_for_function(f"{LAST_TURN}.sentences.length >= 1 && {LAST_TURN}.audioChunksScheduled >= 2",
                               timeout=180000)
        t = last_turn(page)
        assert t["firstAudioMs"] is not None and t["firstAudioMs"] > 0
        assert t["scheduledMs"] > 0 and t["sentences"][0]["text"]
        # The sentence being heard is highlighted while it plays.
        page.wait_for_selector(".msg.assistant .sent.speaking", timeout=60000)
        page.screenshot(path=str(shots / "02-replying.png"))
        assert "sentence number 1" in page.inner_text("#log").lower()
        assert page.is_enabled("#stop")
        _assert_gapless(last_turn(page))

        # Stop: audio stops at once, the turn is marked interrupted, nothing more is scheduled.
        assert not last_turn(page)["done"], "the scripted reply is long: Stop must land mid-reply"
        page.click("#stop")
        after = status(page)
        assert after["playing"] is False
        t = after["turns"][-1]
        assert t["interrupted"] is True
        chunks = t["audioChunksScheduled"]
        page.wait_for_function(f"{LAST_TURN}.done && {LAST_TURN}.serverInterrupted", timeout=15000)
        time.sleep(0.5)
        t = last_turn(page)
        assert t["audioChunksScheduled"] == chunks, "audio kept coming after Stop"
        assert status(page)["playing"] is False
        deadline = time.monotonic() + 10
        while fake_llm.client_gone <= gone_before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fake_llm.client_gone > gone_before, "the server did not stop the LLM stream"
        assert page.locator(".msg.assistant.interrupted").count() == 1
        assert "interrupted" in page.inner_text(".msg.assistant.interrupted .meta")
        assert not page.is_enabled("#stop")
        page.screenshot(path=str(shots / "03-stopped.png"))

        # The session survives a reload: same session id, the conversation is shown again.
        session_id = status(page)["sessionId"]
        page.reload()
        wait_connected(page)
        page.wait_for_function(f"{STATUS}.sessionId === '{session_id}'", timeout=10000)
        assert page.locator(".msg.user").count() >= 1
        assert page.js_errors == []
    finally:
        context.close()


def _assert_gapless(turn: dict) -> None:
    """Chunks that arrived ahead of playback start exactly where the previous one ends."""
    starts, durations = turn["chunkStarts"], turn["chunkDurations"]
    assert len(starts) == turn["audioChunksScheduled"] >= 2
    contiguous = sum(abs(starts[i] - (starts[i - 1] + durations[i - 1])) < 1e-6 for i in range(1, len(starts)))
    assert contiguous + turn["underruns"] == len(starts) - 1


def test_typing_interrupts_speech(browser, app_server, shots: Path) -> None:
    context, page = open_page(browser, app_server.url, width=390, height=844)  # phone width
    try:
        wait_connected(page)
        page.fill("#input", "Tell me a story.")
        page.press("#input", "Enter")
        page.wait_for_function(f"{STATUS}.turns.length > 0 && {LAST_TURN}.audioChunksScheduled >= 1", timeout=120000)
        page.screenshot(path=str(shots / "06-phone-chat.png"))
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
        page.type("#input", "W")  # barge-in: the first keystroke silences the character
        page.wait_for_function(f"{LAST_TURN}.interrupted", timeout=5000)
        assert status(page)["playing"] is False
        page.wait_for_function(f"{LAST_TURN}.done", timeout=15000)
        assert page.input_value("#input") == "W"

        # Esc stops too, even before the reply has begun.
        turns = len(status(page)["turns"])
        page.fill("#input", "One more thing.")
        page.press("#input", "Enter")
        page.press("#input", "Escape")
        page.wait_for_function(f"{STATUS}.turns.length > {turns} && {LAST_TURN}.done", timeout=30000)
        t = last_turn(page)
        assert t["interrupted"] and t["serverInterrupted"]
        time.sleep(0.3)
        assert status(page)["playing"] is False and not page.is_enabled("#stop")
        assert page.js_errors == []
    finally:
        context.close()


def test_speech_tab_download(browser, app_server, shots: Path, tmp_path: Path) -> None:
    context, page = open_page(browser, app_server.url, width=390, height=844)  # phone width
    try:
        page.click("#tab-speech")
        assert page.is_visible("#panel-speech") and not page.is_visible("#panel-chat")
        pick(page, "tts-speaker", "Nahida")
        page.fill("#tts-text", "Hello there. This line is for a game.")
        page.select_option("#tts-lang", "en")
        page.fill("#tts-seed", "7")
        for fmt in ("wav", "flac"):
            page.select_option("#tts-format", fmt)
            page.click("#tts-go")
            page.wait_for_function("document.getElementById('tts-status').textContent.startsWith('Done')",
                                   timeout=120000)
            with page.expect_download() as info:
                page.click("#tts-download")
            target = tmp_path / f"speech.{fmt}"
            info.value.save_as(target)
            assert info.value.suggested_filename.endswith(f".{fmt}")
            pcm, sr = sf.read(io.BytesIO(target.read_bytes()))
            assert sr > 0 and len(pcm) > 0
        page.screenshot(path=str(shots / "04-speech.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert page.js_errors == []
    finally:
        context.close()


def test_server_error_in_plain_words(browser, app_server, fake_llm: FakeOpenAI) -> None:
    context, page = open_page(browser, app_server.url)
    try:
        wait_connected(page)
        fake_llm.script(Reply(status=401))  # the LLM refuses: not retried, the turn fails
        page.fill("#input", "Are you there?")
        page.press("#input", "Enter")
        page.wait_for_selector("#error:not([hidden])", timeout=60000)
        assert "language model" in page.inner_text("#error-text")  # plain words, not a code
        assert status(page)["lastError"]["code"] == "auth_failed"
        assert status(page)["connected"] is True  # the connection stays up
    finally:
        context.close()


def test_stale_choice_is_dropped(browser, app_server) -> None:
    """A remembered voice the server no longer has: said in plain words, then the page carries on."""
    script = "localStorage.setItem('chat2audio.prefs', JSON.stringify({speaker: 'Gone'}))"
    context, page = open_page(browser, app_server.url, init_script=script)
    try:
        wait_connected(page)
        page.wait_for_selector("#error:not([hidden])", timeout=10000)
        assert "voice does not exist" in page.inner_text("#error-text")
        assert status(page)["lastError"]["code"] == "unknown_speaker"
        assert status(page)["speaker"] != "Gone"
        assert page.evaluate("JSON.parse(localStorage.getItem('chat2audio.prefs')).speaker") == ""
    finally:
        context.close()


def test_forgotten_session_is_marked(browser, app_server) -> None:
    """A stored conversation the server no longer has (it restarted): resuming its id starts an empty
    session (`resumed: false`), and the log says that the earlier messages are not remembered."""
    items = [{"role": "user", "who": "You", "text": "记住我"}, {"role": "assistant", "who": "纳西妲", "text": "好的。"}]
    log = {"session": "gone-session-1", "persona": "nahida", "items": items}
    script = ("localStorage.setItem('chat2audio.session_id', 'gone-session-1');"
              f"localStorage.setItem('chat2audio.log', {json.dumps(json.dumps(log))})")
    context, page = open_page(browser, app_server.url, init_script=script)
    try:
        wait_connected(page)
        page.wait_for_selector(".divider", timeout=10000)
        assert "no longer had" in page.inner_text(".divider")
        assert status(page)["sessionId"] == "gone-session-1"
        assert [it["role"] for it in stored_log(page)] == ["user", "assistant", "divider"]
        assert page.js_errors == []
    finally:
        context.close()


def test_api_key_flow(browser, keyed_server, shots: Path) -> None:
    context, page = open_page(browser, keyed_server.url)
    try:
        # The page itself is public; the API asks for a key.
        page.wait_for_selector("#key-form:not([hidden])", timeout=20000)
        page.screenshot(path=str(shots / "05-key-prompt.png"))
        page.fill("#key-prompt-input", "wrong-key")
        page.press("#key-prompt-input", "Enter")
        page.wait_for_function("document.querySelector('#key-form label').textContent.includes('not accepted')",
                               timeout=20000)
        assert not status(page)["connected"]
        page.fill("#key-prompt-input", "web-test-key")
        page.press("#key-prompt-input", "Enter")
        wait_connected(page)
        pick(page, "speaker", "Nahida")
        assert page.is_hidden("#key-form")
        assert page.evaluate("localStorage.getItem('chat2audio.api_key')") == "web-test-key"
        # Kept across a reload: no prompt the second time.
        page.reload()
        wait_connected(page)
        assert page.is_hidden("#key-form")
        assert page.js_errors == []
    finally:
        context.close()


# Renders the page's player offline: a sine cut into uneven chunks must come out unbroken
# (no gaps, no fades, no clicks at chunk edges). Returns the largest sample error.
PLAYER_RENDER = """async (sizes) => {
  const { Player } = await import("./static/player.js");
  const rate = 32000, n = rate;
  const ctx = new OfflineAudioContext(1, 2 * rate, rate);
  const player = new Player({ makeContext: () => ctx });
  const sine = Float32Array.from({ length: n }, (_, i) => 0.5 * Math.sin(2 * Math.PI * 220 * i / rate));
  const starts = [];
  for (let pos = 0, k = 0; pos < n; k++) {
    const m = Math.min(sizes[k % sizes.length], n - pos);
    starts.push(player.schedule(sine.slice(pos, pos + m), rate));
    pos += m;
  }
  const out = (await ctx.startRendering()).getChannelData(0);
  const off = Math.round(starts[0].start * rate);
  let maxErr = 0;
  for (let i = 200; i < n - 200; i++) maxErr = Math.max(maxErr, Math.abs(out[off + i] - sine[i]));
  const before = Math.max(...out.slice(0, off - 1).map(Math.abs));
  return { maxErr, before, gaps: starts.filter((s) => s.gap).length };
}"""


def test_player_is_gapless(browser, app_server) -> None:
    context, page = open_page(browser, app_server.url)
    try:
        got = page.evaluate(PLAYER_RENDER, [1000, 2560, 777, 4000, 12001, 333])
        assert got["gaps"] == 1  # only the first chunk starts after a lead
        assert got["before"] == 0
        assert got["maxErr"] < 1e-3, got
    finally:
        context.close()


def test_message_box_keeps_to_the_server_limit(browser, app_server) -> None:
    """The box takes at most the server's limits.max_text_chars (2000 by default) and says so near it."""
    context, page = open_page(browser, app_server.url)
    try:
        wait_connected(page)
        assert page.get_attribute("#input", "maxlength") == "2000"
        assert page.is_hidden("#input-count")
        page.focus("#input")
        page.keyboard.insert_text("长" * 2100)
        assert len(page.input_value("#input")) == 2000
        assert page.is_visible("#input-count")
        assert "2000 / 2000" in page.inner_text("#input-count")
        assert page.js_errors == []
    finally:
        context.close()


def test_refused_input_is_given_back(browser, app_server, fake_llm: FakeOpenAI, shots: Path) -> None:
    """A message the server refuses before its turn starts is marked "not sent", is not kept in the
    stored log, and its text goes back into the box; the next message is answered as usual."""
    refusals = {"TOO LONG": "text_too_long", "BUSY": "busy"}
    context, page = open_page(browser, app_server.url, before=lambda p: refuse_inputs(p, refusals))
    try:
        wait_connected(page)
        for text, code in [("TOO LONG: " + "a long story " * 20, "text_too_long"), ("BUSY: are you there?", "busy")]:
            page.fill("#input", text)
            page.press("#input", "Enter")
            page.wait_for_selector("#error:not([hidden])", timeout=10000)
            assert status(page)["lastError"]["code"] == code
            page.wait_for_function("document.getElementById('input').value.length > 0", timeout=5000)
            assert page.input_value("#input") == text.strip()
            unsent = page.locator(".msg.user.unsent")
            assert unsent.last.inner_text().count(text.strip()[:20]) == 1
            assert "not sent" in unsent.last.locator(".meta").inner_text().lower()
            assert all(text.strip() != it["text"] for it in stored_log(page))
            assert not page.is_enabled("#stop")
            page.fill("#input", "")
        page.screenshot(path=str(shots / "07-refused.png"))
        assert page.locator(".msg.user.unsent").count() == 2

        # The next message goes through and its reply belongs to it.
        say(page, fake_llm, "Hello again.", Reply.text("Yes, I am here.", token_chars=4, token_interval=0.01))
        assert last_turn(page)["userText"] == "Hello again."
        assert [it["text"] for it in stored_log(page) if it["role"] == "user"] == ["Hello again."]
        page.reload()
        wait_connected(page)
        assert page.locator(".msg.user").count() == 1  # the refused ones are not shown again
        assert page.js_errors == []
    finally:
        context.close()


def test_switching_character_starts_a_new_conversation(browser, app_server, fake_llm: FakeOpenAI,
                                                       shots: Path) -> None:
    """The server forgets the conversation when the character changes: the log says so with a divider
    (earlier messages stay visible), and a reload shows the same."""
    context, page = open_page(browser, app_server.url)
    try:
        wait_connected(page)
        pick(page, "persona", "nahida")
        page.wait_for_function(f"{STATUS}.persona === 'nahida'")
        say(page, fake_llm, "Remember: my name is Aether.",
            Reply.text("你好呀，旅行者。", token_chars=3, token_interval=0.01))
        assert page.locator(".divider").count() == 0

        pick(page, "persona", "tavern-keeper")
        page.wait_for_selector(".divider", timeout=10000)
        assert "new conversation with marta the tavern keeper" in page.inner_text(".divider").lower()
        assert page.locator(".msg.user").count() == 1  # the earlier conversation stays visible
        # Switching again before saying anything: still one divider, naming the newest character.
        pick(page, "persona", "sensei")
        page.wait_for_function("document.querySelector('.divider').textContent.includes('先生')", timeout=10000)
        assert page.locator(".divider").count() == 1
        log = page.evaluate("JSON.parse(localStorage.getItem('chat2audio.log'))")
        assert [it["role"] for it in log["items"]] == ["user", "assistant", "divider"]
        assert log["persona"] == "sensei"

        say(page, fake_llm, "What is my name?", Reply.text("こんにちは。", token_chars=3, token_interval=0.01))
        sent = json.dumps(fake_llm.requests[-1]["messages"], ensure_ascii=False)
        assert "Aether" not in sent, "the server was expected to start a fresh history on the switch"
        page.screenshot(path=str(shots / "08-new-character.png"))

        # A reload resumes the session and shows the same log: one divider, in the same place.
        session_id = status(page)["sessionId"]
        page.reload()
        wait_connected(page)
        page.wait_for_function(f"{STATUS}.sessionId === '{session_id}' && {STATUS}.persona === 'sensei'",
                               timeout=10000)
        time.sleep(0.3)
        kinds = page.eval_on_selector_all("#log > *", "els => els.map(e => e.className)")
        assert [k.split()[0] + ("." + k.split()[1] if k.startswith("msg") else "") for k in kinds] == [
            "msg.user", "msg.assistant", "divider", "msg.user", "msg.assistant"]
        assert "先生" in page.inner_text(".divider")
        assert page.js_errors == []
    finally:
        context.close()


# visibleText (static/text.js) on every prefix of each reply, as if it streamed one character at a time:
# the shown text must only grow (a tag split across deltas never flashes up), and end as expected.
TEXT_CASES = {
    "[emotion:happy]你好呀。（微笑）我很高兴。": "你好呀。（微笑）我很高兴。",
    "[Emotion:happy][mood = calm ]好的。": "好的。",
    "Hi [emo:sad] there. [laughs] *waves*": "Hi  there. [laughs] *waves*",
    "价格是[3]元，[注意]这个。": "价格是[3]元，[注意]这个。",
    "A [note] and [a [b] c].": "A [note] and [a [b] c].",
    "到最后[emotion:sad": "到最后[emotion:sad",  # never closed: it was text after all
}
VISIBLE_TEXT = """async (cases) => {
  const { visibleText } = await import("./static/text.js");
  return Object.keys(cases).map((raw) => {
    const shown = visibleText(raw, true);
    let prev = "", grows = true;
    for (let i = 0; i <= raw.length; i++) {
      const v = visibleText(raw.slice(0, i));
      grows = grows && v.startsWith(prev) && shown.startsWith(v);
      prev = v;
    }
    return { raw, shown, grows };
  });
}"""


def test_visible_text_hides_tags(browser, app_server) -> None:
    context, page = open_page(browser, app_server.url)
    try:
        for got in page.evaluate(VISIBLE_TEXT, TEXT_CASES):
            assert got["shown"] == TEXT_CASES[got["raw"]], got
            assert got["grows"], got
    finally:
        context.close()


# Records whether a reply bubble ever showed a tag while the reply streamed in.
WATCH_TAGS = """() => {
  window.tagSeen = false;
  new MutationObserver(() => {
    for (const b of document.querySelectorAll(".msg.assistant .body"))
      if (/\\[(emotion|mood)/.test(b.textContent)) window.tagSeen = true;
  }).observe(document.getElementById("log"), { childList: true, subtree: true, characterData: true });
}"""


def test_reply_tags_become_badges(browser, app_server, fake_llm: FakeOpenAI, shots: Path) -> None:
    """`[emotion:...]` tags are not shown as text (even split across deltas); they become badges.
    Stage directions stay."""
    context, page = open_page(browser, app_server.url)
    try:
        wait_connected(page)
        page.evaluate(WATCH_TAGS)
        reply = "[emotion:happy]你好呀。（微笑）我很高兴。[emotion:sad]可是我要走了。"
        # each tag spans several deltas
        say(page, fake_llm, "你好", Reply.text(reply, token_chars=4, token_interval=0.02))
        assert page.inner_text(".msg.assistant .body") == "你好呀。（微笑）我很高兴。可是我要走了。"
        t = last_turn(page)
        assert t["text"] == reply  # the raw text as sent
        assert t["tags"] == ["happy", "sad"]
        assert page.eval_on_selector_all(".msg.assistant .tag", "bs => bs.map(b => b.textContent)") == ["happy", "sad"]
        assert page.evaluate("window.tagSeen") is False
        page.screenshot(path=str(shots / "09-tags.png"))

        page.reload()
        wait_connected(page)
        assert page.inner_text(".msg.assistant .body") == "你好呀。（微笑）我很高兴。可是我要走了。"
        assert page.eval_on_selector_all(".msg.assistant .tag", "bs => bs.map(b => b.textContent)") == ["happy", "sad"]
        assert page.js_errors == []
    finally:
        context.close()


def test_limit_from_health_and_new_chat(browser, app_server, fake_llm: FakeOpenAI) -> None:
    """The boxes follow the limit /health reports (the Speech tab's POST /tts has the same one); New chat
    leaves an empty log that says what to do."""
    def small_limit(page) -> None:
        page.route("**/health", lambda route: route.fulfill(json={"status": "ok", "limits": {"max_text_chars": 50}}))

    context, page = open_page(browser, app_server.url, before=small_limit)
    try:
        wait_connected(page)
        page.wait_for_function("document.getElementById('input').maxLength === 50", timeout=10000)
        assert page.evaluate("document.getElementById('tts-text').maxLength") == 50
        page.focus("#input")
        page.keyboard.insert_text("x" * 60)
        assert page.input_value("#input") == "x" * 50
        assert "50 / 50" in page.inner_text("#input-count")
        page.fill("#input", "")
        assert page.is_hidden("#input-count")

        say(page, fake_llm, "Hi", Reply.text("Hello.", token_chars=3, token_interval=0.01))
        session_id = status(page)["sessionId"]
        page.click("#new-chat")
        page.wait_for_function(f"{STATUS}.connected && {STATUS}.sessionId && {STATUS}.sessionId !== '{session_id}'",
                               timeout=20000)
        assert page.locator("#log .msg").count() == 0
        assert page.is_visible("#log-hint")
        assert page.js_errors == []
    finally:
        context.close()
