"""How long a TTS provider may take to its first audio before the next voice speaks instead.

Learnt per provider, as the router learns each model's first-token deadline: its own recent p95 time
from a sentence sent to its first audio, plus a margin (``margin`` or half the p95, whichever is
larger: a slower provider jitters more), never below ``floor`` nor above ``ceiling``.
Until it has ``min_samples`` healthy sentences, the ceiling applies. A silent Cartesia then costs
its own tail plus the margin (about a second), not a fixed three seconds.

:meth:`FirstAudioDeadline.hedge_after` is when the next voice starts on the same sentence alongside
(:mod:`.hedge`): the learnt deadline once learnt, and before that ``cold`` (0.5 s), not the ceiling:
the first sentences of a call would otherwise wait up to 3 s on a silent provider. Cartesia publishes
a first byte of ~40 ms (Sonic Turbo; ~90 ms Sonic), and its socket is opened by the prewarm, so a
healthy first sentence has audio within ~0.1-0.25 s over the internet: 0.5 s is twice that, and on a
slow first answer the provider still speaks if its audio comes before the backup's.

>>> deadline = FirstAudioDeadline(floor=0.4, ceiling=3.0, margin=0.25, min_samples=3)
>>> deadline.seconds()                     # nothing learnt yet: the ceiling
3.0
>>> deadline.hedge_after()                 # ...but the next voice starts alongside at the cold bound
0.5
>>> for seconds in (0.12, 0.15, 0.30):
...     deadline.add(seconds)
>>> round(deadline.seconds(), 2)           # p95 (0.30) + margin
0.55
>>> for seconds in (1.0, 1.2, 1.4):
...     deadline.add(seconds)
>>> round(deadline.seconds(), 2)           # p95 (1.4) + half of it
2.1
"""

from __future__ import annotations

from ..router.latency import LatencyRing

FLOOR = 0.4  # seconds: below this a healthy provider's own jitter would trip it
CEILING = 3.0  # seconds: what a provider gets before anything was learnt about it
MARGIN = 0.25  # seconds above the provider's own p95
COLD = 0.5  # seconds before the next voice starts alongside, until the provider's own figures are learnt
MIN_SAMPLES = 5
SAMPLES = 64


class FirstAudioDeadline:
    """One provider's learnt first-audio deadline (see the module docstring)."""

    def __init__(self, *, floor: float = FLOOR, ceiling: float = CEILING, margin: float = MARGIN,
                 min_samples: int = MIN_SAMPLES, size: int = SAMPLES, cold: float = COLD) -> None:
        if not 0 < floor <= ceiling:
            raise ValueError(f"first-audio deadline bounds {floor}..{ceiling}: use 0 < floor <= ceiling")
        if not floor <= cold <= ceiling:
            raise ValueError(f"cold first-audio bound {cold} s outside {floor}..{ceiling}: use a value within")
        self.floor, self.ceiling, self.margin, self.min_samples = floor, ceiling, margin, min_samples
        self.cold = cold
        self._ring = LatencyRing(size)

    def add(self, seconds: float) -> None:
        """A healthy sentence's time to its first audio."""
        self._ring.add(seconds)

    def seconds(self) -> float:
        """The deadline now: p95 + margin within the bounds, or the ceiling until learnt."""
        p95 = self._ring.quantile(0.95, min_samples=self.min_samples)
        if p95 is None:
            return self.ceiling
        return min(self.ceiling, max(self.floor, p95 + max(self.margin, p95 / 2)))

    def hedge_after(self) -> float:
        """When the next voice starts on the same sentence: the learnt deadline, or ``cold`` until learnt."""
        return self.cold if self.p95() is None else self.seconds()

    def p95(self) -> float | None:
        return self._ring.quantile(0.95, min_samples=self.min_samples)
