"""Degraded answers stay honest: no invented live data from a model that could not look it up.

When no tool-capable model is left (offline, the embedded 270M model answering without tools), a
question such as "What's the weather in Paris?" cannot be answered truthfully. The router tells such
a model so (:data:`~openrouter_voice.router.request.NO_TOOLS_INSTRUCTION`), but a 270M base model
still answers "It's a bit cloudy" or "10 degrees"; so the agent itself replaces the answer of a model
serving a tool turn without tools, to a question that needs a live lookup, with a fixed sentence.

>>> guard = LiveLookupGuard("What's the weather in Paris?", carried_tools=True, tool_less=lambda m: True)
>>> guard.filter("It is sunny and 25 degrees.", "gemma-3-270m@local", spoke=False)
"I can't look up live information such as the weather right now; that lookup is unavailable at the moment."
>>> guard.filter(" More invented detail.", "gemma-3-270m@local", spoke=True)
''
"""

from __future__ import annotations

import re
from collections.abc import Callable

LIVE_LOOKUP_UNAVAILABLE = (
    "I can't look up live information such as the weather right now; that lookup is unavailable at the moment."
)

# Questions whose true answer is live data one of the assistant's tools fetches (get_weather).
_LIVE = re.compile(
    r"\b(weather|forecast|temperatures?|rain\w*|snow\w*|sunny|cloudy|storm\w*|wind\w*|humid\w*|degrees|"
    r"(how|is it) (hot|cold|warm))\b", re.IGNORECASE)


def needs_live_lookup(question: str) -> bool:
    """Whether ``question`` asks for live data (the weather) that only a tool can give.

    >>> needs_live_lookup("Will it rain in Lyon tomorrow?"), needs_live_lookup("What is the capital of France?")
    (True, False)
    """
    return bool(_LIVE.search(question))


class LiveLookupGuard:
    """Per turn: replaces a tool-less model's answer to a live-data question with
    :data:`LIVE_LOOKUP_UNAVAILABLE` (once), and drops the rest of that answer."""

    def __init__(self, question: str, *, carried_tools: bool, tool_less: Callable[[str], bool]) -> None:
        self._active = carried_tools and needs_live_lookup(question)
        self._tool_less = tool_less
        self._replacing = False

    def filter(self, text: str, model: str, *, spoke: bool) -> str:
        """What to emit for ``text`` served by ``model``; ``spoke``: text was already emitted this turn."""
        if self._replacing:
            return ""
        if self._active and not spoke and self._tool_less(model):
            self._replacing = True
            return LIVE_LOOKUP_UNAVAILABLE
        return text
