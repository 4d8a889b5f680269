"""A finished router turn as plain, bounded values: what the metrics and spans are made of.

Only chain ids, outcomes, reasons from a fixed vocabulary, times and counts: never a prompt, a
reply, a key or an upstream's free-form error text (those stay in the router's own records).

>>> from openrouter_voice.router import Attempt, Outcome, Target
>>> a = Attempt(Target("a/x", "openrouter", "u"), Outcome.HTTP_ERROR, status=429, started=100.0, latency=0.05)
>>> b = Attempt(Target("m", "local", "u"), Outcome.OK, started=100.05, latency=0.4, ttft=0.1)
>>> turn = TurnRecord.build("a/x", [a, b], served="m@local", started=100.0, ended=100.45, error_type=None)
>>> [(x.model, x.outcome, x.reason) for x in turn.attempts], turn.provider, round(turn.time_to_first_chunk, 2)
([('a/x', 'http_error', '429'), ('m@local', 'ok', 'ok')], 'local', 0.15)
>>> [(f.source, f.target, f.reason) for f in turn.fallbacks()]
[('a/x', 'm@local', '429')]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..router import Attempt, Outcome
from ..router.defaults import OPENROUTER

NO_MODEL = "none"
"""The ``to`` of a fallback when no model answered (the caller heard the apology)."""

# Statuses the router treats apart (README's decision table); any other is reported by its class.
_NAMED_STATUSES = frozenset({400, 401, 402, 403, 404, 408, 413, 422, 429, 500, 502, 503, 504, 524, 529})


def provider_name(label: str) -> str:
    """``gen_ai.provider.name`` for a chain id: ``openrouter``, or the endpoint of ``model@endpoint``.

    >>> provider_name("openai/gpt-4o-mini"), provider_name("llama3.2@ollama")
    ('openrouter', 'ollama')
    """
    return label.rpartition("@")[2] if "@" in label else OPENROUTER


def reason(attempt: Attempt) -> str:
    """Why an attempt ended, from a small fixed vocabulary (a metric label must stay bounded):
    ``ok``, an HTTP status the router treats apart (``429``) or its class (``5xx``), ``hang`` (no
    first token in time), ``stall``, ``dribble`` (slower than speech), ``stream_error``,
    ``connection``, ``bad_response``, ``hedge_lost``, ``cancelled``, and for models not asked:
    ``circuit_open``, ``excluded``, ``ranked``, ``unusable``.

    >>> from openrouter_voice.router import Target
    >>> reason(Attempt(Target("a/x", "openrouter", "u"), Outcome.HTTP_ERROR, status=418))
    '4xx'
    """
    outcome, error = attempt.outcome, attempt.error or ""
    if outcome is Outcome.HTTP_ERROR:
        status = attempt.status or 0
        return str(status) if status in _NAMED_STATUSES else f"{status // 100}xx"
    if outcome is Outcome.FIRST_TOKEN_TIMEOUT:
        return "hang"
    if outcome is Outcome.STALL:
        return "dribble" if "too slow for speech" in error else "stall"
    if outcome is Outcome.CONNECTION_ERROR:
        return "connection"
    if outcome is Outcome.CANCELLED:
        return "hedge_lost" if "hedged request won" in error else "cancelled"
    if outcome is Outcome.SKIPPED:
        if error.startswith("cooling down"):
            return "circuit_open"
        return next((why for prefix, why in (("excluded", "excluded"), ("ranked", "ranked"))
                     if error.startswith(prefix)), "unusable")
    return outcome.value  # ok, stream_error, bad_response


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt: chain id, outcome, reason, when it was sent (epoch s), how long it ran, TTFT."""

    model: str
    outcome: str
    reason: str
    started: float
    latency: float
    ttft: float | None
    hedge: bool
    continuation: bool
    emitted_text: bool
    status: int | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None

    @property
    def sent(self) -> bool:
        return self.outcome != Outcome.SKIPPED.value

    @property
    def failed(self) -> bool:
        """Failed on its own (not skipped, not a race's loser, not stopped by the caller)."""
        return self.outcome not in (Outcome.OK.value, Outcome.SKIPPED.value, Outcome.CANCELLED.value)

    @property
    def hedge_won(self) -> bool:
        """A hedge that spoke first (it served, or spoke before it broke)."""
        return self.hedge and (self.outcome == Outcome.OK.value or self.emitted_text)


@dataclass(frozen=True, slots=True)
class Fallback:
    """A model that could not answer (``source``), the one that did (``target``, or ``none``), and why."""

    source: str
    target: str
    reason: str


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One router turn: the chain's primary, each attempt, the serving chain id (None: every model
    failed), its start and end (epoch s) and ``error_type`` when it failed."""

    primary: str
    attempts: tuple[AttemptRecord, ...]
    served: str | None
    started: float
    ended: float
    error_type: str | None

    @classmethod
    def build(cls, primary: str, attempts: Sequence[Attempt], *, served: str | None, started: float,
              ended: float, error_type: str | None) -> TurnRecord:
        records = tuple(
            AttemptRecord(a.model, a.outcome.value, reason(a), a.started, a.latency, a.ttft, a.hedge,
                          a.continuation, a.emitted_text, a.status,
                          a.usage.prompt_tokens if a.usage else 0, a.usage.completion_tokens if a.usage else 0,
                          a.usage.cost if a.usage else None)
            for a in attempts)
        return cls(primary, records, served, started, ended, error_type)

    @property
    def provider(self) -> str:
        """``gen_ai.provider.name``: the serving model's endpoint, else the primary's."""
        return provider_name(self.served or self.primary)

    @property
    def duration(self) -> float:
        return max(0.0, self.ended - self.started)

    @property
    def time_to_first_chunk(self) -> float | None:
        """Seconds from the turn's start to the first content the caller got (None: none came)."""
        firsts = [a.started + a.ttft for a in self.attempts
                  if a.ttft is not None and a.started and (a.emitted_text or a.outcome == Outcome.OK.value)]
        return max(0.0, min(firsts) - self.started) if firsts else None

    def fallbacks(self) -> list[Fallback]:
        """Each model that failed this turn, lost a race to its hedge, or was passed over as
        unavailable, and who took over (``none``: nobody)."""
        target = self.served or NO_MODEL
        return [Fallback(a.model, target, a.reason) for a in self.attempts
                if a.model != self.served and (a.failed or a.reason in ("circuit_open", "excluded")
                                               or (a.reason == "hedge_lost" and not a.hedge))]
