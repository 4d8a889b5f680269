"""A read deadline that moves with every chunk at the cost of a float store: :class:`ReadDeadline`.

A streamed reply is read one event at a time, each read under the attempt's current deadline (first
token, then the stall deadline pushed forward by every chunk). ``asyncio.timeout_at`` per read costs
~5 us (a Timeout object, a timer handle scheduled and cancelled) on the 2-core bench machine, a
quarter of the router's whole per-chunk overhead over bare httpx. Here one timer serves the whole
attempt: a read only records its deadline; when the timer fires before that deadline it is re-armed
for it (a few times per stall period, not per chunk), and past it the reading task is cancelled and
the cancellation becomes :class:`TimeoutError` exactly as ``asyncio.timeout`` does it (a cancellation
from elsewhere still goes through as a cancellation, and a task already being cancelled from elsewhere
is not cancelled a second time: that would interrupt the clean-up of a cancelled send). The attempt's
send waits for its headers under the same timer (:func:`.sending.open_stream`).

The timer only acts while a read is in progress: time the consumer spends between reads (the
reply's text is handed out between them) never counts, and the task is never cancelled outside
the read.

A deadline is missed only when the router was there to see it pass: a timer that fires more than
``LATE`` after the read's deadline means our own process was held up (a GC pause, no CPU, a blocking
call in the loop), and a reply that arrived meanwhile sits unread in the socket (or, from a server
in the same process, was held up with us). Then the timer is re-armed once, from the late wake-up,
for the read's :attr:`~ReadDeadline.allowance` (its budget, set by the caller; at least ``GRACE``,
which lets the read take what is already readable: the loop runs a read that has become ready before
a timer due in the same pass); only a second expiry cuts, so a model that truly sends nothing is
still cut, one budget after the lag. :attr:`ReadDeadline.late_at` tells the caller when that last happened.

>>> import asyncio
>>> async def demo():
...     loop = asyncio.get_running_loop()
...     watchdog = ReadDeadline(loop)
...     try:
...         try:
...             await watchdog.read(asyncio.sleep(0.01, "fast"), loop.time() + 1.0)
...             await watchdog.read(asyncio.sleep(1.0), loop.time() + 0.02)
...         except TimeoutError:
...             return "timed out"
...     finally:
...         watchdog.close()
>>> asyncio.run(demo())
'timed out'
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

LATE = 0.02
"""Seconds a timer may fire after the read's deadline before the loop counts as having been held up
(well above a busy loop's usual timer jitter of a few milliseconds)."""
GRACE = 0.005
"""Seconds at least left, after a late wake-up, to read what arrived while the loop was held up."""


class ReadDeadline:
    """One attempt's read deadline on ``loop``; :meth:`close` it when the attempt ends."""

    __slots__ = ("_armed", "_cancelling", "_expired", "_graced", "_handle", "_loop", "_task", "allowance", "late_at",
                 "when")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handle: asyncio.TimerHandle | None = None
        self._armed = math.inf  # when the timer fires (inf: not armed)
        self._task: asyncio.Task[object] | None = None  # the task reading now (None: no read in progress)
        self._cancelling = 0
        self._expired = False
        self.when = math.inf  # the current read's deadline (loop time)
        self._graced = -math.inf  # the deadline a late wake-up last extended (it is extended once)
        self.late_at = -math.inf  # loop time of the last late wake-up (the router was held up past a deadline)
        self.allowance = GRACE  # seconds a read gets again from a late wake-up (the caller sets its budget)

    async def read(self, awaitable: Awaitable[T], when: float) -> T:
        """Await ``awaitable``; :class:`TimeoutError` if it is not done by loop time ``when``."""
        task = asyncio.current_task()
        assert task is not None
        self.when = when
        self._task = task
        self._cancelling = task.cancelling()
        if when < self._armed:  # a sooner deadline than the timer's (rare: the first read, a tighter check)
            self._arm(when)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self._expired:
                self._expired = False
                if task.uncancel() <= self._cancelling:
                    raise TimeoutError from None
            raise
        finally:
            self._task = None
            if self._expired:  # the read ended otherwise after all: take our cancellation back
                self._expired = False
                task.uncancel()

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed = math.inf
        task = self._task
        if task is None:  # between reads: the next read arms the timer again
            return
        now = self._loop.time()
        when = self.when
        if now < when:  # the deadline moved on since the timer was armed
            self._arm(when)
            return
        if now - when > LATE and self._graced != when:  # we were late to look, not the reply late to come
            self._graced = self.when = when = now + max(GRACE, self.allowance)
            self.late_at = now
            self._arm(when)
            return
        if task.cancelling() > self._cancelling:  # being cancelled from elsewhere: that ends the read, once
            return
        self._expired = True
        task.cancel()

    def close(self) -> None:
        """Stop the timer (the attempt ended)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed = math.inf
