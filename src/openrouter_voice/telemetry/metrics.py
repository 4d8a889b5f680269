"""The router's metrics on an OpenTelemetry meter: one :meth:`RouterMetrics.record` per finished turn,
and observable gauges that read each watched chain's circuits when a reader collects.

>>> from opentelemetry.sdk.metrics import MeterProvider
>>> from opentelemetry.sdk.metrics.export import InMemoryMetricReader
>>> reader = InMemoryMetricReader()
>>> metrics = RouterMetrics(MeterProvider(metric_readers=[reader]).get_meter("demo"))
>>> metrics.watch_chain(lambda: [("openai/gpt-4o-mini", "closed", 0.0)])
>>> [m.name for m in reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics]
['openrouter_voice.router.circuit.state', 'openrouter_voice.router.cooldown.remaining']
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from . import names as n
from .record import TurnRecord, provider_name

logger = logging.getLogger("openrouter_voice.telemetry")

PENDING_LIMIT = 256
"""Turns held for the next collection at most: past it they are recorded at once (a provider with no
reader that collects must not grow memory)."""

ChainState = Callable[[], Iterable[tuple[str, str, float]] | None]
"""Returns ``(chain id, circuit state, cooldown seconds left)`` for each model of a chain; None once
the chain is gone (its router was closed and collected), which stops the gauges asking."""


class Totals:
    """A counter kept as running totals per attribute values and reported when a reader collects
    (an observable counter: the same cumulative sums to every exporter). Hand-rolled because the
    benchmark's overhead scenario shows the SDK's synchronous ``Counter.add`` (its attribute
    processing, ~8 us a call on the 2-core bench machine) is most of a turn's telemetry cost; here a
    turn pays a dict update.

    >>> from opentelemetry.sdk.metrics import MeterProvider
    >>> totals = Totals(MeterProvider().get_meter("demo"), "demo.requests", "{request}", "", ("model",))
    >>> totals.add(1, "a/x"); totals.add(2, "a/x"); totals.values()
    {('a/x',): 3.0}
    """

    def __init__(self, meter: Meter, name: str, unit: str, description: str, keys: tuple[str, ...],
                 before: Callable[[], None] | None = None) -> None:
        self.keys = keys
        self._before = before  # run first when a reader collects
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()  # added to on the event loop, read on the reader's thread
        meter.create_observable_counter(name, [self._observe], unit=unit, description=description)

    def add(self, amount: float, *values: str) -> None:
        with self._lock:
            self._values[values] = self._values.get(values, 0.0) + amount

    def values(self) -> dict[tuple[str, ...], float]:
        with self._lock:
            return dict(self._values)

    def _observe(self, options: CallbackOptions) -> Sequence[Observation]:
        if self._before is not None:
            self._before()
        return [Observation(total, dict(zip(self.keys, key, strict=True))) for key, total in self.values().items()]


class RouterMetrics:
    """Every router instrument on ``meter``; see :mod:`.names` for the list.

    A router's turns are deferred (:meth:`defer`): the turn pays a queue append, and the records are
    made when a reader next collects (every instrument's callback first runs :meth:`flush`), with
    the same values (exemplars aside: they are recorded outside the turn's context). Recording a turn
    in the SDK (four histogram points, the counters) costs ~45 us alone on the 2-core bench machine
    and added 0.13 ms per request in the interleaved overhead benchmark; recorded in a batch when a
    Prometheus scrape or an OTLP export comes (every 15-60 s), it adds no measurable time.
    """

    def __init__(self, meter: Meter) -> None:
        self._pending: deque[Callable[[], TurnRecord]] = deque()
        self.duration = meter.create_histogram(
            n.OPERATION_DURATION, unit="s", description="GenAI operation duration (one router turn)",
            explicit_bucket_boundaries_advisory=n.DURATION_BUCKETS)
        self.first_chunk = meter.create_histogram(
            n.TIME_TO_FIRST_CHUNK, unit="s", description="Time to the first chunk of a streamed reply",
            explicit_bucket_boundaries_advisory=n.DURATION_BUCKETS)
        self.tokens = meter.create_histogram(
            n.TOKEN_USAGE, unit="{token}", description="Tokens used by one turn, by gen_ai.token.type",
            explicit_bucket_boundaries_advisory=n.TOKEN_BUCKETS)
        model, flush = (n.MODEL, n.PROVIDER_NAME), self.flush
        self.attempts = Totals(meter, n.ATTEMPTS, "{attempt}", "Requests sent to a model, by outcome and reason",
                               (*model, n.OUTCOME, n.REASON), flush)
        self.fallbacks = Totals(meter, n.FALLBACKS, "{fallback}", "Turns a model could not serve, who took over "
                                "and why", (n.FROM_MODEL, n.TO_MODEL, n.REASON), flush)
        self.hedges = Totals(meter, n.HEDGES, "{request}", "Hedged requests sent", model, flush)
        self.hedges_won = Totals(meter, n.HEDGES_WON, "{request}", "Hedged requests that spoke first", model, flush)
        self.continuations = Totals(meter, n.CONTINUATIONS, "{request}",
                                    "Replies continued by another model after a break", model, flush)
        self.cost = Totals(meter, n.COST, "USD", "Cost reported by the upstream", model, flush)
        self._chains: list[ChainState] = []
        self._lock = threading.Lock()  # gauges are collected on the reader's thread
        meter.create_observable_gauge(n.CIRCUIT_STATE, [self._observe_states], unit="1",
                                      description="Circuit per model: 0 closed, 1 half-open, 2 open")
        meter.create_observable_gauge(n.COOLDOWN_REMAINING, [self._observe_cooldowns], unit="s",
                                      description="Seconds until a cooling model may be asked again")

    def watch_chain(self, chain: ChainState) -> None:
        """Report ``chain``'s circuits in the gauges from now on (before any call is made)."""
        with self._lock:
            self._chains.append(chain)

    def initialise(self, models: Iterable[str]) -> None:
        """Counters that stay at 0 until something rare happens exist from now on for ``models``, so a
        dashboard's rate() reads 0 rather than "no data"."""
        for model in models:
            for counter in (self.hedges, self.hedges_won, self.continuations):
                counter.add(0, model, provider_name(model))

    def unwatch_chain(self, chain: ChainState) -> None:
        with self._lock:
            if chain in self._chains:
                self._chains.remove(chain)

    def defer(self, turn: Callable[[], TurnRecord]) -> None:
        """Record the turn that ``turn`` builds when a reader next collects (see the class docstring)."""
        pending = self._pending
        pending.append(turn)
        if len(pending) >= PENDING_LIMIT:
            self.flush()

    def flush(self) -> None:
        """Record every deferred turn now (safe from any thread: each is taken exactly once)."""
        pending = self._pending
        while pending:
            try:
                build = pending.popleft()
            except IndexError:  # another thread took the last one
                return
            try:
                self.record(build())
            except Exception:  # a bad record must not lose the others, nor fail a collection
                logger.exception("could not record a router turn")

    def record(self, turn: TurnRecord) -> None:
        """Everything one finished turn says, in one pass over its attempts."""
        base = {n.OPERATION_NAME: n.CHAT, n.PROVIDER_NAME: turn.provider, n.REQUEST_MODEL: turn.primary}
        if turn.served:
            base[n.RESPONSE_MODEL] = turn.served
        if turn.error_type:
            base[n.ERROR_TYPE] = turn.error_type
        self.duration.record(turn.duration, base)
        if (first := turn.time_to_first_chunk) is not None:
            self.first_chunk.record(first, base)
        input_tokens = sum(a.input_tokens for a in turn.attempts)
        output_tokens = sum(a.output_tokens for a in turn.attempts)
        if input_tokens or output_tokens:
            self.tokens.record(input_tokens, {**base, n.TOKEN_TYPE: "input"})
            self.tokens.record(output_tokens, {**base, n.TOKEN_TYPE: "output"})
        for attempt in turn.attempts:
            model = (attempt.model, provider_name(attempt.model))
            if attempt.sent:
                self.attempts.add(1, *model, attempt.outcome, attempt.reason)
            if attempt.hedge:
                self.hedges.add(1, *model)
                if attempt.hedge_won:
                    self.hedges_won.add(1, *model)
            if attempt.continuation:
                self.continuations.add(1, *model)
            if attempt.cost:
                self.cost.add(attempt.cost, *model)
        for fallback in turn.fallbacks():
            self.fallbacks.add(1, fallback.source, fallback.target, fallback.reason)

    def _chain_states(self) -> list[tuple[str, str, float]]:
        with self._lock:
            chains = list(self._chains)
        seen: dict[str, tuple[str, str, float]] = {}
        for chain in chains:
            states = chain()
            if states is None:  # a session's router, gone: forget it (a worker runs thousands)
                self.unwatch_chain(chain)
                continue
            for model, state, cooldown in states:
                # Several routers (sessions) may share a model: report the worst view of it.
                known = seen.get(model)
                if known is None or n.CIRCUIT_VALUES.get(state, 0) > n.CIRCUIT_VALUES.get(known[1], 0):
                    seen[model] = (model, state, max(cooldown, known[2] if known else 0.0))
        return list(seen.values())

    def _observe_states(self, options: CallbackOptions) -> Sequence[Observation]:
        self.flush()
        return [Observation(n.CIRCUIT_VALUES.get(state, 0), {n.MODEL: model, n.PROVIDER_NAME: provider_name(model)})
                for model, state, _ in self._chain_states()]

    def _observe_cooldowns(self, options: CallbackOptions) -> Sequence[Observation]:
        self.flush()
        return [Observation(cooldown, {n.MODEL: model, n.PROVIDER_NAME: provider_name(model)})
                for model, _, cooldown in self._chain_states()]
