"""Hedged requests: past `hedge_after`, the next model is asked too and the first to speak wins."""

from __future__ import annotations

import asyncio
import time

from openrouter_voice.router import Outcome
from openrouter_voice.testing import Script
from tests.conftest import USER
from tests.timing import halfway, until


async def test_hanging_primary_is_hedged_before_its_deadline(upstream, make_router):
    upstream.script("a/hangs", Script(hang=True))
    upstream.script("b/backup", Script(text="Backup speaks.", ttft=0.05))
    router = make_router(["a/hangs", "b/backup"], first_token_timeout=1.5, hedge_after=0.2)
    started = time.monotonic()
    reply = await router.complete(USER)
    elapsed = time.monotonic() - started
    assert reply.text == "Backup speaks."
    assert 0.2 <= elapsed < halfway(0.2 + 0.05, 1.5 + 0.05)  # hedged, far below the first-token deadline
    assert reply.attempts[0].outcome is Outcome.CANCELLED
    assert "hedged request won" in (reply.attempts[0].error or "")
    # Losing a race is no fault: the primary is not cooled down for it...
    assert router.health.is_available("a/hangs")
    assert router.health.reason("a/hangs") is None
    # ...but it is watched: past its first-token deadline with no token, its circuit opens, the watch
    # closes its connection, and the next turn goes straight to the backup.
    await until(lambda: router.health.state("a/hangs").value == "open", "the hedge loser's circuit to open")
    assert time.monotonic() - started >= 1.5  # at its first-token deadline, not before
    assert "no first token within 1.5s" in (router.health.reason("a/hangs") or "")
    await until(lambda: len(router._stragglers) == 0, "the watch to end")
    await router.complete(USER)
    assert [r.model for r in upstream.requests] == ["a/hangs", "b/backup", "b/backup"]


async def test_slow_primary_that_speaks_first_still_wins(upstream, make_router):
    upstream.script("a/slowish", Script(text="Primary.", ttft=0.3))
    upstream.script("b/slower", Script(text="Backup.", ttft=1.0))
    router = make_router(["a/slowish", "b/slower"], hedge_after=0.1)
    reply = await router.complete(USER)
    assert reply.text == "Primary."
    assert reply.attempts[1].outcome is Outcome.CANCELLED
    # The hedge started later and lost: it is not penalised.
    assert router.health.is_available("b/slower")


async def test_primary_failing_during_the_race_leaves_the_hedge_to_answer(upstream, make_router):
    upstream.script("a/fails", Script(status=503, retry_after=1, ttft=0.0))
    upstream.script("b/backup", Script(text="Backup.", ttft=0.1))
    reply = await make_router(["a/fails", "b/backup"], hedge_after=0.05).complete(USER)
    assert reply.text == "Backup."
    assert reply.attempts[0].status == 503


async def test_no_hedge_when_primary_answers_in_time(upstream, make_router):
    upstream.script("a/fast", Script(text="Fast.", ttft=0.02))
    await make_router(["a/fast", "b/backup"], hedge_after=1.0).complete(USER)  # 50 times its first token
    assert [r.model for r in upstream.requests] == ["a/fast"]


async def test_hedge_budget_limits_hedging_when_everything_is_slow(upstream, make_router):
    # An overloaded upstream: every model is slow. Hedging all 20 requests would double the load.
    upstream.script("a/slow", Script(text="Slow primary.", ttft=0.4))
    upstream.script("b/slow", Script(text="Slow backup.", ttft=0.4))
    router = make_router(["a/slow", "b/slow"], hedge_after=0.1, hedge_budget=0.1, first_token_timeout=2.0)
    replies = await asyncio.gather(*(router.complete(USER) for _ in range(20)))
    assert all(r.text for r in replies)
    hedged = sum(1 for r in upstream.requests if r.model == "b/slow")
    assert 1 <= hedged <= 2  # 10% of 20 in flight
    assert router._hedges.in_flight == 0 and router._hedges.hedging == 0


async def test_when_the_hedge_winner_breaks_mid_reply_the_cancelled_loser_continues_it(upstream, make_router):
    # The primary is slow, so the backup is asked too; the primary speaks first and wins, then breaks
    # after a few words. The backup, cancelled in the race but healthy, must continue the reply.
    upstream.script("a/slow", Script(text="It is sunny in Paris today.", ttft=0.3, error_after_tokens=3))
    upstream.script("b/backup", [Script(text="x", ttft=1.5), Script(text=" in Paris today.")])  # 1.2 s behind
    router = make_router(["a/slow", "b/backup"], hedge_after=0.1, first_token_timeout=2.0)
    reply = await router.complete(USER)
    assert reply.text == "It is sunny in Paris today."
    assert reply.model == "b/backup"
    assert len(upstream.requests_for("b/backup")) == 2  # raced, then asked to continue
