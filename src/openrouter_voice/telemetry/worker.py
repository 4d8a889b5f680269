"""The voice worker's telemetry: a Prometheus endpoint in the main process showing the chain from
start-up, fed by the job processes' turns (:mod:`.relay`); OTLP from every process that has it set.
The main process serves; each job process (LiveKit's setup function) starts its own telemetry.

>>> served = serve_worker_metrics(9464, ["openai/gpt-4o-mini"])  # doctest: +SKIP
>>> start_job_telemetry()  # doctest: +SKIP
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from opentelemetry.sdk.metrics import MeterProvider

from .names import CIRCUIT_VALUES
from .observer import RouterTelemetry
from .record import TurnRecord
from .relay import RELAY_ENV, Circuits, RelayReceiver, RelaySender
from .setup import SCOPE, Telemetry, resource, serve_prometheus, start_telemetry
from .voice import VoiceEvent, VoiceMetrics


class RelayedChains:
    """The circuits the job processes last reported, per model; the configured chain until then.

    >>> chains = RelayedChains(["a/x"], clock=lambda: 100.0)
    >>> chains.update([("a/x", "open", 5.0)])
    >>> chains.read(), RelayedChains(["a/x"]).read()
    ([('a/x', 'open', 5.0)], [('a/x', 'closed', 0.0)])
    """

    def __init__(self, chain: Sequence[str], *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._models: dict[str, tuple[str, float]] = {model: ("closed", 0.0) for model in chain}

    def update(self, circuits: Circuits) -> None:
        now = self._clock()
        with self._lock:
            for model, state, cooldown in circuits:
                if model in self._models or len(self._models) < 256:  # bounded, whatever is sent
                    self._models[model] = (state, now + cooldown)

    def read(self) -> list[tuple[str, str, float]]:
        now = self._clock()
        with self._lock:
            items = list(self._models.items())
        states = []
        for model, (state, until) in items:
            if state == "open" and now >= until:
                state = "half_open"  # its cooldown ended since: the next request will try it
            states.append((model, state if state in CIRCUIT_VALUES else "closed", max(0.0, until - now)))
        return states


@dataclass
class WorkerMetrics:
    """The main process's scrape endpoint and the relay that feeds it."""

    router: RouterTelemetry
    chains: RelayedChains
    address: str
    voice: VoiceMetrics
    closers: list[Callable[[], None]] = field(default_factory=list)
    relayed: int = 0
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def record(self, turn: TurnRecord, circuits: Circuits) -> None:
        self.router.record(turn)
        self.chains.update(circuits)
        with self._changed:
            self.relayed += 1
            self._changed.notify_all()

    def record_voice(self, event: VoiceEvent) -> None:
        self.voice.record(event)
        with self._changed:
            self.relayed += 1
            self._changed.notify_all()

    def wait_relayed(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` messages in all were relayed here; False if ``timeout`` seconds passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: self.relayed >= count, timeout)

    def close(self) -> None:
        for close in reversed(self.closers):
            close()
        self.closers.clear()


def serve_worker_metrics(port: int, chain: Sequence[str], *, host: str = "0.0.0.0") -> WorkerMetrics:
    """Serve Prometheus metrics on ``host:port`` from this (main) process, the chain's circuits shown
    from now on, and point job processes started afterwards at the relay (:data:`.relay.RELAY_ENV`).

    Its meter is not the process's global one: relayed turns are for this endpoint only, since each job
    process exports its own over OTLP.
    """
    reader, close_endpoint = serve_prometheus(port, host)
    provider = MeterProvider(metric_readers=[reader], resource=resource())
    meter = provider.get_meter(SCOPE)
    router = RouterTelemetry(meter=meter)
    chains = RelayedChains(chain)
    assert router.metrics is not None
    router.metrics.watch_chain(chains.read)
    router.metrics.initialise(chain)
    served = WorkerMetrics(router, chains, "", VoiceMetrics(meter))
    receiver = RelayReceiver(served.record, served.record_voice).start()
    served.address = receiver.address
    previous = os.environ.get(RELAY_ENV)
    os.environ[RELAY_ENV] = receiver.address

    def restore() -> None:
        if previous is None:
            os.environ.pop(RELAY_ENV, None)
        else:
            os.environ[RELAY_ENV] = previous

    served.closers += [close_endpoint, provider.shutdown, receiver.close, restore]
    return served


def start_job_telemetry() -> Telemetry:
    """In a job process: the ``OTEL_*`` export, and its turns relayed to the worker's endpoint if it serves one."""
    telemetry = start_telemetry()
    address = os.environ.get(RELAY_ENV)
    if address and not any(isinstance(s, RelaySender) for s in telemetry.router.sinks):
        sender = RelaySender(address)
        telemetry.router.sinks.append(sender)
        telemetry.voice_sinks.append(sender.voice)
    return telemetry
