"""`models` and `doctor` against the scripted upstream, through the real typer app."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openrouter_voice.cli.main import app
from openrouter_voice.local import LocalModelServer, is_installed
from openrouter_voice.testing import ScriptedUpstream

GOOD_KEY = "sk-or-v1-doctorgoodkey0123456789"


@pytest.fixture
def threaded_upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream(api_key=GOOD_KEY) as up:
        yield up


@pytest.fixture
def env(monkeypatch, tmp_path, threaded_upstream):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENROUTER_BASE_URL", threaded_upstream.base_url)
    monkeypatch.setenv("OPENROUTER_VOICE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "200")
    for name in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "DEEPGRAM_API_KEY", "CARTESIA_API_KEY",
                 "OPENROUTER_DEFAULT_MODEL", "OPENROUTER_FALLBACK_MODELS", "OPENROUTER_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_models_lists_filters_and_marks_the_chain(env, threaded_upstream):
    result = run("models", "--tools")
    assert result.exit_code == 0, result.output
    assert "google/gemini-2.5-flash-lite *" in result.output  # the default primary is marked
    assert "mistralai/mistral-7b-instruct" not in result.output  # no tool support
    result = run("models", "gemini", "--max-price", "0.2")
    assert "google/gemini-2.5-flash-lite" in result.output
    assert "google/gemini-2.5-flash " not in result.output  # prompt price 0.3 $/M > 0.2
    assert "1 models" in result.output
    result = run("models", "--min-context", "200000")
    assert "anthropic/claude-3.5-haiku" in result.output and "openai/gpt-4o-mini" not in result.output
    assert threaded_upstream.catalog_requests == 1  # later calls use the disk cache


def test_models_offline_without_cache_says_how_to_fix(env):
    env.setenv("OPENROUTER_BASE_URL", "http://127.0.0.1:9/api/v1")
    result = run("models")
    assert result.exit_code == 1
    assert "could not fetch the model catalog" in result.output
    assert "OPENROUTER_BASE_URL" in result.output


# A real llama.cpp server: in the xdist group of tests/test_local_model.py, so one runs at a time
# (two servers' threads spinning against each other on 2 cores slow both down tenfold).
@pytest.mark.xdist_group("local_model")
def test_doctor_reports_every_problem_with_a_fix_and_no_secret(env):
    env.setenv("OPENROUTER_API_KEY", GOOD_KEY)
    env.setenv("OPENROUTER_FALLBACK_MODELS", "google/gemini-1.5-flash,mistralai/mistral-7b-instruct")
    env.setenv("CARTESIA_API_KEY", "cartesia-secret-value-123")
    result = run("doctor")
    output = result.output
    assert result.exit_code == 1
    assert "valid" in output
    assert "google/gemini-1.5-flash" in output and "not in OpenRouter's catalog" in output
    assert "google/gemini-2.5-flash" in output  # suggested replacement
    assert "does not support tool calling" in output
    assert "LIVEKIT_URL" in output and "DEEPGRAM_API_KEY" in output
    assert "turns go to" in output  # the chain as the app assembles it, retired ids dropped
    if is_installed():  # the 'local' extra (CI has it): the real model gives a real answer
        assert "answers offline" in output
    assert GOOD_KEY not in output and "cartesia-secret-value-123" not in output


# Serves /v1/models, then dies at the first chat request the way a llama.cpp built for another CPU does.
CRASHING_SERVER = textwrap.dedent("""
    import http.server, json, os, signal, sys
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"data": [{"id": "gemma-3-270m"}]}).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
            self.wfile.write(body)
        def do_POST(self):
            os.kill(os.getpid(), signal.SIGSEGV)
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
""")


def test_doctor_tries_the_local_model_and_names_the_fix_when_it_crashes(env):
    env.setattr("openrouter_voice.local.is_installed", lambda: True)
    env.setattr(LocalModelServer, "_prepare", lambda self: Path("unused.gguf"))
    env.setattr(LocalModelServer, "command", lambda self, model, port, lifeline: [
        sys.executable, "-c", CRASHING_SERVER, str(port)])
    output = " ".join(run("doctor").output.split())
    assert "crashed at its first answer (killed by SIGSEGV)" in output
    assert "rebuild llama.cpp for this CPU" in output


def test_doctor_asks_each_extra_endpoint_for_its_models(env, threaded_upstream):
    env.setenv("OPENROUTER_API_KEY", GOOD_KEY)
    env.setenv("OPENROUTER_VOICE_ENDPOINTS", json.dumps({
        "mine": {"base_url": threaded_upstream.base_url}, "down": {"base_url": "http://127.0.0.1:9/v1"}}))
    env.setenv("OPENROUTER_FALLBACK_MODELS", "openai/gpt-4o-mini@mine,no/such-model@mine,llama3.2@down")
    output = " ".join(run("doctor", "--quick").output.split())
    assert "endpoint 'mine' answers" in output
    assert "endpoint 'mine' does not serve 'no/such-model'" in output
    assert "endpoint 'down' (http://127.0.0.1:9/v1) does not answer: ConnectError" in output


def test_doctor_flags_a_rejected_key(env):
    env.setenv("OPENROUTER_API_KEY", "sk-or-v1-wrongkey000000000")
    result = run("doctor", "--quick")
    assert result.exit_code == 1
    assert "rejected by OpenRouter (401)" in result.output
    assert "wrongkey" not in result.output


def test_doctor_flags_no_credit_left(env, threaded_upstream):
    env.setenv("OPENROUTER_API_KEY", GOOD_KEY)
    threaded_upstream.key_info = {"limit": 5, "limit_remaining": 0, "usage": 5.0, "is_free_tier": False}
    result = run("doctor", "--quick")
    assert "no credit left" in result.output
    assert "openrouter.ai/settings/credits" in result.output


def test_bad_configuration_exits_2_naming_the_variable(env):
    env.setenv("OPENROUTER_FIRST_TOKEN_TIMEOUT", "fast")
    result = run("doctor")
    assert result.exit_code == 2
    assert "OPENROUTER_FIRST_TOKEN_TIMEOUT" in result.output
