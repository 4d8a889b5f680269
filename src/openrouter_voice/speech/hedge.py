"""A sentence hedged on two voices: when the first has produced no audio after a short bound, the
next one starts on the same sentence, and whichever produces audio first is heard; the other is
cancelled at that moment, before it emits anything, so the caller never hears both.

A silent provider then costs the bound plus the backup's own first audio, not its full deadline and
then the backup's synthesis after it; a provider that is only slow still wins if its audio comes
before the backup's. No library hedges a TTS (LiveKit's and Pipecat's fallbacks move on only after a
failure), so this is done here.

>>> import asyncio
>>> def voice(delay: float, said: list[str], name: str):
...     async def speak(first_audio):
...         await asyncio.sleep(delay)
...         first_audio()
...         said.append(name)
...     return speak
>>> said: list[str] = []
>>> result = asyncio.run(hedge(voice(5.0, said, "silent"), voice(0.01, said, "backup"), after=0.01))
>>> result.winner, said
(1, ['backup'])
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from livekit.agents.utils import aio

# A voice speaks one sentence; it calls its argument once, at its first audio and before emitting it.
Speaker = Callable[[Callable[[], None]], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Hedged:
    """Which speaker was heard (0 the first, 1 the backup, None neither), what each raised (None if it
    ended well or was cancelled as the loser), and whether the backup was started at all."""

    winner: int | None
    errors: tuple[BaseException | None, BaseException | None]
    hedged: bool


async def hedge(first: Speaker, backup: Speaker | None, *, after: float) -> Hedged:
    """``first`` speaks; if it has neither produced audio nor ended after ``after`` seconds, ``backup``
    starts too, and the first of the two to produce audio is heard (the other is cancelled)."""
    heard: list[int] = []
    spoke = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    def claim(k: int) -> Callable[[], None]:
        def first_audio() -> None:
            if heard:  # unreachable: the loser is cancelled before it can resume (a guard, not a path)
                raise asyncio.CancelledError
            heard.append(k)
            spoke.set()
            for j, task in enumerate(tasks):
                if j != k:
                    task.cancel()
        return first_audio

    tasks.append(asyncio.create_task(first(claim(0)), name="hedge.first"))
    waiter = asyncio.create_task(spoke.wait())
    try:
        await asyncio.wait([tasks[0], waiter], timeout=after, return_when=asyncio.FIRST_COMPLETED)
        if backup is not None and not heard and not tasks[0].done():
            tasks.append(asyncio.create_task(backup(claim(1)), name="hedge.backup"))
        await asyncio.wait(tasks)
    finally:
        await aio.cancel_and_wait(waiter, *tasks)
    errors = [None if t.cancelled() else t.exception() for t in tasks]
    return Hedged(heard[0] if heard else None, (errors[0], errors[1] if len(errors) > 1 else None), len(tasks) > 1)
