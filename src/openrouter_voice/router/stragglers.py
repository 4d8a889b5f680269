"""Hedge losers, watched in the background until their late first token or their deadline.

A model hedged past is not broken for losing a race: it may simply have drawn a slow reply from
its own healthy tail. Cooling it down would bench a healthy primary after every twentieth turn at
a p95 hedge, and dropping its time would teach the latency sketch that it is never slow (the
hedge delay would then creep down). So the loser's request stays open, off the turn's path,
until its first token (its real TTFT feeds the sketch, then the stream is closed) or until its
first-token deadline (a real fault: the decision is applied, opening its circuit, as if it had
been the only request). Meanwhile the model is *suspected* (:meth:`~.health.HealthTracker.suspect`):
a late first token clears that. A half-open trial still pending when the router closes is judged a
failure then, so the circuit stays open instead of the trial being sent again by the next session.

>>> stragglers = Stragglers(health)  # doctest: +SKIP
>>> stragglers.watch(target, first_event, events, sent_at, limit=2.0, apply=decide)  # doctest: +SKIP
>>> await stragglers.aclose()  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

from .attempt import AttemptFailed
from .chunks import AttemptDone
from .errors import Action, ErrorInfo
from .health import HealthTracker
from .race import stop
from .types import Target

logger = logging.getLogger("openrouter_voice.router")


class Stragglers:
    """The router's hedge losers still waiting for a first token (closed with the router)."""

    def __init__(self, health: HealthTracker) -> None:
        self.health = health
        # each watch with what closing the router needs of it: (target, first event, its stream, sent at, apply)
        self._tasks: dict[asyncio.Task[None], tuple[Target, asyncio.Future[Any], AsyncGenerator[Any, None], float,
                                                    Callable[[Target, ErrorInfo], None]]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def watch(self, target: Target, first: asyncio.Future[Any], events: AsyncGenerator[str | AttemptDone, None],
              sent_at: float, *, limit: float, apply: Callable[[Target, ErrorInfo], None]) -> None:
        """Keep waiting for ``first`` (the loser's pending first event) until ``limit`` seconds after
        ``sent_at`` (loop time); then record what it says about the model and close ``events``."""
        task = asyncio.ensure_future(self._watch(target, first, events, sent_at, limit, apply))
        self._tasks[task] = (target, first, events, sent_at, apply)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    async def _watch(self, target: Target, first: asyncio.Future[Any], events: AsyncGenerator[str | AttemptDone, None],
                     sent_at: float, limit: float, apply: Callable[[Target, ErrorInfo], None]) -> None:
        loop = asyncio.get_running_loop()
        label = target.label
        try:
            try:
                async with asyncio.timeout_at(sent_at + limit):
                    event = await asyncio.shield(first)
            except TimeoutError:
                apply(target, ErrorInfo(None, f"no first token within {limit:g}s (hedged past)", Action.COOLDOWN))
                return
            except AttemptFailed as failure:
                apply(target, failure.info)
                self.health.clear_suspect(label)  # judged (a failure verdict already replaced it)
                return
            except Exception as exc:  # ended without a token (StopAsyncIteration, ...): no verdict on the model
                logger.debug("hedged-past %s ended without a first token (%s)", label, type(exc).__name__)
                return
            ttft = event.ttft if isinstance(event, AttemptDone) else loop.time() - sent_at
            self.health.clear_suspect(label)
            if ttft is not None:
                self.health.record_reply(label, ttft=ttft, gaps=[])
            logger.debug("hedged-past %s spoke after all: first token at %.3fs (kept as a TTFT sample)", label,
                         ttft or 0.0)
        finally:
            await self._release(label, first, events)

    async def _release(self, label: str, first: asyncio.Future[Any], events: AsyncGenerator[Any, None]) -> None:
        stop(first)
        with contextlib.suppress(BaseException):
            await first
        self.health.end_trial(label)
        await events.aclose()

    def _judge_at_close(self, target: Target, waited: float, apply: Callable[[Target, ErrorInfo], None]) -> None:
        """The router closes while ``target`` still owes its first token. A half-open trial must not be
        left undecided (released, the next session would send the same hanging trial again, and again):
        it has been hedged past, so it is judged a failure now and the circuit stays open. Any other
        loser is closed without a verdict (a suspicion it raised expires by itself)."""
        if self.health.is_trial(target.label):
            apply(target, ErrorInfo(None, f"half-open trial: no first token after {waited:.2f}s when the "
                                          "router closed (hedged past)", Action.COOLDOWN))

    async def aclose(self) -> None:
        """Stop watching (close every loser's stream), without a verdict except on a pending half-open trial."""
        watches = list(self._tasks.items())
        now = asyncio.get_running_loop().time()
        for task, (target, _, _, sent_at, apply) in watches:
            self._judge_at_close(target, now - sent_at, apply)
            task.cancel()
        await asyncio.gather(*(task for task, _ in watches), return_exceptions=True)
        for _, (target, first, events, _, _) in watches:  # a watch cancelled before it ran released nothing
            await self._release(target.label, first, events)
