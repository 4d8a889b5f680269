"""The LiveKit voice agent on the router: ``OpenRouterLLM`` (a LiveKit LLM plugin) and ``Assistant``.

>>> from livekit.agents import AgentSession
>>> from openrouter_voice.agent import Assistant, OpenRouterLLM
>>> llm = OpenRouterLLM(models=["google/gemini-2.5-flash-lite", "openai/gpt-4o-mini"])
>>> session = AgentSession(llm=llm)                    # doctest: +SKIP
>>> await session.start(Assistant(llm=llm))            # doctest: +SKIP
"""

from .assistant import INSTRUCTIONS, Assistant
from .llm import APOLOGY, FallbackEvent, OpenRouterLLM, OpenRouterLLMStream, SessionStats, TurnEvent

__all__ = ["APOLOGY", "INSTRUCTIONS", "Assistant", "FallbackEvent", "OpenRouterLLM", "OpenRouterLLMStream",
           "SessionStats", "TurnEvent"]
