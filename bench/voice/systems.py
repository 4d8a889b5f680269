"""The systems, same harness: this project's worker pipeline, and LiveKit's stock fallback wiring."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from livekit.agents import Agent, AgentSession

from openrouter_voice.agent import Assistant, OpenRouterLLM
from openrouter_voice.agent.worker import build_session
from openrouter_voice.config import Settings
from openrouter_voice.router import FallbackRouter
from openrouter_voice.speech.chains import build_stt, build_tts

from .cells import BACKUP, PRIMARY, Services

KEY = "bench-key"
Built = tuple[AgentSession[Any], Agent, Callable[[], Awaitable[None]]]


def _settings(s: Services) -> Settings:
    return Settings(deepgram_api_key="dg-bench", cartesia_api_key="ca-bench", deepgram_base_url=s.deepgram.base_url,
                    cartesia_base_url=s.cartesia.base_url, _env_file=None)  # type: ignore[call-arg]


async def ours(s: Services, vad: Any, turn_detection: Any, local: dict[str, Any]) -> Built:
    """The worker's ``build_session``: the router (defaults, hedging on) and the speech chains."""
    router = FallbackRouter(models=[PRIMARY, BACKUP], api_key=KEY, base_url=s.upstream.base_url)
    llm = OpenRouterLLM(router=router)
    settings = _settings(s)
    session = build_session(settings, vad=vad, turn_detection=turn_detection, llm=llm,
                            stt=build_stt(settings, vad=vad, local=local["stt"]),
                            tts=build_tts(settings, local=local["tts"]))

    async def close() -> None:
        await router.aclose()
        await llm.aclose()

    return session, Assistant(llm=llm), close


OURS_SETTINGS = ("build_session() as the worker: FallbackRouter([primary, backup]) with its defaults (hedge "
                 "after 1.0 s), LLM max_retry 0; stt.FallbackAdapter([WatchedSTT(deepgram.STT), "
                 "StreamAdapter(PocketSphinx)], attempt_timeout 3 s, max_retry_per_stt 0); "
                 "FailoverTTS([cartesia.TTS, Piper joe]) (sentence-level failover, learnt first-audio "
                 "deadline 0.4-3 s), session TTS timeout 3 s")


async def livekit(s: Services, vad: Any, turn_detection: Any, local: dict[str, Any]) -> Built:
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
        vad=vad, turn_handling={"turn_detection": turn_detection})

    async def close() -> None:
        for instance in llms:
            await instance.aclose()

    return session, Agent(instructions="You are a helpful voice assistant."), close


LIVEKIT_SETTINGS = ("AgentSession defaults; llm.FallbackAdapter([openai.LLM.with_openrouter(primary), ...(backup)]), "
                    "stt.FallbackAdapter([deepgram.STT, PocketSphinx], vad) and tts.FallbackAdapter([cartesia.TTS, "
                    "Piper joe]) with their documented defaults")

SYSTEMS = {"ours": (ours, OURS_SETTINGS), "LiveKit stock": (livekit, LIVEKIT_SETTINGS)}
