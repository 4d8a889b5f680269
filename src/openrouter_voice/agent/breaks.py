"""A reply that broke before its first sentence ended is spoken up to the break at once.

When a model fails after some words (an error mid-reply, or cut for dribbling), the router continues
on the next model after those words (:mod:`openrouter_voice.router.continuation`). The TTS, though,
speaks whole sentences: without a flush it holds "It is sunny" until the continuation's first words
complete the sentence, so the caller waits the whole failover (the next model's first token) in
silence. Flushing the held words at the break lets them play while the next model starts; by the
time they are said (a few words take about a second) the continuation is usually there, so the fault
costs the first audio nothing and the answer keeps every word, at the price of a phrase break. Once
a sentence was handed to the TTS the caller is already listening, and the break is left alone.

:class:`ReplyBroke` is the marker :class:`~.llm.OpenRouterLLMStream` sends at a break (a contentless
``ChatChunk``: anything but :func:`spoken_at_breaks` ignores it, LiveKit included).

>>> import asyncio
>>> async def reply():
...     yield "It is sunny"
...     yield ReplyBroke(id="x")
...     yield " and mild today."
>>> async def collect():
...     return [type(c).__name__ if not isinstance(c, str) else c async for c in spoken_at_breaks(reply())]
>>> asyncio.run(collect())
['It is sunny', 'FlushSentinel', ' and mild today.']
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import TypeVar

from livekit.agents import FlushSentinel, llm

from ..router.first_sentence import sentence_end

T = TypeVar("T")
_LOOKBACK = 8  # characters rescanned: a "." at a delta's end is confirmed by the next delta's space


class ReplyBroke(llm.ChatChunk):
    """Sent the moment the model serving a reply failed after some text; the next model continues it."""


async def spoken_at_breaks(chunks: AsyncIterable[T]) -> AsyncIterator[T | FlushSentinel]:
    """``chunks`` (an LLM node's output) with each :class:`ReplyBroke` that comes before the first
    speakable sentence ended turned into a ``FlushSentinel`` (the words so far are spoken now); later
    ones are dropped.

    >>> import asyncio
    >>> async def later():
    ...     yield "It is sunny and mild today. Bring"
    ...     yield ReplyBroke(id="x")
    ...     yield " a coat."
    >>> async def collect():
    ...     return [c async for c in spoken_at_breaks(later())]
    >>> asyncio.run(collect())
    ['It is sunny and mild today. Bring', ' a coat.']
    """
    said, scanned = "", 0
    sentence_ended = False
    async for chunk in chunks:
        if isinstance(chunk, ReplyBroke):
            if said.strip() and not sentence_ended:
                yield FlushSentinel()
            continue
        if not sentence_ended and (text := _text(chunk)):
            said += text
            sentence_ended = sentence_end(said, start=scanned) is not None
            scanned = max(0, len(said) - _LOOKBACK)  # linear: only the new text and a little before it
        yield chunk


def _text(chunk: object) -> str:
    if isinstance(chunk, str):
        return chunk
    delta = getattr(chunk, "delta", None)
    return (delta.content or "") if delta is not None else ""
