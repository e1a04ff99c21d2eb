"""Soak benchmark: sequential turns against the in-process service (embedded default, scripted LLM);
reports resident memory growth per 100 turns after warm-up, and asyncio tasks, threads and open file
descriptors at each checkpoint.

    python bench/soak.py                      # 1,000 turns
    python bench/soak.py --turns 300 --json soak.json
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def soak(url: str, srv, turns: int, warmup: int, every: int, per_session: int) -> list[dict]:
    import websockets

    from tests.reliability.helpers import check_turn, recv, reply_for, turn
    from tests.reliability.test_soak import snapshot

    rows: list[dict] = []
    ws = None
    t0 = time.monotonic()
    for i in range(warmup + turns):
        if i % per_session == 0:  # a new connection (and session) every `per_session` turns
            if ws is not None:
                await ws.close()
            ws = await websockets.connect(url, open_timeout=60)
            await recv(ws, 60)
        t = await turn(ws, "你好")
        check_turn(t, reply_for("你好"))
        done = i + 1 - warmup
        if done == 0 or (done > 0 and done % every == 0):
            await asyncio.sleep(0.2)  # let closed connections finish
            row = {"turns": done, "elapsed_s": round(time.monotonic() - t0, 1), **snapshot(srv)}
            rows.append(row)
            print(f"  {row['turns']:>5} turns  rss {row['rss_mb']:.1f} MB  tasks {row['tasks']}  threads "
                  f"{row['threads']}  fds {row['fds']}  ({row['elapsed_s']} s)", flush=True)
    if ws is not None:
        await ws.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--every", type=int, default=100, help="checkpoint every N turns")
    ap.add_argument("--per-session", type=int, default=20, help="turns per WebSocket connection")
    ap.add_argument("--cache", type=Path, default=ROOT / "cache")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from tests.reliability.conftest import EchoLLM
    from tests.service.conftest import start_server

    with EchoLLM(token_interval=0.002) as llm:
        srv = start_server(args.cache, llm)
        try:
            rows = asyncio.run(soak(srv.ws_url, srv, args.turns, args.warmup, args.every, args.per_session))
        finally:
            srv.stop()
    base, last = rows[0], rows[-1]
    per100 = 100 * (last["rss_mb"] - base["rss_mb"]) / max(1, last["turns"])
    steps = [100 * (b["rss_mb"] - a["rss_mb"]) / max(1, b["turns"] - a["turns"]) for a, b in zip(rows, rows[1:])]
    print(f"RSS growth after warm-up: {per100:.2f} MB per 100 turns over {last['turns']} turns "
          f"(per checkpoint: {', '.join(f'{s:.2f}' for s in steps)}); tasks {base['tasks']}->{last['tasks']}, "
          f"threads {base['threads']}->{last['threads']}, fds {base['fds']}->{last['fds']}")
    report = {"turns": last["turns"], "warmup": args.warmup, "rss_growth_mb_per_100_turns": per100,
              "rss_growth_per_checkpoint": steps, "checkpoints": rows,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
