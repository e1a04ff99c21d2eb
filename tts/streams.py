"""The iterators `Engine.synthesize` / `Engine.astream` return over one scheduler request.

Closing either (or dropping it, or cancelling the task that consumes the async one) cancels the
request: it leaves the decode batch at the next step and its queued work is dropped.
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from tts.scheduler import END_OF_STREAM, Request, Scheduler
from tts.types import AudioChunk


class ChunkStream(Iterator[AudioChunk]):
    """The iterator returned by `Engine.synthesize`; closing it (or dropping it) cancels the request."""

    def __init__(self, scheduler: Scheduler, req: Request):
        self._s, self._r = scheduler, req
        self._done = False

    @property
    def request_id(self) -> int:
        return self._r.id

    def __iter__(self) -> ChunkStream:
        return self

    def __next__(self) -> AudioChunk:
        if self._done:
            raise StopIteration
        item = self._r.outbox.get()
        self._s.notify()  # room in the outbox: the worker may vocode more
        return self._unwrap(item)

    def _unwrap(self, item: Any) -> AudioChunk:
        if item is END_OF_STREAM:
            self._done = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._done = True
            raise item
        return item

    def cancel(self) -> None:
        if not self._done:
            self._done = True
            self._s.cancel(self._r)

    close = cancel

    def __enter__(self) -> ChunkStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()

    def __del__(self) -> None:
        try:
            self.cancel()
        except Exception:
            pass


class AsyncChunkStream:
    """Async iterator over the same request; cancelling the consuming task cancels the request."""

    def __init__(self, scheduler: Scheduler, req: Request):
        self._inner = ChunkStream(scheduler, req)
        self._r = req
        self._event = asyncio.Event()
        self._bound = False
        self._task: asyncio.Task | None = None
        loop = asyncio.get_running_loop()
        req.outbox.set_waker(lambda: loop.call_soon_threadsafe(self._event.set))

    @property
    def request_id(self) -> int:
        return self._inner.request_id

    def __aiter__(self) -> AsyncChunkStream:
        return self

    async def __anext__(self) -> AudioChunk:
        if self._inner._done:
            raise StopAsyncIteration
        if not self._bound:  # the consuming task ending (cancelled or not) ends the request
            self._bound = True
            self._task = asyncio.current_task()
            if self._task is not None:
                self._task.add_done_callback(self._on_task_done)
        try:
            while True:
                self._event.clear()
                item = self._r.outbox.get_nowait()
                if item is not None:
                    break
                await self._event.wait()
        except BaseException:
            self._inner.cancel()
            raise
        self._inner._s.notify()
        try:
            return self._inner._unwrap(item)
        except StopIteration:
            self._unbind()
            raise StopAsyncIteration from None
        except BaseException:
            self._unbind()
            raise

    def _on_task_done(self, _task: asyncio.Task) -> None:
        self._inner.cancel()

    def _unbind(self) -> None:
        # a long-lived consumer task (a WebSocket session) must not collect one callback per request
        if self._task is not None:
            self._task.remove_done_callback(self._on_task_done)
            self._task = None

    async def aclose(self) -> None:
        self.cancel()

    async def __aenter__(self) -> AsyncChunkStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cancel()

    def cancel(self) -> None:
        self._inner.cancel()
        self._unbind()
