"""A bound on dead air: when a committed turn has had no audio for ``after`` seconds (every stage slow
at once), a short acknowledgement ("One moment.") is spoken, once per turn, in a voice that works.

A turn starts when the agent starts thinking about what the caller said (LiveKit's agent state
``thinking``, set when the user's turn is committed) and is answered at the agent's first audio
(state ``speaking``); the caller speaking again starts a new one. The acknowledgement must be heard
before the answer, not queued after it (``session.say`` waits for the reply being generated), so it
goes, in this order, to whichever can take it:

1. an answer whose text arrived but whose voice is still silent:
   :meth:`.tts_failover.FailoverTTS.acknowledge` puts it at the head of that answer's audio;
2. a model that has not said a word yet: :func:`acknowledged_first` (the assistant's ``llm_node``)
   makes it the reply's first words, which the voice chain then speaks like any others;
3. otherwise (a tool is running after an LLM step that only called it): ``session.say``, which
   LiveKit plays while a tool runs. Such a step has no text and opens no TTS stream, so it is not
   taken for a TTS failure (livekit/agents-js#1454).

>>> guard = DeadAirGuard(session, voices, after=2.0)      # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any, ClassVar, TypeVar

from livekit.agents import AgentSession
from livekit.agents.types import FlushSentinel

from .tts_failover import FailoverTTS

logger = logging.getLogger("openrouter_voice.speech")

ACKNOWLEDGEMENT = "One moment."
AFTER = 2.0  # seconds of silence in a committed turn before the acknowledgement
T = TypeVar("T")


class DeadAirGuard:
    """Watches ``session``'s turns; ``after`` 0 (or less) turns it off."""

    _guards: ClassVar[weakref.WeakKeyDictionary[Any, DeadAirGuard]] = weakref.WeakKeyDictionary()

    @classmethod
    def watch(cls, session: AgentSession[Any], voices: FailoverTTS | None, *, after: float = AFTER) -> DeadAirGuard:
        """Guard ``session`` (once); :meth:`of` finds the guard again."""
        guard = cls._guards[session] = cls(session, voices, after=after)
        return guard

    @classmethod
    def of(cls, session: AgentSession[Any]) -> DeadAirGuard | None:
        return cls._guards.get(session)

    def __init__(self, session: AgentSession[Any], voices: FailoverTTS | None, *, after: float = AFTER,
                 text: str = ACKNOWLEDGEMENT) -> None:
        self.session, self.voices, self.after, self.text = session, voices, after, text
        self.acknowledged = 0  # turns that needed the acknowledgement
        self.turn_started: float | None = None  # monotonic time the current turn was committed
        self._timer: asyncio.Task[None] | None = None
        self._turn_done = False  # this turn was answered aloud, or acknowledged
        self.takers: list[Callable[[str], bool]] = []  # replies still silent that can say it first
        if after > 0:
            session.on("agent_state_changed", self._on_agent)
            session.on("user_state_changed", self._on_user)
            session.on("close", lambda _: self._cancel())

    def _on_user(self, ev: Any) -> None:
        if ev.new_state == "speaking":  # a new turn begins
            self._cancel()
            self._turn_done = False

    def _on_agent(self, ev: Any) -> None:
        if ev.new_state == "speaking":
            self._cancel()
            self._turn_done = True
        elif ev.new_state in ("listening", "idle"):
            self._cancel()  # the turn ended without a word (empty reply, cancelled): nothing is coming
        elif ev.new_state == "thinking" and not self._turn_done and self._timer is None:
            self.turn_started = time.monotonic()
            self._timer = asyncio.create_task(self._wait(), name="DeadAirGuard.wait")

    async def _wait(self) -> None:
        await asyncio.sleep(self.after)  # the bound itself: a timer, cancelled by the first audio
        self._timer = None
        self._turn_done = True
        self.acknowledged += 1
        logger.info("no audio %.1f s after the caller's turn: acknowledging", self.after)
        if self.voices is not None and self.voices.acknowledge(self.text):
            return
        if any(take(self.text) for take in list(self.takers)):
            return
        with contextlib.suppress(RuntimeError):  # the session is closing: nothing to say
            self.session.say(self.text, add_to_chat_ctx=False)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


async def acknowledged_first(chunks: AsyncIterable[T], guard: DeadAirGuard | None
                             ) -> AsyncIterator[T | str | FlushSentinel]:
    """``chunks`` (an LLM node's output), led by the acknowledgement if ``guard`` asks for it before
    the first text; used by the assistant's ``llm_node``.

    >>> async def reply():
    ...     yield "Hello."
    >>> async def collect():
    ...     return [c async for c in acknowledged_first(reply(), None)]
    >>> asyncio.run(collect())
    ['Hello.']
    """
    if guard is None or guard.after <= 0:
        async for chunk in chunks:
            yield chunk
        return
    said: list[str] = []
    asked = asyncio.Event()
    spoke = False  # the reply has yielded text: too late to lead it

    def take(text: str) -> bool:
        if spoke or said:
            return False
        said.append(text)
        asked.set()
        return True

    guard.takers.append(take)
    source = aiter(chunks)
    pending: asyncio.Future[Any] | None = None
    try:
        while True:
            pending = pending or asyncio.ensure_future(anext(source))
            if not spoke:
                asking: asyncio.Future[Any] = asyncio.ensure_future(asked.wait())
                await asyncio.wait([pending, asking], return_when=asyncio.FIRST_COMPLETED)
                asking.cancel()
                if asked.is_set() and not spoke:
                    spoke = True
                    yield said[0] + " "
                    yield FlushSentinel()  # spoken now, not held back to be joined with the next sentence
            if not pending.done():
                await asyncio.wait([pending])
            try:
                chunk = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            spoke = spoke or _has_text(chunk)
            yield chunk
    finally:
        guard.takers.remove(take)
        if pending is not None and not pending.done():
            pending.cancel()


def _has_text(chunk: Any) -> bool:
    if isinstance(chunk, str):
        return bool(chunk.strip())
    delta = getattr(chunk, "delta", None)
    return bool(delta is not None and (delta.content or delta.tool_calls))
