"""What a router tells its observers: each turn as it starts and as it ends, with every attempt.

Observers (telemetry, a dashboard, a test) watch turns from outside instead of being called from
every branch of the turn: the record of a finished turn (:class:`~.types.Attempt` list, the
:class:`~.types.Completion` or the error) says everything that happened. A router without
observers pays one empty-list check per turn.

>>> class Printer:
...     def turn_started(self, chain):
...         return self
...     def turn_ended(self, attempts, result, error):
...         print(result.model if result else type(error).__name__, [a.outcome.value for a in attempts])
>>> router.observers.append(Printer())  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from .types import Attempt, Completion, Target

logger = logging.getLogger("openrouter_voice.router")


class TurnWatch(Protocol):
    """One turn, watched from its start: told once how it ended."""

    def turn_ended(self, attempts: Sequence[Attempt], result: Completion | None,
                   error: BaseException | None) -> None:
        """``result`` when a model answered; else ``error`` (a :class:`~.errors.RouterError`, or
        ``GeneratorExit`` / ``CancelledError`` when the caller stopped the turn early)."""


class TurnObserver(Protocol):
    """Told when each turn starts (in the caller's context, e.g. inside its tracing span)."""

    def turn_started(self, chain: Sequence[Target]) -> TurnWatch: ...


def start_watches(observers: Sequence[TurnObserver], chain: Sequence[Target]) -> list[TurnWatch]:
    """Each observer's watch for a new turn; an observer that fails is left out (and logged), never
    the turn's problem."""
    watches = []
    for observer in observers:
        try:
            watches.append(observer.turn_started(chain))
        except Exception:
            logger.exception("turn observer %s failed at turn start", type(observer).__name__)
    return watches


def end_watches(watches: Sequence[TurnWatch], attempts: Sequence[Attempt], result: Completion | None,
                error: BaseException | None) -> None:
    """Tell each watch how the turn ended; a failing one is logged, never raised."""
    for watch in watches:
        try:
            watch.turn_ended(attempts, result, error)
        except Exception:
            logger.exception("turn observer %s failed at turn end", type(watch).__name__)
