"""The systems, same harness: this project's worker pipeline, LiveKit's stock fallback wiring, the
original design (``original.py``), and the pipeline's floor. Every system gets the same turn handling
(``turn``: the worker's defaults unless the run says otherwise): the table compares fallback layers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from livekit.agents import Agent, AgentSession, APIConnectOptions
from livekit.agents.voice.agent_session import SessionConnectOptions
from pydantic import SecretStr

from openrouter_voice.agent import Assistant, OpenRouterLLM
from openrouter_voice.agent.worker import build_session
from openrouter_voice.config import Settings
from openrouter_voice.router import FallbackRouter
from openrouter_voice.speech.chains import build_stt, build_tts

from .cells import BACKUP, PRIMARY, Services
from .original import OriginalLLM

KEY = "bench-key"
Built = tuple[AgentSession[Any], Agent, Callable[[], Awaitable[None]]]
Builder = Callable[[Services, Any, Any, dict[str, Any], dict[str, Any]], Awaitable[Built]]
INSTRUCTIONS = "You are a helpful voice assistant."


def _settings(s: Services) -> Settings:
    return Settings(deepgram_api_key=SecretStr("dg-bench"), cartesia_api_key=SecretStr("ca-bench"),
                    deepgram_base_url=s.deepgram.base_url, cartesia_base_url=s.cartesia.base_url,
                    _env_file=None)  # type: ignore[call-arg]


async def ours(s: Services, vad: Any, turn_detection: Any, local: dict[str, Any], turn: dict[str, Any]) -> Built:
    """The worker's ``build_session``: the router (defaults, hedging on) and the speech chains."""
    router = FallbackRouter(models=[PRIMARY, BACKUP], api_key=KEY, base_url=s.upstream.base_url)
    llm = OpenRouterLLM(router=router)
    settings = _settings(s)
    session = build_session(settings, vad=vad, turn_detection=turn_detection, llm=llm,
                            stt=build_stt(settings, vad=vad, local=local["stt"]),
                            tts=build_tts(settings, local=local["tts"]), turn=turn)

    async def close() -> None:
        await router.aclose()
        await llm.aclose()

    return session, Assistant(llm=llm), close


async def floor(s: Services, vad: Any, turn_detection: Any, local: dict[str, Any], turn: dict[str, Any]) -> Built:
    """Ours with the end-of-turn wait removed: the turn ends on the STT's final (no VAD silence, no
    endpointing delay), so TTFA = STT final + LLM first sentence + TTS first byte + playout."""
    return await ours(s, vad, "stt", local, {**turn, "endpointing": {"mode": "fixed", "min_delay": 0.0,
                                                                     "max_delay": 0.0}})


OURS_SETTINGS = ("build_session() as the worker: FallbackRouter([primary, backup]) with its defaults (hedge "
                 "after 1.0 s, first-sentence check in spoken turns), LLM max_retry 0; "
                 "ReplayingFallbackAdapter([WatchedSTT(deepgram.STT), StreamAdapter(PocketSphinx)], "
                 "attempt_timeout 3 s, max_retry_per_stt 0; the question in flight replayed); "
                 "FailoverTTS([cartesia.TTS, Piper joe]) (sentence-level failover, learnt first-audio "
                 "deadline 0.4-3 s), session TTS timeout 3 s")


async def livekit(s: Services, vad: Any, turn_detection: Any, local: dict[str, Any], turn: dict[str, Any]) -> Built:
    """LiveKit's documented wiring: llm/stt/tts.FallbackAdapter with their defaults over the stock plugins."""
    from livekit.agents import llm as lk_llm
    from livekit.agents import stt, tts
    from livekit.plugins import cartesia, deepgram
    from livekit.plugins import openai as lk_openai

    llms = [lk_openai.LLM.with_openrouter(model=m, api_key=KEY, base_url=s.upstream.base_url)
            for m in (PRIMARY, BACKUP)]
    session: AgentSession[None] = AgentSession(
        llm=lk_llm.FallbackAdapter(llms),  # type: ignore[arg-type]
        stt=stt.FallbackAdapter([deepgram.STT(api_key="dg-bench", base_url=f"{s.deepgram.base_url}/v1/listen"),
                                 local["stt"]], vad=vad),
        tts=tts.FallbackAdapter([cartesia.TTS(api_key="ca-bench", base_url=s.cartesia.base_url), local["tts"]]),
        vad=vad, turn_handling={**turn, "turn_detection": turn_detection})  # type: ignore[arg-type]

    async def close() -> None:
        for instance in llms:
            await instance.aclose()

    return session, Agent(instructions=INSTRUCTIONS), close


async def original(s: Services, vad: Any, turn_detection: Any, local: dict[str, Any], turn: dict[str, Any]) -> Built:
    """The original design: OriginalLLM over [primary, backup], Deepgram and Cartesia alone."""
    from livekit.plugins import cartesia, deepgram

    llm = OriginalLLM([PRIMARY, BACKUP], api_key=KEY, base_url=s.upstream.base_url)
    session: AgentSession[None] = AgentSession(
        llm=llm, stt=deepgram.STT(api_key="dg-bench", base_url=f"{s.deepgram.base_url}/v1/listen"),
        tts=cartesia.TTS(api_key="ca-bench", base_url=s.cartesia.base_url), vad=vad,
        turn_handling={**turn, "turn_detection": turn_detection},  # type: ignore[arg-type]
        # the design's own rule decides the turn's fate: LiveKit does not re-run its request
        conn_options=SessionConnectOptions(llm_conn_options=APIConnectOptions(max_retry=0)))
    return session, Agent(instructions=INSTRUCTIONS), llm.aclose


LIVEKIT_SETTINGS = ("llm.FallbackAdapter([openai.LLM.with_openrouter(primary), ...(backup)]), "
                    "stt.FallbackAdapter([deepgram.STT, PocketSphinx], vad) and tts.FallbackAdapter([cartesia.TTS, "
                    "Piper joe]) with their documented defaults")
ORIGINAL_SETTINGS = ("bench/voice/original.py: one non-streaming request per turn (stream false, temperature 0.7, "
                     "max_tokens 1000) with only the latest user message, no timeout; on any exception the next "
                     "model, kept for later turns; an error after as many attempts as models (LiveKit's own LLM "
                     "retry off); deepgram.STT and cartesia.TTS alone")
FLOOR_SETTINGS = ("ours, healthy, with the end-of-turn wait removed: turn_detection 'stt' (the turn ends on "
                  "Deepgram's final), endpointing min/max delay 0")

SYSTEMS: dict[str, tuple[Builder, str]] = {
    "ours": (ours, OURS_SETTINGS), "LiveKit stock": (livekit, LIVEKIT_SETTINGS),
    "original design": (original, ORIGINAL_SETTINGS),
}
FLOOR = "physical limit"
