"""Settings precedence: CLI > env > YAML > defaults; env JSON for lists, types coerced."""
import re
from pathlib import Path

import pytest

from agent.config import DEFAULT_CONFIG, ConfigError, load_settings


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_default_file_loads_and_resolves_paths():
    s = load_settings(DEFAULT_CONFIG, env={})
    assert s.llm.backend == "transformers" and s.server.port == 8000 and s.server.host == "127.0.0.1"
    assert s.paths.speakers_dir == DEFAULT_CONFIG.parent.parent / "speakers"
    assert s.paths.models_dir == DEFAULT_CONFIG.parent.parent / "cache" / "models"


def test_precedence_cli_env_yaml_default(tmp_path):
    cfg = write(tmp_path, "server:\n  port: 7000\n  host: 0.0.0.0\nllm:\n  backend: openai\n")
    s = load_settings(cfg, env={})
    assert (s.server.port, s.server.host, s.llm.backend, s.llm.temperature) == (7000, "0.0.0.0", "openai", 0.8)
    env = {"CHAT2AUDIO_SERVER__PORT": "7100", "CHAT2AUDIO_LLM__BASE_URL": "http://127.0.0.1:9000/v1"}
    s = load_settings(cfg, env=env)
    assert s.server.port == 7100 and s.llm.base_url == "http://127.0.0.1:9000/v1"
    s = load_settings(cfg, env=env, cli={"server.port": 7200, "server.host": None})
    assert s.server.port == 7200 and s.server.host == "0.0.0.0"


def test_env_types(tmp_path):
    env = {"CHAT2AUDIO_AUTH__API_KEYS": '["k1", "k2"]', "CHAT2AUDIO_TTS__WARMUP": "false",
           "CHAT2AUDIO_LLM__TEMPERATURE": "0.2", "CHAT2AUDIO_LLM__MODEL": "",
           "CHAT2AUDIO_PATHS__CACHE_DIR": str(tmp_path), "OTHER_VAR": "x"}
    s = load_settings(write(tmp_path, "llm:\n  model: m\n"), env=env)
    assert s.auth.api_keys == ["k1", "k2"] and s.tts.warmup is False and s.llm.temperature == 0.2
    assert s.llm.model is None and s.paths.cache_dir == tmp_path


@pytest.mark.parametrize("env,needle", [
    ({"CHAT2AUDIO_NOPE__X": "1"}, "unknown section"),
    ({"CHAT2AUDIO_LLM__NOPE": "1"}, "unknown key"),
    ({"CHAT2AUDIO_AUTH__API_KEYS": "k1"}, "JSON"),
    ({"CHAT2AUDIO_LLM__BACKEND": "bogus"}, "llm.backend"),
    ({"CHAT2AUDIO_SERVER__PORT": "eighty"}, "CHAT2AUDIO_SERVER__PORT"),
])
def test_bad_env_is_a_clear_error(env, needle):
    with pytest.raises(ConfigError, match=needle):
        load_settings(DEFAULT_CONFIG, env=env)


def test_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.yaml", env={})
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(write(tmp_path, "- a\n- b\n"), env={})
    with pytest.raises(ConfigError, match="serverr"):
        load_settings(write(tmp_path, "serverr:\n  port: 1\n"), env={})


@pytest.mark.parametrize("device,ok", [("cpu", True), ("cuda", True), ("cuda:1", True), ("mps", True),
                                       ("gpu0", False), ("cuda:", False), ("cuda:01", False), ("CUDA", False),
                                       ("cuda:-1", False), (" cpu", False)])
def test_tts_device_is_a_torch_device(device, ok):
    """A device torch refuses fails here, naming the key and the value, not at startup in the engine."""
    env = {"CHAT2AUDIO_TTS__DEVICE": device}
    if ok:
        assert load_settings(DEFAULT_CONFIG, env=env).tts.device == device
    else:
        with pytest.raises(ConfigError, match=r"tts\.device .*" + re.escape(repr(device))):
            load_settings(DEFAULT_CONFIG, env=env)


def test_a_busy_port_is_reported_before_the_models_load(monkeypatch):
    """`python app.py` on a port in use stops at once with a line naming it, not after loading the models."""
    import socket

    import app

    monkeypatch.setattr(app, "server", lambda *a, **k: pytest.fail("the server was built"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SystemExit) as e:
            app.main(["--port", str(port)])
    assert f"cannot listen on 127.0.0.1:{port}" in str(e.value) and "in use" in str(e.value)


def test_config_file_mistakes_are_named(tmp_path):
    """A mistyped key lists the valid ones of its section; a YAML slip names the file, line and column."""
    typo = tmp_path / "typo.yaml"
    typo.write_text("server:\n  prot: 8001\nllm:\n  backend: openai\n")
    with pytest.raises(ConfigError) as e:
        load_settings(typo)
    assert "server.prot" in str(e.value) and "valid keys here: " in str(e.value) and "port" in str(e.value)
    broken = tmp_path / "broken.yaml"
    broken.write_text("server:\n  port: 8001\n  host: [\n")
    with pytest.raises(ConfigError) as e:
        load_settings(broken)
    assert str(broken) in str(e.value) and "invalid YAML at line 4" in str(e.value) and "<unicode" not in str(e.value)


def test_listening_beyond_this_machine_without_keys_is_warned():
    from agent.runtime import exposure_warning

    def settings(host: str, keys: str = "[]"):
        return load_settings(DEFAULT_CONFIG, env={"CHAT2AUDIO_SERVER__HOST": host, "CHAT2AUDIO_AUTH__API_KEYS": keys})

    assert "0.0.0.0" in exposure_warning(settings("0.0.0.0")) and "auth.api_keys" in exposure_warning(settings("0.0.0.0"))
    assert exposure_warning(settings("0.0.0.0", '["k1"]')) is None
    assert exposure_warning(settings("127.0.0.1")) is None and exposure_warning(settings("localhost")) is None
