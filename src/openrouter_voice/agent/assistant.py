"""The voice assistant: instructions written for speech, and its tools.

>>> llm_ = OpenRouterLLM()
>>> session = AgentSession(llm=llm_)                                   # doctest: +SKIP
>>> await session.start(Assistant(llm=llm_))                          # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable
from typing import Any

from livekit.agents import Agent, ModelSettings, function_tool, llm

from ..router.catalog import Catalog, CatalogUnavailableError
from ..router.deadlines import ttft_percentiles
from ..router.names import resolve_spoken_name, spoken_model_name
from .breaks import spoken_at_breaks
from .llm import OpenRouterLLM
from .tools.weather import WeatherClient, WeatherError

logger = logging.getLogger("openrouter_voice.agent")

INSTRUCTIONS = """\
You are a friendly voice assistant. Your replies are spoken aloud by a text-to-speech voice, so:
- answer in one to three short sentences of plain conversational text;
- never use markdown, lists, headings, emoji, code or URLs;
- write numbers, units and symbols the way you would say them.
Use get_weather for any question about current weather. Use get_model_info when asked which model \
or language model you are, what is cooling down, or what the session has cost. Use switch_model when \
the user asks to change, switch or use another model; if it returns a question, ask it.
Be warm and direct."""

MAX_NAME_CHARS = 80


class Assistant(Agent):
    """The openrouter-voice agent, with ``get_weather``, ``get_model_info`` and ``switch_model``.

    Args:
        llm: the session's :class:`OpenRouterLLM` (tools read and change its chain).
        weather: Open-Meteo client (default: from the settings, ``OPENROUTER_VOICE_GEOCODING_URL`` /
            ``OPENROUTER_VOICE_FORECAST_URL``).
        catalog: OpenRouter's model catalog, used to resolve spoken model names (default: the catalog
            of the router's OpenRouter endpoint).
    """

    def __init__(self, *, llm: OpenRouterLLM, weather: WeatherClient | None = None,
                 catalog: Catalog | None = None, instructions: str = INSTRUCTIONS) -> None:
        super().__init__(instructions=instructions, llm=llm)
        self.or_llm = llm
        if weather is None:
            from ..config import load_settings

            weather = WeatherClient.from_settings(load_settings())
        self.weather = weather
        self.catalog = catalog or Catalog(llm.router.base_url, api_key=llm.router.api_key)

    def llm_node(self, chat_ctx: llm.ChatContext, tools: list[llm.Tool],
                 model_settings: ModelSettings) -> AsyncIterable[Any]:
        """LiveKit's LLM node, led by "One moment." when the turn has been silent too long before the
        model's first word (see :mod:`openrouter_voice.speech.dead_air`), its words spoken at once when
        the model breaks before its first sentence ended (:mod:`.breaks`)."""
        from ..speech.dead_air import DeadAirGuard, acknowledged_first

        reply = spoken_at_breaks(Agent.default.llm_node(self, chat_ctx, tools, model_settings))
        return acknowledged_first(reply, DeadAirGuard.of(self.session))

    @function_tool
    async def get_weather(self, location: str) -> str:
        """Get the current weather for a place.

        Args:
            location: The city or place, for example "Paris" or "Springfield, Illinois".
        """
        try:
            report = await self.weather.current(location)
        except WeatherError as exc:
            return str(exc)
        return report.spoken()

    @function_tool
    async def get_model_info(self) -> str:
        """Say which language model is configured, which one answered last, which are cooling down, and the cost."""
        llm_ = self.or_llm
        parts = [f"My primary model is {llm_.primary}."]
        if llm_.last_completion is not None:
            last = llm_.last_completion
            served = f"The last answer came from {last.model}"
            parts.append(served + (f", because {last.fallback_reason}." if last.fell_back else "."))
        cooling = [h for h in llm_.router.health.snapshot() if h.cooldown_remaining > 0]
        if cooling:
            parts.append("Cooling down: " + "; ".join(
                f"{h.model} for {round(h.cooldown_remaining)} more seconds after {h.reason}" for h in cooling) + ".")
        else:
            parts.append("No model is cooling down.")
        speeds = []
        for target in llm_.router.models:
            known = ttft_percentiles(llm_.router.health.latency(target.label))
            if known is not None:
                speeds.append(f"{target.label} {known[0]:.2f} seconds typically, {known[1]:.2f} at the 95th "
                              f"percentile over {known[2]} replies")
        if speeds:
            parts.append("Time to first word lately: " + "; ".join(speeds) + ".")
        cost = llm_.stats.usage.cost
        parts.append(f"This session has cost {cost:.4f} dollars so far." if cost is not None
                     else "The cost so far is not known.")
        return " ".join(parts)

    @function_tool
    async def switch_model(self, name: str) -> str:
        """Switch the language model for the rest of the conversation.

        Args:
            name: The model the user asked for, as they said it, for example "Gemini Flash" or "Claude Haiku".
        """
        name = " ".join(str(name).split())[:MAX_NAME_CHARS]
        if not name:
            return "Which model would you like me to switch to?"
        try:
            models = await self.catalog.models()
        except CatalogUnavailableError:
            return "I can't reach the model list right now, so I'll stay on my current model."
        resolution = resolve_spoken_name(name, models)
        if resolution.model_id is not None:
            chosen = resolution.candidates[0]
            self.or_llm.switch_model(chosen.id, supports_tools=chosen.supports_tools)
            logger.info("switched primary model to %s (asked for %r)", chosen.id, name)
            note = "" if chosen.supports_tools else " It can't use tools, so I may not be able to check things."
            return f"Switched to {spoken_model_name(chosen)}.{note}"
        if resolution.candidates:
            options = [spoken_model_name(m) for m in resolution.candidates]
            spoken = ", ".join(options[:-1]) + f" or {options[-1]}" if len(options) > 1 else options[0]
            if resolution.ambiguous:
                return f"There are a few models called {name}. Did you mean {spoken}?"
            return f"I couldn't find a model called {name}. Did you mean {spoken}?"
        return f"I couldn't find a model called {name}. Try a name like Gemini Flash, GPT four o mini or Claude Haiku."
