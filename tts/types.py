"""Small frozen dataclasses shared by the engine and its callers (no torch import here)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SAMPLE_RATE = 32000  # GPT-SoVITS v1/v2 output rate
SAMPLES_PER_TOKEN = 1280  # 40 ms of audio per semantic token at 25 Hz

LANGUAGES = ("auto", "zh", "all_zh", "en", "ja", "all_ja")  # GPT-SoVITS text_lang codes we serve


@dataclass(frozen=True)
class SynthesisOptions:
    """Per-request options. `None` means: take the speaker profile's value (then the engine default)."""

    language: str | None = None  # one of LANGUAGES; None -> profile.target_language
    speed: float | None = None  # 0.25..4, applied in the latent (as GPT-SoVITS speed_factor)
    top_k: int | None = None
    top_p: float | None = None
    temperature: float | None = None
    repetition_penalty: float | None = None
    seed: int | None = None  # None/-1 -> random
    emotion: str | None = None  # name in the profile's `emotions`; unknown -> the default reference
    noise_scale: float = 0.5
    stream: bool = True  # yield within-sentence chunks (first chunk early) instead of one chunk per sentence
    first_chunk_tokens: int | None = None  # None -> engine default
    chunk_tokens: int | None = None
    split: bool = True  # split the text into sentences (False: the caller already did)
    split_method: str = "cut5"  # how (GPT-SoVITS api_v2 text_split_method: cut0..cut5; tts.text_split.split_text)
    fragment_interval: float = 0.0  # seconds of silence appended after each sentence


@dataclass(frozen=True)
class AudioChunk:
    """A piece of synthesised audio. `pcm` is mono float32 in [-1, 1] at `sample_rate`."""

    pcm: np.ndarray
    sample_rate: int
    sentence_index: int  # index of the sentence within this synthesize() call
    seq: int  # chunk number within the sentence, from 0
    is_last: bool  # last chunk of this sentence
    is_final: bool = False  # last chunk of the whole request
    text: str = ""  # the sentence text this chunk speaks
    tokens: int = 0  # semantic tokens covered by this chunk
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def duration_ms(self) -> float:
        return 1000.0 * len(self.pcm) / self.sample_rate
