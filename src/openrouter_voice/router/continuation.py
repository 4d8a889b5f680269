"""Stitching a reply together when a model fails after it already spoke.

The next model receives the partial reply as a final assistant message (prefill) plus a short
instruction to continue without repeating. Models that ignore prefill start over instead;
:class:`RepeatGuard` holds back the continuation's first characters while they match what was
already said and drops that repeated prefix, so the listener never hears a sentence twice.
"""

from __future__ import annotations

from .types import Message

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

    >>> guard = RepeatGuard("It is sunny in")
    >>> guard.feed("It is sun") + guard.feed("ny in Paris today.") + guard.flush()
    ' Paris today.'
    >>> guard = RepeatGuard("It is sunny in")
    >>> guard.feed(" Paris today.") + guard.flush()
    ' Paris today.'
    """

    def __init__(self, already_said: str) -> None:
        self._said = already_said.lstrip()
        self._buffer = ""
        self._checking = bool(self._said)

    def feed(self, delta: str) -> str:
        """Take the next delta; return what may be emitted now."""
        if not self._checking:
            return delta
        self._buffer += delta
        probe = self._buffer.lstrip()
        if not probe:
            return ""
        if probe.startswith(self._said):
            # The model started over: drop the repeated part, keep what is new.
            self._checking = False
            return probe[len(self._said):]
        if self._said.startswith(probe):
            return ""  # still could be a restart; hold it back
        # A genuine continuation.
        self._checking = False
        out, self._buffer = self._buffer, ""
        return out

    def flush(self) -> str:
        """End of stream: release held-back text unless all of it repeated what was said."""
        if not self._checking:
            return ""
        self._checking = False
        probe = self._buffer.lstrip()
        if probe and self._said.startswith(probe):
            return ""  # the continuation only repeated what was said
        out, self._buffer = self._buffer, ""
        return out
