"""Command line: text -> phones.

    python -m tts.frontend --lang LANG --jsonl < texts.txt
    python -m tts.frontend --lang auto "text to convert"

LANG zh, en or ja runs that language's cleaner over the whole text (GPT-SoVITS
`clean_text`); auto, all_zh, all_ja (and the mixed zh/ja with English when given as
zh+en / ja+en) run the inference frontend with segmentation. With --jsonl every input
line gives one JSON line {"phones", "ids", "word2ph", "norm_text"}, or {"error"} when
that line cannot be converted.
"""
from __future__ import annotations

import argparse
import io
import json
import sys

from tts.frontend import CLEANERS, LANGUAGES, Phonemes, clean_text, to_phonemes

_MIXED = {"zh+en": "zh", "ja+en": "ja"}
_CHOICES = sorted(set(CLEANERS) | set(LANGUAGES) | set(_MIXED))


def convert(text: str, lang: str, version: str) -> Phonemes:
    if lang in CLEANERS:
        return clean_text(text, lang, version)
    return to_phonemes(text, _MIXED.get(lang, lang), version)


def _record(text: str, lang: str, version: str) -> dict:
    try:
        ph = convert(text, lang, version)
    except Exception as exc:  # one bad line must not stop the others
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"phones": list(ph.phones), "ids": list(ph.ids),
            "word2ph": list(ph.word2ph) if ph.word2ph is not None else None, "norm_text": ph.norm_text}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tts.frontend", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lang", required=True, choices=_CHOICES)
    ap.add_argument("--version", default="v2", choices=("v1", "v2"))
    ap.add_argument("--jsonl", action="store_true", help="read one text per stdin line, write one JSON line each")
    ap.add_argument("text", nargs="*", help="texts to convert (without --jsonl)")
    args = ap.parse_args(argv)
    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n", line_buffering=True)
    if args.jsonl:
        # split on b"\n" only, so a stray "\r" inside a line cannot change the line count
        lines = (raw.decode("utf-8", errors="replace").rstrip("\r\n") for raw in sys.stdin.buffer)
    else:
        lines = iter(args.text)
    for text in lines:
        out.write(json.dumps(_record(text, args.lang, args.version), ensure_ascii=False) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
