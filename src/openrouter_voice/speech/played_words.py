"""Which words of a sentence the caller has heard whole, from the provider's word timings.

Cartesia sends each word's start and end in the sentence's audio (``add_timestamps``; LiveKit's plugin
hands them on as timed transcripts on the audio frames). When the provider fails mid-sentence, the next
voice then resumes at the first word not fully played instead of the sentence's start: what the caller
hears twice is at most the start of that one word. Without timings (another provider, or none arrived
before the failure) nothing is known to be heard, and the sentence is spoken again from its start.

>>> heard = PlayedWords()
>>> heard.timings([("The", 0.0, 0.2), ("weather", 0.25, 0.6), ("in", 0.65, 0.75)])
>>> heard.forwarded(0.62)                  # "weather" ended at 0.6 s: two words heard whole
>>> heard.whole
2
>>> rest_of("The weather in Paris is sunny.", heard.words())
'in Paris is sunny.'
>>> rest_of("The weather in Paris.", ["A", "weather"])   # timings that do not match the text: from the start
'The weather in Paris.'
"""

from __future__ import annotations

from collections.abc import Iterable

EPSILON = 1e-3  # seconds: the rounding of a provider's timings against frame durations


class PlayedWords:
    """The words of one sentence whose audio was all forwarded (see the module docstring)."""

    def __init__(self) -> None:
        self._timed: list[tuple[str, float]] = []  # (word, end in seconds of the sentence's audio)
        self._seconds = 0.0
        self.whole = 0  # words heard whole, from the sentence's start

    def timings(self, words: Iterable[tuple[str, float, float]]) -> None:
        """Words the provider timed, as (text, start, end) in seconds of the sentence's audio, in order."""
        self._timed += [(text.strip(), end) for text, _, end in words if text.strip()]
        self._count()

    def forwarded(self, seconds: float) -> None:
        """``seconds`` of the sentence's audio have now been forwarded to the caller."""
        self._seconds = seconds
        self._count()

    def words(self) -> list[str]:
        """The words heard whole, in order."""
        return [text for text, _ in self._timed[:self.whole]]

    def _count(self) -> None:
        while self.whole < len(self._timed) and self._timed[self.whole][1] <= self._seconds + EPSILON:
            self.whole += 1


def _plain(word: str) -> str:
    return "".join(c for c in word.lower() if c.isalnum())


def rest_of(text: str, heard: list[str]) -> str:
    """``text`` without its first words ``heard`` (as the provider timed them), or all of ``text`` when
    they are not its first words (a provider that rewrote the text: nothing is known to be heard); empty
    when every word was heard."""
    tokens = text.split()
    if not heard or len(heard) > len(tokens) or any(
            _plain(said) != _plain(token) for said, token in zip(heard, tokens, strict=False)):
        return text
    return " ".join(tokens[len(heard):])
