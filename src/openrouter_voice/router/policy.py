"""What a turn needs from its router, handed over as plain values and callables: its clocks and caps
(:class:`Limits`), the router-wide :class:`HedgeBudget`, and the :class:`TurnPolicy` that bundles them
with the HTTP client, the health tracker and the chain. The turn never imports the router.

>>> budget = HedgeBudget(0.1)
>>> budget.in_flight = 30
>>> budget.allows(), budget.share * budget.in_flight
(True, 3.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2

from .attempt import Deadlines
from .deadlines import Choice, first_sentence_bound, stall_deadline
from .defaults import FIRST_SENTENCE_WORDS_PER_SECOND, RETRY_AFTER_WAIT
from .errors import ConfigurationError
from .first_sentence import FirstSentenceWatch
from .health import HealthTracker
from .latency import ModelLatency
from .stragglers import Stragglers
from .types import Target


@dataclass(frozen=True, slots=True)
class Limits:
    """The router's clocks and caps, in seconds and characters."""

    first_token: float
    final_first_token: float
    stall: float
    total: float
    hedge_after: float | None
    max_reply_chars: int
    max_tool_args_chars: int
    dribble_words_per_second: float = 0.0
    dribble_window: float = 2.0
    retry_after_wait: float = RETRY_AFTER_WAIT
    first_sentence: float = 0.0  # spoken turns: cold bound from first token to first sentence end (0: off)
    first_sentence_words_per_second: float = FIRST_SENTENCE_WORDS_PER_SECOND
    _deadlines: dict[tuple[bool, float], Deadlines] = field(default_factory=dict, init=False, repr=False,
                                                            compare=False)

    def deadlines(self, latency: ModelLatency, *, last: bool) -> tuple[Deadlines, Choice]:
        """One attempt's deadlines and why the stall deadline has its value. The stall follows the
        model's own rhythm (:func:`.deadlines.stall_deadline`). The last model a turn can try may take
        longer to start, pause longer and dribble: cutting it off could only end in silence."""
        why = (Choice(max(self.stall, self.final_first_token), "last model") if last
               else stall_deadline(latency, self.stall))
        made = self._deadlines.get((last, why.seconds))  # the same few values turn after turn: kept, not built
        if made is None:
            if len(self._deadlines) >= 64:  # bounded, however the learnt stall deadline moves
                self._deadlines.clear()
            made = self._deadlines[last, why.seconds] = Deadlines(
                first_token=self.final_first_token if last else self.first_token, stall=why.seconds,
                total=self.total, max_text_chars=self.max_reply_chars, max_tool_args_chars=self.max_tool_args_chars,
                dribble_words_per_second=0.0 if last else self.dribble_words_per_second,
                dribble_window=self.dribble_window)
        return made, why

    def sentence_watch(self, latency: ModelLatency, *, last: bool, said: str) -> tuple[FirstSentenceWatch | None, str]:
        """The first-sentence watch of one attempt of a spoken turn (None: not a spoken turn, or the reply
        already holds a speakable sentence) and why its bound has its value. The last model is only
        measured, never cut: cutting it could only end in silence."""
        if not self.first_sentence:
            return None, "off"
        chosen = None if last else first_sentence_bound(latency, self.first_sentence)
        watch = FirstSentenceWatch(chosen.seconds if chosen else None,
                                   words_per_second=self.first_sentence_words_per_second, said=said)
        if watch.ended:
            return None, "a sentence was already spoken"
        return watch, chosen.why if chosen else "last model"


def check_limits(*, first_token: float, stall: float, total: float, dribble_words_per_second: float,
                 dribble_window: float, first_sentence: float) -> None:
    """:class:`~.errors.ConfigurationError` naming the first limit that is out of range.

    >>> check_limits(first_token=2.0, stall=0.0, total=90.0, dribble_words_per_second=2.0, dribble_window=2.0,
    ...              first_sentence=0.5)
    Traceback (most recent call last):
    ...
    openrouter_voice.router.errors.ConfigurationError: stall_timeout must be a positive number of seconds, got 0.0
    """
    for name, value in (("first_token_timeout", first_token), ("stall_timeout", stall), ("total_timeout", total)):
        if not value > 0:
            raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    if dribble_words_per_second < 0 or not dribble_window > 0:
        raise ConfigurationError("dribble_words_per_second must be >= 0 (0: off) and dribble_window > 0 seconds, "
                                 f"got {dribble_words_per_second!r} and {dribble_window!r}")
    if not first_sentence >= 0:
        raise ConfigurationError(f"first_sentence_timeout must be >= 0 seconds (0: off), got {first_sentence!r}")


class HedgeBudget:
    """Router-wide count of requests and hedges in flight: when everything is slow (an overloaded
    upstream), hedging every request would double the load, so only ``share`` of the requests in
    flight may hedge at once (always at least one)."""

    def __init__(self, share: float) -> None:
        self.share = share
        self.in_flight = 0
        self.hedging = 0

    def allows(self) -> bool:
        return self.hedging < max(1, int(self.share * self.in_flight))


@dataclass(frozen=True, slots=True)
class TurnPolicy:
    """What a turn needs from its router."""

    client: httpx2.AsyncClient
    health: HealthTracker
    hedges: HedgeBudget
    limits: Limits
    stragglers: Stragglers
    chain: Sequence[Target]
    headers: Callable[[Target], dict[str, str]]
    supports_tools: Callable[[Target], bool]
    mark_tool_less: Callable[[Target], None]
    options: Callable[[str], dict[str, Any]]
    report_bad_key: Callable[[str, int | None], None]
