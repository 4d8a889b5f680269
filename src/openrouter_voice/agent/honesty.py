"""Degraded answers stay honest: no invented live data from a model that could not look it up.

When no tool-capable model is left (offline, the embedded 270M model answering without tools), a
question such as "What's the weather in Paris?", "What's the latest news?" or "What is Apple's stock
price?" cannot be answered truthfully. The router tells such a model so
(:data:`~openrouter_voice.router.request.NO_TOOLS_INSTRUCTION`), but a 270M base model still answers
"It's a bit cloudy", "$10.83" or an invented headline; so the agent itself replaces the answer of a
model serving a tool turn without tools, to a question that needs a live lookup, with a fixed
sentence naming what it cannot look up.

>>> guard = LiveLookupGuard("What's the weather in Paris?", carried_tools=True, tool_less=lambda m: True)
>>> guard.filter("It is sunny and 25 degrees.", "gemma-3-270m@local", spoke=False)
"I can't look up live information such as the weather right now; that lookup is unavailable at the moment."
>>> guard.filter(" More invented detail.", "gemma-3-270m@local", spoke=True)
''
>>> LiveLookupGuard("Any news today?", carried_tools=True, tool_less=lambda m: True).filter(
...     "Aliens landed.", "gemma-3-270m@local", spoke=False)
"I can't look up live information such as the news right now; that lookup is unavailable at the moment."
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LiveTopic:
    """A kind of live data: ``what`` names it in the honest sentence, ``pattern`` finds questions asking for it."""

    what: str
    pattern: re.Pattern[str]

    def unavailable(self) -> str:
        """The honest answer to a question about this topic.

        >>> NEWS.unavailable()
        "I can't look up live information such as the news right now; that lookup is unavailable at the moment."
        """
        return (f"I can't look up live information such as {self.what} right now; "
                "that lookup is unavailable at the moment.")


def _topic(what: str, pattern: str) -> LiveTopic:
    return LiveTopic(what, re.compile(pattern, re.IGNORECASE))


# Each pattern looks for the asking, not just a word: "at what temperature does water boil", "how many
# degrees in a circle", "clean the windows" or "who won the 1966 World Cup" need no lookup.
WEATHER = _topic("the weather", r"\b(weather|forecast|temperatures? (in|outside|today|tonight|tomorrow|now|right now|"
                                r"is it|this)|rain(s|ing|y)?|snow(s|ing|y)?|sunny|cloudy|storm(s|y)?|wind(s|y)?|"
                                r"humid(ity)?|degrees (is it|outside|today)|(how|is it) (hot|cold|warm) (is it|outside|"
                                r"today|in)|is it (hot|cold|warm))\b")
NEWS = _topic("the news", r"\b(news|headlines?|current events|what('s| is) happening (in|around) the world)\b")
MARKETS = _topic("stock prices", r"\b(stocks?|share prices?|shares? (of|doing|today|up|down|trading|worth|at)|"
                                 r"stock market|markets? (today|doing|up|down|open|close\w*)|"
                                 r"nasdaq|dow jones|s ?& ?p ?500|ftse|nikkei|dax)\b")
MONEY = _topic("exchange rates and prices", r"\b(exchange rates?|(dollars?|euros?|pounds?|yen|pesos?|rupees?) "
                                            r"(to|in|into|against) \w+|bitcoin|btc|ethereum|crypto\w*|"
                                            r"(gas|petrol|gold|oil) prices?|price of (gas|petrol|gold|oil))\b")
SPORTS = _topic("sports scores", r"\b((what(’|')?s|what is) the score|(latest|final|today(’|')?s|last night(’|')?s) "
                                 r"scores?|scores? (from|of) (last night|today|yesterday|tonight)|"
                                 r"who won (last night|yesterday|today|tonight|the (game|match|race)\b)|"
                                 r"who(’|')?s winning|who is winning|standings|"
                                 r"(game|match|race) (last night|yesterday|today|tonight)|did the \w+ (win|lose))\b")
CLOCK = _topic("the time and date", r"\b(what time is it|what(’|')?s the time|the (current|exact) time|"
                                    r"time (is it )?(now|right now)|today(’|')?s date|what(’|')?s the date|"
                                    r"what is the date|what day is (it|today)|what (year|month) is it|"
                                    r"what date is it)\b")
LIVE_TOPICS: tuple[LiveTopic, ...] = (WEATHER, NEWS, MARKETS, MONEY, SPORTS, CLOCK)
"""What only a live lookup answers; the first topic a question matches names it in the answer."""

LIVE_LOOKUP_UNAVAILABLE = WEATHER.unavailable()
"""The honest answer to a weather question (the lookup the assistant's ``get_weather`` tool does)."""


def live_topic(question: str, topics: Sequence[LiveTopic] = LIVE_TOPICS) -> LiveTopic | None:
    """The live data ``question`` asks for, or None when a model can answer it from what it knows.

    >>> live_topic("How much is one bitcoin worth?").what, live_topic("What is the capital of France?")
    ('exchange rates and prices', None)
    """
    return next((topic for topic in topics if topic.pattern.search(question)), None)


def needs_live_lookup(question: str, topics: Sequence[LiveTopic] = LIVE_TOPICS) -> bool:
    """Whether ``question`` asks for live data (weather, news, prices, scores, the time) only a lookup gives.

    >>> needs_live_lookup("Will it rain in Lyon tomorrow?"), needs_live_lookup("What is the capital of France?")
    (True, False)
    """
    return live_topic(question, topics) is not None


class LiveLookupGuard:
    """Per turn: replaces a tool-less model's answer to a live-data question with the topic's honest
    sentence (:meth:`LiveTopic.unavailable`, once), and drops the rest of that answer.

    ``topics``: the live data to guard (default :data:`LIVE_TOPICS`).
    """

    def __init__(self, question: str, *, carried_tools: bool, tool_less: Callable[[str], bool],
                 topics: Sequence[LiveTopic] = LIVE_TOPICS) -> None:
        self._topic = live_topic(question, topics) if carried_tools else None
        self._tool_less = tool_less
        self._replacing = False

    def filter(self, text: str, model: str, *, spoke: bool) -> str:
        """What to emit for ``text`` served by ``model``; ``spoke``: text was already emitted this turn."""
        if self._replacing:
            return ""
        if self._topic is not None and not spoke and self._tool_less(model):
            self._replacing = True
            return self._topic.unavailable()
        return text
