""":class:`RouterTelemetry`: a router observer (:mod:`openrouter_voice.router.events`) that turns
every finished turn into metrics and spans, and shows each watched chain's circuits in gauges.

>>> from opentelemetry.sdk.metrics import MeterProvider
>>> from openrouter_voice.router import FallbackRouter
>>> telemetry = RouterTelemetry(meter=MeterProvider().get_meter("demo"))
>>> router = FallbackRouter(["openai/gpt-4o-mini"])
>>> telemetry.instrument(router)
>>> telemetry.observes(router)
True
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections.abc import Callable, Sequence

from opentelemetry.metrics import Meter
from opentelemetry.trace import Span, Tracer

from ..router import Attempt, Completion, FallbackRouter, Outcome, Target
from .metrics import RouterMetrics
from .record import TurnRecord
from .traces import end_turn_span, start_turn_span

ChainState = Callable[[], list[tuple[str, str, float]] | None]
RecordSink = Callable[[TurnRecord, ChainState], None]
"""Gets each finished turn and a function that reads its router's circuits now."""


def _error_type(result: Completion | None, error: BaseException | None) -> str | None:
    if result is not None:
        return None
    if error is None or isinstance(error, GeneratorExit | asyncio.CancelledError):
        return "cancelled"  # the caller stopped the turn (e.g. the user spoke over the agent)
    return type(error).__name__


def chain_state(router: FallbackRouter) -> ChainState:
    """What the gauges read from ``router`` (held weakly: a closed session's router is not kept)."""
    ref = weakref.ref(router)

    def read() -> list[tuple[str, str, float]] | None:
        live = ref()
        if live is None:
            return None
        health = live.health
        return [(t.label, health.state(t.label).value, health.cooldown_remaining(t.label)) for t in live.models]

    return read


class _Watch:
    """One turn, from its start in the caller's context to its end."""

    __slots__ = ("_chain", "_owner", "_primary", "_span", "_started")

    def __init__(self, owner: RouterTelemetry, primary: str, chain: ChainState) -> None:
        self._owner = owner
        self._primary = primary
        self._chain = chain
        self._started = time.time()
        tracer = owner.tracer
        self._span: Span | None = start_turn_span(tracer, primary, started=self._started) if tracer else None

    def turn_ended(self, attempts: Sequence[Attempt], result: Completion | None,
                   error: BaseException | None) -> None:
        owner = self._owner
        build = functools.partial(self._build, tuple(attempts), result is not None, time.time(),
                                  _error_type(result, error))
        if owner.metrics is not None and owner.tracer is None and not owner.sinks:
            owner.metrics.defer(build)  # metrics alone: recorded when a reader collects
            return
        record = build()
        owner.record(record, self._chain)
        if self._span is not None and owner.tracer is not None:
            end_turn_span(owner.tracer, self._span, record)

    def _build(self, attempts: tuple[Attempt, ...], answered: bool, ended: float,
               error_type: str | None) -> TurnRecord:
        served = next((a.model for a in attempts if a.outcome is Outcome.OK), None) if answered else None
        return TurnRecord.build(self._primary, attempts, served=served, started=self._started, ended=ended,
                                error_type=error_type)


class _Observer:
    """What :meth:`RouterTelemetry.instrument` puts on one router: it knows that router's chain."""

    __slots__ = ("chain", "owner")

    def __init__(self, owner: RouterTelemetry, chain: ChainState) -> None:
        self.owner = owner
        self.chain = chain

    def turn_started(self, chain: Sequence[Target]) -> _Watch:
        return _Watch(self.owner, chain[0].label if chain else "none", self.chain)


class RouterTelemetry:
    """Metrics on ``meter`` and spans on ``tracer`` (either may be None) for every router it
    :meth:`instrument` s; ``sinks`` also get each turn's record (e.g. to forward it elsewhere)."""

    def __init__(self, *, meter: Meter | None = None, tracer: Tracer | None = None,
                 sinks: Sequence[RecordSink] = ()) -> None:
        self.metrics = RouterMetrics(meter) if meter is not None else None
        self.tracer = tracer
        self.sinks = list(sinks)

    @property
    def active(self) -> bool:
        return self.metrics is not None or self.tracer is not None or bool(self.sinks)

    def instrument(self, router: FallbackRouter) -> None:
        """Observe ``router``'s turns, and show its chain's circuits in the gauges from now on."""
        if self.observes(router):
            return
        chain = chain_state(router)
        router.observers.append(_Observer(self, chain))
        if self.metrics is not None:
            self.metrics.watch_chain(chain)
            self.metrics.initialise(t.label for t in router.models)

    def observes(self, router: FallbackRouter) -> bool:
        return any(isinstance(o, _Observer) and o.owner is self for o in router.observers)

    def record(self, turn: TurnRecord, chain: ChainState | None = None) -> None:
        """Record a finished turn (from a router here, or forwarded from another process)."""
        if self.metrics is not None:
            self.metrics.record(turn)
        if chain is not None:
            for sink in self.sinks:
                sink(turn, chain)
