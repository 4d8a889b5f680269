"""Router spans through the real SDK's in-memory exporter: one span per turn, a child per request sent,
saying which model hung and what took over."""

from __future__ import annotations

import pytest
from opentelemetry.trace import StatusCode

from openrouter_voice.router import AllModelsFailedError
from openrouter_voice.telemetry import names as n
from openrouter_voice.testing import Script
from tests.conftest import USER
from tests.router.test_deadlines_and_continuation import FULL, continuing_backup
from tests.telemetry.test_router_metrics import BACKUP, COST, PRIMARY, USAGE


def turn_and_attempts(otel):
    spans = otel.finished_spans()
    [turn] = [s for s in spans if s.name.startswith(n.TURN_SPAN + " ")]
    attempts = sorted((s for s in spans if s.name == n.ATTEMPT_SPAN), key=lambda s: s.start_time)
    for attempt in attempts:
        assert attempt.parent is not None and attempt.parent.span_id == turn.context.span_id
        assert attempt.context.trace_id == turn.context.trace_id
        assert turn.start_time <= attempt.start_time <= attempt.end_time <= turn.end_time
    return turn, attempts


async def test_hang_shows_which_model_hung_and_which_hedge_took_over(upstream, make_router, otel):
    upstream.script(PRIMARY, Script(hang=True))
    upstream.script(BACKUP, Script(text="Hedge answers.", ttft=0.05, usage=USAGE))
    router = make_router([PRIMARY, BACKUP], first_token_timeout=0.8, hedge_after=0.1)
    otel.telemetry.instrument(router)
    await router.complete(USER)

    turn, (hung, hedge) = turn_and_attempts(otel)
    assert turn.name == f"chat {PRIMARY}"
    assert turn.attributes[n.REQUEST_MODEL] == PRIMARY and turn.attributes[n.RESPONSE_MODEL] == BACKUP
    assert turn.attributes[n.COST] == pytest.approx(COST)
    assert turn.status.status_code is not StatusCode.ERROR
    assert hung.attributes[n.MODEL] == PRIMARY and hung.attributes[n.REASON] == "hedge_lost"
    assert hung.attributes["openrouter_voice.hedge"] is False
    assert "gen_ai.response.time_to_first_chunk" not in hung.attributes  # it never spoke
    assert hedge.attributes[n.MODEL] == BACKUP and hedge.attributes[n.OUTCOME] == "ok"
    assert hedge.attributes["openrouter_voice.hedge"] is True
    assert hedge.attributes["gen_ai.response.time_to_first_chunk"] >= 0.05
    # the hedge went out after the primary's hedge delay
    assert (hedge.start_time - hung.start_time) / 1e9 >= 0.1


async def test_continuation_and_failure_are_flagged_on_their_attempts(upstream, make_router, otel):
    upstream.script(PRIMARY, Script(text=FULL, error_after_tokens=5))
    upstream.script(BACKUP, continuing_backup())
    router = make_router([PRIMARY, BACKUP])
    otel.telemetry.instrument(router)
    await router.complete(USER)

    _, (broke, continued) = turn_and_attempts(otel)
    assert broke.status.status_code is StatusCode.ERROR and broke.attributes[n.ERROR_TYPE] == "stream_error"
    assert broke.attributes["openrouter_voice.continuation"] is False
    assert continued.attributes["openrouter_voice.continuation"] is True
    assert continued.attributes[n.OUTCOME] == "ok"


async def test_all_fail_turn_span_is_an_error_and_cooling_models_are_events(upstream, make_router, otel):
    upstream.script(PRIMARY, Script(status=429, retry_after=30))
    upstream.script(BACKUP, Script(status=500))
    router = make_router([PRIMARY, BACKUP])
    otel.telemetry.instrument(router)
    with pytest.raises(AllModelsFailedError):
        await router.complete(USER)
    turn, attempts = turn_and_attempts(otel)
    assert turn.status.status_code is StatusCode.ERROR
    assert turn.attributes[n.ERROR_TYPE] == "AllModelsFailedError"
    assert n.RESPONSE_MODEL not in turn.attributes
    assert [(a.attributes[n.MODEL], a.attributes["http.response.status_code"]) for a in attempts] == [
        (PRIMARY, 429), (BACKUP, 500)]

    otel.spans.clear()
    with pytest.raises(AllModelsFailedError):  # the primary is not asked again before its Retry-After
        await router.complete(USER)
    turn, attempts = turn_and_attempts(otel)
    assert [a.attributes[n.MODEL] for a in attempts] == [BACKUP]  # cooling, still tried: nothing else is left
    skipped = [dict(e.attributes or {}) for e in turn.events if e.name == "model skipped"]
    assert {n.MODEL: PRIMARY, n.REASON: "circuit_open"} in skipped
