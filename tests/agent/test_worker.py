"""Worker construction without a LiveKit server: settings checks, components, turn-detector fallback."""

from __future__ import annotations

import logging

import pytest
from livekit.agents import AgentSession

from openrouter_voice.agent import OpenRouterLLM
from openrouter_voice.agent.worker import build_session, load_turn_detection, missing_settings, run_worker
from openrouter_voice.config import load_settings


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    # Building a session prewarms the LLM (a GET on the base URL): keep it on this machine.
    monkeypatch.setenv("OPENROUTER_BASE_URL", "http://127.0.0.1:9/api/v1")
    for name in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "DEEPGRAM_API_KEY", "CARTESIA_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_missing_settings_are_named_per_subcommand(env):
    settings = load_settings()
    assert missing_settings(settings, "dev") == ["DEEPGRAM_API_KEY", "CARTESIA_API_KEY", "LIVEKIT_URL",
                                                 "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"]
    assert missing_settings(settings, "console") == ["DEEPGRAM_API_KEY", "CARTESIA_API_KEY"]
    assert missing_settings(settings, "download-files") == []
    env.setenv("DEEPGRAM_API_KEY", "dg-key-123456")
    env.setenv("CARTESIA_API_KEY", "ca-key-123456")
    assert missing_settings(load_settings(), "console") == []


def test_run_worker_refuses_to_start_and_says_what_is_missing(env, capsys):
    with pytest.raises(SystemExit) as info:
        run_worker(["dev"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "missing DEEPGRAM_API_KEY, CARTESIA_API_KEY, LIVEKIT_URL" in err
    assert "openrouter-voice doctor" in err


def test_turn_detector_loads_offline():
    detector = load_turn_detection()
    assert detector != "vad"
    assert type(detector).__name__ == "TurnDetector"


def test_turn_detector_failure_falls_back_to_vad_with_one_warning(caplog):
    def broken() -> object:
        raise RuntimeError("model files not found")

    caplog.set_level(logging.WARNING)
    assert load_turn_detection(broken) == "vad"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "falling back to VAD endpointing" in warnings[0].getMessage()


async def test_session_components_come_from_settings_and_llm_retries_are_off(env):
    env.setenv("DEEPGRAM_API_KEY", "dg-key-123456")
    env.setenv("CARTESIA_API_KEY", "ca-key-123456")
    env.setenv("OPENROUTER_DEFAULT_MODEL", "openai/gpt-4o-mini")
    env.setenv("OPENROUTER_FALLBACK_MODELS", "google/gemini-2.5-flash-lite")
    settings = load_settings()
    from livekit.plugins import silero

    session = build_session(settings, vad=silero.VAD.load(), turn_detection="vad")
    assert isinstance(session, AgentSession)
    assert type(session.stt).__module__.startswith("livekit.plugins.deepgram")
    assert type(session.tts).__module__.startswith("livekit.plugins.cartesia")
    assert isinstance(session.llm, OpenRouterLLM)
    assert [t.model for t in session.llm.router.models] == ["openai/gpt-4o-mini", "google/gemini-2.5-flash-lite"]
    assert session.conn_options.llm_conn_options.max_retry == 0
    await session.llm.aclose()
