"""A racer sends its request in its own task, cancelled at most once: whatever ends the wait for the
response headers (the turn's cancellation, the first-token deadline, both at once), the half-open
connection is closed and the attempt ends as what ended it."""

from __future__ import annotations

import asyncio

import httpx2
import pytest

from openrouter_voice.router import Outcome, Target
from openrouter_voice.router.attempt import AttemptFailed, Deadlines, stream_attempt
from openrouter_voice.router.race import FirstEventRace, stop
from openrouter_voice.testing import Script
from tests.conftest import TEST_KEY, USER
from tests.timing import until


def _open_connections(client: httpx2.AsyncClient) -> int:
    return len(client._transport._pool.connections)  # type: ignore[attr-defined]


@pytest.mark.parametrize("hedging", [False, True], ids=["sent from the turn's task", "sent from a race task"])
async def test_cancelling_a_turn_while_the_headers_are_awaited_closes_the_connection(upstream, make_router,
                                                                                      hedging):
    upstream.script("a/hangs", Script(hang=True))  # accepts the request, never answers it
    models = ["a/hangs", "b/backup"] if hedging else ["a/hangs"]
    router = make_router(models, hedge_after=20 if hedging else None, first_token_timeout=25,
                         final_first_token_timeout=25)
    stream = router.stream(USER)
    task = asyncio.create_task(anext(stream))
    await until(lambda: len(upstream.requests) == 1, "the request to reach the upstream")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [a.outcome for a in stream.attempts] == [Outcome.CANCELLED]
    assert router.health.is_available("a/hangs")
    await until(lambda: _open_connections(router._client) == 0, "the half-open connection to be closed")
    await stream.aclose()


async def test_a_racer_stopped_as_its_send_deadline_fires_is_cancelled_once(upstream):
    # The deadline has cancelled the racer, which has not run yet; the turn stops it in between (a hedge
    # race ending). A second cancellation would interrupt httpcore's clean-up of the send: stop() leaves
    # the racer to its deadline, which ends it as a first-token timeout with the connection closed.
    upstream.script("a/hangs", Script(hang=True))
    loop = asyncio.get_running_loop()
    target = Target("a/hangs", "openrouter", upstream.base_url, TEST_KEY)
    deadlines = Deadlines(first_token=0.2, stall=1.0, total=5.0)
    async with httpx2.AsyncClient() as client:
        events = stream_attempt(client, target, {"model": target.model, "messages": USER, "stream": True},
                                {"Authorization": f"Bearer {TEST_KEY}"}, deadlines)
        racer = FirstEventRace(loop).start(events)
        stopped: list[int] = []

        def stop_once_cancelling() -> None:  # runs before the racer gets to handle its deadline's cancellation
            if not racer.cancelling():
                loop.call_soon(stop_once_cancelling)
                return
            stop(racer)
            stopped.append(racer.cancelling())

        await until(lambda: len(upstream.requests) == 1, "the request to reach the upstream")
        loop.call_soon(stop_once_cancelling)
        with pytest.raises(AttemptFailed) as failed:
            await racer
        assert stopped == [1]  # stop() did not cancel it again
        assert failed.value.outcome is Outcome.FIRST_TOKEN_TIMEOUT
        assert "no response headers within 0.2s" in str(failed.value)
        await until(lambda: _open_connections(client) == 0, "the half-open connection to be closed")
        await events.aclose()
