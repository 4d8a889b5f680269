"""`chat` piped (non-interactive) through the real typer app, against the scripted upstream."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from openrouter_voice.cli.main import app
from openrouter_voice.testing import Script, ScriptedUpstream

KEY = "sk-or-v1-chattestkey0123456789"


@pytest.fixture
def up() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream(api_key=KEY) as upstream:
        yield upstream


@pytest.fixture
def env(monkeypatch, tmp_path, up):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENROUTER_API_KEY", KEY)
    monkeypatch.setenv("OPENROUTER_BASE_URL", up.base_url)
    monkeypatch.setenv("OPENROUTER_VOICE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("OPENROUTER_VOICE_LOCAL_FALLBACK", "false")
    monkeypatch.setenv("OPENROUTER_DEFAULT_MODEL", "google/gemini-2.5-flash-lite")
    monkeypatch.setenv("OPENROUTER_FALLBACK_MODELS", "openai/gpt-4o-mini")
    monkeypatch.setenv("OPENROUTER_FIRST_TOKEN_TIMEOUT", "0.5")
    return monkeypatch


def chat(*args: str, stdin: str | None = None):
    return CliRunner().invoke(app, ["chat", *args], input=stdin)


def test_piped_question_prints_only_the_answer_on_stdout(env, up):
    up.script("google/gemini-2.5-flash-lite", Script(text="Paris is the capital of France."))
    result = chat(stdin="What is the capital of France?\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Paris is the capital of France."
    assert "google/gemini-2.5-flash-lite" in result.stderr  # the footer names the model, on stderr
    request = up.requests[-1]
    assert request.messages[-1] == {"role": "user", "content": "What is the capital of France?"}
    assert request.messages[0]["role"] == "system" and "voice assistant" in request.messages[0]["content"]
    assert {t["function"]["name"] for t in request.body["tools"]} == {"get_weather", "get_model_info",
                                                                     "switch_model"}


def test_fallback_is_shown_with_its_reason(env, up):
    up.script("google/gemini-2.5-flash-lite", Script(status=429, retry_after=20))
    up.script("openai/gpt-4o-mini", Script(text="Backup here.", usage={"prompt_tokens": 50, "completion_tokens": 2,
                                                                      "cost": 0.00012}))
    result = chat("Hello")
    assert result.exit_code == 0
    assert result.stdout.strip() == "Backup here."
    assert "fallback" in result.stderr and "429" in result.stderr
    assert "50+2 tokens" in result.stderr and "$0.000120" in result.stderr


def test_a_stream_without_usage_shows_tokens_as_unknown_not_zero(env, up):
    up.script("google/gemini-2.5-flash-lite", Script(raw_events=[
        json.dumps({"choices": [{"index": 0, "delta": {"content": "No usage here."}}]}),
        json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}), "[DONE]"]))
    result = chat("Hi")
    assert result.stdout.strip() == "No usage here."
    assert "tokens n/a" in result.stderr and "0+0" not in result.stderr


def test_model_option_puts_that_model_first(env, up):
    up.script("openai/gpt-4o-mini", Script(text="Mini speaking."))
    result = chat("Hi", "--model", "openai/gpt-4o-mini")
    assert result.stdout.strip() == "Mini speaking."
    assert [r.model for r in up.requests] == ["openai/gpt-4o-mini"]


def test_retired_ids_are_dropped_at_start_with_a_replacement(env, up):
    env.setenv("OPENROUTER_DEFAULT_MODEL", "google/gemini-1.5-flash")
    env.setenv("OPENROUTER_VOICE_DEBUG", "1")
    up.script("openai/gpt-4o-mini", Script(text="Still answering."))
    result = chat("Hi")
    assert result.stdout.strip() == "Still answering."
    assert all(r.model != "google/gemini-1.5-flash" for r in up.requests)  # never sent


def test_every_model_failing_apologises_and_exits_1(env, up):
    up.script("google/gemini-2.5-flash-lite", Script(status=500))
    up.script("openai/gpt-4o-mini", Script(status=503))
    result = chat("Hello?")
    assert result.exit_code == 1
    assert "having trouble reaching my language models" in result.stdout
    assert KEY not in result.output


def test_bad_key_apology_and_clear_log_without_the_key(env, up):
    env.setenv("OPENROUTER_API_KEY", "sk-or-v1-wrongkey999999999")
    result = chat("Hello?", "--verbose")
    assert result.exit_code == 1
    assert "OPENROUTER_API_KEY" in result.stderr
    assert "wrongkey999999999" not in result.output


def test_empty_stdin_is_a_clear_error(env):
    result = chat(stdin="")
    assert result.exit_code == 2
    assert "No question on stdin" in result.stderr
