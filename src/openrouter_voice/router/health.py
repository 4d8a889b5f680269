"""Per-model health: cooldowns and a circuit breaker with a real half-open state.

A model that fails is *open* (skipped) until its cooldown ends: the Retry-After the upstream
gave, else an exponential backoff. When the cooldown ends the circuit is *half-open*: the next
request tries the model again (one request at a time, so a still-broken primary costs one
real request, not a burst). Success closes the circuit, so the primary takes its place at the
head of the chain again; failure re-opens it with a longer cooldown. No probe requests are
sent: recovery is tested only by real traffic that would have been sent anyway.

Only a request sent after the latest failure verdict can close the circuit: a request already in
flight when the model failed (there are always some in a busy process) that then succeeds says
nothing about the model since, and must not undo a fresh verdict such as a Retry-After.

Times are wall-clock seconds (``time.time``), so expiries mean the same in every process that
shares them. Beside each circuit lives the model's recent latency (:mod:`.latency`).

A :class:`~.sharing.HealthSink` attached to the tracker shares all of it with other processes
(:mod:`openrouter_voice.fleet`); the turn still reads only this local copy and never waits on the store.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .latency import ModelLatency
from .sharing import HealthSink, SharedState


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class ModelHealth:
    """What is known about one model right now."""

    failures: int = 0  # consecutive failures
    open_until: float = 0.0
    failed_at: float = 0.0  # when the latest failure verdict was taken
    reason: str | None = None
    trial_in_flight: bool = False
    told_until: float = 0.0  # the upstream asked not to be asked again before this (Retry-After)
    successes: int = 0
    total_failures: int = 0
    tool_less: bool = False  # it refused tools: it gets turns without them
    lease_until: float = 0.0  # this process holds the fleet's half-open trial until then
    cost: float = 0.0  # credits its replies cost so far (where the upstream reported it)
    suspect_until: float = 0.0  # a hedge beat it while it gave no first token: others go first until then
    suspect_reason: str | None = None
    suspect_since: float = 0.0  # a request sent from then on that speaks ends the suspicion
    latency: ModelLatency = field(default_factory=ModelLatency)

    def state(self, now: float) -> CircuitState:
        if self.failures == 0:
            return CircuitState.CLOSED
        return CircuitState.OPEN if now < self.open_until else CircuitState.HALF_OPEN


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """A read-only view of one model's health, for status displays."""

    model: str
    state: CircuitState
    reason: str | None
    cooldown_remaining: float
    consecutive_failures: int


class HealthTracker:
    """Tracks every model's circuit. Shared by all requests of a router (and may be shared by routers).

    >>> health = HealthTracker()
    >>> health.record_failure("m", reason="429", retry_after=2.0)  # the cooldown applied
    2.0
    >>> health.is_available("m")
    False
    """

    def __init__(
        self,
        *,
        base_cooldown: float = 5.0,
        max_cooldown: float = 120.0,
        exclude_cooldown: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if base_cooldown <= 0 or max_cooldown < base_cooldown:
            raise ValueError("need 0 < base_cooldown <= max_cooldown")
        self.base_cooldown = base_cooldown
        self.max_cooldown = max_cooldown
        self.exclude_cooldown = exclude_cooldown
        self._clock = clock
        self._models: dict[str, ModelHealth] = {}
        self.sink: HealthSink | None = None

    def attach(self, sink: HealthSink | None) -> None:
        """Share this tracker's verdicts through ``sink`` (None: keep them in this process)."""
        self.sink = sink

    def _arbitrated(self) -> bool:
        return self.sink is not None and self.sink.online

    def _get(self, model: str) -> ModelHealth:
        health = self._models.get(model)
        if health is None:
            health = self._models[model] = ModelHealth()
        return health

    def state(self, model: str) -> CircuitState:
        return self._get(model).state(self._clock())

    def is_available(self, model: str) -> bool:
        """True if a request may be sent to ``model`` now (closed, or half-open with no trial running)."""
        health = self._get(model)
        now = self._clock()
        state = health.state(now)
        if state is CircuitState.CLOSED:
            return True
        if state is not CircuitState.HALF_OPEN or health.trial_in_flight:
            return False
        if self.sink is not None and self.sink.online and now >= health.lease_until:
            self.sink.trial_wanted(model)  # another process may hold the trial: ask, never wait
            return False
        return True

    def suspect(self, model: str, *, reason: str, until: float, since: float) -> None:
        """A request to ``model`` gave no first token past its hedge delay (it was known slow at ``since``)
        and a hedge answered first: until that request is judged (:meth:`clear_suspect`, or a failure
        verdict), a request sent from ``since`` on gives a first token (:meth:`spoke`), or ``until`` (a
        hard expiry; times on the tracker's clock), new turns try the other available models first. It
        stays in every plan.

        >>> health = HealthTracker()
        >>> sent = health.now()
        >>> health.suspect("m", reason="no first token after 0.80s", until=sent + 2.0, since=sent)
        >>> health.is_suspect("m"), health.is_available("m")
        (True, True)
        >>> health.spoke("m", sent=sent - 1.0); health.is_suspect("m")  # sent before the silent one: no news
        True
        >>> health.spoke("m", sent=sent); health.is_suspect("m")
        False
        """
        health = self._get(model)
        health.suspect_until = max(health.suspect_until, until)
        health.suspect_since = max(health.suspect_since, since)
        health.suspect_reason = reason
        if self.sink is not None:
            self.sink.suspected(model, reason=reason, until=health.suspect_until, since=health.suspect_since)

    def spoke(self, model: str, *, sent: float) -> None:
        """A request to ``model`` sent at ``sent`` (tracker clock) gave its first token: a suspicion raised
        by a silent request sent no later is over (the model answers new requests)."""
        health = self._models.get(model)
        if health is not None and health.suspect_until and sent >= health.suspect_since:
            self.clear_suspect(model)

    def clear_suspect(self, model: str) -> None:
        """``model``'s pending request answered after all: it is no longer suspected, here or in the fleet."""
        health = self._get(model)
        if not health.suspect_until:
            return
        health.suspect_until, health.suspect_reason, health.suspect_since = 0.0, None, 0.0
        if self.sink is not None:
            self.sink.unsuspected(model)

    def apply_suspect(self, model: str, *, reason: str | None, until: float, since: float) -> None:
        """Take the fleet's suspicion of ``model`` (``until`` 0: cleared) as the local copy."""
        health = self._get(model)
        health.suspect_until, health.suspect_since = until, since if until else 0.0
        health.suspect_reason = reason if until else None

    def is_suspect(self, model: str) -> bool:
        """True while ``model`` is suspected of hanging (see :meth:`suspect`)."""
        return self._clock() < self._get(model).suspect_until

    def suspect_reason(self, model: str) -> str | None:
        """Why ``model`` is suspected (None when it is not)."""
        return self._get(model).suspect_reason if self.is_suspect(model) else None

    def suspect_remaining(self, model: str) -> float:
        """Seconds until ``model``'s suspicion expires at the latest (0 when it is not suspected)."""
        return max(0.0, self._get(model).suspect_until - self._clock())

    def is_trial(self, model: str) -> bool:
        """True while this tracker's half-open trial of ``model`` is in flight."""
        return self._get(model).trial_in_flight

    def now(self) -> float:
        """The tracker's clock: pass it as ``sent`` to :meth:`record_success` for requests you track."""
        return self._clock()

    def begin(self, model: str) -> bool:
        """Mark a request as sent to ``model``. Returns True if it is the half-open trial."""
        health = self._get(model)
        now = self._clock()
        if health.state(now) is not CircuitState.HALF_OPEN:
            return False
        if self._arbitrated() and now >= health.lease_until:
            return False  # sent as a last resort while another process holds the trial
        health.trial_in_flight = True
        if self.sink is not None and now < health.lease_until:
            self.sink.trial_started(model)
        return True

    def end_trial(self, model: str) -> None:
        """The half-open trial ended without a verdict on the model (e.g. the caller cancelled)."""
        health = self._get(model)
        was_trial = health.trial_in_flight
        health.trial_in_flight = False
        if self.sink is not None and was_trial and health.lease_until:
            health.lease_until = 0.0
            self.sink.trial_ended(model)

    def grant_trial(self, model: str, until: float) -> None:
        """The fleet's store gave this process the half-open trial of ``model`` until ``until``."""
        self._get(model).lease_until = until

    def record_success(self, model: str, *, sent: float | None = None) -> bool:
        """``model`` answered a request sent at ``sent`` (the tracker's clock; None: just now).

        Closes the circuit unless the request was sent before the latest failure verdict: an older
        request in flight that succeeds afterwards does not undo it. Returns whether it closed.

        >>> health = HealthTracker()
        >>> before = health.now()
        >>> _ = health.record_failure("m", reason="429", retry_after=30)
        >>> health.record_success("m", sent=before), health.is_available("m")
        (False, False)
        """
        health = self._get(model)
        health.successes += 1
        if self.sink is not None and health.failures:  # a closed circuit has nothing to tell the fleet
            self.sink.succeeded(model, sent=sent, at=self._clock())
        if health.failures and sent is not None and sent < health.failed_at:
            return False
        health.failures = 0
        health.open_until = 0.0
        health.reason = None
        health.trial_in_flight = False
        health.told_until = 0.0
        health.lease_until = 0.0
        return True

    def record_failure(self, model: str, *, reason: str, retry_after: float | None = None,
                       exclude: bool = False) -> float:
        """Open ``model``'s circuit. Returns the cooldown applied, in seconds."""
        health = self._get(model)
        health.failures += 1
        health.total_failures += 1
        health.trial_in_flight = False
        if exclude:
            cooldown = self.exclude_cooldown
        elif retry_after is not None:
            # Honour Retry-After, but never shorter than it says, nor absurdly long.
            cooldown = min(max(retry_after, 0.0), self.exclude_cooldown)
        else:
            # The exponent is capped: a model down for a long time (or a fleet's shared count) passes 1024
            # failures in a row, and 2.0 ** 1024 overflows a float.
            cooldown = min(self.base_cooldown * 2.0 ** min(health.failures - 1, 64), self.max_cooldown)
        now = self._clock()
        # Only this failure's own Retry-After counts: a later timeout is our estimate, not the upstream's
        # word; and a longer backoff already running stays our estimate: once the Retry-After has passed
        # the model may be tried again (after the healthy ones).
        health.told_until = now + cooldown if retry_after is not None and not exclude else 0.0
        # A later, shorter verdict must not shorten a cooldown already promised (e.g. a 404 exclusion).
        health.failed_at = now
        health.open_until = max(health.open_until, now + cooldown)
        health.reason = reason
        health.lease_until = 0.0
        health.suspect_until, health.suspect_reason, health.suspect_since = 0.0, None, 0.0  # the verdict replaces it
        if self.sink is not None:
            self.sink.failed(model, reason=reason, retry_after=retry_after, exclude=exclude, at=now)
        return cooldown

    def record_reply(self, model: str, *, ttft: float | None, gaps: list[float], cost: float | None = None,
                     sentence: float | None = None) -> None:
        """A healthy reply's time to first token, gaps between chunks (seconds), cost (credits) and, in
        spoken replies, time from the first token to the end of the first sentence (a fleet store shares
        them all).

        >>> health = HealthTracker()
        >>> health.record_reply("m", ttft=0.3, gaps=[0.01, 0.02], cost=0.001)
        >>> len(health.latency("m").ttft), len(health.latency("m").gap), health.cost("m")
        (1, 2, 0.001)
        """
        health = self._get(model)
        if ttft is not None:
            health.latency.ttft.add(ttft)
        health.latency.gap.extend(gaps)
        if sentence is not None:
            health.latency.sentence.add(sentence)
        if cost is not None and cost >= 0:
            health.cost += cost
        if self.sink is not None:
            self.sink.reply(model, ttft=ttft, gaps=gaps, cost=cost, sentence=sentence)

    def mark_tool_less(self, model: str) -> None:
        """``model`` refused tools: later turns send it none (after the models that take them)."""
        health = self._get(model)
        if not health.tool_less and self.sink is not None:
            self.sink.tool_less(model)
        health.tool_less = True

    def tool_less(self, model: str) -> bool:
        return self._get(model).tool_less

    def cost(self, model: str) -> float:
        """Credits ``model``'s replies cost so far, as far as this tracker knows."""
        return self._get(model).cost

    def models(self) -> list[str]:
        """Every model this tracker has heard of."""
        return list(self._models)

    def apply_shared(self, model: str, state: SharedState) -> None:
        """Take the fleet's view of ``model`` (from the store) as the local copy."""
        health = self._get(model)
        if state.failures == 0 or state.failed_at > health.failed_at:
            health.trial_in_flight = False  # closed, or a newer verdict: no trial of ours is pending
            health.lease_until = 0.0
        health.failures = state.failures
        health.open_until = state.open_until
        health.failed_at = state.failed_at
        health.reason = state.reason
        health.told_until = state.told_until
        health.successes = max(health.successes, state.successes)
        health.total_failures = max(health.total_failures, state.total_failures)
        health.tool_less = health.tool_less or state.tool_less

    def shared_view(self, model: str) -> SharedState:
        """The local copy of ``model``'s circuit, as a store would hold it."""
        h = self._get(model)
        return SharedState(h.failures, h.open_until, h.failed_at, h.reason, h.told_until, h.successes,
                           h.total_failures, h.tool_less)

    def latency(self, model: str) -> ModelLatency:
        """``model``'s recent healthy latency (time to first token, gaps between chunks)."""
        return self._get(model).latency

    def reason(self, model: str) -> str | None:
        """Why ``model`` last failed (None if healthy)."""
        return self._get(model).reason

    def told_to_wait(self, model: str) -> bool:
        """True while ``model`` cools down for as long as its upstream asked (Retry-After)."""
        health = self._get(model)
        return self._clock() < health.told_until

    def wait_remaining(self, model: str) -> float:
        """Seconds until ``model``'s upstream may be asked again as it asked (0 if it set no Retry-After)."""
        return max(0.0, self._get(model).told_until - self._clock())

    def cooldown_remaining(self, model: str) -> float:
        return max(0.0, self._get(model).open_until - self._clock())

    def snapshot(self) -> list[HealthSnapshot]:
        """Every model that has failed and not yet recovered."""
        now = self._clock()
        return [
            HealthSnapshot(model, h.state(now), h.reason, max(0.0, h.open_until - now), h.failures)
            for model, h in self._models.items()
            if h.failures
        ]

    def reset(self, model: str | None = None) -> None:
        if model is None:
            self._models.clear()
        else:
            self._models.pop(model, None)
