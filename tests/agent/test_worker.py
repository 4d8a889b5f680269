"""Worker construction without a LiveKit server: settings checks, components, turn-detector fallback."""

from __future__ import annotations

import logging

import pytest
from livekit.agents import AgentSession

from openrouter_voice.agent import OpenRouterLLM
from openrouter_voice.agent.worker import build_llm, build_session, load_turn_detection, missing_settings, run_worker
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
    assert session.llm.router._client.is_closed  # the session's end closes its connections


async def test_the_worker_llm_closes_its_router(env):
    or_llm = build_llm(load_settings())
    await or_llm.aclose()
    assert or_llm.router._client.is_closed


async def test_the_loaded_turn_detector_is_the_one_the_session_uses(env):
    env.setenv("DEEPGRAM_API_KEY", "dg-key-123456")
    env.setenv("CARTESIA_API_KEY", "ca-key-123456")
    from livekit.plugins import silero

    detector = load_turn_detection()
    session = build_session(load_settings(), vad=silero.VAD.load(), turn_detection=detector)
    assert session.turn_detection is detector
    await session.llm.aclose()
    fallback = build_session(load_settings(), vad=silero.VAD.load(), turn_detection=load_turn_detection(_broken))
    assert fallback.turn_detection == "vad"
    await fallback.llm.aclose()


def _broken() -> object:
    raise OSError("weights missing")


async def test_usage_is_logged_per_turn_and_summarised_per_session(make_agent, caplog):
    from openrouter_voice.agent.worker import log_usage
    from openrouter_voice.testing import Script

    kit = make_agent(["a/primary", "b/backup"])
    kit.upstream.script("a/primary", [Script(text="First.", usage={"prompt_tokens": 10, "completion_tokens": 2,
                                                                   "cost": 0.001}),
                                      Script(status=429, retry_after=30)])
    kit.upstream.script("b/backup", Script(text="Second.", usage={"prompt_tokens": 12, "completion_tokens": 3,
                                                                  "cost": 0.002}))
    summarise = log_usage(kit.llm)
    caplog.set_level(logging.INFO, logger="openrouter_voice.agent")
    async with AgentSession(llm=kit.llm) as session:
        await session.start(kit.assistant())
        await session.run(user_input="One")
        await session.run(user_input="Two")
    summarise()
    lines = [r.getMessage() for r in caplog.records if r.name == "openrouter_voice.agent"]
    turns = [line for line in lines if line.startswith("turn usage:")]
    assert len(turns) == 2
    assert "model=a/primary prompt=10 completion=2 cost=$0.001000 fallback=False" in turns[0]
    assert "model=b/backup prompt=12 completion=3 cost=$0.002000 fallback=True" in turns[1]
    summary = next(line for line in lines if line.startswith("session summary:"))
    assert "2 turns, 22 prompt + 5 completion tokens, $0.003000" in summary
    assert "a/primary x1" in summary and "b/backup x1" in summary and "fallbacks: 1" in summary


def test_job_process_logs_are_redacted(caplog):
    from openrouter_voice.agent.worker import redact_process_logs
    from openrouter_voice.router import register_secret

    secret = "dg-secret-value-0123456789"
    register_secret(secret)
    records: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Capture()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        redact_process_logs()
        redact_process_logs()  # idempotent: prewarm may run it more than once per process
        assert len(handler.filters) == 1
        logging.getLogger("openrouter_voice.agent.test").warning("key is %s", secret)
    finally:
        root.removeHandler(handler)
    assert records and secret not in records[-1] and "***" in records[-1]


def test_run_worker_hands_logging_to_livekit(env, monkeypatch):
    import sys

    from livekit.agents import cli

    from openrouter_voice.agent import worker
    from openrouter_voice.router import RedactingFilter

    for name, value in {"LIVEKIT_URL": "ws://127.0.0.1:7880", "LIVEKIT_API_KEY": "devkey",
                        "LIVEKIT_API_SECRET": "secret-0123456789", "DEEPGRAM_API_KEY": "dg-key-123456",
                        "CARTESIA_API_KEY": "ca-key-123456"}.items():
        env.setenv(name, value)
    ran: list[tuple[object, list[str]]] = []
    monkeypatch.setattr(cli, "run_app", lambda server: ran.append((server, list(sys.argv))))
    monkeypatch.setattr(sys, "argv", ["pytest"])
    ours = logging.StreamHandler()
    ours.addFilter(RedactingFilter())
    logging.getLogger().addHandler(ours)  # what `openrouter-voice agent` installs before run_worker
    agent_logger = logging.getLogger("openrouter_voice.agent")
    level = agent_logger.level
    logging.getLogger("openrouter_voice").setLevel(logging.WARNING)
    try:
        run_worker(["start", "--log-level", "INFO"])
        assert ran == [(worker.server, ["openrouter-voice agent", "start", "--log-level", "INFO"])]
        assert ours not in logging.getLogger().handlers  # livekit installs its own: no duplicate lines
        assert agent_logger.isEnabledFor(logging.INFO)  # per-turn usage and summaries still show
    finally:
        logging.getLogger().removeHandler(ours)
        agent_logger.setLevel(level)
