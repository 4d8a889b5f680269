"""Observability: the router's turns, fallbacks, circuits and cost, and the voice turn, as
OpenTelemetry metrics and traces (GenAI semantic conventions where they fit), exported by the SDK's
own ``OTEL_*`` settings and, from the worker, on a Prometheus endpoint (``OPENROUTER_VOICE_METRICS_PORT``).

The router never imports this package: telemetry observes it (:mod:`openrouter_voice.router.events`).

>>> from opentelemetry.sdk.metrics import MeterProvider
>>> from openrouter_voice.router import FallbackRouter
>>> telemetry = RouterTelemetry(meter=MeterProvider().get_meter("openrouter_voice"))
>>> telemetry.instrument(FallbackRouter(["openai/gpt-4o-mini"]))
"""

from .observer import RouterTelemetry
from .record import TurnRecord
from .setup import Telemetry, TelemetryConfigError, current, start_telemetry

__all__ = ["RouterTelemetry", "Telemetry", "TelemetryConfigError", "TurnRecord", "current", "start_telemetry"]
