"""The real OpenTelemetry SDK with in-memory readers, and helpers to read what it holds."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, Metric, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from openrouter_voice.telemetry import RouterTelemetry
from tests.agent.conftest import make_agent, open_meteo  # noqa: F401  (the agent fixtures, shared)


@dataclass
class Otel:
    reader: InMemoryMetricReader
    spans: InMemorySpanExporter
    meters: MeterProvider
    tracers: TracerProvider
    telemetry: RouterTelemetry

    def metrics(self) -> dict[str, Metric]:
        data = self.reader.get_metrics_data()
        if data is None:
            return {}
        return {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        metric = self.metrics().get(name)
        if metric is None:
            return []
        return [(dict(p.attributes or {}), p) for p in metric.data.data_points]

    def value(self, name: str, **attributes: Any) -> float:
        """The sum of ``name``'s points whose attributes include ``attributes`` (keys with dots as __)."""
        wanted = {k.replace("__", "."): v for k, v in attributes.items()}
        total = 0.0
        for attrs, point in self.points(name):
            if all(attrs.get(k) == v for k, v in wanted.items()):
                assert isinstance(point, NumberDataPoint)
                total += point.value
        return total

    def histogram(self, name: str) -> list[tuple[dict[str, Any], HistogramDataPoint]]:
        return self.points(name)

    def finished_spans(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())


@pytest.fixture
def otel() -> Iterator[Otel]:
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    spans = InMemorySpanExporter()
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(spans))
    telemetry = RouterTelemetry(meter=meters.get_meter("openrouter_voice"),
                                tracer=tracers.get_tracer("openrouter_voice"))
    yield Otel(reader, spans, meters, tracers, telemetry)
    meters.shutdown()
    tracers.shutdown()
