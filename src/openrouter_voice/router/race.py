"""Racing attempts to their first event: :class:`FirstEventRace`.

Each racer's first event is read in its own task (a hedge race's loser keeps it: it is watched
until its first token, see :mod:`.stragglers`). :meth:`FirstEventRace.wait` returns as soon as one
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
...     slow.cancel()
...     return fast.result(), slow.done()
>>> asyncio.run(demo())
('fast', False)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable
from typing import TypeVar

T = TypeVar("T")


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
