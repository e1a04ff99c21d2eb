"""Optional API keys, per-key turn limits and redaction of keys from logs.

Keys come as `Authorization: Bearer <key>` (HTTP and WebSocket) or `?api_key=<key>` (WebSocket,
because browsers cannot set WebSocket headers). With no `auth.api_keys` configured the service is
open; `/admin/*` always needs a key from `auth.admin_keys`.
"""
from __future__ import annotations

import hmac
import logging
import re
import threading
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping

PUBLIC_PATHS = ("/", "/health", "/health/live", "/health/ready", "/openapi.json", "/docs", "/docs/oauth2-redirect",
                "/redoc", "/favicon.ico")
PUBLIC_PREFIXES = ("/static/",)
ANONYMOUS = "-"


class AuthError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class LimitError(Exception):
    """A per-key limit was reached (maps to 429 `busy`)."""

    code = "busy"
    status = 429

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Principal:
    key_id: str  # a short, non-secret name of the key ("key#1"), ANONYMOUS when auth is off
    admin: bool


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def key_from(headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> str | None:
    auth = headers.get("authorization") or ""
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    if headers.get("x-api-key"):
        return headers["x-api-key"].strip() or None
    if query is not None and query.get("api_key"):
        return query["api_key"]
    return None


class Authenticator:
    def __init__(self, api_keys: list[str], admin_keys: list[str]):
        self._keys = list(dict.fromkeys(api_keys))
        self._admin = list(dict.fromkeys(admin_keys))

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def _match(self, key: str, keys: list[str]) -> int | None:
        found = None
        for i, k in enumerate(keys):  # compare with every key, in constant time each
            if hmac.compare_digest(key.encode(), k.encode()):
                found = i
        return found

    def check(self, key: str | None, admin: bool = False) -> Principal:
        """The principal of `key`; raises `AuthError` (401 missing/invalid, 403 not admin)."""
        if admin:
            if not self._admin:
                raise AuthError(403, "forbidden", "admin routes are disabled: set auth.admin_keys "
                                "(env CHAT2AUDIO_AUTH__ADMIN_KEYS='[\"...\"]')")
            if key is None:
                raise AuthError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <admin key>'")
            i = self._match(key, self._admin)
            if i is None:
                raise AuthError(403, "forbidden", "this route needs a key from auth.admin_keys")
            return Principal(f"admin#{i + 1}", True)
        if not self._keys:
            i = self._match(key, self._admin) if key else None
            return Principal(ANONYMOUS if i is None else f"admin#{i + 1}", i is not None)
        if key is None:
            raise AuthError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>' "
                            "(WebSocket: the header or ?api_key=<key>)")
        i = self._match(key, self._keys)
        if i is not None:
            return Principal(f"key#{i + 1}", False)
        j = self._match(key, self._admin)
        if j is not None:
            return Principal(f"admin#{j + 1}", True)
        raise AuthError(401, "unauthorized", "invalid API key")


class KeyLimiter:
    """Counts concurrent turns and open sessions per key; beyond the limit: `LimitError`."""

    def __init__(self, max_turns: int, max_sessions: int):
        self.max_turns, self.max_sessions = max_turns, max_sessions
        self._turns: dict[str, int] = defaultdict(int)
        self._sessions: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    @contextmanager
    def turn(self, key_id: str) -> Iterator[None]:
        with self._lock:
            if self._turns[key_id] >= self.max_turns:
                raise LimitError(f"too many concurrent turns for this key (limit {self.max_turns}); retry later")
            self._turns[key_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self._turns[key_id] -= 1

    @contextmanager
    def connection(self, key_id: str) -> Iterator[None]:
        with self._lock:
            if self._sessions[key_id] >= self.max_sessions:
                raise LimitError(f"too many open sessions for this key (limit {self.max_sessions})")
            self._sessions[key_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self._sessions[key_id] -= 1

    def active_turns(self) -> int:
        with self._lock:
            return sum(self._turns.values())


_KEY_RE = re.compile(r"(api_key=)[^&\s\"']+", re.IGNORECASE)


def redact(text: str) -> str:
    """Replace `api_key=<secret>` in a URL or log line by `api_key=***`."""
    return _KEY_RE.sub(r"\1***", text)


class RedactingFilter(logging.Filter):
    """Install on uvicorn's loggers so access and error lines never show a query-string key."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str) and "api_key=" in record.msg:
            record.msg = redact(record.msg)
        return True


def install_log_redaction() -> None:
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
