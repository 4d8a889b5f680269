"""Recent latency of one model: time to first token and the gaps between content chunks.

A fixed ring of the most recent samples: constant memory, a reply's gaps recorded once per reply
(a voice reply has a few hundred chunks, so recording a gap must cost next to nothing), and kept
sorted as well, so the quantiles each attempt's deadlines read are lookups. A ring
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

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

TTFT_SAMPLES = 64
GAP_SAMPLES = 256
_INSERTED = 16  # new samples at most put in order one by one (more: the ring is sorted again)


class LatencyRing:
    """The most recent ``size`` samples, in seconds.

    They are also kept sorted, so a quantile is a lookup: sorting the 256 gap samples for every
    attempt's deadlines cost ~16 us a request in the overhead benchmark (scenario 7; cold floats
    scattered in memory), whereas a reply's few new samples go in with a binary search each.
    """

    __slots__ = ("_next", "_order", "_samples", "count", "size")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._samples: list[float] = []
        self._order: list[float] = []  # the same samples, sorted
        self._next = 0
        self.count = 0  # samples ever added (the ring keeps the last `size`)

    def add(self, seconds: float) -> None:
        """Record one sample; non-finite or negative values are ignored (a clock glitch is not a latency)."""
        if not (seconds >= 0.0 and math.isfinite(seconds)):
            return
        self.count += 1
        self._put(seconds)

    def _put(self, seconds: float) -> None:
        if len(self._samples) < self.size:
            self._samples.append(seconds)
        else:
            oldest = self._samples[self._next]
            self._samples[self._next] = seconds
            self._next = (self._next + 1) % self.size
            del self._order[bisect.bisect_left(self._order, oldest)]
        bisect.insort(self._order, seconds)

    def extend(self, samples: Iterable[float]) -> None:
        """Record many samples (a reply's gaps, once per reply): only the last ``size`` valid ones can stay,
        so only those are stored (one :meth:`add` per sample cost ~0.25 us a chunk on the bench machine).

        >>> ring = LatencyRing(size=3)
        >>> ring.extend([0.1, float("nan"), 0.2, -1.0, 0.3, 0.4])
        >>> ring.samples(), ring.count, ring.quantile(0.5)
        ([0.2, 0.3, 0.4], 4, 0.3)
        """
        valid = [s for s in samples if s >= 0.0 and math.isfinite(s)]
        self.count += len(valid)
        if len(valid) <= _INSERTED:
            for seconds in valid:
                self._put(seconds)
            return
        if len(valid) >= self.size:
            self._samples, self._next = valid[-self.size:], 0
        else:
            room = self.size - len(self._samples)
            self._samples.extend(valid[:room])
            for seconds in valid[room:]:  # the ring is full: overwrite the oldest, in order
                self._samples[self._next] = seconds
                self._next = (self._next + 1) % self.size
        self._order = sorted(self._samples)  # once per long reply: cheaper than a search per sample

    def replace(self, samples: Iterable[float]) -> None:
        """Hold ``samples`` (oldest first) instead: the fleet's recent samples, which include ours."""
        kept = [s for s in samples if s >= 0.0 and math.isfinite(s)][-self.size:]
        self._samples, self._next = kept, 0
        self._order = sorted(kept)
        self.count = max(self.count, len(kept))

    def __len__(self) -> int:
        return len(self._samples)

    def samples(self) -> list[float]:
        """The samples held, oldest first."""
        return self._samples[self._next:] + self._samples[:self._next]

    def quantile(self, q: float, *, min_samples: int = 1) -> float | None:
        """The ``q`` quantile (nearest rank) of the samples held, or None with fewer than ``min_samples``."""
        ordered = self._order
        if len(ordered) < max(1, min_samples):
            return None
        rank = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
        return ordered[rank]


@dataclass(slots=True)
class ModelLatency:
    """One model's recent healthy timings: ``ttft`` per reply, ``gap`` between content chunks and, in
    spoken replies, ``sentence``: from the first token to the end of the first speakable sentence."""

    ttft: LatencyRing = field(default_factory=lambda: LatencyRing(TTFT_SAMPLES))
    gap: LatencyRing = field(default_factory=lambda: LatencyRing(GAP_SAMPLES))
    sentence: LatencyRing = field(default_factory=lambda: LatencyRing(TTFT_SAMPLES))
