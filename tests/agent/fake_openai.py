"""A scripted OpenAI-compatible chat server on 127.0.0.1, speaking vLLM's streaming chunk format.

Reusable by agent, service and reliability tests:

    with FakeOpenAI(token_interval=0.01) as srv:
        srv.script(Reply.text("你好。今天天气很好！", token_chars=2))
        client = OpenAIClient(srv.base_url, model=srv.models[0])

Endpoints: GET /v1/models, POST /v1/chat/completions (streaming SSE and non-streaming JSON),
GET /health. Each chat request takes the next scripted `Reply` (or `default` when none is left).
Knobs on a Reply: reasoning text, role/usage chunks, a missing [DONE], an error object or
garbage after N tokens, an abrupt disconnect, a stream kept alive without text after N tokens,
an HTTP status refusal, a delay before the answer, its own token interval. With `strict_models`
an unknown model gets vLLM's 404. The server runs its own event loop in a thread, so sync and async
tests can both use it; `requests` records the last 256 chat bodies received, `client_gone` counts
streams the client closed before the end.
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Reply:
    """One scripted answer. `tokens` are the content deltas, streamed one per chunk."""

    tokens: tuple[str, ...] = ("Hello", "!")
    reasoning: tuple[str, ...] = ()  # streamed first as delta.reasoning_content
    role_chunk: bool = True  # a first chunk carrying only {"role": "assistant"}
    usage_chunk: bool = True  # a final chunk with empty choices and usage
    done: bool = True  # end with data: [DONE]
    error_after: int | None = None  # after N tokens send {"error": {...}} (HTTP status stays 200)
    garbage_after: int | None = None  # after N tokens send a line that is not JSON
    disconnect_after: int | None = None  # after N tokens drop the connection without ending the body
    # after N tokens (N < len(tokens)) send no more text, only keep-alives every stall_interval s until the
    # client leaves: "comment" (`: ping`), "empty" (delta {}), "role" (delta with only the role),
    # "empty_content" (content ""), "reasoning" (only reasoning_content)
    stall_after: int | None = None
    stall_with: str = "comment"
    stall_interval: float = 0.05
    status: int = 200  # != 200: refuse the request with this status and an error body
    delay_s: float = 0.0  # wait before answering at all
    token_interval: float | None = None  # seconds between tokens; None: the server's

    @staticmethod
    def text(text: str, token_chars: int = 3, **knobs: object) -> Reply:
        """A reply streaming `text` in pieces of `token_chars` characters."""
        tokens = tuple(text[i:i + token_chars] for i in range(0, len(text), token_chars))
        return Reply(tokens=tokens, **knobs)  # type: ignore[arg-type]

    @property
    def content(self) -> str:
        return "".join(self.tokens)


@dataclass
class FakeOpenAI:
    """The scripted server. Use as a context manager, or start()/stop()."""

    default: Reply = field(default_factory=Reply)
    token_interval: float = 0.0
    models: tuple[str, ...] = ("fake-model",)
    api_key: str | None = None  # when set, requests without `Bearer <api_key>` get 401
    strict_models: bool = False  # when set, a chat request naming a model not in `models` gets 404
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        # the last bodies received; bounded so that soak runs (thousands of turns, server and this
        # fake in one process) measure the service's memory, not this log's
        self.requests: deque[dict] = deque(maxlen=256)
        self.client_gone = 0
        self.completed = 0
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # -- control --------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def start(self) -> FakeOpenAI:
        if self.port == 0:
            with socket.socket() as s:
                s.bind((self.host, 0))
                self.port = s.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name="fake-openai", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake OpenAI server did not start")
        return self

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._replies.popleft() if self._replies else self.default

    # -- server ---------------------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(asyncio.start_server(self._handle, self.host, self.port))
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: several requests per connection
                req = await _read_request(reader)
                if req is None:
                    return
                method, path, headers, body = req
                keep = await self._route(method, path, headers, body, reader, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def _route(self, method: str, path: str, headers: dict[str, str], body: bytes,
                     reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        if self.api_key and headers.get("authorization") != f"Bearer {self.api_key}":
            # echoes the key it got, as some proxies do: the client must not pass it on unredacted
            got = headers.get("authorization", "").removeprefix("Bearer ")
            await _send_json(writer, 401, {"error": {"message": f"invalid api key {got!r}", "type": "auth"}})
            return True
        path = path.split("?")[0]
        if method == "GET" and path == "/health":
            await _send_json(writer, 200, {})
            return True
        if method == "GET" and path == "/v1/models":
            data = [{"id": m, "object": "model", "owned_by": "fake"} for m in self.models]
            await _send_json(writer, 200, {"object": "list", "data": data})
            return True
        if method == "POST" and path == "/v1/chat/completions":
            try:
                req = json.loads(body)
            except ValueError:
                await _send_json(writer, 400, {"error": {"message": "body is not JSON"}})
                return True
            self.requests.append(req)
            if self.strict_models and req.get("model") not in self.models:
                await _send_json(writer, 404, {"object": "error", "type": "NotFoundError", "code": 404,
                                               "message": f"The model `{req.get('model')}` does not exist."})
                return True
            reply = self._next_reply()
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            if reply.status != 200:
                await _send_json(writer, reply.status, {"object": "error", "message": f"refused ({reply.status})",
                                                        "type": "scripted", "code": reply.status})
                return True
            if req.get("stream"):
                return await self._stream(reply, req, reader, writer)
            await _send_json(writer, 200, _completion(reply, req))
            self.completed += 1
            return True
        await _send_json(writer, 404, {"error": {"message": f"no route {method} {path}"}})
        return True

    async def _stream(self, reply: Reply, req: dict, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                     b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n")
        gone = asyncio.ensure_future(reader.read(1))  # the client closing its side ends the wait
        interval = self.token_interval if reply.token_interval is None else reply.token_interval
        cid, model, created = f"chatcmpl-{int(time.time() * 1000)}", req.get("model", ""), int(time.time())

        def chunk(delta: dict, finish: str | None = None, **extra: object) -> bytes:
            obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                   "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}
            return _sse(json.dumps(obj, ensure_ascii=False))

        async def send(data: bytes, wait: float | None = None) -> bool:
            if gone.done():
                return False
            writer.write(_http_chunk(data))
            await writer.drain()
            wait = interval if wait is None else wait
            if wait:
                await asyncio.wait([gone], timeout=wait)
            else:
                await asyncio.sleep(0)
            return not gone.done()

        try:
            if reply.role_chunk and not await send(chunk({"role": "assistant", "content": ""})):
                return self._gone()
            for r in reply.reasoning:
                if not await send(chunk({"reasoning_content": r})):
                    return self._gone()
            for n, tok in enumerate(reply.tokens):
                if reply.error_after == n:
                    await send(_sse(json.dumps({"error": {"message": "scripted failure mid-stream", "type": "server",
                                                          "code": 500}})))
                    break
                if reply.garbage_after == n:
                    await send(_sse("this is not json {"))
                    break
                if reply.disconnect_after == n:
                    writer.transport.abort()
                    return False
                if reply.stall_after == n:
                    keep = {"comment": b": ping\n\n", "empty": chunk({}), "role": chunk({"role": "assistant"}),
                            "empty_content": chunk({"content": ""}),
                            "reasoning": chunk({"reasoning_content": "hmm"})}[reply.stall_with]
                    while await send(keep, reply.stall_interval):
                        pass
                    return self._gone()
                if not await send(chunk({"content": tok})):
                    return self._gone()
            else:
                await send(chunk({}, finish="stop"), 0)  # the closing chunks come at once
                if reply.usage_chunk:
                    n = len(reply.tokens)
                    usage = {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}
                    obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                           "choices": [], "usage": usage}
                    await send(_sse(json.dumps(obj)), 0)
                if reply.done:
                    await send(_sse("[DONE]"), 0)
                self.completed += 1
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return False
        finally:
            gone.cancel()

    def _gone(self) -> bool:
        self.client_gone += 1
        return False


def _completion(reply: Reply, req: dict) -> dict:
    n = len(reply.tokens)
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": req.get("model", ""),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}}


def _sse(data: str) -> bytes:
    return f"data: {data}\n\n".encode()


def _http_chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def _send_json(writer: asyncio.StreamWriter, status: int, obj: dict) -> None:
    body = json.dumps(obj).encode()
    writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
                 .encode() + body)
    await writer.drain()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
    return method, path, headers, body
