"""Symbol tables must match GPT-SoVITS ids exactly (checkpoint embedding rows depend on them)."""
from __future__ import annotations

import hashlib

import pytest

from tts.frontend import symbols as S

# sha256 of "\n".join(symbols_v2) of the reference v2 table, and spot ids (name, id).
V2_SHA256 = "0771f6cd6f6201e8c2b0de921dc69cc04caf3f346c599d4a41413967d5674da7"
SPOTS = [("_", 95), (",", 1), (".", 3), ("!", 0), ("?", 4), ("-", 2), ("\u2026", 321), ("SP", 77),
         ("SP2", 78), ("SP3", 79), ("UNK", 86), ("AA", 5), ("a1", 97), ("zh", 320), ("ai5", 106),
         ("N", 64), ("\u3131", 324), ("Y", 92), ("er2", 151)]


def test_sizes():
    assert len(S.symbols_v1) == 322
    assert len(S.symbols_v2) == 732
    assert len(set(S.symbols_v2)) == 732


def test_v2_fingerprint():
    assert hashlib.sha256("\n".join(S.symbols_v2).encode()).hexdigest() == V2_SHA256


def test_v1_is_v2_prefix():
    assert S.symbols_v2[:322] == S.symbols_v1
    assert S.symbols_v2[322:324] == ["[", "]"]


@pytest.mark.parametrize("name,idx", SPOTS)
def test_spot_ids(name, idx):
    assert S.ids([name]) == [idx]
    if idx < 322:
        assert S.ids([name], version="v1") == [idx]


def test_unknown_maps_to_unk():
    assert S.ids(["a1", "nope", "Yaa1"]) == [97, 86, S.symbols_v2.index("Yaa1")]
    assert S.ids(["Yaa1", "["], version="v1") == [86, 86]
    assert S.ids([]) == []
