"""Per-attempt deadlines learnt from what each model actually does (pure: no I/O, no clock).

A fixed ``hedge_after`` or ``stall_timeout`` must fit the slowest healthy model, so for a fast
model it waits far longer than its own behaviour justifies. Here each deadline follows the model's
recent healthy latency (:class:`~.latency.ModelLatency`), within bounds:

* **hedge delay** = p95 of its time to first token + ``HEDGE_MARGIN``, clamped to
  [``HEDGE_FLOOR``, configured ``hedge_after``]. Hedging at the p95 costs about 5% extra requests
  ("The Tail at Scale", Dean & Barroso 2013); the configured value stays the ceiling.
* **stall deadline** = ``STALL_FACTOR`` x p99 of its gaps between content chunks, clamped to
  [``STALL_FLOOR``, configured ``stall_timeout``].

* **first-sentence bound** (spoken replies) = p95 of its time from first token to first speakable
  sentence end + ``SENTENCE_MARGIN``, clamped to [``SENTENCE_FLOOR``, ``SENTENCE_CEILING``]: unlike
  the others the configured value is only the cold start, since a model whose first sentences are
  long must be allowed longer than a tight default.

With too little history (``MIN_TTFT_SAMPLES``, ``MIN_GAP_SAMPLES``, ``MIN_SENTENCE_SAMPLES``) the
configured value is used.
Each choice carries a short ``why`` for the debug log.

>>> from openrouter_voice.router.latency import ModelLatency
>>> latency = ModelLatency()
>>> hedge_delay(latency, 1.0).why
'configured (0 of 10 TTFT samples)'
>>> latency.ttft.extend([0.30] * 19 + [0.50])
>>> choice = hedge_delay(latency, 1.0)
>>> round(choice.seconds, 2), choice.why
(0.4, 'p95 TTFT 0.300s + 0.1s margin')
>>> latency.gap.extend([0.013] * 60)
>>> stall_deadline(latency, 1.5).seconds, stall_deadline(latency, 1.5).why
(0.3, 'floor (4 x p99 gap 0.013s = 0.052s)')
"""

from __future__ import annotations

from dataclasses import dataclass

from .latency import ModelLatency

MIN_TTFT_SAMPLES = 10
"""TTFT samples needed before the hedge follows the model (fewer: the configured ``hedge_after``).
With 10 to 19 samples the nearest-rank p95 is the largest or close to it: cautious."""
HEDGE_QUANTILE = 0.95
HEDGE_MARGIN = 0.1
"""Seconds added to the p95 TTFT: a first token just past the p95 is not worth a second request."""
HEDGE_FLOOR = 0.3
"""Never hedge sooner than this, whatever the history says (a burst of very fast replies must not
make the next ordinary one look late)."""

MIN_GAP_SAMPLES = 50
"""Healthy inter-chunk gaps needed before the stall deadline follows the model's rhythm."""
STALL_QUANTILE = 0.99
STALL_FACTOR = 4.0
"""A silence this many times the model's p99 gap is a stall, not its rhythm."""
STALL_FLOOR = 0.3
"""Never call a stall sooner than this: TTS has buffered a few words, and scheduling jitter on a
busy host reaches tens of milliseconds."""

MIN_SENTENCE_SAMPLES = 10
"""Healthy spoken replies needed before the first-sentence bound follows the model."""
SENTENCE_QUANTILE = 0.95
SENTENCE_MARGIN = 0.15
"""Seconds added to the p95: scheduling jitter, and a sentence a few words longer than usual."""
SENTENCE_FLOOR = 0.3
SENTENCE_CEILING = 2.5
"""Never wait longer than this for a first sentence the model's own history calls normal (beyond it
a backup's first token plus its sentence is sooner, whatever the model's habits)."""


@dataclass(frozen=True, slots=True, repr=False)
class Choice:
    """A deadline in seconds and why it has that value (for the debug log, so formatted only when read:
    formatting its floats took ~5 us of every request in the overhead benchmark, scenario 7).

    >>> Choice(0.4, "p95 TTFT %.3fs + %gs margin", (0.3, 0.1))
    Choice(seconds=0.4, why='p95 TTFT 0.300s + 0.1s margin')
    """

    seconds: float
    reason: str  # a %-format of ``values``
    values: tuple[float | int | str, ...] = ()

    @property
    def why(self) -> str:
        return self.reason % self.values if self.values else self.reason

    def __repr__(self) -> str:
        return f"Choice(seconds={self.seconds!r}, why={self.why!r})"


def hedge_delay(latency: ModelLatency, configured: float | None) -> Choice | None:
    """How long to wait for this model's first token before also asking the next one.

    None when hedging is off (``configured`` None or 0).

    >>> hedge_delay(ModelLatency(), None) is None
    True
    """
    if not configured:
        return None
    p95 = latency.ttft.quantile(HEDGE_QUANTILE, min_samples=MIN_TTFT_SAMPLES)
    if p95 is None:
        return Choice(configured, "configured (%d of %d TTFT samples)", (len(latency.ttft), MIN_TTFT_SAMPLES))
    wanted = p95 + HEDGE_MARGIN
    basis = "p95 TTFT %.3fs + %gs margin"
    if wanted >= configured:
        return Choice(configured, f"configured ceiling ({basis} = %.3fs)", (p95, HEDGE_MARGIN, wanted))
    if wanted <= HEDGE_FLOOR:
        return Choice(min(HEDGE_FLOOR, configured), f"floor ({basis} = %.3fs)", (p95, HEDGE_MARGIN, wanted))
    return Choice(wanted, basis, (p95, HEDGE_MARGIN))


def stall_deadline(latency: ModelLatency, configured: float) -> Choice:
    """The longest silence between content chunks, once text flows, before the reply counts as stalled.

    >>> stall_deadline(ModelLatency(), 1.5)
    Choice(seconds=1.5, why='configured (0 of 50 gap samples)')
    """
    p99 = latency.gap.quantile(STALL_QUANTILE, min_samples=MIN_GAP_SAMPLES)
    if p99 is None:
        return Choice(configured, "configured (%d of %d gap samples)", (len(latency.gap), MIN_GAP_SAMPLES))
    wanted = STALL_FACTOR * p99
    basis = "%g x p99 gap %.3fs"
    if wanted >= configured:
        return Choice(configured, f"configured ceiling ({basis} = %.3fs)", (STALL_FACTOR, p99, wanted))
    if wanted <= STALL_FLOOR:
        return Choice(min(STALL_FLOOR, configured), f"floor ({basis} = %.3fs)", (STALL_FACTOR, p99, wanted))
    return Choice(wanted, basis, (STALL_FACTOR, p99))


def first_sentence_bound(latency: ModelLatency, configured: float) -> Choice:
    """Seconds from a spoken reply's first token to its first speakable sentence end before the reply is
    judged too slow to speak (see :mod:`.first_sentence`).

    >>> first_sentence_bound(ModelLatency(), 0.5)
    Choice(seconds=0.5, why='configured (0 of 10 first-sentence samples)')
    >>> latency = ModelLatency()
    >>> latency.sentence.extend([0.9] * 10)
    >>> choice = first_sentence_bound(latency, 0.5)
    >>> round(choice.seconds, 2), choice.why
    (1.05, 'p95 first sentence 0.900s + 0.15s margin')
    """
    p95 = latency.sentence.quantile(SENTENCE_QUANTILE, min_samples=MIN_SENTENCE_SAMPLES)
    if p95 is None:
        return Choice(configured, "configured (%d of %d first-sentence samples)",
                      (len(latency.sentence), MIN_SENTENCE_SAMPLES))
    wanted = p95 + SENTENCE_MARGIN
    basis = "p95 first sentence %.3fs + %gs margin"
    ceiling = max(SENTENCE_CEILING, configured)
    if wanted >= ceiling:
        return Choice(ceiling, f"ceiling ({basis} = %.3fs)", (p95, SENTENCE_MARGIN, wanted))
    if wanted <= SENTENCE_FLOOR:
        return Choice(SENTENCE_FLOOR, f"floor ({basis} = %.3fs)", (p95, SENTENCE_MARGIN, wanted))
    return Choice(wanted, basis, (p95, SENTENCE_MARGIN))


def ttft_percentiles(latency: ModelLatency) -> tuple[float, float, int] | None:
    """A model's recent time to first token for status displays: (p50, p95, samples), None without any.

    >>> latency = ModelLatency()
    >>> latency.ttft.extend([0.3, 0.32, 0.6])
    >>> ttft_percentiles(latency)
    (0.32, 0.6, 3)
    """
    p50 = latency.ttft.quantile(0.5)
    p95 = latency.ttft.quantile(HEDGE_QUANTILE)
    if p50 is None or p95 is None:
        return None
    return p50, p95, len(latency.ttft)
