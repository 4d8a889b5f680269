"""The circuit breaker's verdicts: who may close an open circuit, and the latency kept beside it."""

from __future__ import annotations

import asyncio

from openrouter_voice.router import HealthTracker
from openrouter_voice.router.latency import LatencyRing
from openrouter_voice.testing import Script
from tests.conftest import USER


async def test_an_older_request_that_succeeds_does_not_undo_a_fresh_retry_after(upstream, make_router):
    # Turn 1 is slow but healthy; turn 2, sent while turn 1 is still in flight, gets a 429 with
    # Retry-After 30. Turn 1 then succeeds: that says nothing about the model since the verdict, so
    # turn 3 (0.2 s later) must not go back to the primary before the 30 s are up.
    upstream.script("a/primary", [Script(text="Slow but fine.", ttft=0.6),
                                  Script(status=429, retry_after=30)])
    upstream.script("b/backup", Script(text="Backup here."))
    router = make_router(["a/primary", "b/backup"], first_token_timeout=2.0)
    slow = asyncio.create_task(router.complete(USER))
    await asyncio.sleep(0.1)
    second = await router.complete(USER)
    assert second.model == "b/backup"
    first = await slow
    assert first.model == "a/primary"  # the older request did succeed...
    await asyncio.sleep(0.2)
    third = await router.complete(USER)
    assert third.model == "b/backup"  # ...but the primary stays out as it was told
    assert len(upstream.requests_for("a/primary")) == 2
    assert 29 < router.health.cooldown_remaining("a/primary") <= 30


async def test_a_request_sent_after_the_verdict_closes_the_circuit():
    now = [1000.0]
    health = HealthTracker(base_cooldown=5, clock=lambda: now[0])
    health.record_failure("m", reason="503")
    now[0] += 6  # half-open: the next request is the trial
    sent = health.now()
    assert health.begin("m") is True
    assert health.record_success("m", sent=sent) is True
    assert health.is_available("m") and health.state("m").value == "closed"


async def test_healthy_replies_feed_the_models_first_token_latency(upstream, make_router):
    upstream.script("a/x", Script(text="Hi there.", ttft=0.05))
    router = make_router(["a/x"])
    for _ in range(3):
        await router.complete(USER)
    ttft = router.health.latency("a/x").ttft
    assert len(ttft) == 3
    assert 0.04 < (ttft.quantile(0.5) or 0) < 0.5


def test_latency_ring_keeps_the_most_recent_samples_and_ignores_garbage():
    ring = LatencyRing(size=3)
    for value in (1.0, float("nan"), -1.0, float("inf"), 2.0, 3.0, 4.0):
        ring.add(value)
    assert ring.samples() == [2.0, 3.0, 4.0]
    assert ring.count == 4
    assert ring.quantile(0.5) == 3.0
    assert LatencyRing(size=8).quantile(0.95) is None
    assert ring.quantile(0.95, min_samples=5) is None
