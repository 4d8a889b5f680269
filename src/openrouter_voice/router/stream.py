"""A streamed reply, as :meth:`FallbackRouter.stream` returns it.

>>> async with router.stream([{"role": "user", "content": "Hi"}]) as stream:  # doctest: +SKIP
...     async for chunk in stream:
...         print(chunk.text, end="")
>>> stream.result.model  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Self

from .types import Attempt, Completion, StreamChunk


class RouterStream:
    """A streamed reply: iterate for :class:`StreamChunk`; ``result`` once finished; ``aclose`` to stop.

    Stopping early (``aclose``, ``break`` inside ``async with``, or cancellation) closes the upstream
    HTTP stream at once, which for most providers stops generation and billing.
    """

    _generator: AsyncGenerator[StreamChunk, None]

    def __init__(self, attempts: list[Attempt]) -> None:
        self.attempts = attempts
        self.result: Completion | None = None

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        return self

    async def __anext__(self) -> StreamChunk:
        return await self._generator.__anext__()

    async def aclose(self) -> None:
        await self._generator.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
