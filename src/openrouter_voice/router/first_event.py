"""A turn's wait for a first event: :func:`first_event` races an attempt against the hedges its
hedge delay calls for, hands the losers to the stragglers' watch and closes every attempt the turn's
own cancellation takes out. The turn (:mod:`.turn`) chooses what to launch and records failures;
the race mechanics are :mod:`.race`'s.

>>> raced = await first_event(live, policy, hedge=next_model, failed=record, apply=decide)  # doctest: +SKIP
>>> if raced is not None:  # doctest: +SKIP
...     winner, event = raced
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from .attempt import AttemptFailed
from .chunks import AttemptDone
from .continuation import RepeatGuard
from .errors import Action, ErrorInfo
from .first_sentence import FirstSentenceWatch
from .policy import TurnPolicy
from .race import FirstEventRace, stop
from .types import Attempt, Outcome, Target

logger = logging.getLogger("openrouter_voice.router")

ENDED_EARLY = ErrorInfo(None, "stream ended without a reply", Action.COOLDOWN)
"""What a stream that ended before its reply was whole says about its model."""


@dataclass(slots=True)
class Live:
    """An attempt in flight."""

    target: Target
    attempt: Attempt
    events: AsyncGenerator[str | AttemptDone, None]
    guard: RepeatGuard | None
    sent_at: float  # loop time, for deadlines
    index: int
    sent: float  # the health tracker's clock, for its verdicts
    hedge_after: float | None  # this model's own hedge delay (None: no hedging)
    gaps: list[float]  # seconds between its content chunks, kept only if it ends healthily
    sentence: FirstSentenceWatch | None = None  # spoken turns: its first speakable sentence


Raced = tuple[Live, str | AttemptDone]


async def first_event(live: Live, policy: TurnPolicy, *, hedge: Callable[[Live], Live | None],
                      failed: Callable[[Live, AttemptFailed], None],
                      apply: Callable[[Target, ErrorInfo], None]) -> Raced | None:
    """Wait for ``live``'s first event; past its own hedge delay also race ``hedge(live)`` (the next
    model, or None when there is none or the hedge budget is spent).

    Returns the winner and its first event, or None when every racer failed (each failure was handed
    to ``failed``). Losers are watched by ``policy.stragglers``, which judges them with ``apply``.
    """
    if live.hedge_after is None:  # nothing can race it: no task (the benchmark showed each one costly)
        return await _only_first_event(live, policy, failed)
    race = FirstEventRace(asyncio.get_running_loop())
    racers: dict[asyncio.Task[str | AttemptDone], Live] = {race.start(live.events): live}
    hedge_at: float | None = live.sent_at + live.hedge_after
    hedges = 0
    try:
        while racers:
            await race.wait(racers, hedge_at)
            done = [task for task in racers if task.done()]
            if not done:
                hedge_at = None
                extra = hedge(live)
                if extra is not None:
                    racers[race.start(extra.events)] = extra
                    hedges += 1
                    policy.hedges.hedging += 1
                continue
            for task in sorted(done, key=lambda t: racers[t].index) if len(done) > 1 else done:
                racer = racers.pop(task)
                error = task.exception()
                if error is None:
                    policy.health.spoke(racer.target.label, sent=racer.sent)
                    if racers:
                        await _cancel(racers, policy, apply, lost_to=racer)
                    return racer, task.result()
                _failed_first(racer, error, failed)
        return None
    except BaseException:
        await _cancel(racers, policy, apply, lost_to=None)
        raise
    finally:
        policy.hedges.hedging -= hedges


async def _only_first_event(live: Live, policy: TurnPolicy,
                            failed: Callable[[Live, AttemptFailed], None]) -> Raced | None:
    """:func:`first_event` of an attempt nothing can race, read in the turn's own task."""
    try:
        first = await anext(live.events)
    except Exception as error:  # told apart as the race tells its racers' errors apart
        _failed_first(live, error, failed)
        return None
    except BaseException:  # cancelled: as a racer is
        await _close_cancelled(live, policy)
        raise
    policy.health.spoke(live.target.label, sent=live.sent)
    return live, first


def _failed_first(live: Live, error: BaseException, failed: Callable[[Live, AttemptFailed], None]) -> None:
    """Record an attempt that ended before its first event (any other error is raised)."""
    if isinstance(error, AttemptFailed):
        failed(live, error)
    elif isinstance(error, StopAsyncIteration):
        failed(live, AttemptFailed(Outcome.BAD_RESPONSE, ENDED_EARLY))
    else:
        raise error


async def _cancel(racers: dict[asyncio.Task[str | AttemptDone], Live], policy: TurnPolicy,
                  apply: Callable[[Target, ErrorInfo], None], *, lost_to: Live | None) -> None:
    """Take attempts out of the race. Losers of a race are not failures: they are watched in the
    background until their first token or first-token deadline (:mod:`.stragglers`); when the
    turn itself is cancelled, they are closed at once."""
    if lost_to is None:
        if racers:
            for task in racers:
                stop(task)
            await asyncio.wait(racers)  # unlike gather, a cancelled wait cancels no racer a second time
        for live in racers.values():
            await _close_cancelled(live, policy)
        racers.clear()
        return
    health, now = policy.health, asyncio.get_running_loop().time()
    for task, live in racers.items():
        live.attempt.outcome = Outcome.CANCELLED
        live.attempt.latency = now - live.sent_at
        hedged_past = live.sent_at < lost_to.sent_at
        what = "no first token" if hedged_past else "slower"
        live.attempt.error = f"{what} after {live.attempt.latency:.2f}s; hedged request won"
        if hedged_past and live.hedge_after is not None:
            # At least p95-slow right now, and something else answers: the fleet tries it after the
            # others until the watch judges it (or its first-token deadline from now, at the latest),
            # or a request sent once it was known slow speaks (sent earlier, one may have reached
            # the upstream before a hang began and prove nothing).
            health.suspect(live.target.label, reason=live.attempt.error, since=live.sent + live.hedge_after,
                           until=health.now() + policy.limits.first_token)
        policy.stragglers.watch(live.target, task, live.events, live.sent_at, limit=policy.limits.first_token,
                                apply=apply)
        log_attempt(live.attempt, live.index)
    racers.clear()


async def _close_cancelled(live: Live, policy: TurnPolicy) -> None:
    """Close an attempt the turn's cancellation took out before its first event."""
    live.attempt.outcome = Outcome.CANCELLED
    live.attempt.latency = asyncio.get_running_loop().time() - live.sent_at
    await live.events.aclose()
    policy.health.end_trial(live.target.label)
    log_attempt(live.attempt, live.index)


def log_attempt(attempt: Attempt, index: int) -> None:
    """Log one attempt's outcome (at INFO)."""
    if not logger.isEnabledFor(logging.INFO):  # its arguments are formatted before logging could drop them
        return
    logger.info(
        "attempt %d model=%s outcome=%s status=%s ttft=%s latency=%.3fs%s",
        index + 1, attempt.model, attempt.outcome.value, attempt.status if attempt.status is not None else "-",
        f"{attempt.ttft:.3f}s" if attempt.ttft is not None else "-", attempt.latency,
        f" error={attempt.error!r}" if attempt.error else "",
    )
