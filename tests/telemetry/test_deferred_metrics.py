"""Metrics alone (no traces, no forwarding): a turn only queues its record, and the next collection
holds the same values as an eagerly recorded turn; with no reader collecting, memory stays bounded."""

from __future__ import annotations

import time

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from openrouter_voice.router import Attempt, Outcome, Target
from openrouter_voice.telemetry import RouterTelemetry
from openrouter_voice.telemetry import names as n
from openrouter_voice.telemetry.metrics import PENDING_LIMIT, RouterMetrics
from openrouter_voice.telemetry.record import TurnRecord
from openrouter_voice.testing import Script
from tests.conftest import USER
from tests.telemetry.conftest import Otel

USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17, "cost": 0.00042}


def _summary(otel: Otel) -> dict[str, object]:
    """What a dashboard reads, without the timings (two routers' turns take different times)."""
    return {
        "attempts": sorted((tuple(sorted(a.items())), p.value) for a, p in otel.points(n.ATTEMPTS)),
        "fallbacks": sorted((tuple(sorted(a.items())), p.value) for a, p in otel.points(n.FALLBACKS)),
        "cost": sorted((tuple(sorted(a.items())), p.value) for a, p in otel.points(n.COST)),
        "turns": sorted((tuple(sorted(a.items())), p.count) for a, p in otel.histogram(n.OPERATION_DURATION)),
        "tokens": sorted((tuple(sorted(a.items())), p.sum) for a, p in otel.histogram(n.TOKEN_USAGE)),
    }


async def test_deferred_turns_are_collected_with_the_values_an_eager_record_has(upstream, make_router, otel):
    upstream.script("a/primary", Script(status=429, retry_after=5))
    upstream.script("b/backup", Script(text="Backup answers.", ttft=0.01, usage=USAGE))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    deferred = Otel(reader, otel.spans, meters, otel.tracers, RouterTelemetry(meter=meters.get_meter("deferred")))
    try:
        eager_router, deferred_router = make_router(["a/primary", "b/backup"]), make_router(["a/primary", "b/backup"])
        otel.telemetry.instrument(eager_router)  # traced as well: recorded at the end of each turn
        deferred.telemetry.instrument(deferred_router)
        for _ in range(3):
            assert (await eager_router.complete(USER)).text == "Backup answers."
            assert (await deferred_router.complete(USER)).text == "Backup answers."
        metrics = deferred.telemetry.metrics
        assert metrics is not None and len(metrics._pending) == 3  # nothing recorded on the turns' path
        summary = _summary(deferred)
        assert summary == _summary(otel)
        assert deferred.value(n.ATTEMPTS, openrouter_voice__outcome="http_error") == 1  # then the primary cools
        assert deferred.value(n.ATTEMPTS, openrouter_voice__outcome="ok") == 3
        assert not metrics._pending
    finally:
        meters.shutdown()


def test_without_a_reader_collecting_pending_turns_stay_bounded_and_none_is_lost():
    metrics = RouterMetrics(MeterProvider().get_meter("no reader"))
    attempt = Attempt(Target("a/x", "openrouter", "u"), Outcome.OK, started=time.time(), latency=0.1, ttft=0.05)
    record = TurnRecord.build("a/x", [attempt], served="a/x", started=attempt.started, ended=attempt.started + 0.1,
                              error_type=None)
    for _ in range(PENDING_LIMIT * 2 + 3):
        metrics.defer(lambda: record)
        assert len(metrics._pending) < PENDING_LIMIT
    metrics.flush()
    assert metrics.attempts.values() == {("a/x", "openrouter", "ok", "ok"): PENDING_LIMIT * 2 + 3}
