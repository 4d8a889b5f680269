"""Racing attempts to their first event: :class:`FirstEventRace`.

Each racer's first event is read in its own task (a hedge race's loser keeps it: it is watched
until its first token, see :mod:`.stragglers`). A racer is cancelled only through :func:`stop`,
at most once, so it sends its request itself (:func:`racing`, :func:`.sending.open_stream`) rather
than in a task of its own. :meth:`FirstEventRace.wait` returns as soon as one
of them ends or the hedge delay passes. Hand-rolled instead of ``asyncio.wait``: a racer wakes the
waiting turn from its own last step, and the hedge delay is one timer on the same future, which
saves ``asyncio.wait``'s callback hop (one event-loop iteration) and its per-call sets and
callbacks. With the send's own waiter (:func:`.sending._send`) it took ~30 us off each request in
the overhead benchmark (``make bench``, scenario 7), and two to three of its twelve loop iterations.

>>> import asyncio
>>> async def events(text, delay):
...     await asyncio.sleep(delay)
...     yield text
>>> async def demo():
...     loop = asyncio.get_running_loop()
...     race = FirstEventRace(loop)
...     slow = race.start(events("slow", 1.0))
...     await race.wait([slow], until=loop.time() + 0.01)  # the hedge delay passes first
...     fast = race.start(events("fast", 0.0))
...     await race.wait([slow, fast], until=None)
...     stop(slow)
...     return fast.result(), slow.done(), racing()
>>> asyncio.run(demo())
('fast', False, False)
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncGenerator, Iterable
from typing import Any, TypeVar

T = TypeVar("T")

_RACER: contextvars.ContextVar[bool] = contextvars.ContextVar("racer", default=False)  # set in racer tasks only
_stopping: set[asyncio.Future[Any]] = set()  # racers stopped and not yet ended


def racing() -> bool:
    """Whether the running task is a racer (:meth:`FirstEventRace.start`): cancelled at most once."""
    return _RACER.get()


def stop(racer: asyncio.Future[Any]) -> None:
    """Cancel a racer, unless it has ended or is being cancelled already (by its own deadline, say):
    a second cancellation would interrupt httpcore's clean-up of a cancelled send and leave the
    upstream generating. Every canceller of a racer goes through here. The racer is held until it
    ends, whoever stops waiting for it."""
    if not racer.done() and not (isinstance(racer, asyncio.Task) and racer.cancelling()):
        racer.cancel()
        _stopping.add(racer)
        racer.add_done_callback(_stopping.discard)


class FirstEventRace:
    """First events of racing attempts on ``loop``; one turn waits on it at a time."""

    __slots__ = ("_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None

    def start(self, events: AsyncGenerator[T, None]) -> asyncio.Task[T]:
        """A task reading the first event of ``events`` (its result, or the exception it raised)."""
        return self._loop.create_task(self._first(events))

    async def _first(self, events: AsyncGenerator[T, None]) -> T:
        _RACER.set(True)  # in this task's own copy of the context
        try:
            return await anext(events)
        finally:
            self._wake()  # the task is done by the time the waiting turn runs

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, racers: Iterable[asyncio.Task[T]], until: float | None) -> None:
        """Return once one of ``racers`` is done, or at loop time ``until`` (None: no limit)."""
        if any(task.done() for task in racers):
            return
        self._waiter = waiter = self._loop.create_future()
        timer = self._loop.call_at(until, self._wake) if until is not None else None
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
