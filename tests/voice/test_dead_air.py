"""The acknowledgement leads a reply only while the reply has said nothing, and only once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from livekit.agents.types import FlushSentinel

from openrouter_voice.speech.dead_air import DeadAirGuard, acknowledged_first

pytestmark = pytest.mark.no_session  # a stand-in session's events, no audio


class _Session:
    """Just enough of an AgentSession for the guard: its events."""

    def __init__(self) -> None:
        self.handlers: dict[str, list[Any]] = {}

    def on(self, event: str, handler: Any) -> None:
        self.handlers.setdefault(event, []).append(handler)


async def _reply(first: asyncio.Event, *chunks: str) -> AsyncIterator[str]:
    await first.wait()  # the model's first word comes when the test says so
    for chunk in chunks:
        yield chunk


async def test_a_reply_still_silent_when_asked_starts_with_the_acknowledgement() -> None:
    guard = DeadAirGuard(_Session(), None)  # type: ignore[arg-type]
    first = asyncio.Event()
    out: list[Any] = []

    async def consume() -> None:
        async for chunk in acknowledged_first(_reply(first, "Here", " it is."), guard):
            out.append(chunk)
            if len(out) == 2:  # the acknowledgement and its flush went out before the model spoke
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)  # the reply is now waiting for its first word
    assert [take("One moment.") for take in guard.takers] == [True]
    await task
    assert out[0] == "One moment. " and isinstance(out[1], FlushSentinel) and out[2:] == ["Here", " it is."]
    assert not guard.takers  # the finished reply is no longer offered


async def test_a_reply_that_has_spoken_is_not_interrupted_by_the_acknowledgement() -> None:
    guard = DeadAirGuard(_Session(), None)  # type: ignore[arg-type]
    first = asyncio.Event()
    first.set()
    chunks = acknowledged_first(_reply(first, "Here", " it is."), guard)
    assert await anext(chunks) == "Here"
    assert [take("One moment.") for take in guard.takers] == [False]
    assert [c async for c in chunks] == [" it is."]


def test_the_guard_can_be_turned_off() -> None:
    session = _Session()
    DeadAirGuard(session, None, after=0)  # type: ignore[arg-type]
    assert not session.handlers  # it listens to nothing, so it never speaks
