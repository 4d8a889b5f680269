"""Our own process pausing (GC, no CPU, a blocking call) must not count against the models.

The upstream serves from its own thread, as a real one is another machine: its reply keeps arriving
while our loop is held up. The hold itself is the fault (a blocking wait in the loop); it ends on the
upstream's own signal (its stream finished) and once the first-sentence deadline is well past."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from openrouter_voice.router import Completion, FallbackRouter, Outcome
from openrouter_voice.router.watchdog import LATE
from openrouter_voice.testing import Script, ScriptedUpstream
from tests.conftest import TEST_KEY, USER, continuing

TEXT = "The weather today is sunny and mild everywhere. Enjoy it while it lasts, friend."
BOUND = 0.3  # first-sentence bound (cold start): the primary's whole sentence comes in ~0.1 s


@pytest.fixture
async def remote() -> AsyncIterator[ScriptedUpstream]:
    up = ScriptedUpstream().start_in_thread()
    try:
        yield up
    finally:
        up.stop_thread()


def router_for(up: ScriptedUpstream) -> FallbackRouter:
    return FallbackRouter(models=["a/primary", "b/backup"], api_key=TEST_KEY, base_url=up.base_url,
                          first_token_timeout=2.0, stall_timeout=5.0, first_sentence_timeout=BOUND,
                          hedge_after=None)


def hold_loop(done: Callable[[], bool], until: float) -> None:
    """The fault: the whole process stops until ``done()`` and monotonic time ``until``."""
    limit = time.monotonic() + 30
    while not done() or time.monotonic() < until:
        assert time.monotonic() < limit, "the upstream never finished its reply"
        time.sleep(0.002)


async def paused_turn(router: FallbackRouter, done: Callable[[], bool], *, during_read: bool) -> tuple[str, Completion]:
    """A spoken turn whose process is held up right after the first words, past the first-sentence
    deadline: between two reads (the consumer blocks) or while the router waits for the next chunk."""
    loop = asyncio.get_running_loop()
    text, first = "", True
    async with router.stream(USER, spoken=True) as stream:
        async for chunk in stream:
            text += chunk.text or ""
            if first and chunk.text:
                first = False
                until = time.monotonic() + BOUND + 5 * LATE
                if during_read:  # runs once the router is back waiting on the socket
                    loop.call_soon(hold_loop, done, until)
                else:
                    hold_loop(done, until)
    assert stream.result is not None
    return text, stream.result


@pytest.mark.parametrize("during_read", [False, True], ids=["between-reads", "during-a-read"])
async def test_a_reply_that_arrived_during_our_pause_is_not_cut(remote: ScriptedUpstream, during_read: bool) -> None:
    remote.script("a/primary", Script(text=TEXT, tokens_per_second=100))
    remote.script("b/backup", Script(text=TEXT))
    router = router_for(remote)
    try:
        text, result = await paused_turn(router, lambda: remote.open_streams == 0, during_read=during_read)
        assert [(a.model, a.outcome) for a in result.attempts] == [("a/primary", Outcome.OK)], result.attempts
        assert text == TEXT
        # When its sentence came is unknown (it waited on our pause): nothing learnt from it.
        assert len(router.health.latency("a/primary").sentence) == 0
    finally:
        await router.aclose()


@pytest.mark.parametrize("during_read", [False, True], ids=["between-reads", "during-a-read"])
async def test_a_model_that_sends_nothing_more_is_still_cut_after_our_pause(remote: ScriptedUpstream,
                                                                            during_read: bool) -> None:
    remote.script("a/primary", Script(text=TEXT, stall_after_tokens=1))  # "The", then silence
    remote.script("b/backup", continuing(TEXT))
    router = router_for(remote)
    try:
        text, result = await paused_turn(router, lambda: True, during_read=during_read)
        first = result.attempts[0]
        # Cut by the first sentence's deadline once we looked again, not by the 5 s stall deadline.
        assert first.outcome is Outcome.STALL and "no speakable sentence" in (first.error or ""), first
        assert result.model == "b/backup" and text == TEXT
    finally:
        await router.aclose()
