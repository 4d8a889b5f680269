"""Which models one turn tries, in which order, and what it says about the ones it leaves out.

Available models come first in chain order (predictive ranking may move a failing one back, and a
model suspected of hanging right now goes after the others: :meth:`~.health.HealthTracker.suspect`);
models cooling down follow, soonest-recovering first, because when everything is down trying beats
silence. Left out: models excluded for long (a retired id) and those whose upstream said when to
come back (Retry-After), since asking again before then is refused. When that leaves nothing and the
soonest Retry-After ends within :data:`~.defaults.RETRY_AFTER_WAIT`, the turn waits for it instead
of failing at once: a caller would rather hear an answer a fraction of a second later than an apology.

>>> from openrouter_voice.router.health import HealthTracker
>>> from openrouter_voice.router.types import Target
>>> health = HealthTracker()
>>> a, b = Target("a/x", "openrouter", "u"), Target("b/y", "openrouter", "u")
>>> _ = health.record_failure("a/x", reason="500")
>>> [t.label for t in order([a, b], health)]
['b/y', 'a/x']
>>> _ = health.record_failure("b/y", reason="429", retry_after=0.2)
>>> [t.label for t in order([a, b], health)], 0 < (soonest_retry([a, b], health, limit=1.0) or 0) <= 0.2
(['a/x'], True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .health import HealthTracker
from .types import Attempt, Outcome, Target


def order(models: Sequence[Target], health: HealthTracker, *,
          rank: Callable[[list[Target]], list[Target]] | None = None) -> list[Target]:
    """The models to try, in order (see the module docstring); ``rank`` reorders the available ones."""
    available = [t for t in models if health.is_available(t.label)]
    if rank is not None:
        available = rank(available)
    # A model suspected of hanging right now goes after the healthy ones (never out of the plan).
    suspects = [t for t in available if health.is_suspect(t.label)]
    if suspects:
        available = [t for t in available if t not in suspects] + suspects
    cooling = [t for t in models if t not in available and not health.told_to_wait(t.label)
               and health.cooldown_remaining(t.label) < health.exclude_cooldown / 2]
    cooling.sort(key=lambda t: health.cooldown_remaining(t.label))
    return available + cooling


def tools_first(plan: list[Target], supports_tools: Callable[[Target], bool], chosen: Target | None) -> list[Target]:
    """For a turn that carries tools: tool-capable models first, then the others (which answer without
    tools); the model the user chose by name keeps the lead."""
    lead = [t for t in plan[:1] if t == chosen]
    rest = plan[len(lead):]
    return lead + [t for t in rest if supports_tools(t)] + [t for t in rest if not supports_tools(t)]


def soonest_retry(models: Sequence[Target], health: HealthTracker, *, limit: float) -> float | None:
    """Seconds until the first model that was told to wait may be asked again, if that is within ``limit``."""
    waits = [health.wait_remaining(t.label) for t in models if health.told_to_wait(t.label)]
    soonest = min(waits, default=None)
    return soonest if soonest is not None and soonest <= limit else None


def left_out(models: Sequence[Target], plan: Sequence[Target], health: HealthTracker) -> list[Attempt]:
    """A skipped :class:`Attempt` for each chain model the plan leaves out, saying why."""
    skipped = []
    for target in models:
        if target in plan:
            continue
        label = target.label
        reason = health.reason(label)
        why = (f"cooling down for {health.wait_remaining(label):.1f}s as asked (Retry-After) after {reason}"
               if health.told_to_wait(label) else f"excluded: {reason}")
        skipped.append(Attempt(target, Outcome.SKIPPED, error=why))
    return skipped
