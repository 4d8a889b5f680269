"""Sending one streaming chat request and judging its answer before any text: :func:`open_stream`.

It returns a response that is a live SSE stream, or raises :class:`AttemptFailed` with the decision
the status (and error body) calls for; :func:`close_response` closes a stream even while its task is
being cancelled. Reading the stream is :mod:`.attempt`'s part.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import AsyncGenerator
from typing import Any

import httpx2

from ..redact import redact
from .errors import Action, ErrorInfo, classify
from .race import racing
from .types import Outcome, Target, Usage
from .watchdog import ReadDeadline

logger = logging.getLogger("openrouter_voice.router")

_MAX_ERROR_BODY = 64 * 1024
ERROR_BODY_WAIT = 0.25
"""Longest wait for an error body after its status line: a healthy server sends it with the headers;
one that drips it must not hold a turn (the status and Retry-After decide the fallback)."""


class AttemptFailed(Exception):
    """The attempt failed; ``info.action`` says what the router should do next."""

    def __init__(self, outcome: Outcome, info: ErrorInfo, *, ttft: float | None = None,
                 usage: Usage | None = None, served_model: str | None = None) -> None:
        super().__init__(info.message)
        self.outcome = outcome
        self.info = info
        self.ttft = ttft
        self.usage = usage
        self.served_model = served_model


def failure(message: str, action: Action = Action.COOLDOWN, *, status: int | None = None) -> ErrorInfo:
    return ErrorInfo(status=status, message=message, action=action)


_MERGED: weakref.WeakKeyDictionary[httpx2.AsyncClient, dict[tuple[tuple[str, str], ...], tuple[
    list[tuple[bytes, bytes]], httpx2.Headers]]] = weakref.WeakKeyDictionary()
"""Per client: each set of request headers (one per endpoint) merged with the client's own, and those."""


def build_request(client: httpx2.AsyncClient, url: str, body: dict[str, Any],
                  headers: dict[str, str]) -> httpx2.Request:
    """``client.build_request("POST", url, json=body, headers=headers)``, merging the client's headers with
    ``headers`` once per endpoint instead of every request. Hand-rolled: httpx2's merge of headers and
    (empty) cookies took ~20 us of every request in the overhead benchmark (scenario 7). A client with
    cookies or query parameters, or a relative URL, gets httpx2's own build.

    >>> client = httpx2.AsyncClient(headers={"User-Agent": "demo"})
    >>> request = build_request(client, "https://x.test/v1/chat/completions", {"a": 1}, {"Authorization": "Bearer k"})
    >>> expected = client.build_request("POST", "https://x.test/v1/chat/completions", json={"a": 1},
    ...                                 headers={"Authorization": "Bearer k"})
    >>> request.headers.multi_items() == expected.headers.multi_items(), request.read() == expected.read()
    (True, True)
    """
    target = httpx2.URL(url)
    if client.cookies or client.params or target.is_relative_url:
        return client.build_request("POST", url, json=body, headers=headers)
    known = _MERGED.get(client)
    if known is None:
        known = _MERGED[client] = {}
    key = tuple(headers.items())
    defaults = client.headers.raw
    merged = known.get(key)
    if merged is None or merged[0] != defaults:  # new headers, or the client's changed
        if len(known) >= 64:  # bounded, whatever a caller sends
            known.clear()
        merged_headers = httpx2.Headers(client.headers)
        merged_headers.update(headers)
        merged = known[key] = (defaults, merged_headers)
    timeout = client.timeout.as_dict()
    return httpx2.Request("POST", target, json=body, headers=merged[1], extensions={"timeout": timeout})


_closing: set[asyncio.Future[Any]] = set()  # strong references to clean-up tasks in flight


async def close_response(response: httpx2.Response,
                         events: AsyncGenerator[Any, None] | None = None) -> None:
    """Close an HTTP stream even if this task is being cancelled (again).

    A second cancellation (our hedging cancel racing a deadline, or the caller cancelling while we
    clean up) would otherwise interrupt ``aclose()`` and leave the upstream generating (and billing).
    """
    async def close() -> None:
        # The SSE reader's generators first, so nothing is left for the garbage collector to finalise.
        if events is not None:
            with contextlib.suppress(Exception):
                await events.aclose()
        await response.aclose()

    if response.is_closed and (events is None or getattr(events, "ag_frame", None) is None):
        return  # read to its end (httpx2 closed it, the reader finished): no clean-up task to start
    task = asyncio.ensure_future(close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)
    await asyncio.shield(task)


async def _send(client: httpx2.AsyncClient, request: httpx2.Request) -> httpx2.Response:
    """``client.send`` in its own task, so it is cancelled exactly once.

    httpcore closes a half-open connection when a send is cancelled, but a second cancellation
    arriving during that clean-up (a deadline firing as a hedge is cancelled) interrupts it and the
    socket stays open with the upstream still generating. Here only this function cancels the send
    task, once, and a response that arrives after we gave up is closed too. The caller waits on a
    future the send task settles itself: what ``asyncio.shield`` does, minus its callback hop (one
    event-loop iteration less per request in the overhead benchmark).
    """
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[httpx2.Response] = loop.create_future()
    task = loop.create_task(_sending(client, request, outcome))
    try:
        return await outcome
    except BaseException:
        _closing.add(task)
        task.add_done_callback(_closing.discard)
        if outcome.done() and not outcome.cancelled() and outcome.exception() is None:
            await close_response(outcome.result())  # it came just as this task was cancelled
        elif not task.done():
            task.cancel()
        raise


async def _sending(client: httpx2.AsyncClient, request: httpx2.Request,
                   outcome: asyncio.Future[httpx2.Response]) -> None:
    """Send ``request``; settle ``outcome`` with the response or the error, or close a response nobody waits for."""
    try:
        response = await client.send(request, stream=True)
    except asyncio.CancelledError:  # only _send cancels this task, once its caller stopped waiting
        return
    except BaseException as exc:
        if not outcome.done():
            outcome.set_exception(exc)
        return
    if outcome.done():  # the caller stopped waiting meanwhile
        await response.aclose()
    else:
        outcome.set_result(response)


async def _read_error_body(response: httpx2.Response, until: float) -> Any:
    """The decoded error body, read until loop time ``until`` at the latest: what arrived by then is used
    (a body that drips must not hold the turn; the status and headers already say most of it)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout_at(until):
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size >= _MAX_ERROR_BODY:
                    break
    except (TimeoutError, httpx2.HTTPError):
        pass
    raw = b"".join(chunks)[:_MAX_ERROR_BODY]
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, or nested too deep to decode
        text = raw.decode("utf-8", "replace").strip()
        return {"error": {"message": redact(text)[:300]}} if text else None


def _classify(status: int, payload: Any, **kwargs: Any) -> ErrorInfo:
    """:func:`classify`, but an error body it cannot understand is still a typed failure of the model."""
    try:
        return classify(status, payload, **kwargs)
    except Exception as exc:  # not BaseException: a cancellation goes through
        logger.debug("could not understand an error body: %s", type(exc).__name__, exc_info=True)
        return classify(status, None, retry_after_header=kwargs.get("retry_after_header"))


async def open_stream(client: httpx2.AsyncClient, target: Target, body: dict[str, Any], headers: dict[str, str],
                      *, deadline: float, hard_stop: float, first_token: float,
                      watchdog: ReadDeadline) -> httpx2.Response:
    """Send one streaming chat request; return the response once it is known to be an SSE stream.

    ``deadline`` bounds the wait for headers (the first-token deadline, loop time, kept by the attempt's
    ``watchdog``, whose one timer then serves its reads too); ``hard_stop`` any
    read at all. Raises :class:`AttemptFailed` for no headers in time, a connection error, a non-200
    status (decided from the status, headers and error body) or a reply that is not an SSE stream.
    An error body is read only within the same deadline, and for at most :data:`ERROR_BODY_WAIT`:
    the status (with Retry-After) decides the fallback even when the body never comes. The response
    is closed before any of those is raised.
    """
    loop = asyncio.get_running_loop()
    url = target.base_url.rstrip("/") + "/chat/completions"
    try:
        request = build_request(client, url, body, headers)
    except (httpx2.InvalidURL, httpx2.HTTPError) as exc:  # a target that cannot be asked
        raise AttemptFailed(Outcome.CONNECTION_ERROR, failure(
            f"cannot send to {redact(url)[:200]}: {type(exc).__name__}"), served_model=target.model) from None
    except (ValueError, TypeError) as exc:  # a body that cannot be encoded: the same for every model
        raise AttemptFailed(Outcome.BAD_RESPONSE, failure(
            f"the request cannot be encoded ({type(exc).__name__})", Action.RAISE), served_model=target.model) from None
    try:
        # A racer is cancelled at most once (by race.stop, or by the watchdog, which leaves a task being
        # cancelled alone), so it sends itself: a task and a wake-up less per request, ~15 us in the
        # overhead benchmark (scenario 7). Any other task may be cancelled again: it sends from a task of its own.
        response = await watchdog.read(client.send(request, stream=True) if racing() else _send(client, request),
                                       deadline)
    except TimeoutError:
        raise AttemptFailed(Outcome.FIRST_TOKEN_TIMEOUT, failure(
            f"no response headers within {first_token:g}s"), served_model=target.model) from None
    except httpx2.HTTPError as exc:
        raise AttemptFailed(Outcome.CONNECTION_ERROR, failure(
            f"{type(exc).__name__}: {redact(str(exc))[:200]}"), served_model=target.model) from None
    try:
        body_until = min(deadline, hard_stop, loop.time() + ERROR_BODY_WAIT)
        if response.status_code != 200:
            payload = await _read_error_body(response, body_until)
            info = _classify(response.status_code, payload, retry_after_header=response.headers.get("retry-after"))
            raise AttemptFailed(Outcome.HTTP_ERROR, info, served_model=target.model)
        content_type = response.headers.get("content-type", "")
        if "text/event-stream" not in content_type:
            # Some servers answer an error (or a non-streamed reply) as plain JSON with HTTP 200.
            payload = await _read_error_body(response, body_until)
            if isinstance(payload, dict) and payload.get("error"):
                raise AttemptFailed(Outcome.STREAM_ERROR, _classify(200, payload, in_stream=True),
                                    served_model=target.model)
            raise AttemptFailed(Outcome.BAD_RESPONSE, failure(
                f"expected an SSE stream, got content-type {redact(content_type)[:80]!r}"), served_model=target.model)
    except BaseException:
        await close_response(response)
        raise
    return response
