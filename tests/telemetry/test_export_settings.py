"""Export is turned on by the OpenTelemetry SDK's own settings and nothing else: a piped ``chat`` sends
its spans and metrics to an OTLP endpoint before it exits; with nothing set nothing is exported;
bad settings are refused with the variable's name and the fix."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from openrouter_voice.config import ConfigError, load_settings
from openrouter_voice.router import FallbackRouter
from openrouter_voice.telemetry import TelemetryConfigError, start_telemetry
from openrouter_voice.telemetry import names as n
from openrouter_voice.testing import Script, ScriptedUpstream
from tests.conftest import TEST_KEY

PRIMARY, BACKUP = "google/gemini-2.5-flash-lite", "openai/gpt-4o-mini"
QUESTION = "What does zebra-quokka-7731 mean?"


class Collector:
    """An OTLP/HTTP receiver on 127.0.0.1 that keeps every body it is sent, by path."""

    def __init__(self) -> None:
        self.bodies: dict[str, list[bytes]] = {}
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                collector.bodies.setdefault(self.path, []).append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector()
    yield running
    running.close()


def run_chat(up: ScriptedUpstream, tmp_path, **otel: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENROUTER", "LIVEKIT"))}
    env.update(OPENROUTER_API_KEY=TEST_KEY, OPENROUTER_BASE_URL=up.base_url, OPENROUTER_DEFAULT_MODEL=PRIMARY,
               OPENROUTER_FALLBACK_MODELS=BACKUP, OPENROUTER_VOICE_LOCAL_FALLBACK="false",
               OPENROUTER_VOICE_CACHE_DIR=str(tmp_path / "cache"), **otel)
    return subprocess.run([sys.executable, "-m", "openrouter_voice", "chat"], input=QUESTION + "\n", env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_piped_chat_exports_its_turn_over_otlp_before_it_exits(collector, tmp_path):
    with ScriptedUpstream(api_key=TEST_KEY) as up:
        up.script(PRIMARY, Script(status=429, retry_after=20))
        up.script(BACKUP, Script(text="Backup here.", usage={"prompt_tokens": 50, "completion_tokens": 2,
                                                             "cost": 0.00012}))
        # a long export interval: only the flush at exit can have sent the metrics
        result = run_chat(up, tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_SERVICE_NAME="voice-test",
                          OTEL_METRIC_EXPORT_INTERVAL="600000")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Backup here."

    spans = {}
    for body in collector.bodies.get("/v1/traces", []):
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
            assert service == "voice-test"
            for scope in resource_spans.scope_spans:
                spans.update({s.name: {a.key: a.value for a in s.attributes} for s in scope.spans})
    turn = spans[f"chat {PRIMARY}"]
    assert turn[n.RESPONSE_MODEL].string_value == BACKUP
    assert "llm_request" in spans and "agent_turn" in spans  # LiveKit's own spans go the same way

    scoped = {(sm.scope.name, m.name) for body in collector.bodies.get("/v1/metrics", [])
              for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics
              for sm in rm.scope_metrics for m in sm.metrics}
    assert {n.OPERATION_DURATION, n.FALLBACKS, n.COST} <= {name for _, name in scoped}
    # LiveKit's GenAI duplicates (the served model as the requested one) are dropped: ours are the only ones
    assert {scope for scope, name in scoped if name.startswith("gen_ai.")} == {"openrouter_voice"}
    everything = b"".join(b for bodies in collector.bodies.values() for b in bodies)
    assert b"zebra-quokka" not in everything and TEST_KEY.encode() not in everything
    assert b"Backup here." not in everything


def test_nothing_set_means_nothing_exported_and_no_observer(make_router):
    telemetry = start_telemetry(environ={}, install_globals=False)
    assert not telemetry.active and telemetry.meter_provider is None and telemetry.tracer_provider is None
    router: FallbackRouter = make_router(["a/x"])
    telemetry.instrument(router)
    assert router.observers == []


@pytest.mark.parametrize(("variable", "value", "named"), [
    ("OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER"),
    ("OTEL_METRICS_EXPORTER", "prometheus", "OPENROUTER_VOICE_METRICS_PORT"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL"),
])
def test_bad_otel_settings_are_named_with_the_fix(variable, value, named):
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", variable: value}
    with pytest.raises(TelemetryConfigError, match=named):
        start_telemetry(environ=environ, install_globals=False)


@pytest.mark.parametrize("port", ["http", "0", "70000"])
def test_bad_metrics_port_is_named_with_the_fix(monkeypatch, port):
    monkeypatch.setenv("OPENROUTER_VOICE_METRICS_PORT", port)
    with pytest.raises(ConfigError, match=r"OPENROUTER_VOICE_METRICS_PORT.*Fix: set it to a free TCP port"):
        load_settings()


def test_metrics_port_setting(monkeypatch):
    monkeypatch.setenv("OPENROUTER_VOICE_METRICS_PORT", "9464")
    assert load_settings().metrics_port == 9464
    monkeypatch.setenv("OPENROUTER_VOICE_METRICS_PORT", "")
    assert load_settings().metrics_port is None


def test_a_metrics_port_in_use_stops_the_worker_with_the_fix(monkeypatch, capsys):
    from openrouter_voice.agent.worker import serve_metrics

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("OPENROUTER_VOICE_METRICS_PORT", str(taken.getsockname()[1]))
        with pytest.raises(SystemExit) as stopped:
            serve_metrics(load_settings(), ["start"], host="127.0.0.1")
    assert stopped.value.code == 2
    assert "OPENROUTER_VOICE_METRICS_PORT" in capsys.readouterr().err
    assert serve_metrics(load_settings(), ["download-files"]) is None  # no sessions: no endpoint
