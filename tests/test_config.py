"""Configuration: environment parsing and errors that name the variable and the fix."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openrouter_voice.config import DEFAULT_MODEL, ConfigError, load_settings, validate_model_id
from tests.fuzzing import examples


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("OPENROUTER_API_KEY", "OPENROUTER_DEFAULT_MODEL", "OPENROUTER_FALLBACK_MODELS",
                 "OPENROUTER_FIRST_TOKEN_TIMEOUT", "OPENROUTER_BASE_URL", "OPENROUTER_VOICE_ENDPOINTS",
                 "OPENROUTER_APP_NAME", "OPENROUTER_APP_URL"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_a_current_voice_chain():
    settings = load_settings()
    assert settings.chain()[0] == DEFAULT_MODEL
    assert "google/gemini-1.5-flash" not in settings.chain()
    assert "anthropic/claude-3-haiku-20240307" not in settings.chain()
    assert settings.api_key is None


def test_env_and_dotenv_are_read(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("OPENROUTER_API_KEY=sk-or-v1-fromdotenv123456\nOPENROUTER_APP_NAME=dotenv-app\n")
    monkeypatch.setenv("OPENROUTER_FALLBACK_MODELS", " openai/gpt-4o-mini , qwen/qwen3-8b:free,, ")
    settings = load_settings()
    assert settings.api_key == "sk-or-v1-fromdotenv123456"
    assert settings.openrouter_app_name == "dotenv-app"
    assert settings.openrouter_fallback_models == ["openai/gpt-4o-mini", "qwen/qwen3-8b:free"]
    assert "sk-or-v1-fromdotenv123456" not in repr(settings)


def test_chain_drops_duplicates(monkeypatch):
    monkeypatch.setenv("OPENROUTER_DEFAULT_MODEL", "openai/gpt-4o-mini")
    monkeypatch.setenv("OPENROUTER_FALLBACK_MODELS", "openai/gpt-4o-mini,google/gemini-2.5-flash")
    assert load_settings().chain() == ["openai/gpt-4o-mini", "google/gemini-2.5-flash"]


@pytest.mark.parametrize(("variable", "value", "fix"), [
    ("OPENROUTER_FIRST_TOKEN_TIMEOUT", "soon", "OPENROUTER_FIRST_TOKEN_TIMEOUT=2.0"),
    ("OPENROUTER_FIRST_TOKEN_TIMEOUT", "-1", "between 0.05 and 120"),
    ("OPENROUTER_DEFAULT_MODEL", "gemini flash", "author/slug"),
    ("OPENROUTER_DRIBBLE_WORDS_PER_SECOND", "-1", "or 0 to turn the check off"),
    ("OPENROUTER_DRIBBLE_WORDS_PER_SECOND", "slow", "OPENROUTER_DRIBBLE_WORDS_PER_SECOND=2.0"),
    ("OPENROUTER_DRIBBLE_WINDOW", "0.1", "between 0.5 and 30"),
    ("OPENROUTER_FIRST_SENTENCE_TIMEOUT", "-0.5", "or 0 to turn the check off"),
    ("OPENROUTER_FIRST_SENTENCE_TIMEOUT", "soon", "OPENROUTER_FIRST_SENTENCE_TIMEOUT=0.5"),
    ("OPENROUTER_FALLBACK_MODELS", "openai/gpt-4o-mini,not a model", "comma list"),
    ("OPENROUTER_BASE_URL", "openrouter.ai", "https://openrouter.ai/api/v1"),
    ("OPENROUTER_VOICE_ENDPOINTS", "{broken", "JSON"),
    ("OPENROUTER_APP_NAME", "Café Voice", "plain ASCII"),
    ("OPENROUTER_APP_URL", "https://exämple.com", "percent-encode"),
    ("OPENROUTER_FALLBACK_MODELS", "openai/gpt-4o-mini,llama3.2@ollama", "OPENROUTER_VOICE_ENDPOINTS='{\"ollama\""),
    ("OPENROUTER_FALLBACK_MODELS", "openai/gpt-4o-mini,gemma-3-270m@local", "added to the end of the chain by the app"),
])
def test_bad_values_name_the_variable_and_the_fix(monkeypatch, variable, value, fix):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert variable in message
    assert fix in message


def test_secret_values_are_not_echoed_in_errors(monkeypatch):
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-shouldnotshow123")
    monkeypatch.setenv("OPENROUTER_FIRST_TOKEN_TIMEOUT", "x")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "shouldnotshow" not in str(info.value)


def test_endpoints_json(monkeypatch):
    monkeypatch.setenv("OPENROUTER_VOICE_ENDPOINTS", '{"ollama": {"base_url": "http://127.0.0.1:11434/v1"}}')
    monkeypatch.setenv("OPENROUTER_FALLBACK_MODELS", "llama3.2@ollama")
    settings = load_settings()
    assert settings.endpoints["ollama"].base_url == "http://127.0.0.1:11434/v1"
    assert settings.chain()[-1] == "llama3.2@ollama"


def test_an_endpoint_key_is_masked_and_never_taken_from_a_stray_env_var(monkeypatch):
    from openrouter_voice.redact import redact

    monkeypatch.setenv("API_KEY", "stray-generic-key-from-elsewhere")
    monkeypatch.setenv("OPENROUTER_VOICE_ENDPOINTS", '{"a": {"base_url": "http://127.0.0.1:1/v1"}, '
                                                     '"b": {"base_url": "http://127.0.0.1:2/v1", '
                                                     '"api_key": "endpointSECRET4242"}}')
    settings = load_settings()
    assert settings.endpoints["a"].api_key is None
    assert redact("upstream said: bad key endpointSECRET4242") == "upstream said: bad key ***"


@settings(max_examples=examples(300))
@given(st.text(max_size=60))
def test_model_id_validation_never_crashes_and_accepts_only_sane_ids(text):
    try:
        result = validate_model_id(text)
    except ConfigError as exc:
        assert "model id" in str(exc)
    else:
        assert result == text.strip()
        assert ("/" in result or "@" in result) and " " not in result


@settings(max_examples=examples(200))
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40))
def test_any_timeout_string_gives_a_value_or_a_config_error(text):
    import os

    os.environ["OPENROUTER_FIRST_TOKEN_TIMEOUT"] = text
    try:
        value = load_settings().first_token_timeout
    except ConfigError as exc:
        assert "OPENROUTER_FIRST_TOKEN_TIMEOUT" in str(exc)
    else:
        assert 0.05 <= value <= 120
    finally:
        del os.environ["OPENROUTER_FIRST_TOKEN_TIMEOUT"]
