"""Service benchmark: N concurrent WebSocket sessions against the running service, the LLM being an
OpenAI-compatible server streaming scripted replies at a set token rate.

    python bench/service_bench.py                         # starts the service (embedded default)
    python bench/service_bench.py --sessions 1,2,4,8 --token-rate 30 --json out.json
    python bench/service_bench.py --size v2 --sessions 1,2,3      # real v2 model sizes, random weights
    python bench/service_bench.py --url ws://127.0.0.1:8000/ws   # a service already running
      (point its LLM at the scripted server: --llm-port 9100 and
       CHAT2AUDIO_LLM__BACKEND=openai CHAT2AUDIO_LLM__BASE_URL=http://127.0.0.1:9100/v1, and set
       CHAT2AUDIO_TTS__TEXT_CACHE_SIZE=0: the scripted reply repeats, new replies would not hit the cache)

Reports per level: time to first audio (input.text -> first audio event) p50/p95, real-time factor
per stream (turn wall time / audio seconds; below 1 the stream stays ahead of playback), errors, and
the largest N whose p95 RTF stays below 1 with no errors.

Without --url the benchmark starts `python app.py` as a process of its own on a free loopback port,
with the embedded default's demo speaker. `--size tiny` (default) keeps its
tiny models; `--size v2` first writes the same files at the real GPT-SoVITS v2 sizes (random
weights, ~1.1 GB, `tts.factory`) into the cache's models folder, so the figures are those of real
model sizes with the service's default configuration.
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REPLY = "你好呀，旅行者。今天的风很温柔，我们去须弥城走走吧！路上可以看看花草，也可以聊聊梦境。"


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def one_session(url: str, turns: int, out: dict[str, list]) -> None:
    import websockets

    from tests.reliability.helpers import recv, turn

    async with websockets.connect(url, open_timeout=60, max_size=2**24) as ws:
        await recv(ws, 60)
        for i in range(turns):
            try:
                t = await turn(ws, f"第{i}轮：讲讲须弥吧", timeout=300)
            except Exception as e:  # a timeout counts as an error of this level
                out["errors"].append(f"{type(e).__name__}: {e}")
                return
            if t.done is None or t.errors:
                out["errors"].append(json.dumps((t.errors or [{}])[0], ensure_ascii=False)[:200])
                continue
            out["ttfa"].append(t.first_audio_s or t.elapsed_s)
            if t.audio_s > 0:
                out["rtf"].append(t.elapsed_s / t.audio_s)


async def run_level(url: str, n: int, turns: int) -> dict[str, Any]:
    out: dict[str, list] = {"ttfa": [], "rtf": [], "errors": []}
    t0 = time.monotonic()
    await asyncio.gather(*(one_session(url, turns, out) for _ in range(n)))
    rtf95 = pct(out["rtf"], 0.95)
    return {"sessions": n, "turns": len(out["ttfa"]), "errors": len(out["errors"]), "error_samples": out["errors"][:3],
            "ttfa_p50_s": pct(out["ttfa"], 0.5), "ttfa_p95_s": pct(out["ttfa"], 0.95),
            "rtf_p50": pct(out["rtf"], 0.5), "rtf_p95": rtf95, "rtf_max": max(out["rtf"], default=None),
            "real_time": bool(out["rtf"]) and not out["errors"] and rtf95 is not None and rtf95 < 1.0,
            "wall_s": time.monotonic() - t0}


class Service:
    """`python app.py` in a process of its own (as users run it: its worker does not share a GIL with
    this benchmark's clients and scripted LLM), on a free loopback port."""

    def __init__(self, llm_url: str, cache: Path, max_turns_per_key: int, timeout: float = 600.0):
        import subprocess
        import urllib.request

        from tests.service.conftest import free_port

        port = free_port()
        env = {**os.environ, "CHAT2AUDIO_LLM__BACKEND": "openai", "CHAT2AUDIO_LLM__BASE_URL": llm_url,
               "CHAT2AUDIO_PATHS__CACHE_DIR": str(cache),
               "CHAT2AUDIO_LIMITS__MAX_CONCURRENT_TURNS_PER_KEY": str(max_turns_per_key),
               "CHAT2AUDIO_LIMITS__MAX_SESSIONS_PER_KEY": str(max(32, max_turns_per_key)),
               # every session gets the same scripted reply: without this its sentences would be text
               # cache hits after the first turn, skipping the frontend and BERT that new replies pay for
               "CHAT2AUDIO_TTS__TEXT_CACHE_SIZE": "0"}
        cache.mkdir(parents=True, exist_ok=True)
        self.log = cache / "service_bench.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=ROOT,
                                         env=env, stdout=log, stderr=subprocess.STDOUT)
        self.ws_url = f"ws://127.0.0.1:{port}/ws"
        deadline = time.monotonic() + timeout
        while True:  # up once /health answers (models are loaded and warmed up by then)
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with {self.proc.returncode}; its log: {self.log}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the service did not start in time; its log: {self.log}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
                return
            except OSError:
                time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()


def fmt(x: Any, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="WebSocket URL of a running service (default: start one)")
    ap.add_argument("--sessions", default="1,2,4,8", help="concurrency levels, comma-separated")
    ap.add_argument("--turns", type=int, default=2, help="turns per session per level")
    ap.add_argument("--token-rate", type=float, default=30.0, help="scripted LLM tokens per second per stream")
    ap.add_argument("--token-chars", type=int, default=2, help="characters per scripted token")
    ap.add_argument("--llm-port", type=int, default=0, help="port of the scripted LLM server (0: any free)")
    ap.add_argument("--cache", type=Path, help="model cache of the service it starts "
                    "(default: cache/, or cache/bench-v2/ with --size v2)")
    ap.add_argument("--size", choices=("tiny", "v2"), default="tiny",
                    help="model sizes of the started service's demo speaker")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)

    from tests.agent.fake_openai import FakeOpenAI, Reply

    levels = [int(x) for x in args.sessions.split(",") if x.strip()]
    reply = Reply.text(REPLY, token_chars=args.token_chars)
    with FakeOpenAI(default=reply, token_interval=1.0 / args.token_rate, port=args.llm_port) as llm:
        server = None
        url = args.url
        if url is None:
            cache = args.cache or (ROOT / "cache" / "bench-v2" if args.size == "v2" else ROOT / "cache")
            if args.size == "v2":
                from tts.factory import build_demo

                build_demo(cache / "models", size="v2")  # skips the files already there
            server = Service(llm.base_url, cache, max(levels))
            url = server.ws_url
        print(f"service {url}; scripted LLM {llm.base_url} at {args.token_rate:g} tokens/s")
        try:
            asyncio.run(run_level(url, 1, 1))  # warm-up: loads models, frontend dictionaries, caches
            results = []
            for n in levels:
                r = asyncio.run(run_level(url, n, args.turns))
                results.append(r)
                print(f"  N={n}: {r['turns']} turns, {r['errors']} errors, ttfa p50 {fmt(r['ttfa_p50_s'])} s, "
                      f"rtf p95 {fmt(r['rtf_p95'])}", flush=True)
        finally:
            if server is not None:
                server.stop()
    best = max((r["sessions"] for r in results if r["real_time"]), default=0)
    print(f"\n{'N':>4} {'turns':>6} {'errors':>6} {'ttfa p50 s':>11} {'ttfa p95 s':>11} {'rtf p50':>8} {'rtf p95':>8} "
          f"{'real time':>9}")
    for r in results:
        print(f"{r['sessions']:>4} {r['turns']:>6} {r['errors']:>6} {fmt(r['ttfa_p50_s']):>11} {fmt(r['ttfa_p95_s']):>11} "
              f"{fmt(r['rtf_p50']):>8} {fmt(r['rtf_p95']):>8} {'yes' if r['real_time'] else 'no':>9}")
    print(f"largest N that stays real time: {best}")
    report = {"levels": results, "max_realtime_sessions": best, "token_rate": args.token_rate,
              "model_size": args.size if args.url is None else "external",
              "turns_per_session": args.turns, "reply_chars": len(REPLY),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
