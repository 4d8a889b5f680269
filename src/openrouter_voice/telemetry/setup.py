"""Turning export on with the OpenTelemetry SDK's own settings, and nothing when none is set.

* Traces and metrics over OTLP: set ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the per-signal
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``..._METRICS_ENDPOINT``); ``OTEL_EXPORTER_OTLP_PROTOCOL``
  (``http/protobuf`` by default, or ``grpc``), headers, timeouts and compression are read by the SDK's
  exporters themselves. ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` (``otlp``, ``console``,
  ``none``) choose explicitly; ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` name the process
  (``openrouter-voice`` by default); ``OTEL_SDK_DISABLED=true`` turns everything off.
* A Prometheus scrape endpoint from the voice worker: ``OPENROUTER_VOICE_METRICS_PORT`` (:mod:`.worker`).

With neither, :func:`start_telemetry` returns an inactive :class:`Telemetry`: no provider, no exporter
thread, no observer on any router.

>>> telemetry = start_telemetry(environ={}, install_globals=False)
>>> telemetry.active
False
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.metrics.view import DropAggregation, View
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from ..router import FallbackRouter
from .content import capture_content, hand_to_livekit
from .observer import RouterTelemetry
from .voice import VoiceMetrics, VoiceSink, watch_session

logger = logging.getLogger("openrouter_voice.telemetry")

SCOPE = "openrouter_voice"
DEFAULT_SERVICE_NAME = "openrouter-voice"
_KNOWN = {"otlp", "console", "none"}
# LiveKit's own instruments: its gen_ai.client.* ones label the served model as the requested one
# (ours say which is which), and every one of them carries the room and job ids (unbounded labels).
_LIVEKIT_METER = "livekit-agents"
_LIVEKIT_KEYS = {"model_name", "model_provider", "connection_reused", "severity"}


_current: Telemetry | None = None


def current() -> Telemetry:
    """This process's telemetry, as :func:`start_telemetry` installed it (inactive before)."""
    return _current if _current is not None else Telemetry(RouterTelemetry())


class TelemetryConfigError(ValueError):
    """An ``OTEL_*`` setting has a value this program cannot use; the message says which and the fix."""


@dataclass
class Telemetry:
    """The process's providers and the router observer built on them (see the module docstring)."""

    router: RouterTelemetry
    meter_provider: MeterProvider | None = None
    tracer_provider: TracerProvider | None = None
    voice_sinks: list[VoiceSink] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.router.active or bool(self.voice_sinks)

    def watch_session(self, session: Any, llm: Any) -> None:
        """Report ``session``'s voice turns as they end (nothing when no export is configured)."""
        if self.voice_sinks:
            watch_session(session, llm, self.voice_sinks)

    def instrument(self, router: FallbackRouter) -> None:
        """Observe ``router``'s turns (nothing when no export is configured)."""
        if self.active:
            self.router.instrument(router)

    def flush(self, timeout_millis: int = 5_000) -> None:
        """Export what was recorded so far (:meth:`shutdown` does too, as short commands end)."""
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is not None:
                provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flush and stop exporting."""
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is not None:
                provider.shutdown()


def _choice(environ: Mapping[str, str], variable: str, default: str) -> list[str]:
    raw = environ.get(variable)
    names = [part.strip().lower() for part in (raw if raw is not None else default).split(",") if part.strip()]
    unknown = [name for name in names if name not in _KNOWN]
    if unknown:
        hint = (" For a Prometheus endpoint set OPENROUTER_VOICE_METRICS_PORT." if "prometheus" in unknown else "")
        raise TelemetryConfigError(f"{variable}={raw!r}: {', '.join(unknown)} is not supported here. Fix: use "
                                   f"otlp, console or none (comma-separated).{hint}")
    return [name for name in names if name != "none"]


def _protocol(environ: Mapping[str, str], signal: str) -> str:
    protocol = environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    protocol = (protocol or "http/protobuf").strip().lower()
    if protocol not in ("http/protobuf", "grpc"):
        raise TelemetryConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported. Fix: use "
                                   "http/protobuf (the default) or grpc.")
    return protocol


def span_exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    """The span exporters the ``OTEL_*`` settings ask for (none by default)."""
    endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    exporters: list[SpanExporter] = []
    for name in _choice(environ, "OTEL_TRACES_EXPORTER", "otlp" if endpoint else "none"):
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter())
        elif _protocol(environ, "TRACES") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans

            exporters.append(GrpcSpans())
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
    return exporters


def metric_readers(environ: Mapping[str, str]) -> list[MetricReader]:
    """Periodic metric readers for the exporters the ``OTEL_*`` settings ask for (none by default);
    ``OTEL_METRIC_EXPORT_INTERVAL`` is read by the reader itself."""
    from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader

    endpoint = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    readers: list[MetricReader] = []
    for name in _choice(environ, "OTEL_METRICS_EXPORTER", "otlp" if endpoint else "none"):
        exporter: MetricExporter
        if name == "console":
            from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

            exporter = ConsoleMetricExporter()
        elif _protocol(environ, "METRICS") == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics

            exporter = GrpcMetrics()
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            exporter = OTLPMetricExporter()
        readers.append(PeriodicExportingMetricReader(exporter))
    return readers


def resource() -> Resource:
    """``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (the SDK reads them), else ``openrouter-voice``."""
    detected = Resource.create()
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        detected = detected.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return detected


def livekit_views() -> list[View]:
    """LiveKit's instruments, kept to bounded labels; its GenAI ones dropped (ours replace them)."""
    return [View(meter_name=_LIVEKIT_METER, instrument_name="gen_ai.*", aggregation=DropAggregation()),
            View(meter_name=_LIVEKIT_METER, instrument_name="lk.*", attribute_keys=_LIVEKIT_KEYS)]


def start_telemetry(*, environ: Mapping[str, str] = os.environ, install_globals: bool = True) -> Telemetry:
    """Build the providers the ``OTEL_*`` settings ask for. With ``install_globals`` (once per process:
    later calls return the same) they also become the process's OpenTelemetry providers and LiveKit's,
    with message content off unless opted in (:mod:`.content`), and :func:`current` returns them."""
    global _current
    if install_globals and _current is not None:
        return _current
    telemetry = Telemetry(RouterTelemetry())
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true":
        telemetry = _build(environ)
    if install_globals:
        _install(telemetry.tracer_provider, telemetry.meter_provider, environ)
        _current = telemetry
    return telemetry


def _build(environ: Mapping[str, str]) -> Telemetry:
    exporters = span_exporters(environ)
    readers = metric_readers(environ)
    res = resource() if exporters or readers else None
    tracer_provider = meter_provider = None
    if exporters:
        tracer_provider = TracerProvider(resource=res)
        for exporter in exporters:
            tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
    if readers:
        meter_provider = MeterProvider(metric_readers=readers, resource=res, views=livekit_views())
    meter = meter_provider.get_meter(SCOPE) if meter_provider else None
    router = RouterTelemetry(meter=meter, tracer=tracer_provider.get_tracer(SCOPE) if tracer_provider else None)
    voice: list[VoiceSink] = [VoiceMetrics(meter).record] if meter is not None else []
    return Telemetry(router, meter_provider, tracer_provider, voice)


def serve_prometheus(port: int, host: str = "0.0.0.0") -> tuple[MetricReader, Any]:
    """A Prometheus reader and its HTTP endpoint (``/metrics``) on ``host:port``; returns the reader and
    the function that closes the endpoint. Raises :class:`TelemetryConfigError` when the port is taken."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import start_http_server

    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as exc:
        raise TelemetryConfigError(f"OPENROUTER_VOICE_METRICS_PORT={port}: cannot listen ({exc.strerror}). "
                                   "Fix: choose a free port, or unset it.") from None
    reader = PrometheusMetricReader()

    def close() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return reader, close


def _install(tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None,
             environ: Mapping[str, str]) -> None:
    from opentelemetry import metrics, trace

    if tracer_provider is not None:
        trace.set_tracer_provider(tracer_provider)
        hand_to_livekit(tracer_provider, content=capture_content(environ))
    if meter_provider is not None:
        metrics.set_meter_provider(meter_provider)
