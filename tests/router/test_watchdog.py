"""The attempt's read deadline: cancels a read that outlives it, never anything else.

No sleeps: every wait is a future the loop resolves at a scheduled loop time, so the order of
events is fixed whatever the load on the machine."""

from __future__ import annotations

import asyncio

import pytest

from openrouter_voice.router.watchdog import ReadDeadline


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


async def test_close_stops_the_timer() -> None:
    loop = asyncio.get_running_loop()
    watchdog = ReadDeadline(loop)
    await watchdog.read(_resolved_at(loop, loop.time()), loop.time() + 30.0)
    handle = watchdog._handle
    assert handle is not None and not handle.cancelled()
    watchdog.close()
    assert handle.cancelled() and watchdog._handle is None
