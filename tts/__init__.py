"""GPT-SoVITS-compatible text-to-speech: checkpoints, models, frontend and the Engine."""
from tts.errors import TTSError
from tts.types import AudioChunk, SynthesisOptions

__all__ = ["AudioChunk", "SynthesisOptions", "TTSError", "Engine"]


def __getattr__(name: str):
    # Lazy: importing tts must not pull torch before it is needed (the agent imports tts.types).
    if name == "Engine":
        from tts.engine import Engine

        return Engine
    raise AttributeError(name)
