"""A model hedged past while silent is *suspect*: tried after the healthy models until its pending request
is judged (late answer: cleared; deadline: the hang verdict replaces it) or the mark expires. And a router
that closes while a hung half-open trial is still pending keeps the circuit open rather than undecided."""

from __future__ import annotations

from typing import Any

from openrouter_voice.router import CircuitState
from openrouter_voice.router.health import HealthTracker
from openrouter_voice.router.plan import order
from openrouter_voice.router.types import Target
from openrouter_voice.testing import Script
from tests.conftest import USER
from tests.timing import until

A, B, C = (Target(m, "openrouter", "u") for m in ("a/x", "b/y", "c/z"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class RecordingSink:
    """Records what a tracker tells the fleet (offline: the tracker decides alone)."""

    online = False

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return lambda model, **_: self.calls.append((name, model))


def test_a_suspect_goes_after_the_healthy_models_until_it_expires_and_stays_in_the_plan():
    clock = Clock()
    health = HealthTracker(clock=clock)
    health.record_failure("c/z", reason="HTTP 503")
    health.suspect("a/x", reason="no first token after 0.80s", until=clock.now + 2.0, since=clock.now - 0.8)
    assert health.is_suspect("a/x") and health.is_available("a/x")
    assert [t.label for t in order([A, B, C], health)] == ["b/y", "a/x", "c/z"]  # after healthy, before cooling
    assert [t.label for t in order([A], health)] == ["a/x"]  # never excluded: the last model left stays
    assert health.suspect_reason("a/x") == "no first token after 0.80s"
    clock.now += 2.0  # the hard expiry: a process that crashed cannot leave the mark behind
    assert not health.is_suspect("a/x") and health.suspect_reason("a/x") is None
    assert [t.label for t in order([A, B], health)] == ["a/x", "b/y"]


def test_a_late_answer_clears_the_suspicion_and_a_hang_verdict_replaces_it():
    clock = Clock()
    health = HealthTracker(clock=clock)
    health.suspect("a/x", reason="silent", until=clock.now + 5.0, since=clock.now - 1.0)
    health.suspect("a/x", reason="silent again", until=clock.now + 1.0, since=clock.now - 0.5)  # never shortened
    assert health.suspect_remaining("a/x") == 5.0
    health.clear_suspect("a/x")
    assert not health.is_suspect("a/x") and health.state("a/x") is CircuitState.CLOSED
    health.suspect("a/x", reason="silent", until=clock.now + 5.0, since=clock.now - 1.0)
    health.record_failure("a/x", reason="no first token within 2s (hedged past)")
    assert not health.is_suspect("a/x") and health.state("a/x") is CircuitState.OPEN


def test_a_request_sent_after_the_silent_one_that_speaks_ends_the_suspicion():
    # In busy healthy traffic a tail-slow reply must not keep the model suspect: the requests sent after
    # it answer. In a hang none does, and one sent before the silent one proves nothing about now.
    clock = Clock()
    health = HealthTracker(clock=clock)
    silent_sent = clock.now - 0.7
    health.suspect("a/x", reason="silent", until=clock.now + 2.0, since=silent_sent)
    health.spoke("a/x", sent=silent_sent - 0.1)
    assert health.is_suspect("a/x")
    health.spoke("a/x", sent=silent_sent + 0.2)
    assert not health.is_suspect("a/x")


async def test_a_hedge_won_over_a_silent_primary_makes_it_suspect_at_once(upstream, make_router):
    upstream.script("a/hangs", [Script(hang=True), Script(text="Primary.")])
    upstream.script("b/backup", Script(text="Backup speaks."))
    # The first-token deadline is far away: the suspicion is all the next turn can know of.
    router = make_router(["a/hangs", "b/backup"], first_token_timeout=60.0, hedge_after=0.05)
    sink = RecordingSink()
    router.health.attach(sink)  # type: ignore[arg-type]
    assert (await router.complete(USER)).model == "b/backup"
    assert router.health.is_suspect("a/hangs") and router.health.state("a/hangs") is CircuitState.CLOSED
    assert "no first token" in (router.health.suspect_reason("a/hangs") or "")
    assert ("suspected", "a/hangs") in sink.calls  # told to the fleet
    second = await router.complete(USER)
    assert second.model == "b/backup" and second.attempts[0].model == "b/backup"
    assert [r.model for r in upstream.requests] == ["a/hangs", "b/backup", "b/backup"]


async def test_a_late_first_token_clears_the_suspicion_fleet_wide_and_is_learnt(upstream, make_router):
    upstream.script("a/slow", Script(text="Primary.", ttft=0.6))
    upstream.script("b/backup", Script(text="Backup speaks."))
    router = make_router(["a/slow", "b/backup"], first_token_timeout=60.0, hedge_after=0.05)
    sink = RecordingSink()
    router.health.attach(sink)  # type: ignore[arg-type]
    assert (await router.complete(USER)).model == "b/backup"
    await until(lambda: len(router._stragglers) == 0, "the hedge loser's watch to end")
    assert not router.health.is_suspect("a/slow")
    marks = [call for call in sink.calls if call[0] in ("suspected", "unsuspected")]
    assert marks == [("suspected", "a/slow"), ("unsuspected", "a/slow")]
    assert len(router.health.latency("a/slow").ttft) == 1  # its late TTFT is a sample, not lost
    assert router.health.state("a/slow") is CircuitState.CLOSED


async def test_closing_the_router_does_not_leave_a_hung_half_open_trial_undecided(upstream, make_router):
    upstream.script("a/hangs", Script(hang=True))
    upstream.script("b/backup", Script(text="Backup speaks."))
    router = make_router(["a/hangs", "b/backup"], first_token_timeout=60.0, hedge_after=0.05)
    router.health.record_failure("a/hangs", reason="HTTP 503", retry_after=0.0)  # half-open at once
    assert router.health.state("a/hangs") is CircuitState.HALF_OPEN
    reply = await router.complete(USER)
    assert reply.model == "b/backup" and reply.attempts[0].model == "a/hangs"  # the trial, hedged past
    assert router.health.is_trial("a/hangs")
    await router.aclose()  # the session ends long before the trial's first-token deadline
    # Released undecided, the next session would send the same hanging trial again (and again).
    assert router.health.state("a/hangs") is CircuitState.OPEN and not router.health.is_available("a/hangs")
    assert "half-open trial" in (router.health.reason("a/hangs") or "")
    assert router.health.shared_view("a/hangs").failures == 2
