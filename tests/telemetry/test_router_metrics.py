"""Router metrics through the real SDK's in-memory reader, for scripted turns: a 429 fallback, a hang
taken over by a hedge, a reply broken mid-sentence and continued, and a turn where every model fails."""

from __future__ import annotations

import math

import pytest

from openrouter_voice.router import AllModelsFailedError
from openrouter_voice.telemetry import names as n
from openrouter_voice.testing import Script
from tests.conftest import USER
from tests.router.test_deadlines_and_continuation import FULL, continuing_backup

COST = 0.00042137
USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17, "cost": COST}
PRIMARY, BACKUP = "a/primary", "b/backup"


async def test_429_fallback_is_counted_with_its_reason_cost_and_models(upstream, make_router, otel):
    upstream.script(PRIMARY, Script(status=429, retry_after=5))
    upstream.script(BACKUP, Script(text="Backup answers.", ttft=0.02, usage=USAGE))
    router = make_router([PRIMARY, BACKUP])
    otel.telemetry.instrument(router)
    reply = await router.complete(USER)
    assert reply.text == "Backup answers."

    metrics = otel.metrics()
    duration = metrics[n.OPERATION_DURATION]
    assert duration.unit == "s"
    [(attrs, point)] = otel.histogram(n.OPERATION_DURATION)
    # requested (the chain's primary) and served are two different models here, and said so
    assert attrs == {n.OPERATION_NAME: "chat", n.PROVIDER_NAME: "openrouter", n.REQUEST_MODEL: PRIMARY,
                     n.RESPONSE_MODEL: BACKUP}
    assert point.count == 1
    assert tuple(point.explicit_bounds) == n.DURATION_BUCKETS
    [(first_attrs, first)] = otel.histogram(n.TIME_TO_FIRST_CHUNK)
    assert metrics[n.TIME_TO_FIRST_CHUNK].unit == "s"
    assert first_attrs == attrs and first.count == 1
    assert 0.02 <= first.sum <= point.sum  # the backup's own first token, within the turn

    assert otel.value(n.ATTEMPTS, openrouter_voice__model=PRIMARY, openrouter_voice__outcome="http_error",
                      openrouter_voice__reason="429") == 1
    assert otel.value(n.ATTEMPTS, openrouter_voice__model=BACKUP, openrouter_voice__outcome="ok") == 1
    assert otel.value(n.ATTEMPTS) == 2
    [(fallback, _)] = otel.points(n.FALLBACKS)
    assert fallback == {n.FROM_MODEL: PRIMARY, n.TO_MODEL: BACKUP, n.REASON: "429"}

    assert metrics[n.COST].unit == "USD"
    assert math.isclose(otel.value(n.COST, openrouter_voice__model=BACKUP), COST)  # the scripted usage cost
    tokens = {a[n.TOKEN_TYPE]: p.sum for a, p in otel.histogram(n.TOKEN_USAGE)}
    assert tokens == {"input": 12, "output": 5}
    assert metrics[n.TOKEN_USAGE].unit == "{token}"

    # the circuits: the rate-limited primary is open for its Retry-After, the backup closed
    assert otel.value(n.CIRCUIT_STATE, openrouter_voice__model=PRIMARY) == n.CIRCUIT_VALUES["open"]
    assert otel.value(n.CIRCUIT_STATE, openrouter_voice__model=BACKUP) == n.CIRCUIT_VALUES["closed"]
    assert 0 < otel.value(n.COOLDOWN_REMAINING, openrouter_voice__model=PRIMARY) <= 5
    assert metrics[n.COOLDOWN_REMAINING].unit == "s"


async def test_circuit_gauge_shows_the_chain_before_any_call(make_router, otel):
    otel.telemetry.instrument(make_router([PRIMARY, BACKUP, "m@local"], endpoints={"local": ("http://127.0.0.1:9", None)}))
    states = {a[n.MODEL]: (p.value, a[n.PROVIDER_NAME]) for a, p in otel.points(n.CIRCUIT_STATE)}
    assert states == {PRIMARY: (0, "openrouter"), BACKUP: (0, "openrouter"), "m@local": (0, "local")}
    assert n.OPERATION_DURATION not in otel.metrics()  # nothing recorded but the chain


async def test_hang_taken_over_by_a_hedge(upstream, make_router, otel):
    upstream.script(PRIMARY, Script(hang=True))
    upstream.script(BACKUP, Script(text="Hedge answers.", ttft=0.05, usage=USAGE))
    router = make_router([PRIMARY, BACKUP], first_token_timeout=0.8, hedge_after=0.1)
    otel.telemetry.instrument(router)
    reply = await router.complete(USER)
    assert reply.model == BACKUP or reply.text == "Hedge answers."

    assert otel.value(n.HEDGES, openrouter_voice__model=BACKUP) == 1
    assert otel.value(n.HEDGES_WON, openrouter_voice__model=BACKUP) == 1
    assert otel.value(n.ATTEMPTS, openrouter_voice__model=PRIMARY, openrouter_voice__reason="hedge_lost") == 1
    [(fallback, _)] = otel.points(n.FALLBACKS)
    assert fallback == {n.FROM_MODEL: PRIMARY, n.TO_MODEL: BACKUP, n.REASON: "hedge_lost"}
    [(attrs, first)] = otel.histogram(n.TIME_TO_FIRST_CHUNK)
    assert attrs[n.RESPONSE_MODEL] == BACKUP
    [(_, duration)] = otel.histogram(n.OPERATION_DURATION)
    # the first chunk came after the hedge delay plus the hedge's own first token, within the turn
    assert 0.1 + 0.05 <= first.sum <= duration.sum


async def test_reply_broken_mid_sentence_is_continued(upstream, make_router, otel):
    upstream.script(PRIMARY, Script(text=FULL, error_after_tokens=5))
    upstream.script(BACKUP, continuing_backup())
    router = make_router([PRIMARY, BACKUP])
    otel.telemetry.instrument(router)
    reply = await router.complete(USER)
    assert reply.text == FULL

    assert otel.value(n.CONTINUATIONS, openrouter_voice__model=BACKUP) == 1
    assert otel.value(n.CONTINUATIONS, openrouter_voice__model=PRIMARY) == 0
    [(fallback, _)] = otel.points(n.FALLBACKS)
    assert fallback == {n.FROM_MODEL: PRIMARY, n.TO_MODEL: BACKUP, n.REASON: "stream_error"}
    # the first chunk is the primary's: the caller heard it before the break
    [(_, first)] = otel.histogram(n.TIME_TO_FIRST_CHUNK)
    [(_, duration)] = otel.histogram(n.OPERATION_DURATION)
    assert first.sum < duration.sum


async def test_every_model_failing_is_an_error_type_and_fallbacks_to_none(upstream, make_router, otel):
    upstream.script(PRIMARY, Script(status=503))
    upstream.script(BACKUP, Script(status=500))
    router = make_router([PRIMARY, BACKUP])
    otel.telemetry.instrument(router)
    with pytest.raises(AllModelsFailedError):
        await router.complete(USER)

    [(attrs, point)] = otel.histogram(n.OPERATION_DURATION)
    assert attrs == {n.OPERATION_NAME: "chat", n.PROVIDER_NAME: "openrouter", n.REQUEST_MODEL: PRIMARY,
                     n.ERROR_TYPE: "AllModelsFailedError"}
    assert point.count == 1
    assert otel.histogram(n.TIME_TO_FIRST_CHUNK) == []  # nothing came
    fallbacks = sorted((a[n.FROM_MODEL], a[n.TO_MODEL], a[n.REASON]) for a, _ in otel.points(n.FALLBACKS))
    assert fallbacks == [(PRIMARY, "none", "503"), (BACKUP, "none", "500")]
    assert otel.value(n.COST) == 0
    assert otel.value(n.CIRCUIT_STATE, openrouter_voice__model=PRIMARY) == n.CIRCUIT_VALUES["open"]
    assert otel.value(n.CIRCUIT_STATE, openrouter_voice__model=BACKUP) == n.CIRCUIT_VALUES["open"]


async def test_a_router_without_telemetry_has_no_observer(make_router):
    assert make_router([PRIMARY]).observers == []


async def test_a_closed_sessions_router_leaves_the_gauges(upstream, otel):
    import gc

    from openrouter_voice.router import FallbackRouter

    router = FallbackRouter([PRIMARY], api_key="k", base_url=upstream.base_url)
    otel.telemetry.instrument(router)
    assert [a[n.MODEL] for a, _ in otel.points(n.CIRCUIT_STATE)] == [PRIMARY]
    await router.aclose()
    del router
    gc.collect()
    assert otel.points(n.CIRCUIT_STATE) == []  # a worker runs thousands of sessions: none is kept
    assert otel.telemetry.metrics is not None and otel.telemetry.metrics._chains == []
