"""Chat LLM backends behind one protocol: an async stream of text deltas, cancellable.

- `OpenAIClient`: streaming /chat/completions (SSE) against vLLM, Ollama's /v1, llama.cpp server or
  any OpenAI-compatible server.
- `TransformersClient`: in-process generation with transformers (the embedded default);
  torch and transformers are imported on first use only.
- `VLLMServer`: starts vLLM's OpenAI-compatible server (in its own Python) and waits for /health.

Reasoning (`reasoning_content`, `<think>` blocks) is never yielded as text. Closing the async
generator, or cancelling the task iterating it, stops the HTTP stream or the generation.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from agent.stripper import ThinkFilter

log = logging.getLogger(__name__)


LLM_ERROR_CODES = frozenset({"connect_failed", "timeout", "upstream_error", "bad_response", "auth_failed",
                             "bad_request", "disconnected", "generation_failed", "vllm_start_failed",
                             "model_not_found", "llm_failed"})


class LLMError(Exception):
    """A failure of the chat LLM; `code` is one of LLM_ERROR_CODES, `status` the HTTP status if one came."""

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class LLMParams:
    """Sampling parameters of one request (from the persona)."""

    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 512
    repetition_penalty: float | None = None  # vLLM extra; None = the server's default
    stop: tuple[str, ...] = ()
    enable_thinking: bool = False
    seed: int | None = None


@dataclass(frozen=True)
class LLMTimeouts:
    """Seconds. `read` is the longest silence of a stream: since the request or the last text delta
    (keep-alive comments, empty or role-only deltas and reasoning are silence)."""

    connect: float = 5.0
    read: float = 60.0
    write: float = 10.0
    pool: float = 10.0


class LLMClient(Protocol):
    def stream(self, messages: list[dict], params: LLMParams) -> AsyncIterator[str]:
        """Text deltas of the assistant reply (never reasoning)."""
        ...

    async def aclose(self) -> None: ...


# -- OpenAI-compatible over HTTP ------------------------------------------------------------------


class _Retryable(Exception):
    def __init__(self, error: LLMError):
        self.error = error


class OpenAIClient:
    """Streaming chat completions over httpx with SSE parsing.

    Args:
        base_url: the API root including /v1, e.g. http://127.0.0.1:8001/v1.
        model: the served model name ("" = ask /models and use the first).
        api_key: sent as `Authorization: Bearer <key>` when set.
        retries: attempts after the first, only before the first token arrives (with backoff), for
            connection failures, dropped streams and HTTP 5xx/429; a read timeout is not retried.
            Each retry and each failed `stream` call logs one warning (never the API key).
        vllm_extras: send vLLM's extra body fields (repetition_penalty, chat_template_kwargs);
            turn off for servers that reject unknown fields.
    """

    def __init__(self, base_url: str, model: str = "", api_key: str | None = None,
                 timeouts: LLMTimeouts | None = None, retries: int = 2, backoff_s: float = 0.25,
                 vllm_extras: bool = True, extra_body: dict[str, Any] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.retries, self.backoff_s = retries, backoff_s
        self.vllm_extras = vllm_extras
        self.extra_body = dict(extra_body or {})
        t = timeouts or LLMTimeouts()
        self.silence_s, self._key = t.read, api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool),
            headers=headers, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def list_models(self) -> list[str]:
        """Model ids served at /models (vLLM, Ollama and llama.cpp all answer it)."""
        try:
            r = await self._http.get(f"{self.base_url}/models")
        except httpx.TimeoutException as e:
            raise LLMError("timeout", f"GET {self.base_url}/models timed out") from e
        except httpx.TransportError as e:
            raise LLMError("connect_failed", f"cannot reach {self.base_url}: {e!r}") from e
        _raise_for_status(r.status_code, r.text)
        try:
            return [str(m["id"]) for m in r.json()["data"]]
        except (ValueError, KeyError, TypeError) as e:
            raise LLMError("bad_response", f"unexpected /models answer: {r.text[:200]!r}") from e

    async def resolve_model(self) -> str:
        """The configured model, or the first one the server lists."""
        if not self.model:
            models = await self.list_models()
            if not models:
                raise LLMError("model_not_found", f"{self.base_url}/models lists no model")
            self.model = models[0]
        return self.model

    def request_body(self, messages: list[dict], params: LLMParams, stream: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": stream,
                                "temperature": params.temperature, "top_p": params.top_p,
                                "max_tokens": params.max_tokens}
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if self.vllm_extras:
            if params.repetition_penalty is not None:
                body["repetition_penalty"] = params.repetition_penalty
            body["chat_template_kwargs"] = {"enable_thinking": params.enable_thinking}
        body.update(self.extra_body)
        return body

    async def stream(self, messages: list[dict], params: LLMParams) -> AsyncIterator[str]:
        attempt = 0
        try:
            await self.resolve_model()
            body = self.request_body(messages, params)
            while True:
                yielded = False
                try:
                    # aclosing: a consumer that stops early (interrupt, client gone) closes the HTTP stream
                    # now, not whenever the garbage collector finalises the inner generator
                    async with contextlib.aclosing(self._stream_once(body)) as inner:
                        async for delta in inner:
                            yielded = True
                            yield delta
                    return
                except _Retryable as r:
                    if yielded or attempt >= self.retries:
                        raise r.error from None
                    attempt += 1
                    wait = self.backoff_s * (2 ** (attempt - 1))
                    log.warning("LLM request failed (%s), retry %d/%d in %.2fs", self._redact(str(r.error)),
                                attempt, self.retries, wait)
                    await asyncio.sleep(wait)
        except LLMError as e:  # the one line an operator at log_level warning sees (retries logged above)
            e.message = self._redact(e.message)  # a server may echo the key; the message reaches the user
            e.args = (f"{e.code}: {e.message}",)
            log.warning("LLM request failed after %d attempt(s): %s, HTTP %s, model %r at %s: %s", attempt + 1,
                        e.code, e.status or "-", self.model, self.base_url, e.message)
            raise

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    async def _stream_once(self, body: dict[str, Any]) -> AsyncIterator[str]:
        url = f"{self.base_url}/chat/completions"
        think = ThinkFilter()
        got_any, status = False, None
        loop = asyncio.get_running_loop()
        # the silence is counted from the request or the last text given out, not the last byte: pings,
        # empty deltas and reasoning keep httpx's read timeout from firing but say nothing; the clock
        # restarts when the consumer asks for more, so its own pace is not counted as the LLM's
        deadline = loop.time() + self.silence_s
        try:
            async with contextlib.AsyncExitStack() as stack:
                async with asyncio.timeout_at(deadline):
                    r = await stack.enter_async_context(self._http.stream("POST", url, json=body))
                    status = r.status_code
                    if r.status_code != 200:
                        _raise_for_status(r.status_code, (await r.aread()).decode("utf-8", "replace"))
                chunks = await stack.enter_async_context(contextlib.aclosing(_sse_data(r.aiter_lines())))
                while True:
                    async with asyncio.timeout_at(deadline):  # around the read only: never across a yield
                        data = await anext(chunks, None)
                    if data is None or data.strip() == "[DONE]":
                        break
                    delta = think.push(_delta_text(data))
                    if delta:
                        got_any = True
                        yield delta
                        deadline = loop.time() + self.silence_s
                tail = think.flush()
                if tail:
                    yield tail
        except TimeoutError as e:
            raise LLMError("timeout", f"{url}: no text for {self.silence_s:g}s", status) from e
        except LLMError as e:
            e.status = e.status or status  # an error after HTTP 200 (in the stream, bad chunks)
            raise
        except httpx.TimeoutException as e:
            err = LLMError("timeout", f"{url}: no data for too long ({type(e).__name__})", status)
            if got_any or not isinstance(e, httpx.ConnectTimeout):
                # not retried: a server that took the request and then stayed silent for the whole read
                # timeout would make the user wait that long again for every retry
                raise err from e
            raise _Retryable(err) from e
        except httpx.ConnectError as e:
            raise _Retryable(LLMError("connect_failed", f"cannot connect to {url}: {e}")) from e
        except (httpx.RemoteProtocolError, httpx.ReadError) as e:
            err = LLMError("disconnected", f"{url}: stream ended abruptly ({e})", status)
            if got_any:
                raise err from e
            raise _Retryable(err) from e


def _raise_for_status(status: int, text: str) -> None:
    if status == 200:
        return
    detail = _error_message(text) or text[:300]
    if status in (401, 403):
        raise LLMError("auth_failed", f"HTTP {status}: {detail}", status)
    if status == 404:
        raise LLMError("model_not_found", f"HTTP 404: {detail}", status)
    err = LLMError("upstream_error" if status >= 500 or status == 429 else "bad_request", f"HTTP {status}: {detail}",
                   status)
    if status >= 500 or status == 429:
        raise _Retryable(err)
    raise err


def _error_message(text: str) -> str:
    try:
        obj = json.loads(text)
    except ValueError:
        return ""
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err)
    return ""


async def _sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The `data` payloads of an SSE stream (multi-line data joined with newlines)."""
    buf: list[str] = []
    async for line in lines:
        if not line.strip():
            if buf:
                yield "\n".join(buf)
                buf = []
            continue
        if line.startswith(":"):
            continue  # comment / keep-alive
        name, _, value = line.partition(":")
        if name == "data":
            buf.append(value[1:] if value.startswith(" ") else value)
        elif name not in ("event", "id", "retry"):
            raise LLMError("bad_response", f"not an SSE line: {line[:200]!r}")
    if buf:
        yield "\n".join(buf)


def _delta_text(data: str) -> str:
    """The content of one chat.completion.chunk (usage-only chunks and role-only deltas give "")."""
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise LLMError("bad_response", f"chunk is not JSON: {data[:200]!r}") from e
    if not isinstance(obj, dict):
        raise LLMError("bad_response", f"chunk is not an object: {data[:200]!r}")
    if "error" in obj or obj.get("object") == "error":
        raise LLMError("upstream_error", f"error in stream: {_error_message(data) or data[:200]}")
    choices = obj.get("choices")
    if not choices:
        return ""  # usage chunk
    try:
        delta = choices[0].get("delta") or {}
        content = delta.get("content")
    except (AttributeError, IndexError) as e:
        raise LLMError("bad_response", f"unexpected chunk: {data[:200]!r}") from e
    if content is not None and not isinstance(content, str):
        raise LLMError("bad_response", f"content is not text: {data[:200]!r}")
    return content or ""  # reasoning_content / reasoning are never returned


# -- in-process transformers ----------------------------------------------------------------------


class TransformersClient:
    """In-process generation with transformers; streaming, with real cancellation (a stopping
    criterion checked after every token). The chat template comes from the model folder."""

    def __init__(self, model_dir: str | Path, device: str = "cpu", dtype: str = "float32") -> None:
        self.model_dir, self.device, self.dtype = Path(model_dir), device, dtype
        self._model: Any = None
        self._tokenizer: Any = None
        self._load_lock = threading.Lock()

    def load(self) -> None:
        """Load model and tokenizer (once; thread-safe)."""
        with self._load_lock:
            if self._model is not None:
                return
            try:
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
                model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=getattr(torch, self.dtype))
                self._model = model.to(self.device).eval()
            except (OSError, ValueError) as e:
                raise LLMError("model_not_found", f"cannot load a chat model from {self.model_dir}: {e}") from e

    async def aclose(self) -> None:
        self._model = self._tokenizer = None

    def render(self, messages: list[dict], params: LLMParams) -> str:
        """The prompt text produced by the folder's chat template."""
        self.load()
        return self._tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                   enable_thinking=params.enable_thinking)

    async def stream(self, messages: list[dict], params: LLMParams) -> AsyncIterator[str]:
        await asyncio.to_thread(self.load)
        prompt = self.render(messages, params)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()
        worker = threading.Thread(target=self._generate, args=(prompt, params, stop, loop, queue),
                                  name="llm-generate", daemon=True)
        worker.start()
        think, stops = ThinkFilter(), _StopMatcher(params.stop)
        try:
            while True:
                kind, value = await queue.get()
                if kind == "error":
                    raise LLMError("generation_failed", f"generation failed: {value!r}") from value
                if kind == "end":
                    tail = stops.flush() if not stops.stopped else ""
                    text = think.push(tail) + think.flush()
                    if text:
                        yield text
                    return
                text = think.push(stops.push(value))
                if text:
                    yield text
                if stops.stopped:
                    return
        finally:
            stop.set()  # the stopping criterion sees it after the current token

    def _generate(self, prompt: str, params: LLMParams, stop: threading.Event,
                  loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        def send(kind: str, value: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:  # the event loop is gone: nobody is listening any more
                stop.set()

        try:
            import torch
            from transformers import StoppingCriteria, StoppingCriteriaList

            class _Cancelled(StoppingCriteria):
                def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                    return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool,
                                      device=input_ids.device)

            tok = self._tokenizer
            ids = tok(prompt, return_tensors="pt", add_special_tokens=False).to(self.device)
            streamer = _DeltaStreamer(tok, lambda text: send("text", text))
            sample = params.temperature > 0
            kwargs: dict[str, Any] = dict(max_new_tokens=params.max_tokens, do_sample=sample, streamer=streamer,
                                          stopping_criteria=StoppingCriteriaList([_Cancelled()]),
                                          pad_token_id=tok.pad_token_id)
            if sample:
                kwargs.update(temperature=params.temperature, top_p=params.top_p)
            if params.repetition_penalty is not None:
                kwargs["repetition_penalty"] = params.repetition_penalty
            if params.seed is not None:
                torch.manual_seed(params.seed)
            with torch.inference_mode():
                self._model.generate(**ids, **kwargs)
            send("end", None)
        except Exception as e:  # reported to the async side as LLMError
            log.exception("generation failed")
            send("error", e)


class _DeltaStreamer:
    """A transformers streamer (put/end) decoding new tokens incrementally, skipping the prompt
    and special tokens, holding back incomplete UTF-8 sequences."""

    def __init__(self, tokenizer: Any, emit: Any) -> None:
        self.tokenizer, self.emit = tokenizer, emit
        self.tokens: list[int] = []
        self.sent = 0
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.tokens.extend(int(t) for t in value.reshape(-1).tolist())
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        if not text.endswith("\ufffd"):  # else: an incomplete UTF-8 sequence; wait for its next bytes
            self._emit_new(text)

    def end(self) -> None:
        self._emit_new(self.tokenizer.decode(self.tokens, skip_special_tokens=True))

    def _emit_new(self, text: str) -> None:
        if len(text) > self.sent:
            new = text[self.sent:].replace("\ufffd", "")  # bytes that never formed a character
            self.sent = len(text)
            if new:
                self.emit(new)


@dataclass
class _StopMatcher:
    """Cuts a text stream at the first stop sequence, holding back a possible partial match."""

    stops: tuple[str, ...]
    held: str = ""
    stopped: bool = False
    _longest: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.stops = tuple(s for s in self.stops if s)
        self._longest = max((len(s) for s in self.stops), default=0)

    def push(self, text: str) -> str:
        if self.stopped:
            return ""
        if not self.stops:
            return text
        s = self.held + text
        hits = [k for k in (s.find(t) for t in self.stops) if k >= 0]
        if hits:
            self.stopped, self.held = True, ""
            return s[:min(hits)]
        keep = 0
        for n in range(min(len(s), self._longest - 1), 0, -1):
            if any(t.startswith(s[-n:]) for t in self.stops):
                keep = n
                break
        self.held = s[len(s) - keep:] if keep else ""
        return s[:len(s) - keep]

    def flush(self) -> str:
        held, self.held = self.held, ""
        return held


# -- vLLM server launcher -------------------------------------------------------------------------


class VLLMServer:
    """Runs `python -m vllm.entrypoints.openai.api_server` in a configured Python (vLLM lives in its
    own venv), waits for /health, and stops it on shutdown (terminate, then kill).

    Args:
        python: the interpreter of the vLLM environment.
        model: a model folder or hub id, passed as --model.
        served_model_name: the name clients use (default: the model argument).
        log_path: where the server's output goes (default: a file next to nothing: a temp file).
    """

    def __init__(self, python: str, model: str, host: str = "127.0.0.1", port: int = 8001,
                 extra_args: tuple[str, ...] = (), health_timeout: float = 300.0,
                 served_model_name: str | None = None, log_path: str | Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.python, self.model, self.host, self.port = python, model, host, port
        self.extra_args, self.health_timeout = tuple(extra_args), health_timeout
        self.served_model_name = served_model_name or model
        self.log_path = Path(log_path) if log_path else None
        self.env = env
        self._proc: subprocess.Popen | None = None
        self._log_file: Any = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        return [self.python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model,
                "--served-model-name", self.served_model_name, "--host", self.host, "--port", str(self.port),
                *self.extra_args]

    async def start(self) -> None:
        """Start the server and wait until /health answers 200 (LLMError vllm_start_failed otherwise)."""
        if self._proc is not None:
            return
        if self.log_path is None:
            import tempfile

            fd, name = tempfile.mkstemp(prefix="vllm-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self._log_file = open(self.log_path, "ab")
        env = {**os.environ, **(self.env or {})}
        try:
            self._proc = subprocess.Popen(self.command(), stdout=self._log_file, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        except OSError as e:
            self._close_log()
            raise LLMError("vllm_start_failed", f"cannot run {self.python}: {e}") from e
        log.info("started vLLM (pid %d): %s", self._proc.pid, " ".join(self.command()))
        try:
            await self._wait_healthy()
        except BaseException:
            self.stop()
            raise

    async def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.health_timeout
        url = f"http://{self.host}:{self.port}/health"
        async with httpx.AsyncClient(timeout=2.0) as http:
            while True:
                assert self._proc is not None
                code = self._proc.poll()
                if code is not None:
                    raise LLMError("vllm_start_failed",
                                   f"vLLM exited with code {code} before becoming healthy; log tail:\n{self.log_tail()}")
                try:
                    if (await http.get(url)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise LLMError("vllm_start_failed", f"vLLM not healthy at {url} after {self.health_timeout:.0f}s; "
                                                        f"log tail:\n{self.log_tail()}")
                await asyncio.sleep(0.5)

    def log_tail(self, max_chars: int = 3000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        with open(self.log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_chars))
            return f.read().decode("utf-8", "replace")

    def stop(self, grace_s: float = 10.0) -> None:
        """Terminate the server (its whole process group), then kill it if it does not exit."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=grace_s)
            except ProcessLookupError:
                pass
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    async def __aenter__(self) -> VLLMServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
