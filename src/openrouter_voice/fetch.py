"""Small GET requests (model catalog, weather, key check) with a total deadline and a size cap.

httpx2's timeouts bound each read, not the whole response: a server that drips a byte at a time
keeps a call alive for ever, and one that sends without end fills memory. These replies are small,
so each call gets a hard limit on both.

>>> response = await fetch(client, "https://openrouter.ai/api/v1/models", seconds=5, max_bytes=2**24)  # doctest: +SKIP
>>> response.json()["data"][0]["id"]  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import httpx2

__all__ = ["ResponseTooLargeError", "fetch"]


class ResponseTooLargeError(ValueError):
    """The response body was larger than the caller's cap."""


async def fetch(client: httpx2.AsyncClient | None, url: str, *, seconds: float, max_bytes: int,
                params: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None) -> httpx2.Response:
    """GET ``url`` and read its whole body within ``seconds`` and ``max_bytes`` bytes.

    ``client`` may be None (a client is made for the call). Returns the response, body read (any
    status: the caller decides). Raises ``httpx2.TimeoutException`` when the whole response took
    longer than ``seconds``, :class:`ResponseTooLargeError` when the body was larger than
    ``max_bytes``, and any other ``httpx2.HTTPError`` as it comes.
    """
    async with contextlib.AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(httpx2.AsyncClient(timeout=seconds))
        try:
            async with asyncio.timeout(seconds):
                request = client.build_request("GET", url, params=params, headers=headers, timeout=seconds)
                response = await client.send(request, stream=True)
                try:
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > max_bytes:
                            raise ResponseTooLargeError(f"{url} sent more than {max_bytes:,} bytes")
                finally:
                    await response.aclose()
        except TimeoutError:
            raise httpx2.ReadTimeout(f"no complete response from {url} within {seconds:g}s") from None
    # The body is already decoded: drop the headers that would make httpx2 decode it again.
    kept = {k: v for k, v in response.headers.items() if k.lower() not in ("content-encoding", "content-length",
                                                                           "transfer-encoding")}
    return httpx2.Response(response.status_code, headers=kept, content=bytes(body), request=response.request)
