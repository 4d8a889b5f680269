"""One streamed request to one model: SSE parsing, deadlines and error detection.

:func:`stream_attempt` yields text deltas as they arrive and finally an :class:`AttemptDone`;
anything that goes wrong raises :class:`AttemptFailed` carrying the router's decision. Deadlines
are measured from the moment the request is sent and cover only *content* (text or tool-call
deltas): headers, role-only deltas, empty chunks and ``: OPENROUTER PROCESSING`` keep-alive
comments do not count, so a model that only keeps the connection warm is cut off on time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, cast

import httpx2
from httpx2 import EventSource, ServerSentEvent, SSEError

from .errors import Action, ErrorInfo, classify
from .redact import redact
from .types import Outcome, Target, ToolCall, Usage

logger = logging.getLogger("openrouter_voice.router")

_MAX_ERROR_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Time limits for one attempt, in seconds."""

    first_token: float  # send -> first content token
    stall: float  # gap between content tokens once streaming
    total: float  # whole attempt, a hard bound on any upstream call
    max_text_chars: int = 200_000
    max_tool_args_chars: int = 100_000


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


@dataclass(slots=True)
class AttemptDone:
    """The attempt finished cleanly."""

    served_model: str
    tool_calls: list[ToolCall]
    usage: Usage | None
    finish_reason: str | None
    id: str | None
    ttft: float | None


@dataclass(slots=True)
class _ToolCallBuilder:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    size: int = 0


def _failure(outcome: Outcome, message: str, action: Action, *, status: int | None = None,
             error_type: str | None = None) -> ErrorInfo:
    return ErrorInfo(status=status, message=message, action=action, error_type=error_type)


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


async def _read_error_body(response: httpx2.Response) -> Any:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= _MAX_ERROR_BODY:
            break
    raw = b"".join(chunks)[:_MAX_ERROR_BODY]
    try:
        return json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace").strip()
        return {"error": {"message": text[:300]}} if text else None


async def stream_attempt(
    client: httpx2.AsyncClient,
    target: Target,
    body: dict[str, Any],
    headers: dict[str, str],
    deadlines: Deadlines,
) -> AsyncGenerator[str | AttemptDone, None]:
    """Send one streaming chat request; yield text deltas, then one :class:`AttemptDone`.

    Raises :class:`AttemptFailed` on HTTP errors, in-stream error events, deadlines, broken or
    truncated streams and invalid tool calls. Closing the generator closes the HTTP stream.
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    hard_stop = started + deadlines.total
    deadline = min(started + deadlines.first_token, hard_stop)
    ttft: float | None = None
    served_model = target.model
    completion_id: str | None = None
    usage: Usage | None = None
    finish_reason: str | None = None
    text_chars = 0
    builders: dict[int, _ToolCallBuilder] = {}

    def fail(outcome: Outcome, info: ErrorInfo) -> AttemptFailed:
        return AttemptFailed(outcome, info, ttft=ttft, usage=usage, served_model=served_model)

    url = target.base_url.rstrip("/") + "/chat/completions"
    request = client.build_request("POST", url, json=body, headers=headers)
    response: httpx2.Response | None = None
    events: AsyncGenerator[ServerSentEvent, None] | None = None
    try:
        try:
            async with asyncio.timeout_at(deadline):
                response = await _send(client, request)
        except TimeoutError:
            raise fail(Outcome.FIRST_TOKEN_TIMEOUT, _failure(
                Outcome.FIRST_TOKEN_TIMEOUT, f"no response headers within {deadlines.first_token:g}s",
                Action.COOLDOWN)) from None
        except httpx2.HTTPError as exc:
            raise fail(Outcome.CONNECTION_ERROR, _failure(
                Outcome.CONNECTION_ERROR, f"{type(exc).__name__}: {redact(str(exc))[:200]}",
                Action.COOLDOWN)) from None

        if response.status_code != 200:
            try:
                async with asyncio.timeout_at(min(loop.time() + 5.0, hard_stop)):
                    payload = await _read_error_body(response)
            except (TimeoutError, httpx2.HTTPError):
                payload = None
            info = classify(response.status_code, payload,
                            retry_after_header=response.headers.get("retry-after"))
            raise fail(Outcome.HTTP_ERROR, info)

        content_type = response.headers.get("content-type", "")
        if "text/event-stream" not in content_type:
            # Some servers answer an error (or a non-streamed reply) as plain JSON with HTTP 200.
            try:
                async with asyncio.timeout_at(min(loop.time() + 5.0, hard_stop)):
                    payload = await _read_error_body(response)
            except (TimeoutError, httpx2.HTTPError):
                payload = None
            if isinstance(payload, dict) and payload.get("error"):
                raise fail(Outcome.STREAM_ERROR, classify(200, payload, in_stream=True))
            raise fail(Outcome.BAD_RESPONSE, _failure(
                Outcome.BAD_RESPONSE, f"expected an SSE stream, got content-type {content_type!r}",
                Action.COOLDOWN))

        # httpx2's parser refuses any single event over 1 MB: no reply chunk is that big.
        # (its __aiter__ is an async generator: we aclose() it to release the connection at once)
        events = cast(AsyncGenerator[ServerSentEvent, None], aiter(EventSource(response)))
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    event = await anext(events)
            except StopAsyncIteration:
                break
            except TimeoutError:
                if finish_reason is not None:
                    break  # the reply is complete; only the trailer (usage, [DONE]) is late
                if ttft is None:
                    limit = min(deadlines.first_token, deadlines.total)
                    raise fail(Outcome.FIRST_TOKEN_TIMEOUT, _failure(
                        Outcome.FIRST_TOKEN_TIMEOUT, f"no first token within {limit:g}s",
                        Action.COOLDOWN)) from None
                if loop.time() >= hard_stop:
                    raise fail(Outcome.STALL, _failure(
                        Outcome.STALL, f"reply exceeded the {deadlines.total:g}s total limit",
                        Action.COOLDOWN)) from None
                raise fail(Outcome.STALL, _failure(
                    Outcome.STALL, f"stream stalled for {deadlines.stall:g}s", Action.COOLDOWN)) from None
            except SSEError as exc:
                raise fail(Outcome.BAD_RESPONSE, _failure(
                    Outcome.BAD_RESPONSE, f"malformed stream: {redact(str(exc))[:200]}", Action.COOLDOWN)) from None
            except httpx2.HTTPError as exc:
                raise fail(Outcome.CONNECTION_ERROR, _failure(
                    Outcome.CONNECTION_ERROR,
                    f"stream broke: {type(exc).__name__}: {redact(str(exc))[:200]}",
                    Action.COOLDOWN)) from None

            data = event.data
            if not data:
                continue
            if data.strip() == "[DONE]":
                # Read to the end of the body so the connection goes back to the pool warm.
                with contextlib.suppress(TimeoutError, httpx2.HTTPError, SSEError):
                    async with asyncio.timeout(0.05):
                        async for _ in events:
                            pass
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                raise fail(Outcome.BAD_RESPONSE, _failure(
                    Outcome.BAD_RESPONSE, f"malformed JSON in stream: {redact(data[:80])!r}",
                    Action.COOLDOWN)) from None
            if not isinstance(chunk, dict):
                raise fail(Outcome.BAD_RESPONSE, _failure(
                    Outcome.BAD_RESPONSE, "stream chunk is not a JSON object", Action.COOLDOWN))

            if isinstance(chunk.get("model"), str) and chunk["model"]:
                served_model = chunk["model"]
            if completion_id is None and isinstance(chunk.get("id"), str):
                completion_id = chunk["id"]
            if isinstance(chunk.get("usage"), dict):
                usage = Usage.from_payload(chunk["usage"])
            if chunk.get("error"):
                raise fail(Outcome.STREAM_ERROR, classify(200, chunk, in_stream=True))

            choices = chunk.get("choices")
            if not isinstance(choices, list) or not choices:
                continue
            choice = choices[0]
            if not isinstance(choice, dict):
                continue
            got_content = False
            delta = choice.get("delta")
            if isinstance(delta, dict):
                content = delta.get("content")
                if isinstance(content, str) and content:
                    text_chars += len(content)
                    if text_chars > deadlines.max_text_chars:
                        raise fail(Outcome.BAD_RESPONSE, _failure(
                            Outcome.BAD_RESPONSE,
                            f"reply longer than {deadlines.max_text_chars} characters", Action.NEXT))
                    got_content = True
                    if ttft is None:
                        ttft = loop.time() - started
                    yield content
                tool_deltas = delta.get("tool_calls")
                if isinstance(tool_deltas, list):
                    for tool_delta in tool_deltas:
                        if _add_tool_delta(builders, tool_delta, deadlines.max_tool_args_chars):
                            got_content = True
                        else:
                            raise fail(Outcome.BAD_RESPONSE, _failure(
                                Outcome.BAD_RESPONSE,
                                f"tool-call arguments longer than {deadlines.max_tool_args_chars} characters",
                                Action.NEXT))
            reason = choice.get("finish_reason")
            if reason == "error":
                raise fail(Outcome.STREAM_ERROR, classify(200, chunk, in_stream=True))
            if isinstance(reason, str) and reason:
                finish_reason = reason
            if got_content:
                if ttft is None:
                    ttft = loop.time() - started
                deadline = min(loop.time() + deadlines.stall, hard_stop)
            elif finish_reason is not None:
                deadline = min(loop.time() + deadlines.stall, hard_stop)
    finally:
        if response is not None:
            await close_response(response, events)

    if finish_reason is None:
        # Even after [DONE]: llama.cpp's server, interrupted by a newer request, sends [DONE] mid-reply.
        # A reply only counts as whole when its last choice says why it stopped.
        raise fail(Outcome.BAD_RESPONSE, _failure(
            Outcome.BAD_RESPONSE, "stream ended before the reply was finished (truncated: no finish_reason)",
            Action.COOLDOWN))
    tool_calls = _finish_tool_calls(builders)
    if isinstance(tool_calls, str):
        raise fail(Outcome.BAD_RESPONSE, _failure(Outcome.BAD_RESPONSE, tool_calls, Action.NEXT))
    if text_chars == 0 and not tool_calls:
        raise fail(Outcome.BAD_RESPONSE, _failure(
            Outcome.BAD_RESPONSE, f"empty reply (finish_reason={finish_reason})", Action.NEXT))
    yield AttemptDone(served_model, tool_calls, usage, finish_reason, completion_id, ttft)


def _add_tool_delta(builders: dict[int, _ToolCallBuilder], tool_delta: Any, max_chars: int) -> bool:
    """Merge one streamed tool-call delta; False if the arguments grew past ``max_chars``."""
    if not isinstance(tool_delta, dict):
        return True
    index = tool_delta.get("index")
    if not isinstance(index, int):
        index = len(builders) if tool_delta.get("id") and builders else 0
    builder = builders.setdefault(index, _ToolCallBuilder())
    if isinstance(tool_delta.get("id"), str) and tool_delta["id"]:
        builder.id = tool_delta["id"]
    function = tool_delta.get("function")
    if isinstance(function, dict):
        if isinstance(function.get("name"), str) and function["name"] and not builder.name:
            builder.name = function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            builder.arguments.append(arguments)
            builder.size += len(arguments)
            if builder.size > max_chars:
                return False
    return True


def _finish_tool_calls(builders: dict[int, _ToolCallBuilder]) -> list[ToolCall] | str:
    """Complete tool calls in index order, or a message saying why they are unusable."""
    calls: list[ToolCall] = []
    for index in sorted(builders):
        builder = builders[index]
        if not builder.name:
            return f"tool call #{index} has no function name"
        arguments = "".join(builder.arguments).strip() or "{}"
        try:
            parsed = json.loads(arguments)
        except ValueError:
            return f"tool call {builder.name!r} has invalid JSON arguments: {arguments[:80]!r}"
        if not isinstance(parsed, dict):
            return f"tool call {builder.name!r} arguments are not a JSON object"
        calls.append(ToolCall(id=builder.id or f"call_{index}_{int(time.time() * 1000)}",
                              name=builder.name, arguments=arguments))
    return calls
