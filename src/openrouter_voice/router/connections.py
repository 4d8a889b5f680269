"""The router's pooled HTTP client: its limits and backstop timeouts, one shared TLS context, and the
warm-up that opens a connection to every endpoint of a chain before the first turn.

>>> client = http_client(10)
>>> client.timeout.read
120.0
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import Sequence

import httpcore2
import httpx2

from .defaults import OPENROUTER
from .types import Target

logger = logging.getLogger("openrouter_voice.router")


def http_client(max_connections: int) -> httpx2.AsyncClient:
    # Pooled keep-alive connections: a warm TLS connection saves ~100 ms of a voice turn.
    limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                          keepalive_expiry=60.0)
    # Deadlines are enforced by the router per attempt; these are only backstops.
    timeout = httpx2.Timeout(connect=10.0, read=120.0, write=10.0, pool=10.0)
    return httpx2.AsyncClient(limits=limits, timeout=timeout, follow_redirects=False, verify=tls_context())


@functools.cache
def tls_context() -> ssl.SSLContext:
    # Loading the CA store takes ~20-30 ms of the event loop; a router per voice session would block
    # every other session that long at each start. One context serves every client (it is thread-safe).
    return httpcore2.default_ssl_context()


async def warm_up(client: httpx2.AsyncClient, targets: Sequence[Target]) -> None:
    """A tiny unbilled request (``GET /key`` on OpenRouter, ``GET /models`` elsewhere) to each endpoint of
    ``targets``, leaving a warm pooled connection; failures are ignored (an optimisation, not a check)."""
    seen: set[str] = set()
    for target in targets:
        if target.base_url in seen:
            continue
        seen.add(target.base_url)
        path = "/key" if target.endpoint == OPENROUTER else "/models"
        headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
        try:
            async with asyncio.timeout(5.0):
                response = await client.get(target.base_url + path, headers=headers)
                await response.aread()
        except (TimeoutError, httpx2.HTTPError) as exc:
            logger.debug("warm-up of %s failed: %s", target.endpoint, type(exc).__name__)
