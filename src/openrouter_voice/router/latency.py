"""Recent latency of one model: time to first token and the gaps between content chunks.

A fixed ring of the most recent samples: constant memory, O(1) per sample (a voice reply has a
few hundred chunks, so recording a gap must cost next to nothing), and quantiles computed only
when a deadline is chosen (once per attempt, a sort of at most a few hundred floats). A ring
forgets old behaviour by itself, which is what a deadline wants: the model as it is now. The
samples are plain floats, so another process (the fleet's health store) can share them by
appending its own samples instead of overwriting a whole summary.

>>> ring = LatencyRing(size=4)
>>> for seconds in (0.30, 0.32, 0.29, 0.90, 0.31):
...     ring.add(seconds)
>>> len(ring), ring.quantile(0.5), ring.quantile(1.0)
(4, 0.31, 0.9)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

TTFT_SAMPLES = 64
GAP_SAMPLES = 256


class LatencyRing:
    """The most recent ``size`` samples, in seconds."""

    __slots__ = ("_next", "_samples", "count", "size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._samples: list[float] = []
        self._next = 0
        self.count = 0  # samples ever added (the ring keeps the last `size`)

    def add(self, seconds: float) -> None:
        """Record one sample; non-finite or negative values are ignored (a clock glitch is not a latency)."""
        if not (seconds >= 0.0 and math.isfinite(seconds)):
            return
        self.count += 1
        if len(self._samples) < self.size:
            self._samples.append(seconds)
            return
        self._samples[self._next] = seconds
        self._next = (self._next + 1) % self.size

    def extend(self, samples: Iterable[float]) -> None:
        """Record many samples (a reply's gaps, once per reply): only the last ``size`` valid ones can stay,
        so only those are stored (one :meth:`add` per sample cost ~0.25 us a chunk on the bench machine).

        >>> ring = LatencyRing(size=3)
        >>> ring.extend([0.1, float("nan"), 0.2, -1.0, 0.3, 0.4])
        >>> ring.samples(), ring.count
        ([0.2, 0.3, 0.4], 4)
        """
        valid = [s for s in samples if s >= 0.0 and math.isfinite(s)]
        self.count += len(valid)
        if len(valid) >= self.size:
            self._samples, self._next = valid[-self.size:], 0
            return
        room = self.size - len(self._samples)
        self._samples.extend(valid[:room])
        for seconds in valid[room:]:  # the ring is full: overwrite the oldest, in order
            self._samples[self._next] = seconds
            self._next = (self._next + 1) % self.size

    def replace(self, samples: Iterable[float]) -> None:
        """Hold ``samples`` (oldest first) instead: the fleet's recent samples, which include ours."""
        kept = [s for s in samples if s >= 0.0 and math.isfinite(s)][-self.size:]
        self._samples, self._next = kept, 0
        self.count = max(self.count, len(kept))

    def __len__(self) -> int:
        return len(self._samples)

    def samples(self) -> list[float]:
        """The samples held, oldest first."""
        return self._samples[self._next:] + self._samples[:self._next]

    def quantile(self, q: float, *, min_samples: int = 1) -> float | None:
        """The ``q`` quantile (nearest rank) of the samples held, or None with fewer than ``min_samples``."""
        if len(self._samples) < max(1, min_samples):
            return None
        ordered = sorted(self._samples)
        rank = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
        return ordered[rank]


@dataclass(slots=True)
class ModelLatency:
    """One model's recent healthy timings: ``ttft`` per reply, ``gap`` between content chunks and, in
    spoken replies, ``sentence``: from the first token to the end of the first speakable sentence."""

    ttft: LatencyRing = field(default_factory=lambda: LatencyRing(TTFT_SAMPLES))
    gap: LatencyRing = field(default_factory=lambda: LatencyRing(GAP_SAMPLES))
    sentence: LatencyRing = field(default_factory=lambda: LatencyRing(TTFT_SAMPLES))
