"""The attempt's read deadline: cancels a read that outlives it, never anything else.

No sleeps: every wait is a future the loop resolves at a scheduled loop time, so the order of
events is fixed whatever the load on the machine."""

from __future__ import annotations

import asyncio
import time

import pytest

from openrouter_voice.router.watchdog import LATE, ReadDeadline


def _resolved_at(loop: asyncio.AbstractEventLoop, when: float, value: object = None) -> asyncio.Future[object]:
    future: asyncio.Future[object] = loop.create_future()
    loop.call_at(when, lambda: future.done() or future.set_result(value))
    return future


async def test_a_read_past_its_deadline_times_out_never_before_it() -> None:
    loop = asyncio.get_running_loop()
    watchdog = ReadDeadline(loop)
    deadline = loop.time() + 0.05
    try:
        with pytest.raises(TimeoutError):
            await watchdog.read(loop.create_future(), deadline)
        assert loop.time() >= deadline
        current = asyncio.current_task()
        assert current is not None and current.cancelling() == 0  # the cancellation was taken back
    finally:
        watchdog.close()


async def test_a_deadline_moved_later_by_each_read_is_followed() -> None:
    """The timer armed for the first read's deadline fires during a later read with a later deadline:
    that read goes on (the timer re-arms) and returns its value."""
    loop = asyncio.get_running_loop()
    watchdog = ReadDeadline(loop)
    start = loop.time()
    try:
        assert await watchdog.read(_resolved_at(loop, start), start + 0.02) is None
        late = _resolved_at(loop, start + 0.08, "late but within its own deadline")
        assert await watchdog.read(late, start + 30.0) == "late but within its own deadline"
    finally:
        watchdog.close()


async def test_time_between_reads_never_counts_and_never_cancels() -> None:
    """A consumer that holds the reply past the deadline (the timer fires between reads) is not
    cancelled, and its next read gets the deadline it asks for."""
    loop = asyncio.get_running_loop()
    watchdog = ReadDeadline(loop)
    start = loop.time()
    try:
        await watchdog.read(_resolved_at(loop, start), start + 0.02)
        await _resolved_at(loop, start + 0.1)  # the consumer's own work, past the read deadline
        assert await watchdog.read(_resolved_at(loop, loop.time() + 0.01, "next"), loop.time() + 30.0) == "next"
    finally:
        watchdog.close()


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    loop = asyncio.get_running_loop()
    watchdog = ReadDeadline(loop)
    reading = asyncio.ensure_future(watchdog.read(loop.create_future(), loop.time() + 30.0))
    await asyncio.sleep(0)  # let the read start (an ordering step, not a wait for time)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    watchdog.close()


async def test_a_read_being_cancelled_from_elsewhere_is_not_cancelled_again_at_its_deadline() -> None:
    """The deadline passes after another cancellation of the reading task was asked for, before the task
    ran: that cancellation ends the read; a second one (which would interrupt the clean-up of a cancelled
    send) is not added."""
    loop = asyncio.get_running_loop()
    watchdog = ReadDeadline(loop)
    reading = asyncio.ensure_future(watchdog.read(loop.create_future(), loop.time() + 30.0))
    await asyncio.sleep(0)  # let the read start (an ordering step, not a wait for time)
    reading.cancel()
    watchdog.when = loop.time()  # its deadline comes now, before the task runs again...
    watchdog._fire()  # ...and its timer fires
    assert reading.cancelling() == 1
    with pytest.raises(asyncio.CancelledError):
        await reading
    watchdog.close()


async def test_close_stops_the_timer() -> None:
    loop = asyncio.get_running_loop()
    watchdog = ReadDeadline(loop)
    await watchdog.read(_resolved_at(loop, loop.time()), loop.time() + 30.0)
    handle = watchdog._handle
    assert handle is not None and not handle.cancelled()
    watchdog.close()
    assert handle.cancelled() and watchdog._handle is None


def _hold_loop_past(loop: asyncio.AbstractEventLoop, when: float) -> None:
    """The fault itself: our process stops (a GC pause, no CPU, a blocking call) until loop time ``when``."""
    while loop.time() < when:
        time.sleep(0.002)


async def test_a_reply_that_came_while_the_loop_was_held_up_is_read_not_timed_out() -> None:
    """The loop is held up past the read's deadline and the reply arrives meanwhile: it is read in the
    same loop pass as the late timer (before it, as a socket's reader callback is), and taken."""
    loop = asyncio.get_running_loop()
    watchdog = ReadDeadline(loop)
    reply: asyncio.Future[object] = loop.create_future()
    deadline = loop.time() + 0.05

    def pause() -> None:
        _hold_loop_past(loop, deadline + 2 * LATE)
        loop.call_soon(reply.set_result, "reply")

    loop.call_soon(pause)
    try:
        assert await watchdog.read(reply, deadline) == "reply"
        assert watchdog.late_at > deadline  # the caller can tell the router itself was late to look
    finally:
        watchdog.close()


async def test_a_read_with_nothing_to_read_after_a_pause_still_times_out() -> None:
    """A model that truly sends nothing is still cut: the late wake-up only gives what is readable a
    chance, once."""
    loop = asyncio.get_running_loop()
    watchdog = ReadDeadline(loop)
    deadline = loop.time() + 0.05
    loop.call_soon(_hold_loop_past, loop, deadline + 2 * LATE)
    try:
        with pytest.raises(TimeoutError):
            await watchdog.read(loop.create_future(), deadline)
        assert watchdog.late_at > deadline
        current = asyncio.current_task()
        assert current is not None and current.cancelling() == 0
    finally:
        watchdog.close()


async def test_a_late_wake_up_gives_the_read_its_budget_again_from_the_wake_up() -> None:
    """A reply from a server held up with us (in the same process) comes a little after the pause: the
    read gets its allowance again, counted from the late wake-up, and no more."""
    loop = asyncio.get_running_loop()
    watchdog = ReadDeadline(loop)
    watchdog.allowance = 0.2
    deadline = loop.time() + 0.05
    woke: list[float] = []

    def pause() -> None:  # the reply is due one loop pass after a timer armed when the pause ends
        _hold_loop_past(loop, deadline + 2 * LATE)
        woke.append(loop.time())
        loop.call_at(woke[0] + 0.05, lambda: reply.done() or reply.set_result("reply"))

    reply: asyncio.Future[object] = loop.create_future()
    loop.call_soon(pause)
    try:
        assert await watchdog.read(reply, deadline) == "reply"
        with pytest.raises(TimeoutError):  # a read that starts later still has only its own deadline
            await watchdog.read(loop.create_future(), loop.time() + 0.01)
    finally:
        watchdog.close()
