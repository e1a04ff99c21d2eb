"""Soak: sequential turns against the in-process app; no leaked asyncio tasks, threads or file
descriptors, and resident memory bounded loosely (bench/soak.py runs 1,000 turns and reports the
growth per 100 turns)."""
from __future__ import annotations

import asyncio
import os
import threading
import time

import websockets

from tests.reliability.helpers import check_turn, recv, reply_for, turn

WARMUP = 10
TURNS = 50
RSS_BOUND_MB = 60.0  # loose: catches a leak of a request's audio or model state per turn


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def server_tasks(srv) -> int:
    loop = srv.server.servers[0].get_loop()

    async def count() -> int:
        return len(asyncio.all_tasks())

    return asyncio.run_coroutine_threadsafe(count(), loop).result(10)


def snapshot(srv) -> dict:
    return {"rss_mb": rss_mb(), "threads": threading.active_count(), "fds": len(os.listdir("/proc/self/fd")),
            "tasks": server_tasks(srv)}


async def run_turns(url: str, n: int, start: int) -> None:
    """`n` turns, a new connection (and session) every 10 turns, each turn checked."""
    for i in range(start, start + n):
        if (i - start) % 10 == 0:
            if i != start:
                await ws.close()
            ws = await websockets.connect(url, open_timeout=30, close_timeout=5)
            assert (await recv(ws, 30))[0]["type"] == "session.created"
        t = await turn(ws, "继续" if i % 2 else "你好")
        check_turn(t, reply_for("你好"))
    await ws.close()


async def settle(srv, base: dict, timeout: float = 10.0) -> dict:
    t0 = time.monotonic()
    while True:
        now = snapshot(srv)
        if (now["tasks"] <= base["tasks"] and now["threads"] <= base["threads"] + 1
                and now["fds"] <= base["fds"] + 2) or time.monotonic() - t0 > timeout:
            return now
        await asyncio.sleep(0.2)


async def test_soak_no_leaks(rserver):
    await run_turns(rserver.ws_url, WARMUP, 0)
    base = await settle(rserver, snapshot(rserver), 2.0)
    t0 = time.monotonic()
    await run_turns(rserver.ws_url, TURNS, WARMUP)
    after = await settle(rserver, base)
    growth = after["rss_mb"] - base["rss_mb"]
    print(f"soak: {TURNS} turns in {time.monotonic() - t0:.1f} s; before {base}, after {after}; "
          f"RSS growth {growth:.1f} MB ({100 * growth / TURNS:.1f} MB per 100 turns)")
    assert after["tasks"] <= base["tasks"], (base, after)
    assert after["threads"] <= base["threads"] + 1, (base, after)
    assert after["fds"] <= base["fds"] + 2, (base, after)
    assert growth < RSS_BOUND_MB, (base, after)
