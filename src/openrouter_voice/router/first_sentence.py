"""The first speakable sentence: what a caller actually waits for in a spoken reply.

A speech synthesiser starts on whole sentences (LiveKit's sentence tokenizers hand the TTS nothing
before a sentence end, and merge sentences shorter than 20 characters with the next one), so a reply
that streams its first words quickly but dribbles toward its first sentence end keeps the caller in
silence as surely as a hang does, while each gap stays under the stall deadline and the word rate may
even pass the dribble check. :class:`FirstSentenceWatch` follows one attempt: when its first text
came, how many words have come since, and whether a speakable sentence has ended. Its
:meth:`~FirstSentenceWatch.deadline` is the loop time by which that sentence must end: ``bound``
seconds after the first token, pushed later while words keep arriving faster than
``words_per_second`` (a reply streaming that fast is about to finish its sentence, however long:
cutting it would only cost the next model's first token).

>>> watch = FirstSentenceWatch(0.5, words_per_second=8.0)
>>> watch.feed(10.0, "It"); watch.deadline()
10.5
>>> watch.feed(10.4, " is sunny and"); watch.ended, watch.deadline()
(False, 10.5)
>>> watch.feed(10.45, " mild today. And"); watch.ended, round(watch.span or 0, 2), watch.deadline() is None
(True, 0.45, True)
"""

from __future__ import annotations

import re

from .dribble import count_words

MIN_SENTENCE_CHARS = 20
"""A sentence end counts only this many characters into the reply: LiveKit's sentence tokenizers
(``min_sentence_len=20``) merge a shorter first sentence ("Sure.") with the next one."""

# Terminal punctuation, closing quotes or brackets, then whitespace (what confirms "3." is not "3.5");
# CJK full stops need no space after them.
_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s)|[\u3002\uff01\uff1f]")
_LOOKBACK = 8  # characters of the previous text rescanned: a "." at a delta's end is confirmed by the next


def sentence_end(text: str, *, start: int = 0, min_chars: int = MIN_SENTENCE_CHARS) -> int | None:
    """Offset just past the first speakable sentence end in ``text`` at or after ``start``, else None.

    >>> sentence_end("Sure. It is 3.5 degrees today. Bring a coat.")
    30
    >>> sentence_end("It is 3.5 degrees") is None, sentence_end("Sure. Yes.") is None
    (True, True)
    """
    for match in _SENTENCE_END.finditer(text, max(0, start)):
        end = match.end()
        if len(text[:end].strip()) >= min_chars:
            return end
    return None


class FirstSentenceWatch:
    """Watches one attempt until its first speakable sentence ends.

    ``said`` is the reply already spoken by earlier models this turn (the sentence may have begun
    there). Times are loop times in seconds. ``span`` (first token to sentence end) is the sample a
    healthy reply teaches its model. With ``bound`` None the watch only measures (the last model of a
    turn is never cut, yet its replies teach it like any other).
    """

    __slots__ = ("_last", "_measured", "_scanned", "_text", "_words", "bound", "ended", "first", "span", "stopped",
                 "words_per_second")

    def __init__(self, bound: float | None, *, words_per_second: float, said: str = "") -> None:
        if (bound is not None and not bound > 0) or not words_per_second >= 0:
            raise ValueError("bound must be positive (or None) and words_per_second >= 0")
        self.bound = bound
        self.words_per_second = words_per_second
        self._text = said
        self._scanned = 0
        self._words = 0
        self.first: float | None = None
        self._last = 0.0
        self.span: float | None = None
        self.ended = sentence_end(said) is not None
        self.stopped = False
        self._measured = True

    def feed(self, now: float, text: str) -> None:
        """A text delta arrived at ``now``."""
        if self.ended or self.stopped or not text:
            return
        if self.first is None:
            self.first = now
        self._last = now
        self._words += count_words(text)
        self._text += text
        if sentence_end(self._text, start=self._scanned) is not None:
            self.ended = True
            self.span = now - self.first if self._measured else None
            self._text = ""
            return
        self._scanned = max(0, len(self._text) - _LOOKBACK)

    def finish(self) -> None:
        """The reply ended: its last words are spoken now (the TTS flushes them), whatever their punctuation."""
        if not (self.ended or self.stopped) and self.first is not None:
            self.ended = True
            self.span = self._last - self.first if self._measured else None

    def forgive(self, seconds: float) -> float | None:
        """The router itself was held up (not reading) for ``seconds`` while the sentence was due: the
        deadline moves that much later, and ``span`` stays None (it would teach the model our pause).
        Returns the new :meth:`deadline`.

        >>> watch = FirstSentenceWatch(0.5, words_per_second=8.0)
        >>> watch.feed(10.0, "It"); watch.forgive(1.0)
        11.5
        """
        self._measured = False
        if self.first is not None:
            self.first += seconds
            self._last += seconds
        return self.deadline()

    def stop(self) -> None:
        """No more watching (e.g. the reply turned to a tool call: it has nothing more to say first)."""
        self.stopped = True

    def deadline(self) -> float | None:
        """Loop time by which the sentence must end; None before the first token, once it ended, or when
        the watch only measures."""
        if self.bound is None or self.ended or self.stopped or self.first is None:
            return None
        pushed = self._words / self.words_per_second if self.words_per_second > 0 else 0.0
        return self.first + max(self.bound, pushed)

    def describe(self) -> str:
        """Why the attempt was cut (for its error and the log)."""
        return (f"no speakable sentence within {self.bound or 0:.2f}s of the first token ({self._words} words, "
                f"slower than {self.words_per_second:g} words/s)")
