"""ASGI plumbing of the service: the JSON error shape, the guard middleware (body size, API keys,
request metrics) and a streaming response that stops when its client leaves."""
from __future__ import annotations

import json
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse
from fastapi.responses import StreamingResponse as _StarletteStreamingResponse
from starlette.routing import Match

from agent.auth import AuthError, is_public, key_from


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class GuardMiddleware:
    """Body-size limit, API-key check and request metrics, as plain ASGI middleware.

    (Plain ASGI rather than Starlette's BaseHTTPMiddleware, which would pass every response body,
    streamed audio included, through an extra task and memory stream.)
    """

    def __init__(self, app: Any, max_body: int):
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        rt: Any = getattr(scope["app"].state, "runtime", None)  # agent.runtime.Runtime once started
        path, max_body = request.url.path, self.max_body
        too_large = f"request body over {max_body} bytes"
        route = _route_path(request)

        async def refuse(response: JSONResponse) -> None:
            """Answer here, before the app: counted like the app's answers (requests and errors)."""
            if rt is not None:
                rt.metrics.requests.inc(route or "other", str(response.status_code))
            await count_error(rt, response)(scope, receive, send)

        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > max_body):
            return await refuse(error_response(413, "body_too_large", too_large))
        if rt is not None and not is_public(path) and route is not None:
            try:
                request.state.principal = rt.auth.check(key_from(request.headers),
                                                        admin=path.startswith("/admin/"))
            except AuthError as e:
                headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
                return await refuse(error_response(e.status, e.code, e.message, headers))
        if size is None and "chunked" in request.headers.get("transfer-encoding", "").lower():
            body = bytearray()  # no Content-Length: count the chunks, so the limit holds for them too
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return
                body += message.get("body", b"")
                if len(body) > max_body:
                    return await refuse(error_response(413, "body_too_large", too_large))
                if not message.get("more_body", False):
                    break
            receive = _replay(bytes(body), receive)
        status = 500

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            if rt is not None:
                rt.metrics.requests.inc(getattr(scope.get("route"), "path", "other"), str(status))


def _replay(body: bytes, receive: Any) -> Any:
    """A `receive` that hands the already-read body to the route first, then goes on as before."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Any:
        return pending.pop() if pending else await receive()

    return replay


def _route_path(request: Request) -> str | None:
    """The path of the route that takes this method and path, or None (the router then answers 404/405
    without asking for a key)."""
    return next((getattr(route, "path", "other") for route in request.app.router.routes
                 if route.matches(request.scope)[0] == Match.FULL), None)


def count_error(rt: Any, response: JSONResponse) -> JSONResponse:
    """Count an error response in the runtime's metrics (when the runtime is up); returns it."""
    if rt is not None:
        rt.metrics.errors.inc(json.loads(response.body)["error"]["code"])
    return response


class StreamingResponse(_StarletteStreamingResponse):
    """A streaming response that stops as soon as the client leaves, and closes its body generator.

    Starlette (ASGI spec 2.4) notices a gone client only if `send` fails, and uvicorn's `send`
    to a closed connection does not fail: the body would run to its end, LLM and TTS included.
    So listen for `http.disconnect` here, cancel the response, and close the generator (whose
    `finally` stops the turn) shielded from that cancellation.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

        try:
            async with anyio.create_task_group() as group:
                group.start_soon(watch_disconnect)
                await super().__call__(scope, receive, send)
                group.cancel_scope.cancel()
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                with anyio.CancelScope(shield=True):
                    await close()
