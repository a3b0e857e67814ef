"""Settings: defaults, YAML, environment overrides and validation messages that name the key."""
import pytest

from ollama_server.settings import SETTINGS
from ollama_server.settings import SettingsError
from ollama_server.settings import build_settings
from ollama_server.settings import load_settings


def test_it_has_sane_defaults(tmp_path):
    settings = build_settings({"data_dir": str(tmp_path)})
    assert settings.port == 11435
    assert settings.host == "127.0.0.1"
    assert settings.models_dir == ()


def test_it_reads_yaml_then_env_then_overrides(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("port: 12000\nthreads: 3\nlog_level: debug\n")
    settings = load_settings(config, environ={"OLLAMA_SERVER_THREADS": "5"}, overrides={"port": 13000})
    assert settings.port == 13000
    assert settings.threads == 5
    assert settings.log_level == "DEBUG"


def test_it_splits_list_values_from_env(tmp_path):
    settings = load_settings(None, environ={"OLLAMA_SERVER_MODELS_DIR": "/a, /b",
                                            "OLLAMA_SERVER_TENSOR_SPLIT": "3,1"})
    assert settings.models_dir == ("/a", "/b")
    assert settings.tensor_split == (3.0, 1.0)


@pytest.mark.parametrize("key,value", [
    ("port", "eleven"), ("port", 70000), ("threads", -1), ("max_queue", "1.5"),
    ("tensor_split", "1,-1"), ("log_level", "LOUD"), ("enable_model_inspection", "maybe"),
    ("split_mode", "diagonal"), ("default_context_size", 0), ("request_timeout", 0),
])
def test_it_rejects_invalid_values_naming_the_key(key, value):
    with pytest.raises(SettingsError, match=repr(key)):
        build_settings({key: value})


def test_it_rejects_unknown_keys():
    with pytest.raises(SettingsError, match="unknown setting 'prot'"):
        build_settings({"prot": 1})


def test_it_rejects_a_yaml_file_that_is_not_a_mapping(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("- just\n- a list\n")
    with pytest.raises(SettingsError, match="mapping"):
        load_settings(config, environ={})


def test_every_key_has_help_text_and_an_environment_variable():
    from ollama_server.settings import env_overrides
    environ = {f"OLLAMA_SERVER_{s.name.upper()}": "x" for s in SETTINGS}
    assert set(env_overrides(environ)) == {s.name for s in SETTINGS}
    assert all(s.help for s in SETTINGS)


def test_the_example_config_documents_every_key():
    from ollama_server.paths import EXAMPLE_CONFIG
    from ollama_server.settings import read_yaml
    example = read_yaml(EXAMPLE_CONFIG)
    assert set(example) == {s.name for s in SETTINGS}
    text = EXAMPLE_CONFIG.read_text()
    for setting in SETTINGS:
        line = text.index(f"\n{setting.name}:")
        assert text[:line].rstrip().splitlines()[-1].startswith("#"), f"{setting.name} has no comment"
    build_settings(example)  # and the example itself is valid
