"""Predictive ranking (off by default): OpenRouter's endpoint statistics, read in the background."""

from __future__ import annotations

import asyncio

from openrouter_voice.router.ranking import UptimeRanking
from openrouter_voice.testing import Script
from tests.conftest import USER


async def wait_for(condition, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_a_model_whose_providers_fail_goes_behind_the_others(upstream, make_router):
    upstream.endpoint_stats = {"a/flaky": [{"uptime_last_5m": 40.0}, {"uptime_last_5m": 55.0}],
                               "b/steady": [{"uptime_last_5m": 99.9}]}
    upstream.script("a/flaky", Script(text="Flaky."))
    upstream.script("b/steady", Script(text="Steady."))
    router = make_router(["a/flaky", "b/steady"], predictive_ranking=True)
    # The first turn does not wait for the statistics: it goes in chain order.
    assert (await router.complete(USER)).model == "a/flaky"
    assert router.ranking is not None
    await wait_for(lambda: router.ranking.uptime("a/flaky") is not None)
    assert router.ranking.uptime("a/flaky") == 55.0  # the best provider counts: OpenRouter fails over between them
    reply = await router.complete(USER)
    assert reply.model == "b/steady"
    # Reordered before the turn: no request was sent to the failing model.
    assert [(a.model, a.outcome.value, a.error) for a in reply.attempts] == [
        ("b/steady", "ok", None), ("a/flaky", "skipped", "ranked behind b/steady")]
    assert [r.model for r in upstream.requests] == ["a/flaky", "b/steady"]
    # At most one statistics request per model per minute, however many turns.
    for _ in range(5):
        await router.complete(USER)
    assert sorted(upstream.endpoint_requests) == ["a/flaky", "b/steady"]
    assert upstream.requests_for("a/flaky")[0].headers["Authorization"].startswith("Bearer ")
    await router.aclose()


async def test_off_by_default_no_statistics_requests(upstream, make_router):
    upstream.endpoint_stats = {"a/flaky": [{"uptime_last_5m": 10.0}]}
    router = make_router(["a/flaky", "b/steady"])
    for _ in range(3):
        assert (await router.complete(USER)).model == "a/flaky"
    await asyncio.sleep(0.05)
    assert router.ranking is None and upstream.endpoint_requests == []


async def test_refresh_is_rate_limited_and_bad_replies_change_nothing(upstream, make_router):
    now = [1000.0]
    ranking = UptimeRanking(interval=60.0, clock=lambda: now[0])
    router = make_router(["a/x", "b/unknown"])
    upstream.endpoint_stats = {"a/x": [{"uptime_last_5m": "broken"}, {"other": 1}]}
    targets = router.models
    assert await ranking.refresh(router._client, targets) == 2
    assert await ranking.refresh(router._client, targets) == 0  # within the minute: nothing sent
    assert ranking.uptime("a/x") is None and ranking.uptime("b/unknown") is None  # 404 and junk teach nothing
    now[0] += 61
    upstream.endpoint_stats = {"a/x": [{"uptime_last_5m": 80.0}]}
    assert await ranking.refresh(router._client, targets) == 2
    assert ranking.uptime("a/x") == 80.0
    assert [t.model for t in ranking.order(targets)] == ["b/unknown", "a/x"]
    now[0] += 60 * 6  # not refreshed for 6 minutes: the figure is forgotten, the chain order comes back
    assert ranking.uptime("a/x") is None
    assert [t.model for t in ranking.order(targets)] == ["a/x", "b/unknown"]


async def test_provider_latency_preferences_pass_through(upstream, make_router):
    preferences = {"sort": "latency", "preferred_max_latency": {"p50": 0.8, "p90": 1.5}}
    router = make_router(["a/x"], extra_body={"provider": preferences})
    await router.complete(USER)
    await router.complete(USER, provider={"sort": "throughput"})  # per request, it replaces the router's
    assert [r.body["provider"] for r in upstream.requests] == [preferences, {"sort": "throughput"}]
