"""Dribble detection: a reply that streams, but slower than it can be spoken.

A stall deadline catches silence; it cannot catch a stream that sends a word every 0.7 s: each
gap is short, yet the listener hears a word, a pause, a word (people speak about 2.5 words a
second, so text slower than that starves the speech synthesiser). :class:`DribbleWatch` counts
words over a sliding window of the stream's own time and says when the rate fell below a floor;
the attempt then fails like a stall and the next model continues the reply.

Hand-rolled because it is a dozen lines on the per-chunk path: one deque append, rarely a pop.

>>> watch = DribbleWatch(words_per_second=2.0, window=2.0)
>>> [watch.feed(t, 1) for t in (0.0, 0.1, 0.2, 0.3)]  # a fast start: 4 words in 0.3 s
[False, False, False, False]
>>> [watch.feed(t, 1) for t in (1.0, 1.7, 2.4)]  # then one word every 0.7 s
[False, False, True]
>>> watch.describe()
'reply too slow for speech: 3 words in the last 2.1s (floor 2 words/s over 2s)'
"""

from __future__ import annotations

from collections import deque


class DribbleWatch:
    """Feed it each text chunk's arrival time (seconds) and word count; True when the stream dribbles."""

    __slots__ = ("_marks", "_span", "_start", "_window_words", "_words", "window", "words_per_second")

    def __init__(self, words_per_second: float, window: float) -> None:
        if words_per_second <= 0 or window <= 0:
            raise ValueError("words_per_second and window must be positive")
        self.words_per_second = words_per_second
        self.window = window
        self._marks: deque[tuple[float, int]] = deque()  # (time, words received up to and including then)
        self._words = 0
        self._start: float | None = None
        self._window_words = 0
        self._span = 0.0

    def feed(self, now: float, words: int) -> bool:
        """Record a chunk of ``words`` words arriving at ``now``; True if the last window was too slow."""
        if self._start is None:
            self._start = now
        self._words += words
        marks = self._marks
        marks.append((now, self._words))
        horizon = now - self.window
        if horizon < self._start:
            return False  # less than a window of text so far: too early to judge
        # Keep exactly one mark at or before the horizon: the window's start.
        while len(marks) > 1 and marks[1][0] <= horizon:
            marks.popleft()
        since, counted = marks[0]
        self._window_words = self._words - counted
        self._span = now - since
        return self._window_words < self.words_per_second * self._span

    def describe(self) -> str:
        """Why the stream was judged too slow (for the attempt's error and the log)."""
        return (f"reply too slow for speech: {self._window_words} words in the last {self._span:.1f}s "
                f"(floor {self.words_per_second:g} words/s over {self.window:g}s)")


def count_words(text: str) -> int:
    """Words in a streamed delta: tokens carry their leading space (``" word"``), so spaces count words.

    >>> count_words(" Sunny and"), count_words("Hi")
    (2, 1)
    """
    return text.count(" ") or (1 if text.strip() else 0)
