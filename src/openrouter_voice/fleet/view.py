"""What the fleet shares, read for people: one :class:`ModelRow` per model, for ``openrouter-voice health``.

The rows are derived with the router's own rules (a :class:`HealthTracker` fed the shared state), so
the view says exactly what a turn would decide: closed, suspect (tried after the others until a
pending request is judged), open, half-open, excluded or tool-less.

>>> tracker = HealthTracker()
>>> _ = tracker.record_failure("a/x", reason="HTTP 429: rate limited", retry_after=30)
>>> row = model_row(tracker, "a/x", recent=[], hedge_after=1.0)
>>> row.state, round(row.cooldown_left), row.why
('open', 30, 'HTTP 429: rate limited (Retry-After 30s)')
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import redis.asyncio as aioredis

from ..router.deadlines import hedge_delay, ttft_percentiles
from ..router.health import CircuitState, HealthTracker
from .messages import MessageError, parse_fields
from .store import RedisHealthStore
from .suspects import apply_stored


@dataclass(frozen=True, slots=True)
class ModelRow:
    """One model as the fleet sees it now (seconds; cost in credits as OpenRouter reports it)."""

    model: str
    state: str  # closed | suspect | open | half-open | excluded | tool-less
    cooldown_left: float
    why: str | None
    consecutive_failures: int
    ttft_p50: float | None
    ttft_p95: float | None
    ttft_samples: int
    hedge_delay: float | None
    recent_failures: dict[str, int] = field(default_factory=dict)
    cost: float | None = None


def model_row(tracker: HealthTracker, model: str, *, recent: list[str], hedge_after: float | None,
              cost: float | None = None) -> ModelRow:
    """``model``'s row from ``tracker`` (holding the shared state) and its recent failure reasons."""
    view = tracker.shared_view(model)
    state = tracker.state(model)
    left = tracker.cooldown_remaining(model)
    shown = {CircuitState.CLOSED: "closed", CircuitState.OPEN: "open", CircuitState.HALF_OPEN: "half-open"}[state]
    if state is CircuitState.OPEN and left >= tracker.exclude_cooldown / 2:
        shown = "excluded"
    elif state is CircuitState.CLOSED and view.tool_less:
        shown = "tool-less"
    why = view.reason
    if state is CircuitState.CLOSED and tracker.is_suspect(model):  # tried after the others for now
        shown = "suspect"
        why = f"{tracker.suspect_reason(model)} (at most {tracker.suspect_remaining(model):.1f}s more)"
    if why and tracker.told_to_wait(model):
        why = f"{why} (Retry-After {tracker.wait_remaining(model):.0f}s)"
    elif why and view.failures > 1:
        why = f"{why} ({view.failures} consecutive failures)"
    percentiles = ttft_percentiles(tracker.latency(model))
    hedge = hedge_delay(tracker.latency(model), hedge_after)
    return ModelRow(model, shown, left if state is CircuitState.OPEN else 0.0, why, view.failures,
                    percentiles[0] if percentiles else None, percentiles[1] if percentiles else None,
                    len(tracker.latency(model).ttft), hedge.seconds if hedge else None,
                    dict(Counter(recent).most_common()), cost)


async def read_fleet(url: str, prefix: str, chain: list[str], *, hedge_after: float | None) -> list[ModelRow]:
    """Every model of ``chain`` and every other model the fleet under ``prefix`` knows, as rows.
    Raises redis-py's errors when Redis cannot be read (the caller says so)."""
    store = RedisHealthStore(url, prefix=prefix)  # for its key names only: nothing is started
    client = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        known = sorted(m.decode("utf-8", "replace") for m in await client.smembers(store.key("models")))  # type: ignore[misc]
        models = chain + [m for m in known if m not in chain]
        async with client.pipeline(transaction=False) as pipe:
            for model in models:
                pipe.hgetall(store.key("m", model))
                pipe.lrange(store.key("ttft", model), 0, -1)
                pipe.lrange(store.key("recent", model), 0, -1)
                pipe.get(store.key("suspect", model))
            replies = await pipe.execute(raise_on_error=False)
    finally:
        await client.aclose()
    rows = []
    for i, model in enumerate(models):
        fields, ttft, recent, mark = replies[4 * i: 4 * i + 4]
        tracker = HealthTracker()
        cost = None
        try:
            tracker.apply_shared(model, parse_fields(fields))
            cost = _float(fields.get(b"cost")) if isinstance(fields, dict) else None
            apply_stored(tracker, model, mark, now=time.time())
        except MessageError:
            pass  # unreadable state: shown as closed, as the routers would treat it
        tracker.latency(model).ttft.replace(_floats(ttft))
        reasons = [_reason(item) for item in recent] if isinstance(recent, list) else []
        rows.append(model_row(tracker, model, recent=reasons, hedge_after=hedge_after, cost=cost))
    return rows


def as_json(rows: list[ModelRow], *, source: str) -> dict[str, Any]:
    """The snapshot printed by ``health --json``."""
    return {"source": source, "at": time.time(), "models": [asdict(row) for row in rows]}


def _reason(item: Any) -> str:
    text = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
    return text.partition(" ")[2] or "unknown"


def _float(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _floats(raw: Any) -> list[float]:
    values = [_float(v) for v in raw] if isinstance(raw, list) else []
    return [v for v in values if v is not None]
