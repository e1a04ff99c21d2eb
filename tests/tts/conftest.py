"""Shared TTS fixtures: the tiny demo models (built once per session) and a speaker folder using them."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

DEMO_REF_TEXT = "这是一个用于测试的参考音频。"


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: tiny models gain nothing from more, a busy machine only waits."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def demo_models(tmp_path_factory) -> dict[str, Path]:
    """tts.factory.build_demo into a session tmp folder: gpt, sovits, hubert, bert, ref_audio."""
    from tts.factory import build_demo

    return build_demo(tmp_path_factory.mktemp("demo-models"))


@pytest.fixture(scope="session")
def speakers_dir(demo_models, tmp_path_factory) -> Path:
    """speakers/ with `demo` (zh reference) and `demo_en` (English target, same weights)."""
    root = tmp_path_factory.mktemp("speakers")
    for sid, target in (("demo", "zh"), ("demo_en", "en")):
        d = root / sid
        d.mkdir()
        (d / "profile.yaml").write_text(
            f"gpt_model: {demo_models['gpt'].name}\nsovits_model: {demo_models['sovits'].name}\n"
            f"ref_audio: {demo_models['ref_audio'].name}\nref_text: {DEMO_REF_TEXT}\n"
            f"ref_language: zh\ntarget_language: {target}\nseed: 7\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def engine_config(demo_models, speakers_dir):
    from tts.engine import EngineConfig

    return EngineConfig(speakers_dir=speakers_dir, models_dir=demo_models["gpt"].parent,
                        hubert_dir=demo_models["hubert"], bert_dir=demo_models["bert"],
                        max_batch=4, max_queue=8, first_chunk_tokens=6, chunk_tokens=10, threads=2)
