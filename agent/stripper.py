"""Streaming removal of text that must never be spoken.

`ThinkFilter` drops `<think>…</think>` reasoning. `Stripper` (which applies a ThinkFilter
first) also drops stage directions — （微笑着）, (smiles), *waves*, 【…】, [laughs] — and turns
`[key:value]` tags into `Tag` items, reported in order with the text around them. `**bold**`
markers are removed and their words kept. Dialogue in 「」 and “” is left alone.

Both are pure and synchronous: `push(delta)` may be fed any split of the text (one
character at a time, or the whole reply) and gives the same result; `flush()` ends the stream.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# opener -> closer of stage directions (square brackets may carry a tag instead)
DIRECTION_BRACKETS = {"（": "）", "(": ")", "[": "]", "【": "】", "*": "*"}
_TAG_RE = re.compile(r"^\s*([A-Za-z_][\w-]{0,31})\s*[:=]\s*([^\[\]]{1,64}?)\s*$")


@dataclass(frozen=True)
class Tag:
    """A `[name:value]` tag seen in the reply, e.g. Tag("emotion", "happy")."""

    name: str
    value: str


Piece = str | Tag


class ThinkFilter:
    """Removes `<think>…</think>` spans (and stray `</think>` markers) from a text stream."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._hold = ""  # a possible prefix of a marker, waiting for the next characters
        self._in_think = False

    @property
    def in_think(self) -> bool:
        return self._in_think

    def push(self, delta: str) -> str:
        s, out, i = self._hold + delta, [], 0
        self._hold = ""
        while i < len(s):
            if self._in_think:
                k = s.find(THINK_CLOSE, i)
                if k >= 0:
                    self._in_think, i = False, k + len(THINK_CLOSE)
                    continue
                self._hold = _marker_prefix_tail(s, i, (THINK_CLOSE,))
                return "".join(out)
            k = s.find("<", i)
            if k < 0:
                out.append(s[i:])
                break
            out.append(s[i:k])
            if s.startswith(THINK_OPEN, k):
                self._in_think, i = True, k + len(THINK_OPEN)
            elif s.startswith(THINK_CLOSE, k):
                i = k + len(THINK_CLOSE)  # a stray close marker (template opened the block): drop it
            elif any(m.startswith(s[k:]) for m in (THINK_OPEN, THINK_CLOSE)):
                self._hold = s[k:]
                break
            else:
                out.append("<")
                i = k + 1
        return "".join(out)

    def flush(self) -> str:
        """End of stream: a held partial marker was ordinary text; an unclosed think block is dropped."""
        held, in_think = self._hold, self._in_think
        self.reset()
        return "" if in_think else held


def _marker_prefix_tail(s: str, start: int, markers: tuple[str, ...]) -> str:
    """The longest suffix of s[start:] that is a proper prefix of one of the markers."""
    for n in range(min(len(s) - start, max(len(m) for m in markers) - 1), 0, -1):
        tail = s[len(s) - n:]
        if any(m.startswith(tail) for m in markers):
            return tail
    return ""


class Stripper:
    """Stage directions and tags out; speakable text and `Tag`s in order.

    Args:
        max_direction_chars: a direction still open after this many characters was not one:
            its opener and text are given back as ordinary text (bounded memory, nothing lost).
    """

    def __init__(self, max_direction_chars: int = 200) -> None:
        self.max_direction_chars = max_direction_chars
        self._think = ThinkFilter()
        self.reset()

    def reset(self) -> None:
        self._think.reset()
        self._hold = ""  # a lone "*" waiting to know whether "**" follows
        self._opener: str | None = None  # inside a direction opened by this character
        self._depth = 0
        self._buf: list[str] = []  # text of the open direction

    def push(self, delta: str) -> list[Piece]:
        return self._scan(self._think.push(delta), final=False)

    def flush(self) -> list[Piece]:
        out = self._scan(self._think.flush(), final=True)
        if self._opener is not None:  # unclosed: it was text after all
            opener, text = self._opener, "".join(self._buf)
            self._opener, self._buf, self._depth = None, [], 0
            out = _merge(out + [opener] + self._scan(text, final=True))
            while self._opener is not None:  # the rescan opened another unclosed one
                opener, text = self._opener, "".join(self._buf)
                self._opener, self._buf, self._depth = None, [], 0
                out = _merge(out + [opener] + self._scan(text, final=True))
        self.reset()
        return out

    def _scan(self, text: str, final: bool) -> list[Piece]:
        s, out, i = self._hold + text, [], 0
        self._hold = ""
        while i < len(s):
            if self._opener is not None:
                s, i = self._scan_direction(s, i, out)
                continue
            c = s[i]
            if c == "*":
                if i + 1 == len(s) and not final:
                    self._hold = "*"
                    break
                nxt = s[i + 1] if i + 1 < len(s) else ""
                if nxt == "*":  # **bold**: markers dropped, words kept
                    i += 2
                    continue
                if nxt == "" or nxt.isspace():  # "5 * 3", a bullet, a trailing star: literal
                    out.append(c)
                    i += 1
                    continue
            if c in DIRECTION_BRACKETS:
                self._opener, self._depth, self._buf = c, 1, []
            else:
                out.append(c)
            i += 1
        return _merge(out)

    def _scan_direction(self, s: str, i: int, out: list[Piece]) -> tuple[str, int]:
        """Consume s[i] inside an open direction; returns the (possibly rewritten) text and next index."""
        c, opener = s[i], self._opener
        assert opener is not None
        closer = DIRECTION_BRACKETS[opener]
        if opener == "*" and c == "\n":  # *emphasis* never spans lines: the star was literal
            return self._abort(s[i:], out)
        if c == opener and opener != closer:
            self._depth += 1
        elif c == closer:
            self._depth -= 1
            if self._depth == 0:
                inner = "".join(self._buf)
                self._opener, self._buf = None, []
                if opener == "[" and (m := _TAG_RE.match(inner)):
                    out.append(Tag(m.group(1).lower(), m.group(2).strip()))
                return s, i + 1
        self._buf.append(c)
        if len(self._buf) > self.max_direction_chars:
            return self._abort(s[i + 1:], out)
        return s, i + 1

    def _abort(self, rest: str, out: list[Piece]) -> tuple[str, int]:
        """Not a direction after all: emit the opener as text and rescan what it held."""
        opener, held = self._opener, "".join(self._buf)
        self._opener, self._buf, self._depth = None, [], 0
        out.append(opener or "")
        return held + rest, 0


def _merge(pieces: list[Piece]) -> list[Piece]:
    """Join adjacent strings; drop empty ones."""
    out: list[Piece] = []
    for p in pieces:
        if isinstance(p, str):
            if not p:
                continue
            if out and isinstance(out[-1], str):
                out[-1] += p
                continue
        out.append(p)
    return out


def strip_all(text: str) -> tuple[str, list[Tag]]:
    """Whole-text convenience: the speakable text and the tags."""
    st = Stripper()
    pieces = st.push(text) + st.flush()
    return "".join(p for p in pieces if isinstance(p, str)), [p for p in pieces if isinstance(p, Tag)]
