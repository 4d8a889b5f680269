"""The LiveKit worker: Deepgram then local STT, Cartesia then local TTS, Silero VAD, LiveKit turn
detection, our LLM.

Run it with livekit's own subcommands through the package's console script::

    openrouter-voice agent dev        # connect to LIVEKIT_URL, reload on change
    openrouter-voice agent start      # production
    openrouter-voice agent console    # talk to it from this terminal
    openrouter-voice agent download-files

With an OpenRouter key (and the ``local`` extra installed), the subcommands that run sessions start
the embedded local model once, in this main process, and every session puts it at the end of its
chain as the last resort when OpenRouter is unreachable (``OPENROUTER_VOICE_LOCAL_FALLBACK=false``
turns that off). Without ``OPENROUTER_VOICE_REDIS_URL``, it also starts an embedded Valkey server
(:mod:`openrouter_voice.fleet.embedded`) through which every job process shares model health
(``OPENROUTER_VOICE_EMBEDDED_HEALTH=false`` turns that off: each process keeps its own).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from livekit.agents import AgentServer, AgentSession, APIConnectOptions, JobContext, JobProcess, cli
from livekit.agents.voice.agent_session import SessionConnectOptions

from .. import app
from ..app import LocalModel
from ..config import ConfigError, Settings, load_settings
from ..local.server import ENDPOINT as LOCAL_ENDPOINT
from ..redact import RedactingFilter
from ..router.catalog import Catalog
from ..telemetry import TelemetryConfigError, start_telemetry
from ..telemetry import current as current_telemetry
from ..telemetry.worker import WorkerMetrics, serve_worker_metrics, start_job_telemetry
from .llm import OpenRouterLLM, TurnEvent

if TYPE_CHECKING:
    from ..fleet.embedded import EmbeddedStore
    from ..local import LocalModelServer

logger = logging.getLogger("openrouter_voice.agent")

# Subcommands that connect to a LiveKit server, and the settings each needs.
_SERVER_COMMANDS = {"dev", "start", "connect"}
_LIVEKIT_SETTINGS = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")
# Subcommands that run voice sessions (and so may need the local model); options that only print and exit.
_SESSION_COMMANDS = _SERVER_COMMANDS | {"console"}
_PRINT_AND_EXIT_OPTIONS = {"--help", "-h", "--list-devices"}

# How the worker's main process tells its job processes (which inherit its environment) where the
# one embedded model server it started listens. Set and cleared by run_worker only.
LOCAL_URL_ENV = "OPENROUTER_VOICE_LOCAL_URL"
LOCAL_MODEL_ENV = "OPENROUTER_VOICE_LOCAL_MODEL"
# The same for the embedded health store: job processes load their settings, and so its URL, from here.
REDIS_URL_ENV = "OPENROUTER_VOICE_REDIS_URL"

# Turn taking, chosen from the false cut-off table of `make bench-voice` (BENCHMARKS.md, "Turn taking").
# The end of a turn: Silero reports the end of speech after VAD_MIN_SILENCE of quiet, then LiveKit's turn
# detector and the endpointing delay decide. The LLM already starts on STT's final transcript (preemptive
# generation), so the healthy turn waits on STT final + LLM first sentence, not on this wait: a shorter
# wait (VAD 0.25 s, min_delay 0.2-0.5 s, dynamic) answered no sooner and cut callers off more often, and
# preemptive TTS synthesised thrown-away replies (more TTS requests) for no gain. So: LiveKit's defaults
# with its turn detector, pinned here so an upgrade cannot move them unnoticed.
VAD_MIN_SILENCE = 0.55  # seconds of quiet before the VAD reports the end of speech (Silero's default)
TURN_HANDLING: dict[str, Any] = {
    "endpointing": {"mode": "fixed", "min_delay": 0.3, "max_delay": 2.5},  # s after the last speech
    "preemptive_generation": {"enabled": True, "preemptive_tts": False},  # LLM early, TTS once the turn is sure
}


def missing_settings(settings: Settings, command: str) -> list[str]:
    """The environment variables ``command`` needs that are not set (empty for download-files).

    Deepgram and Cartesia keys are optional: without them the local speech engines hear and speak.

    >>> missing_settings(load_settings(), "dev")  # doctest: +SKIP
    ['LIVEKIT_URL']
    """
    if command not in _SERVER_COMMANDS:
        return []
    values: dict[str, Any] = {
        "LIVEKIT_URL": settings.livekit_url, "LIVEKIT_API_KEY": settings.livekit_api_key,
        "LIVEKIT_API_SECRET": settings.livekit_api_secret,
    }
    return [name for name in _LIVEKIT_SETTINGS if not values[name]]


def load_turn_detection(loader: Callable[[], Any] | None = None) -> Any:
    """LiveKit's offline turn detector, or ``"vad"`` endpointing (with one warning) if it cannot load.

    The ``turn-detector`` plugin needs model files from a hub; ``inference.TurnDetector`` with the
    ``v1-mini`` model ships its weights in livekit-local-inference and runs offline. Loading the
    weights here (not at the first turn) means a broken install is found at start-up.
    """

    def default_loader() -> Any:
        from livekit.agents.inference import TurnDetector
        from livekit.local_inference import EOT

        EOT()  # load the weights now: fail here, not mid-conversation
        return TurnDetector(version="v1-mini")

    try:
        return (loader or default_loader)()
    except Exception as exc:  # any failure to load means: endpoint on VAD silence instead
        logger.warning("turn detector unavailable (%s: %s); falling back to VAD endpointing",
                       type(exc).__name__, exc)
        return "vad"


def subcommand(argv: list[str]) -> str:
    """livekit's subcommand in ``argv`` (its first word that is not an option), or ``""``."""
    return next((a for a in argv if not a.startswith("-")), "")


def runs_sessions(argv: list[str]) -> bool:
    """True when ``argv`` runs voice sessions (``dev``, ``start``, ``console``, ``connect``): not for
    ``download-files``, no subcommand, or ``--help``.

    >>> runs_sessions(["start", "--log-level", "INFO"]), runs_sessions(["dev", "--help"])
    (True, False)
    """
    return subcommand(argv) in _SESSION_COMMANDS and not _PRINT_AND_EXIT_OPTIONS.intersection(argv)


def wants_local_model(settings: Settings, argv: list[str]) -> bool:
    """Whether ``run_worker(argv)`` should start the embedded model as the chain's last resort: only
    for subcommands that run sessions, with OPENROUTER_VOICE_LOCAL_FALLBACK on and a key set (without
    a key there is no chain for it to back up). Whether the ``local`` extra is installed is checked apart.
    """
    return runs_sessions(argv) and settings.local_fallback and settings.api_key is not None


def start_local_model(settings: Settings, argv: list[str]) -> LocalModelServer | None:
    """Start the one embedded model server this worker's sessions share, if wanted and installed.

    Never raises for a model that cannot start: it logs one warning and the worker runs without it.
    """
    if not wants_local_model(settings, argv):
        return None
    from ..local import LocalModelServer, is_installed

    if not is_installed():
        logger.debug("local model not installed: sessions run without a local last resort")
        return None
    try:
        return LocalModelServer().start()
    except Exception as exc:  # any failure: a voice agent without its last resort beats no agent
        logger.warning("local model fallback unavailable, running without it (%s: %s)", type(exc).__name__, exc)
        return None


@contextmanager
def local_model_environment(server: LocalModelServer | None) -> Iterator[None]:
    """Tell job processes where ``server`` listens (or that there is none) while the block runs.

    Job processes are spawned inside the block and inherit the environment; afterwards the two
    variables are as they were. An inherited value is cleared when there is no server: it is ours.
    """
    saved = {name: os.environ.get(name) for name in (LOCAL_URL_ENV, LOCAL_MODEL_ENV)}
    try:
        if server is not None:
            os.environ[LOCAL_URL_ENV] = server.base_url
            os.environ[LOCAL_MODEL_ENV] = server.model
        else:
            for name in saved:
                os.environ.pop(name, None)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def wants_embedded_health(settings: Settings, argv: list[str]) -> bool:
    """Whether ``run_worker(argv)`` should start the embedded health store: only for subcommands that
    run sessions, with no Redis configured and OPENROUTER_VOICE_EMBEDDED_HEALTH on."""
    return runs_sessions(argv) and settings.embedded_health and settings.redis_url is None


def start_embedded_health(settings: Settings, argv: list[str]) -> EmbeddedStore | None:
    """Start the Valkey server this worker's job processes share model health through, if wanted.

    Never raises: a store that cannot start is one warning naming the fix, and each job process then
    keeps its own health, as without the store.
    """
    if not wants_embedded_health(settings, argv):
        return None
    from ..fleet.embedded import EmbeddedStore, reap_orphans

    try:
        reap_orphans()  # stores of workers killed with SIGKILL on this machine
        return EmbeddedStore().start()
    except Exception as exc:  # any failure: per-process health beats no agent
        logger.warning("model health not shared between sessions, each keeps its own (%s: %s)",
                       type(exc).__name__, exc)
        return None


@contextmanager
def embedded_health_environment(store: EmbeddedStore | None) -> Iterator[None]:
    """Point job processes (spawned inside the block) at ``store`` through OPENROUTER_VOICE_REDIS_URL,
    and ``openrouter-voice health`` through the runtime file; both undone afterwards. Without a store
    the environment is left alone (a Redis URL there is the user's)."""
    if store is None:
        yield
        return
    from ..fleet.embedded import advertised

    saved = os.environ.get(REDIS_URL_ENV)
    os.environ[REDIS_URL_ENV] = store.url
    try:
        with advertised(store.url):
            yield
    finally:
        if saved is None:
            os.environ.pop(REDIS_URL_ENV, None)
        else:
            os.environ[REDIS_URL_ENV] = saved


def local_model(settings: Settings) -> LocalModel | None:
    """The worker's local model (its main process started it; the URL is in this process's
    environment), or None if it has none or OPENROUTER_VOICE_LOCAL_FALLBACK is off."""
    url = os.environ.get(LOCAL_URL_ENV)
    if not url or not settings.local_fallback:
        return None
    from ..local.server import MODEL_ALIAS

    return LocalModel(f"{os.environ.get(LOCAL_MODEL_ENV) or MODEL_ALIAS}@{LOCAL_ENDPOINT}", url)


async def build_llm(settings: Settings, *, catalog: Catalog | None = None, check: bool = True) -> OpenRouterLLM:
    """The session's LLM, assembled by :func:`openrouter_voice.app.build_router`: the configured chain,
    checked against ``catalog`` (unless ``check`` is False), and the worker's local model last."""
    router = await app.build_router(settings, catalog=catalog, local=local_model(settings), check=check)
    return app.build_llm(router)


def load_vad(min_silence: float | None = None) -> Any:
    """Silero VAD with the worker's end-of-speech silence (:data:`VAD_MIN_SILENCE` unless given)."""
    from livekit.plugins import silero

    return silero.VAD.load(min_silence_duration=VAD_MIN_SILENCE if min_silence is None else min_silence)


def build_session(settings: Settings, *, vad: Any, turn_detection: Any, llm: OpenRouterLLM,
                  stt: Any = None, tts: Any = None, turn: Mapping[str, Any] | None = None) -> AgentSession[None]:
    """Assemble the voice pipeline: STT and TTS chains from :mod:`openrouter_voice.speech.chains`
    (Deepgram / Cartesia first when their keys are set, the local engines last). The router owns LLM
    retries, so the session's LLM max_retry is 0: otherwise LiveKit re-sends a whole failed chain up
    to 3 more times per turn. Turn taking is :data:`TURN_HANDLING`, with ``turn``'s keys in its place.
    A :class:`~openrouter_voice.speech.dead_air.DeadAirGuard` says "One moment." when a turn stays
    silent ``OPENROUTER_VOICE_ACK_AFTER`` seconds.
    """
    from ..speech.chains import STT_CONN_OPTIONS, TTS_CONN_OPTIONS, build_stt, build_tts
    from ..speech.dead_air import DeadAirGuard
    from ..speech.tts_failover import FailoverTTS

    handling = {**TURN_HANDLING, **(turn or {}), "turn_detection": turn_detection}
    tts = tts if tts is not None else build_tts(settings)
    session: AgentSession[None] = AgentSession(
        stt=stt if stt is not None else build_stt(settings, vad=vad),
        tts=tts, vad=vad, llm=llm,
        turn_handling=handling,  # type: ignore[arg-type]
        conn_options=SessionConnectOptions(llm_conn_options=APIConnectOptions(max_retry=0),
                                           stt_conn_options=STT_CONN_OPTIONS, tts_conn_options=TTS_CONN_OPTIONS),
    )
    DeadAirGuard.watch(session, tts if isinstance(tts, FailoverTTS) else None, after=settings.voice_ack_after)
    return session


def prewarm(proc: JobProcess) -> None:
    """Load Silero VAD, the turn detector and the local speech engines once per process, before jobs
    arrive. The local engines are loaded even when Deepgram and Cartesia come first: LiveKit prewarms
    only the first engine of a chain, and the first fallback would otherwise load them on a turn.
    """
    from ..speech.local_stt import LocalSTT
    from ..speech.local_tts import LocalTTS

    redact_process_logs()
    start_job_telemetry()  # OTEL_* export from this process; turns relayed to the worker's scrape endpoint
    proc.userdata["vad"] = load_vad()
    proc.userdata["turn_detection"] = load_turn_detection()
    for name, engine in (("local_stt", LocalSTT()), ("local_tts", LocalTTS())):
        try:
            engine.prewarm()
            proc.userdata[name] = engine
        except Exception as exc:  # a broken local engine is reported by its first use, with the fix
            logger.warning("could not load the %s ahead of time (%s: %s)", name.replace("_", " "),
                           type(exc).__name__, exc)
    # Move what start-up created (modules, models) out of the cyclic garbage collector's way: a full
    # collection then scans only the sessions' objects, which shortens its pause of every session's loop.
    gc.collect()
    gc.freeze()


def redact_process_logs() -> None:
    """Mask secrets in every log record of this (job) process.

    Job processes ship their records to the worker through livekit's queue handler, which the
    worker prints without our filter; filtering here, where the router and the LLM run, covers them.
    """
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def log_usage(or_llm: OpenRouterLLM) -> Callable[[], None]:
    """Log every turn's usage as it completes; returns the function that logs the session summary.

    >>> from openrouter_voice.router import FallbackRouter
    >>> or_llm = OpenRouterLLM(router=FallbackRouter(["openai/gpt-4o-mini"]))
    >>> summarise = log_usage(or_llm)
    >>> summarise()  # at session end it logs: turns, tokens, cost, models, fallbacks
    """

    def on_turn(event: TurnEvent) -> None:
        cost = f"${event.usage.cost:.6f}" if event.usage.cost is not None else "n/a"
        logger.info("turn usage: model=%s prompt=%d completion=%d cost=%s fallback=%s apology=%s latency=%.2fs",
                    event.model, event.usage.prompt_tokens, event.usage.completion_tokens, cost, event.fell_back,
                    event.apologised, event.latency)

    or_llm.on("turn_completed", on_turn)

    def summarise() -> None:
        logger.info("session summary: %s", or_llm.stats.summary())

    return summarise


server = AgentServer(setup_fnc=prewarm)


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    """One voice session per room."""
    settings = load_settings()
    catalog = Catalog.from_settings(settings)  # one catalog: the chain check and switch_model share it
    or_llm = await build_llm(settings, catalog=catalog)
    summarise = log_usage(or_llm)

    async def end_of_session() -> None:
        summarise()
        await or_llm.aclose()

    ctx.add_shutdown_callback(end_of_session)  # first: whatever fails below, the connections are closed
    from ..speech.chains import build_stt, build_tts

    vad = ctx.proc.userdata["vad"]
    session = build_session(settings, vad=vad, turn_detection=ctx.proc.userdata.get("turn_detection", "vad"),
                            llm=or_llm, stt=build_stt(settings, vad=vad, local=ctx.proc.userdata.get("local_stt")),
                            tts=build_tts(settings, local=ctx.proc.userdata.get("local_tts")))
    current_telemetry().watch_session(session, or_llm)  # each voice turn's metrics as it ends
    await session.start(agent=app.build_assistant(settings, or_llm, catalog=catalog), room=ctx.room)


def run_worker(argv: list[str]) -> None:
    """Run livekit's CLI (``dev``, ``start``, ``console``, ``download-files``...) with ``argv``.

    Settings a subcommand needs are checked first and reported by name, instead of failing later.
    For subcommands that run sessions the embedded local model is started here, once for all job
    processes (:func:`start_local_model`), and so is the embedded health store
    (:func:`start_embedded_health`); both are stopped when livekit's CLI returns, or fails.
    """
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    command = subcommand(argv)
    missing = missing_settings(settings, command)
    if missing:
        print(f"Cannot run `agent {command}`: missing {', '.join(missing)}. Set them in .env or the "
              "environment (see .env.example); `openrouter-voice doctor` checks them all.", file=sys.stderr)
        raise SystemExit(2)
    _export_for_plugins(settings)
    if runs_sessions(argv):
        try:
            start_telemetry()  # OTEL_* settings checked here, once, before any job process starts
        except TelemetryConfigError as exc:
            print(exc, file=sys.stderr)
            raise SystemExit(2) from None
    metrics = serve_metrics(settings, argv)  # before livekit spawns the job processes, which report to it
    local = start_local_model(settings, argv)
    health: EmbeddedStore | None = None
    try:
        health = start_embedded_health(settings, argv)
        _hand_logging_to_livekit()
        sys.argv = ["openrouter-voice agent", *argv]
        with local_model_environment(local), embedded_health_environment(health):
            cli.run_app(server)
    finally:
        if health is not None:
            health.stop()
        if local is not None:
            local.stop()
        if metrics is not None:
            metrics.close()


def serve_metrics(settings: Settings, argv: list[str], *, host: str = "0.0.0.0") -> WorkerMetrics | None:
    """The worker's Prometheus endpoint on OPENROUTER_VOICE_METRICS_PORT, for subcommands that run
    sessions: the configured chain's circuits from start-up, every session's turns once they end.
    Exits with the reason when the port cannot be served."""
    if settings.metrics_port is None or not runs_sessions(argv):
        return None
    chain = settings.chain()
    if settings.local_fallback and settings.api_key is not None:
        from ..local.server import MODEL_ALIAS

        chain.append(f"{MODEL_ALIAS}@{LOCAL_ENDPOINT}")
    try:
        metrics = serve_worker_metrics(settings.metrics_port, chain, host=host)
    except TelemetryConfigError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    logger.info("Prometheus metrics on http://%s:%d/metrics", host, settings.metrics_port)
    return metrics


def _hand_logging_to_livekit() -> None:
    """livekit's CLI installs its own root handler: drop ours (else every line prints twice), and let
    the agent's per-turn usage and session summaries through even when the rest of the package is quiet.
    """
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if any(isinstance(f, RedactingFilter) for f in handler.filters):
            root.removeHandler(handler)
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)


def _export_for_plugins(settings: Settings) -> None:
    """LiveKit and its plugins read some settings from os.environ; .env values must reach them too."""
    pairs = {
        "LIVEKIT_URL": settings.livekit_url, "LIVEKIT_API_KEY": settings.livekit_api_key,
        "LIVEKIT_API_SECRET": settings.livekit_api_secret.get_secret_value() if settings.livekit_api_secret else None,
    }
    for name, value in pairs.items():
        if value and not os.environ.get(name):
            os.environ[name] = value
