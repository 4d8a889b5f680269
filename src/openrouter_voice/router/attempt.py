"""One streamed request to one model: the I/O half (sending, status, deadlines, closing).

:func:`open_stream` sends the request and returns a response that is a live SSE stream, or raises
:class:`AttemptFailed` with the decision the status (and error body) calls for. :func:`stream_attempt`
reads its events under the deadlines, hands their data to the pure :class:`~.chunks.ChunkParser`, and
yields text deltas as they arrive and finally an :class:`AttemptDone`. Deadlines are measured from
the moment the request is sent and cover only *content* (text or tool-call deltas): headers,
role-only deltas, empty chunks and ``: OPENROUTER PROCESSING`` keep-alive comments do not count, so
a model that only keeps the connection warm is cut off on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, cast

import httpx2
from httpx2 import EventSource, ServerSentEvent, SSEError

from ..redact import redact
from .chunks import MAX_TEXT_CHARS, MAX_TOOL_ARGS_CHARS, AttemptDone, ChunkError, ChunkParser
from .dribble import DribbleWatch, count_words
from .errors import Action, ErrorInfo, classify
from .first_sentence import FirstSentenceWatch
from .types import Outcome, Target, Usage

logger = logging.getLogger("openrouter_voice.router")

_MAX_ERROR_BODY = 64 * 1024
_ARRIVED_GRACE = 0.005  # seconds to read an event already received once the first-sentence deadline passed
ERROR_BODY_WAIT = 0.25
"""Longest wait for an error body after its status line: a healthy server sends it with the headers;
one that drips it must not hold a turn (the status and Retry-After decide the fallback)."""


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Time limits for one attempt, in seconds."""

    first_token: float  # send -> first content token
    stall: float  # gap between content tokens once streaming
    total: float  # whole attempt, a hard bound on any upstream call
    max_text_chars: int = MAX_TEXT_CHARS
    max_tool_args_chars: int = MAX_TOOL_ARGS_CHARS
    dribble_words_per_second: float = 0.0  # text slower than this over dribble_window fails like a stall (0: off)
    dribble_window: float = 2.0


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


def _failure(message: str, action: Action = Action.COOLDOWN, *, status: int | None = None) -> ErrorInfo:
    return ErrorInfo(status=status, message=message, action=action)


_closing: set[asyncio.Future[Any]] = set()  # strong references to clean-up tasks in flight


async def close_response(response: httpx2.Response,
                         events: AsyncGenerator[ServerSentEvent, None] | None = None) -> None:
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

    task = asyncio.ensure_future(close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)
    await asyncio.shield(task)


async def _send(client: httpx2.AsyncClient, request: httpx2.Request) -> httpx2.Response:
    """``client.send`` in its own task, so it is cancelled exactly once.

    httpcore closes a half-open connection when a send is cancelled, but a second cancellation
    arriving during that clean-up (a deadline firing as a hedge is cancelled) interrupts it and the
    socket stays open with the upstream still generating. Here only this function cancels the send
    task, once, and a response that arrives after we gave up is closed too.
    """
    task = asyncio.ensure_future(client.send(request, stream=True))
    try:
        return await asyncio.shield(task)
    except BaseException:
        if not task.done():
            task.cancel()
        _closing.add(task)
        task.add_done_callback(_close_late_response)
        raise


def _close_late_response(task: asyncio.Future[httpx2.Response]) -> None:
    _closing.discard(task)
    if task.cancelled() or task.exception() is not None:
        return
    late = asyncio.ensure_future(task.result().aclose())
    _closing.add(late)
    late.add_done_callback(_closing.discard)


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
                      *, deadline: float, hard_stop: float, first_token: float) -> httpx2.Response:
    """Send one streaming chat request; return the response once it is known to be an SSE stream.

    ``deadline`` bounds the wait for headers (the first-token deadline, loop time); ``hard_stop`` any
    read at all. Raises :class:`AttemptFailed` for no headers in time, a connection error, a non-200
    status (decided from the status, headers and error body) or a reply that is not an SSE stream.
    An error body is read only within the same deadline, and for at most :data:`ERROR_BODY_WAIT`:
    the status (with Retry-After) decides the fallback even when the body never comes. The response
    is closed before any of those is raised.
    """
    loop = asyncio.get_running_loop()
    url = target.base_url.rstrip("/") + "/chat/completions"
    try:
        request = client.build_request("POST", url, json=body, headers=headers)
    except (httpx2.InvalidURL, httpx2.HTTPError) as exc:  # a target that cannot be asked
        raise AttemptFailed(Outcome.CONNECTION_ERROR, _failure(
            f"cannot send to {redact(url)[:200]}: {type(exc).__name__}"), served_model=target.model) from None
    except (ValueError, TypeError) as exc:  # a body that cannot be encoded: the same for every model
        raise AttemptFailed(Outcome.BAD_RESPONSE, _failure(
            f"the request cannot be encoded ({type(exc).__name__})", Action.RAISE), served_model=target.model) from None
    try:
        async with asyncio.timeout_at(deadline):
            response = await _send(client, request)
    except TimeoutError:
        raise AttemptFailed(Outcome.FIRST_TOKEN_TIMEOUT, _failure(
            f"no response headers within {first_token:g}s"), served_model=target.model) from None
    except httpx2.HTTPError as exc:
        raise AttemptFailed(Outcome.CONNECTION_ERROR, _failure(
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
            raise AttemptFailed(Outcome.BAD_RESPONSE, _failure(
                f"expected an SSE stream, got content-type {redact(content_type)[:80]!r}"), served_model=target.model)
    except BaseException:
        await close_response(response)
        raise
    return response


async def stream_attempt(
    client: httpx2.AsyncClient,
    target: Target,
    body: dict[str, Any],
    headers: dict[str, str],
    deadlines: Deadlines,
    gaps: list[float] | None = None,
    sentence: FirstSentenceWatch | None = None,
) -> AsyncGenerator[str | AttemptDone, None]:
    """Send one streaming chat request; yield text deltas, then one :class:`AttemptDone`.

    Raises :class:`AttemptFailed` on HTTP errors, in-stream error events, deadlines, a reply too
    slow for speech (``deadlines.dribble_words_per_second``, or, when ``sentence`` watches a spoken
    reply, no first speakable sentence by its deadline), broken or truncated streams and invalid tool
    calls. Closing the generator closes the HTTP stream. ``gaps`` receives the seconds between content
    chunks (the caller keeps them only if the attempt ends healthily).
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    hard_stop = started + deadlines.total
    deadline = min(started + deadlines.first_token, hard_stop)
    ttft: float | None = None
    last_content = 0.0
    dribble = (DribbleWatch(deadlines.dribble_words_per_second, deadlines.dribble_window)
               if deadlines.dribble_words_per_second > 0 else None)
    parser = ChunkParser(target.model, max_text_chars=deadlines.max_text_chars,
                         max_tool_args_chars=deadlines.max_tool_args_chars)

    def fail(outcome: Outcome, info: ErrorInfo) -> AttemptFailed:
        return AttemptFailed(outcome, info, ttft=ttft, usage=parser.usage, served_model=parser.served_model)

    response = await open_stream(client, target, body, headers, deadline=deadline, hard_stop=hard_stop,
                                 first_token=deadlines.first_token)
    # httpx2's parser refuses any single event over 1 MB: no reply chunk is that big.
    # (its __aiter__ is an async generator: we aclose() it to release the connection at once)
    events: AsyncGenerator[ServerSentEvent, None] | None = None
    try:
        events = cast(AsyncGenerator[ServerSentEvent, None], aiter(EventSource(response)))
        while True:
            # A spoken reply's first sentence has its own deadline, often sooner than the stall's; one
            # already past (a slow consumer) still lets an event that has arrived meanwhile be read.
            speak_by = sentence.deadline() if sentence is not None and parser.finish_reason is None else None
            if speak_by is not None:
                speak_by = max(speak_by, loop.time() + _ARRIVED_GRACE)
            try:
                async with asyncio.timeout_at(deadline if speak_by is None else min(deadline, speak_by)):
                    event = await anext(events)
            except StopAsyncIteration:
                break
            except TimeoutError:
                if parser.finish_reason is not None:
                    break  # the reply is complete; only the trailer (usage, [DONE]) is late
                if sentence is not None and speak_by is not None and speak_by < deadline:
                    raise fail(Outcome.STALL, _failure(sentence.describe())) from None
                raise fail(*_timed_out(ttft is None, loop.time() >= hard_stop, deadlines)) from None
            except SSEError as exc:
                raise fail(Outcome.BAD_RESPONSE, _failure(f"malformed stream: {redact(str(exc))[:200]}")) from None
            except httpx2.HTTPError as exc:
                raise fail(Outcome.CONNECTION_ERROR, _failure(
                    f"stream broke: {type(exc).__name__}: {redact(str(exc))[:200]}")) from None
            try:
                parsed = parser.feed(event.data)
            except ChunkError as exc:
                raise fail(exc.outcome, exc.info) from None
            if parsed.done:
                await _drain(events)  # read to the end of the body so the connection goes back to the pool warm
                break
            dribbled = None
            if parsed.content:
                now = loop.time()
                if ttft is None:
                    ttft = now - started
                elif gaps is not None:
                    gaps.append(now - last_content)
                last_content = now
                if dribble is not None and parsed.text and dribble.feed(now, count_words(parsed.text)):
                    dribbled = dribble.describe()
                if sentence is not None:
                    dribbled = dribbled or _too_slow_to_speak(sentence, now, parsed.text)
            if parsed.text:
                yield parsed.text
            if parsed.error is not None:  # reported with the text just spoken: the next model continues
                raise fail(parsed.error.outcome, parsed.error.info)
            if dribbled:  # after yielding: the words that came are kept, the next model continues after them
                raise fail(Outcome.STALL, _failure(dribbled))
            if parsed.content or (parsed.choice and parser.finish_reason is not None):
                deadline = min(loop.time() + deadlines.stall, hard_stop)
    finally:
        await close_response(response, events)
    try:
        done = parser.finish(ttft)
    except ChunkError as exc:
        raise fail(exc.outcome, exc.info) from None
    if sentence is not None and not done.tool_calls:
        sentence.finish()
    yield done


def _too_slow_to_speak(sentence: FirstSentenceWatch, now: float, text: str) -> str | None:
    """Feed a content chunk to the first-sentence watch; why the reply is cut if it came too late."""
    if not text:  # tool-call deltas: the reply turns to a tool, it has nothing more to say first
        sentence.stop()
        return None
    sentence.feed(now, text)
    speak_by = sentence.deadline()
    return sentence.describe() if speak_by is not None and now >= speak_by else None


def _timed_out(before_first_token: bool, past_hard_stop: bool, deadlines: Deadlines) -> tuple[Outcome, ErrorInfo]:
    """Which deadline an attempt missed."""
    if before_first_token:
        limit = min(deadlines.first_token, deadlines.total)
        return Outcome.FIRST_TOKEN_TIMEOUT, _failure(f"no first token within {limit:g}s")
    if past_hard_stop:
        return Outcome.STALL, _failure(f"reply exceeded the {deadlines.total:g}s total limit")
    return Outcome.STALL, _failure(f"stream stalled for {deadlines.stall:g}s")


async def _drain(events: AsyncGenerator[ServerSentEvent, None]) -> None:
    with contextlib.suppress(TimeoutError, httpx2.HTTPError, SSEError):
        async with asyncio.timeout(0.05):
            async for _ in events:
                pass
