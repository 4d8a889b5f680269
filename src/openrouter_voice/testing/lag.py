"""How long the event loop was blocked: a monitor task for soak tests and benchmarks.

One blocking step (a quadratic loop, a big synchronous parse) stalls every other session in the
process; the monitor sleeps a short ``interval`` over and over and records how late it wakes up.

``worst`` is the latest wake-up by the wall clock. On a shared machine part of that is the process
waiting for a CPU, which no code in it can change; ``worst_busy`` counts only the part of each
late wake-up this thread spent running (CPU time). ``worst_steps`` also leaves out time in Python's
cyclic garbage collector (``gc_worst`` is its longest pause), which scales with the whole heap of the
process, not with any step of the code being watched.

>>> async with LoopLagMonitor() as lag:  # doctest: +SKIP
...     await run_the_soak()
>>> print(f"worst loop lag {lag.worst * 1000:.0f} ms")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from types import TracebackType
from typing import Self


class LoopLagMonitor:
    """Records the worst delay (seconds) of the running loop in waking a task due every ``interval``."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.worst = 0.0
        self.worst_busy = 0.0
        self.worst_steps = 0.0
        self.gc_worst = 0.0
        self.samples = 0
        self._task: asyncio.Task[None] | None = None
        self._gc_total = 0.0
        self._gc_started = 0.0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._gc_started
            self._gc_total += pause
            self.gc_worst = max(self.gc_worst, pause)

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            cpu, collecting = time.thread_time(), self._gc_total
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - due)
            self.worst = max(self.worst, lag)
            # Time off the CPU (another process running) is lag no code here caused.
            busy = min(lag, time.thread_time() - cpu)
            self.worst_busy = max(self.worst_busy, busy)
            self.worst_steps = max(self.worst_steps, busy - (self._gc_total - collecting))
            self.samples += 1

    async def __aenter__(self) -> Self:
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.create_task(self._watch(), name="loop-lag-monitor")
        await asyncio.sleep(0)  # started before the work it watches
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
