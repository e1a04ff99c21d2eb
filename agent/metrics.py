"""Prometheus metrics in the text exposition format (0.0.4), written by hand.

Series: time to first audio, real-time factor, LLM first-token time, TTS queue depth, active
sessions and turns, errors by code, HTTP requests by route and status.
"""
from __future__ import annotations

import math
import threading
from typing import Callable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(v: str) -> str:
    return str(v).replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _num(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x)) if abs(x) < 1e15 else repr(float(x))


class Counter:
    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()):
        self.name, self.help, self.label_names = name, help, labels
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        with self._lock:
            for lv, v in sorted(self._values.items()):
                out.append(f"{self.name}{_labels(self.label_names, lv)} {_num(v)}")
        return out


class Gauge:
    """A gauge set directly or read from a callback at scrape time."""

    def __init__(self, name: str, help: str, read: Callable[[], float] | None = None):
        self.name, self.help, self._read = name, help, read
        self._value = 0.0

    def set(self, value: float) -> None:
        self._value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        self._value += amount

    def dec(self, amount: float = 1.0) -> None:
        self._value -= amount

    def value(self) -> float:
        if self._read is not None:
            try:
                return float(self._read())
            except Exception:  # a broken reader must not break the scrape
                return float("nan")
        return self._value

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge", f"{self.name} {_num(self.value())}"]


class Histogram:
    def __init__(self, name: str, help: str, buckets: tuple[float, ...]):
        self.name, self.help = name, help
        self.buckets = tuple(sorted(buckets)) + (math.inf,)
        self._counts = [0] * len(self.buckets)
        self._sum = 0.0
        self._n = 0
        self._lock = threading.Lock()

    def observe(self, x: float) -> None:
        with self._lock:
            self._sum += x
            self._n += 1
            for i, b in enumerate(self.buckets):
                if x <= b:
                    self._counts[i] += 1

    @property
    def count(self) -> int:
        return self._n

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        with self._lock:
            for b, c in zip(self.buckets, self._counts):
                out.append(f'{self.name}_bucket{{le="{_num(b)}"}} {c}')
            out += [f"{self.name}_sum {_num(self._sum)}", f"{self.name}_count {self._n}"]
        return out


_LATENCY = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class Metrics:
    """The service's metrics; one instance per app."""

    def __init__(self) -> None:
        p = "chat2audio_"
        self.time_to_first_audio = Histogram(p + "time_to_first_audio_seconds",
                                             "Request or turn start to its first audio chunk", _LATENCY)
        self.rtf = Histogram(p + "tts_rtf", "TTS real-time factor (synthesis time / audio duration)",
                             (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0))
        self.llm_first_token = Histogram(p + "llm_first_token_seconds", "Turn start to the first LLM text delta",
                                         _LATENCY)
        self.errors = Counter(p + "errors_total", "Errors returned to clients, by code", ("code",))
        self.requests = Counter(p + "http_requests_total", "HTTP requests by route and status", ("route", "status"))
        self.turns = Counter(p + "turns_total", "Finished turns by outcome", ("outcome",))
        self.active_sessions = Gauge(p + "active_sessions", "Open WebSocket sessions")
        self.active_turns = Gauge(p + "active_turns", "Turns and synthesis requests in progress")
        self.queue_depth = Gauge(p + "tts_queue_depth", "Requests waiting for or in the TTS engine")

    def bind_queue_depth(self, read: Callable[[], float]) -> None:
        self.queue_depth = Gauge(self.queue_depth.name, self.queue_depth.help, read)

    def render(self) -> str:
        lines: list[str] = []
        for m in (self.time_to_first_audio, self.rtf, self.llm_first_token, self.queue_depth,
                  self.active_sessions, self.active_turns, self.turns, self.errors, self.requests):
            lines += m.render()
        return "\n".join(lines) + "\n"
