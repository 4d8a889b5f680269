"""The circuit breaker's verdicts: who may close an open circuit, and the latency kept beside it."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openrouter_voice.router import AllModelsFailedError, HealthTracker
from openrouter_voice.router.latency import LatencyRing
from openrouter_voice.testing import Script
from tests.conftest import USER
from tests.timing import halfway, until


async def test_an_older_request_that_succeeds_does_not_undo_a_fresh_retry_after(upstream, make_router):
    # Turn 1 is slow but healthy; turn 2, sent while turn 1 is still in flight, gets a 429 with
    # Retry-After 30. Turn 1 then succeeds: that says nothing about the model since the verdict, so
    # turn 3 (0.2 s later) must not go back to the primary before the 30 s are up.
    upstream.script("a/primary", [Script(text="Slow but fine.", ttft=0.6),
                                  Script(status=429, retry_after=30)])
    upstream.script("b/backup", Script(text="Backup here."))
    router = make_router(["a/primary", "b/backup"], first_token_timeout=2.0)
    slow = asyncio.create_task(router.complete(USER))
    await until(lambda: len(upstream.requests) == 1, "turn 1 to reach the primary")
    second = await router.complete(USER)
    assert second.model == "b/backup"
    first = await slow
    assert first.model == "a/primary"  # the older request did succeed...
    await asyncio.sleep(0.2)
    third = await router.complete(USER)
    assert third.model == "b/backup"  # ...but the primary stays out as it was told
    assert len(upstream.requests_for("a/primary")) == 2
    assert 25 < router.health.cooldown_remaining("a/primary") <= 30  # the Retry-After, not a backoff


async def test_a_request_sent_after_the_verdict_closes_the_circuit():
    now = [1000.0]
    health = HealthTracker(base_cooldown=5, clock=lambda: now[0])
    health.record_failure("m", reason="503")
    now[0] += 6  # half-open: the next request is the trial
    sent = health.now()
    assert health.begin("m") is True
    assert health.record_success("m", sent=sent) is True
    assert health.is_available("m") and health.state("m").value == "closed"


def test_a_model_failing_for_ever_keeps_the_longest_cooldown():
    # 1,025 failures in a row (a model down for days, or a fleet's shared count) once overflowed the
    # exponential backoff (OverflowError): the turn that recorded the failure died instead of falling back.
    now = [1000.0]
    health = HealthTracker(base_cooldown=0.5, max_cooldown=30.0, clock=lambda: now[0])
    for _ in range(1100):
        cooldown = health.record_failure("m", reason="503")
        now[0] += cooldown
    assert cooldown == 30
    assert health.cooldown_remaining("m") == 0 and health.state("m").value == "half_open"


async def test_healthy_replies_feed_the_models_first_token_latency(upstream, make_router):
    upstream.script("a/x", Script(text="Hi there.", ttft=0.05))
    router = make_router(["a/x"])
    for _ in range(3):
        await router.complete(USER)
    ttft = router.health.latency("a/x").ttft
    assert len(ttft) == 3
    assert 0.04 < (ttft.quantile(0.5) or 0) < 1.0  # the scripted 50 ms; a loaded machine adds to it


def test_latency_ring_keeps_the_most_recent_samples_and_ignores_garbage():
    ring = LatencyRing(size=3)
    for value in (1.0, float("nan"), -1.0, float("inf"), 2.0, 3.0, 4.0):
        ring.add(value)
    assert ring.samples() == [2.0, 3.0, 4.0]
    assert ring.count == 4
    assert ring.quantile(0.5) == 3.0
    assert LatencyRing(size=8).quantile(0.95) is None
    assert ring.quantile(0.95, min_samples=5) is None


_SECONDS = st.floats(min_value=0.0, max_value=5.0) | st.sampled_from([float("nan"), -1.0, float("inf")])


@given(size=st.integers(1, 20), batches=st.lists(st.lists(_SECONDS, max_size=40), max_size=8),
       q=st.floats(0.0, 1.0), replaced=st.none() | st.lists(_SECONDS, max_size=30))
def test_latency_ring_quantiles_are_those_of_the_samples_it_holds(size, batches, q, replaced):
    # The ring keeps its samples sorted as they come (one by one, a reply at once, or the fleet's
    # replacement): any quantile read is the nearest-rank quantile of exactly the samples it holds.
    ring = LatencyRing(size=size)
    for i, batch in enumerate(batches):
        if i % 2:
            ring.extend(batch)
        else:
            for value in batch:
                ring.add(value)
        if replaced is not None and i == 1:
            ring.replace(replaced)
    held = sorted(ring.samples())
    assert len(held) <= size
    expected = held[min(len(held) - 1, max(0, math.ceil(q * len(held)) - 1))] if held else None
    assert ring.quantile(q) == expected


async def test_when_every_model_was_told_to_wait_briefly_the_turn_waits_instead_of_failing(upstream, make_router):
    upstream.script("a/x", [Script(status=429, retry_after=0.3), Script(text="After the wait.")])
    upstream.script("b/y", [Script(status=503, retry_after=0.4), Script(text="Backup.")])
    router = make_router(["a/x", "b/y"])
    with pytest.raises(AllModelsFailedError):
        await router.complete(USER)  # both answer "wait"
    started = time.monotonic()
    reply = await router.complete(USER)
    waited = time.monotonic() - started
    # waited for a/x's 0.3 s, not sent before; not the 1 s RETRY_AFTER_WAIT nor a/x's deadline
    assert reply.text == "After the wait." and 0.2 < waited < halfway(0.3, 0.3 + 2.0)
    assert len(upstream.requests_for("a/x")) == 2 and len(upstream.requests_for("b/y")) == 1


async def test_a_long_retry_after_everywhere_still_fails_at_once(upstream, make_router):
    upstream.script("a/x", Script(status=429, retry_after=30))
    router = make_router(["a/x"])
    with pytest.raises(AllModelsFailedError):
        await router.complete(USER)
    started = time.monotonic()
    with pytest.raises(AllModelsFailedError):
        await router.complete(USER)
    # at once: not RETRY_AFTER_WAIT (1 s), nor the 30 s
    assert time.monotonic() - started < halfway(0.0, 1.0) and len(upstream.requests_for("a/x")) == 1


def test_a_short_retry_after_does_not_inherit_a_longer_backoff():
    now = [1000.0]
    health = HealthTracker(base_cooldown=5, clock=lambda: now[0])
    health.record_failure("m", reason="500")  # our estimate: 5 s
    health.record_failure("m", reason="429", retry_after=0.2)  # the upstream's word: 0.2 s
    assert health.told_to_wait("m") and health.wait_remaining("m") == pytest.approx(0.2)
    now[0] += 0.3
    assert not health.told_to_wait("m")  # it may be asked again (after healthy models)...
    assert health.cooldown_remaining("m") > 4  # ...though our own backoff still runs


async def test_a_model_whose_retry_after_ends_during_the_turn_is_tried_before_apologising(upstream, make_router):
    upstream.script("a/x", [Script(status=500), Script(status=429, retry_after=0.3), Script(text="Back again.")])
    upstream.script("b/y", Script(status=500))
    router = make_router(["a/x", "b/y"])
    with pytest.raises(AllModelsFailedError):
        await router.complete(USER)  # a/x: 500 (backoff 5 s), b/y: 500
    router.health.reset("a/x")
    with pytest.raises(AllModelsFailedError):
        await router.complete(USER)  # a/x: 429 Retry-After 0.3 s, b/y cooling: tried, 500 again
    reply = await router.complete(USER)  # b/y fails again; a/x's 0.3 s end within the turn: it answers
    assert reply.text == "Back again."
