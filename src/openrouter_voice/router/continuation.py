"""Stitching a reply together when a model fails after it already spoke.

The next model receives the partial reply as a final assistant message (prefill) plus a short
instruction to continue without repeating. Models that ignore prefill start over instead, and some
pick up a few words back; :class:`RepeatGuard` holds back the continuation's first characters while
they could be such a repeat and drops the repeated part, so the listener never hears words twice.
"""

from __future__ import annotations

from .types import Message

MIN_OVERLAP_WORDS = 2
"""A continuation that starts with the last words already said repeats them only if it repeats at
least this many: one word ("in", "the") is too often a genuine continuation."""

CONTINUE_INSTRUCTION = (
    "Your previous reply was cut off. Continue it exactly where it stopped, "
    "without repeating anything already said."
)


def continuation_messages(messages: list[Message], partial_text: str) -> list[Message]:
    """Messages for the next model: the conversation, the instruction, then the partial reply (prefill)."""
    return [
        *messages,
        {"role": "system", "content": CONTINUE_INSTRUCTION},
        {"role": "assistant", "content": partial_text},
    ]


class RepeatGuard:
    """Filters a continuation so text already emitted is not emitted again.

    It drops a restart (the whole reply said again) and an overlap (the continuation starts with
    the last ``MIN_OVERLAP_WORDS`` or more words already said).

    >>> guard = RepeatGuard("It is sunny in")
    >>> guard.feed("It is sun") + guard.feed("ny in Paris today.") + guard.flush()
    ' Paris today.'
    >>> guard = RepeatGuard("It is sunny in")
    >>> guard.feed("sunny in") + guard.feed(" Paris today.") + guard.flush()
    ' Paris today.'
    >>> guard = RepeatGuard("It is sunny in")
    >>> guard.feed(" Paris today.") + guard.flush()
    ' Paris today.'
    """

    def __init__(self, already_said: str) -> None:
        said = already_said.lstrip()
        starts = [0] + [i for i in range(1, len(said)) if said[i - 1].isspace() and not said[i].isspace()]
        # Longest first: the whole reply (a restart), then ever shorter tails (an overlap).
        self._repeats = [said[i:] for i in starts if i == 0 or len(said[i:].split()) >= MIN_OVERLAP_WORDS]
        self._repeats = [r for r in self._repeats if r.strip()]
        self._buffer = ""
        self._checking = bool(self._repeats)

    def feed(self, delta: str) -> str:
        """Take the next delta; return what may be emitted now."""
        if not self._checking:
            return delta
        self._buffer += delta
        probe = self._buffer.lstrip()
        if not probe:
            return ""
        if any(len(repeat) > len(probe) and repeat.startswith(probe) for repeat in self._repeats):
            return ""  # a repeat, maybe longer than any matched so far, could still be coming: hold back
        return self._release()

    def flush(self) -> str:
        """End of stream: release held-back text unless all of it repeated what was said."""
        if not self._checking:
            return ""
        probe = self._buffer.lstrip()
        if probe and any(repeat.startswith(probe) for repeat in self._repeats):
            self._checking, self._buffer = False, ""
            return ""  # the continuation only repeated what was said
        return self._release()

    def _release(self) -> str:
        """Stop checking: drop the longest repeat the held-back text starts with, or let it all through."""
        self._checking = False
        held, self._buffer = self._buffer, ""
        probe = held.lstrip()
        for repeat in self._repeats:  # longest first
            if probe.startswith(repeat):
                return probe[len(repeat):]
        return held  # a genuine continuation, with its own leading space
