"""G2PW polyphone disambiguation (ONNX), as GPT-SoVITS v2 uses it for Mandarin.

A G2PW model folder (the g2pw package's model zip) holds:
  g2pW.onnx                           inputs input_ids, token_type_ids, attention_mask [B, T] int64,
                                      phoneme_mask [B, L] float32, char_ids [B], position_ids [B] int64;
                                      output probs [B, L] over the polyphone labels
  POLYPHONIC_CHARS.txt                char \t bopomofo-with-tone, one reading a line (defines the L labels)
  MONOPHONIC_CHARS.txt                char \t bopomofo-with-tone
  bopomofo_to_pinyin_wo_tune_dict.json
  char_bopomofo_dict.json
  config.py (optional)                only `use_mask` / `use_char_phoneme` are read, without executing it
plus a BERT tokenizer folder (the one of the zh BERT model; vocab.txt).

The model works on traditional characters: text is converted with OpenCC "s2tw" when the
`opencc` package is installed, otherwise character by character. Per sentence, polyphonic
characters are predicted from a window of 16 characters around them; every other character
takes its monophonic reading or pypinyin's. Word-level corrections (polyphonic .rep tables)
are then applied per jieba word, as the reference's `correct_pronunciation` does.
"""
from __future__ import annotations

import ast
import json
import logging
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
from pypinyin import Style, pinyin
from pypinyin.contrib.tone_convert import to_finals_tone3, to_initials

from tts.errors import TTSError

__all__ = ["G2PW", "G2PWError"]

log = logging.getLogger(__name__)

_DATA = Path(__file__).parent / "data"
CONTEXT_CHARS = 16
MAX_TOKENS = 512
# Characters the reference never sends to the model, and monophonic entries it ignores.
NOT_POLYPHONIC = frozenset("一不和咋嗲剖差攢倒難奔勁拗肖瘙誒泊听噢")
NOT_MONOPHONIC = frozenset("似攢")
_MODEL_FILES = ("POLYPHONIC_CHARS.txt", "MONOPHONIC_CHARS.txt",
                "bopomofo_to_pinyin_wo_tune_dict.json", "char_bopomofo_dict.json")


class G2PWError(TTSError):
    """The configured G2PW folder is missing files or unreadable."""

    code = "bad_g2pw_model"


@dataclass(frozen=True)
class _Labels:
    labels: tuple[str, ...]  # L output classes
    char_ids: dict[str, int]  # polyphonic char -> id (sorted order)
    masks: dict[str, np.ndarray]  # char -> [L] float32, 1 where the label is a reading of the char
    polyphonic: frozenset[str]
    monophonic: dict[str, str]  # char -> bopomofo


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    lines = path.read_text(encoding="utf-8").strip().split("\n")
    return [tuple(line.split("\t")[:2]) for line in lines if "\t" in line]


def _read_flags(path: Path) -> dict[str, bool]:
    """`use_mask` / `use_char_phoneme` literals of config.py, read with ast (never executed)."""
    flags = {"use_mask": True, "use_char_phoneme": False}
    if not path.exists():
        return flags
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in flags:
                    flags[target.id] = bool(node.value.value)
    return flags


def _build_labels(poly: list[tuple[str, str]], mono: list[tuple[str, str]], char_phoneme: bool) -> _Labels:
    names = [f"{c} {p}" if char_phoneme else p for c, p in poly]
    labels = tuple(sorted(set(names)))
    index = {label: i for i, label in enumerate(labels)}
    readings: dict[str, list[int]] = {}
    for (char, _), name in zip(poly, names):
        readings.setdefault(char, []).append(index[name])
    chars = sorted(readings)
    masks = {}
    for char, ids in readings.items():
        mask = np.zeros(len(labels), dtype=np.float32)
        mask[ids] = 1.0
        masks[char] = mask
    monophonic = {c: p for c, p in mono if c not in NOT_MONOPHONIC}
    return _Labels(labels, {c: i for i, c in enumerate(chars)}, masks,
                   frozenset(chars) - NOT_POLYPHONIC, monophonic)


@lru_cache(maxsize=1)
def word_corrections() -> dict[str, list[str]]:
    """Word (or char) -> TONE3 readings from the polyphonic tables; the -fix table wins."""
    table: dict[str, list[str]] = {}
    for name in ("g2pw-polyphonic.rep", "g2pw-polyphonic-fix.rep"):
        for line in (_DATA / name).read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition(":")
            if sep:  # "word: ['a1', 'b2']"
                table[key.strip()] = value.split("'")[1::2]
    return table


class _VocabTokenizer:
    """BERT WordPiece over a vocab.txt, enough for G2PW's per-character calls.

    G2PW tokenises one character (or one [A-Za-z0-9] run) at a time, lower-cased, so BERT's
    basic tokenizer reduces to a vocabulary lookup plus greedy longest-match "##" pieces.
    """

    def __init__(self, vocab: dict[str, int]) -> None:
        self._vocab = vocab
        self._unk = vocab.get("[UNK]", 0)

    @classmethod
    def from_file(cls, path: Path) -> "_VocabTokenizer":
        words = path.read_text(encoding="utf-8").split("\n")
        return cls({w.strip(): i for i, w in enumerate(words) if w.strip()})

    def tokenize(self, word: str) -> list[str]:
        word = word.strip()
        pieces: list[str] = []
        start = 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self._vocab:
                    break
                end -= 1
            if end == start:
                return ["[UNK]"] if word else []
            pieces.append(piece)
            start = end
        return pieces

    def convert_tokens_to_ids(self, tokens: list[str]) -> list[int]:
        return [self._vocab.get(t, self._unk) for t in tokens]


def _char_s2t() -> Callable[[str], str]:
    try:
        from opencc import OpenCC  # optional dependency

        cc = OpenCC("s2tw")
        return lambda text: cc.convert(text)
    except Exception:  # not installed (or no s2tw config): per-character table
        from tts.frontend.zh_normalize import _t2s_table

        s2t: dict[int, str] = {}
        for trad, simp in _t2s_table().items():
            s2t.setdefault(ord(simp), chr(trad))
        return lambda text: text.translate(s2t)


class G2PW:
    """Polyphone reading predictor. Thread-safe; one ONNX session per instance."""

    def __init__(self, session, tokenizer, labels: _Labels, bopomofo_to_pinyin: dict[str, str],
                 char_phoneme: bool, use_mask: bool) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._labels = labels
        self._bopomofo = bopomofo_to_pinyin
        self._char_phoneme = char_phoneme
        self._use_mask = use_mask
        self._to_traditional = _char_s2t()
        self._lock = threading.Lock()

    @classmethod
    def from_dir(cls, model_dir: str | Path, tokenizer_dir: str | Path | None = None) -> G2PW:
        """Load a G2PW model folder; the tokenizer comes from `tokenizer_dir` (default: the model folder)."""
        model_dir = Path(model_dir)
        onnx_path = next((p for p in (model_dir / "g2pW.onnx", model_dir / "g2pw.onnx") if p.exists()), None)
        missing = [n for n in _MODEL_FILES if not (model_dir / n).exists()]
        if onnx_path is None or missing:
            raise G2PWError(f"G2PW folder {model_dir} lacks {', '.join(missing + (['g2pW.onnx'] if onnx_path is None else []))}")
        try:
            import onnxruntime as ort

            flags = _read_flags(model_dir / "config.py")
            labels = _build_labels(_read_pairs(model_dir / "POLYPHONIC_CHARS.txt"),
                                   _read_pairs(model_dir / "MONOPHONIC_CHARS.txt"), flags["use_char_phoneme"])
            bopomofo = json.loads((model_dir / "bopomofo_to_pinyin_wo_tune_dict.json").read_text(encoding="utf-8"))
            options = ort.SessionOptions()
            options.intra_op_num_threads = 2
            session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
            tokenizer = _VocabTokenizer.from_file(Path(tokenizer_dir or model_dir) / "vocab.txt")
        except (OSError, ValueError, RuntimeError) as e:
            raise G2PWError(f"cannot load G2PW model from {model_dir}: {e}") from e
        return cls(session, tokenizer, labels, bopomofo, flags["use_char_phoneme"], flags["use_mask"])

    # ------------------------------------------------------------ sentence readings

    def predict(self, sentence: str) -> list[str | None]:
        """One TONE3 pinyin (neutral = 5) per character; punctuation maps to itself; None if unknown."""
        if not sentence:
            return []
        trad = self._to_traditional(sentence)
        if len(trad) != len(sentence):  # a converter that changed the length: keep the original
            trad = sentence
        from tts.frontend.zh_normalize import _t2s_table

        fallback = pinyin(trad.translate(_t2s_table()), neutral_tone_with_five=True, style=Style.TONE3)
        out: list[str | None] = []
        queries: list[int] = []
        for i, char in enumerate(trad):
            if char in self._labels.polyphonic:
                out.append(None)
                queries.append(i)
            elif char in self._labels.monophonic:
                out.append(self._to_pinyin(self._labels.monophonic[char]))
            else:
                out.append(fallback[i][0] if i < len(fallback) else None)
        if queries:
            left = max(0, queries[0] - CONTEXT_CHARS)
            right = min(len(trad), queries[-1] + CONTEXT_CHARS + 1)
            for i, reading in zip(queries, self._run(trad[left:right], [q - left for q in queries])):
                out[i] = reading
        return out

    def _to_pinyin(self, bopomofo: str) -> str | None:
        base = self._bopomofo.get(bopomofo[:-1])
        return base + bopomofo[-1] if base and bopomofo[-1] in "12345" else None

    def _tokenize(self, text: str) -> tuple[list[str], list[int]]:
        """Tokens of text (one piece per char; [A-Za-z0-9] runs as words) and char -> token index."""
        tokens: list[str] = []
        char_to_token: list[int] = []
        for m in re.finditer(r"[a-zA-Z0-9]+|.", text, flags=re.S):
            pieces = self._tokenizer.tokenize(m.group(0))
            if not pieces or pieces == ["[UNK]"]:
                pieces = ["[UNK]"]
            start = len(tokens)
            tokens += pieces
            char_to_token += [start] * len(m.group(0))
            pos = 0  # chars covered by each sub-piece of a word
            for k, piece in enumerate(pieces):
                width = len(piece[2:] if piece.startswith("##") else piece)
                for j in range(pos, min(pos + width, len(m.group(0)))):
                    char_to_token[m.start() + j] = start + k
                pos += width
        return tokens, char_to_token

    def _run(self, text: str, queries: list[int]) -> list[str | None]:
        text = text.lower()
        tokens, char_to_token = self._tokenize(text)
        shift = 0
        if len(tokens) > MAX_TOKENS - 2:  # keep a window of tokens around the first query
            centre = char_to_token[queries[0]]
            shift = min(max(0, centre - (MAX_TOKENS - 2) // 2), len(tokens) - (MAX_TOKENS - 2))
            tokens = tokens[shift: shift + MAX_TOKENS - 2]
        ids = self._tokenizer.convert_tokens_to_ids(["[CLS]"] + tokens + ["[SEP]"])
        n, t = len(queries), len(ids)
        positions = [min(max(char_to_token[q] - shift, 0), len(tokens) - 1) + 1 for q in queries]
        full = np.ones(len(self._labels.labels), dtype=np.float32)
        feeds = {
            "input_ids": np.tile(np.asarray(ids, dtype=np.int64), (n, 1)),  # [N, T]
            "token_type_ids": np.zeros((n, t), dtype=np.int64),
            "attention_mask": np.ones((n, t), dtype=np.int64),
            "phoneme_mask": np.stack([self._labels.masks[text[q]] if self._use_mask else full for q in queries]),
            "char_ids": np.asarray([self._labels.char_ids[text[q]] for q in queries], dtype=np.int64),
            "position_ids": np.asarray(positions, dtype=np.int64),
        }
        with self._lock:
            probs = self._session.run(None, feeds)[0]  # [N, L]
        names = [self._labels.labels[k] for k in np.argmax(probs, axis=1)]
        if self._char_phoneme:
            names = [name.split(" ")[1] for name in names]
        return [self._to_pinyin(name) for name in names]

    # ------------------------------------------------------------ word readings

    def word_readings(self, word: str, readings: list[str | None]) -> tuple[list[str], list[str]]:
        """(initials, TONE3 finals) of one jieba word from its predicted readings and the correction tables."""
        fixes = word_corrections()
        if word in fixes:
            readings = list(fixes[word])
        else:
            readings = [fixes[ch][0] if ch in fixes and fixes[ch] else r for ch, r in zip(word, readings)]
        initials: list[str] = []
        finals: list[str] = []
        for ch, reading in zip(word, readings):
            if not reading:  # no prediction: pypinyin's reading of the char
                reading = (pinyin(ch, neutral_tone_with_five=True, style=Style.TONE3) or [[ch]])[0][0]
            if reading[0].isalpha():
                initials.append(to_initials(reading))
                finals.append(to_finals_tone3(reading, neutral_tone_with_five=True))
            else:
                initials.append(reading)
                finals.append(reading)
        return initials, finals
