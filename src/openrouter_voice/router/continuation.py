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

MAX_OVERLAP_WORDS = 40
"""Only the last this many words said are candidate overlaps (a model that picks up "a few words
back" picks up a phrase, not a page); the whole reply is still checked as a restart. This bound keeps
the guard linear in the reply: every overlap is compared at most once, character by character."""

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
    the last ``MIN_OVERLAP_WORDS`` or more words already said, up to ``MAX_OVERLAP_WORDS``).
    Time and memory are linear in the text fed: each candidate repeat is a suffix of what was said,
    matched incrementally against the continuation without copying either.

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
        self._said = said
        # Candidate repeats as start offsets into ``said``, longest first: the whole reply (a
        # restart), then the tails of the last words that are at least MIN_OVERLAP_WORDS long.
        starts = [0] if said.strip() else []
        tail_starts = _word_starts(said, MAX_OVERLAP_WORDS)
        starts += [i for i in tail_starts[: max(0, len(tail_starts) - MIN_OVERLAP_WORDS + 1)] if i > 0]
        self._starts = starts
        self._alive = [True] * len(starts)  # the continuation so far agrees with this candidate
        self._held: list[str] = []  # the held-back deltas, as received
        self._probe = 0  # length of the held text without its leading whitespace
        self._checking = bool(starts)

    def feed(self, delta: str) -> str:
        """Take the next delta; return what may be emitted now."""
        if not self._checking:
            return delta
        self._held.append(delta)
        piece = delta.lstrip() if self._probe == 0 else delta
        if not piece:
            return ""
        self._match(piece)
        if self._repeat_could_go_on():
            return ""  # a repeat, maybe longer than any matched so far, could still be coming: hold back
        return self._release()

    def flush(self) -> str:
        """End of stream: release held-back text unless all of it repeated what was said."""
        if not self._checking:
            return ""
        if self._probe and any(alive and len(self._said) - start >= self._probe
                               for start, alive in zip(self._starts, self._alive, strict=True)):
            self._checking, self._held = False, []
            return ""  # the continuation only repeated what was said
        return self._release()

    def _match(self, piece: str) -> None:
        """Compare the new ``piece`` (at offset ``self._probe`` of the continuation) with every candidate
        still agreeing; only the part of it a candidate still covers is compared."""
        said, position = self._said, self._probe
        for n, start in enumerate(self._starts):
            if not self._alive[n]:
                continue
            covered = min(len(said) - start - position, len(piece))
            if covered > 0:
                begin = start + position
                self._alive[n] = said.startswith(piece if covered == len(piece) else piece[:covered], begin)
        self._probe += len(piece)

    def _repeat_could_go_on(self) -> bool:
        return any(alive and len(self._said) - start > self._probe
                   for start, alive in zip(self._starts, self._alive, strict=True))

    def _release(self) -> str:
        """Stop checking: drop the longest repeat the held-back text starts with, or let it all through."""
        self._checking = False
        held, self._held = "".join(self._held), []
        for start, alive in zip(self._starts, self._alive, strict=True):  # longest first
            length = len(self._said) - start
            if alive and length <= self._probe:  # agreeing and no longer: the held text starts with it
                return held.lstrip()[length:]
        return held  # a genuine continuation, with its own leading space


def _word_starts(text: str, count: int) -> list[int]:
    """Offsets where each of the last ``count`` words of ``text`` begins, in order (scans only the tail)."""
    starts: list[int] = []
    end = len(text)
    while len(starts) < count and end > 0:
        while end > 0 and text[end - 1].isspace():
            end -= 1
        begin = end
        while begin > 0 and not text[begin - 1].isspace():
            begin -= 1
        if begin == end:
            break
        starts.append(begin)
        end = begin
    return starts[::-1]
