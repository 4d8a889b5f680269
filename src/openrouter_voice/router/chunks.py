"""The pure half of one attempt: what the ``data:`` lines of an OpenAI-style SSE stream mean.

:class:`ChunkParser` takes each event's data (no socket, no clock) and says what it carried: a text
delta, content that counts for the deadlines (text or tool-call deltas), the end of the stream. It
accumulates the served model, usage, finish reason and tool calls, and :meth:`ChunkParser.finish`
turns them into an :class:`AttemptDone`. Anything the router must act on (an in-stream error event,
malformed JSON, a reply over its size cap, unusable tool calls, a truncated or empty reply) raises
:class:`ChunkError` with the router's decision.

>>> parser = ChunkParser("openai/gpt-4o-mini")
>>> parser.feed('{"model": "openai/gpt-4o-mini", "choices": [{"delta": {"content": "Hi"}}]}').text
'Hi'
>>> parser.feed('{"choices": [{"delta": {}, "finish_reason": "stop"}]}').content
False
>>> parser.feed("[DONE]").done
True
>>> parser.finish().finish_reason
'stop'
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ..redact import redact
from .errors import Action, ErrorInfo, classify
from .types import Outcome, ToolCall, Usage

logger = logging.getLogger("openrouter_voice.router")

MAX_TEXT_CHARS = 200_000
MAX_TOOL_ARGS_CHARS = 100_000


class ChunkError(Exception):
    """The stream says this attempt failed; ``info.action`` is what the router should do next."""

    def __init__(self, outcome: Outcome, info: ErrorInfo) -> None:
        super().__init__(info.message)
        self.outcome = outcome
        self.info = info


@dataclass(slots=True)
class AttemptDone:
    """The attempt finished cleanly."""

    served_model: str
    tool_calls: list[ToolCall]
    usage: Usage | None
    finish_reason: str | None
    id: str | None
    ttft: float | None


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__ (1.8 us a chunk
# against 0.3 us measured on the bench machine); nothing mutates one.
@dataclass(slots=True)
class Parsed:
    """What one event carried: ``text`` to speak, whether it had ``content`` (text or tool-call
    deltas: what deadlines count), a ``choice`` at all (usage-only trailers have none), whether it was
    the ``done`` marker, and an ``error`` the same event reported after its text (speak the text,
    then fail: the next model continues after it)."""

    text: str = ""
    content: bool = False
    choice: bool = False
    done: bool = False
    error: ChunkError | None = None


_NOTHING = Parsed()
_CHOICE = Parsed(choice=True)
_DONE = Parsed(done=True)


@dataclass(slots=True)
class _ToolCallBuilder:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    size: int = 0


def _bad(message: str, action: Action = Action.COOLDOWN) -> ChunkError:
    return ChunkError(Outcome.BAD_RESPONSE, ErrorInfo(status=None, message=message, action=action))


def _shown(text: str, size: int = 80) -> str:
    """The start of ``text`` for a message: masked *before* it is cut, so no cut leaves part of a key
    (masking only the first 1,000 characters bounds the work; a key in the shown part lies within them)."""
    return redact(text[:1000])[:size]


def unreadable(exc: Exception) -> ChunkError:
    """A reply that made parsing fail in a way no check foresaw: the model's failure (cooldown), with
    the exception's type logged at debug level so a bug here still shows up in a debug log."""
    logger.debug("could not understand a reply: %s: %s", type(exc).__name__, redact(str(exc))[:200], exc_info=True)
    return _bad(f"unreadable reply ({type(exc).__name__})")


class ChunkParser:
    """Accumulates one streamed reply from its events' data; see the module docstring."""

    def __init__(self, model: str, *, max_text_chars: int = MAX_TEXT_CHARS,
                 max_tool_args_chars: int = MAX_TOOL_ARGS_CHARS) -> None:
        self.served_model = model
        self.completion_id: str | None = None
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.text_chars = 0
        self.max_text_chars = max_text_chars
        self.max_tool_args_chars = max_tool_args_chars
        self._builders: dict[int, _ToolCallBuilder] = {}

    def feed(self, data: str) -> Parsed:
        """Parse one event's data. Raises :class:`ChunkError` when the stream reports or shows a failure,
        and for anything in it this parser cannot understand: a reply it cannot read is that model's
        failure (the chain moves on), never an exception from outside the router's hierarchy."""
        try:
            return self._feed(data)
        except ChunkError:
            raise
        except Exception as exc:  # not BaseException: a cancellation must go through untouched
            raise unreadable(exc) from None

    def _feed(self, data: str) -> Parsed:
        # Runs per chunk: one lookup per field, no method call the common text delta does not need.
        if not data:
            return _NOTHING
        if data.strip() == "[DONE]":
            return _DONE
        try:
            chunk = json.loads(data)
        except ValueError:
            raise _bad(f"malformed JSON in stream: {_shown(data)!r}") from None
        if not isinstance(chunk, dict):
            raise _bad("stream chunk is not a JSON object")
        self._note_metadata(chunk)
        if chunk.get("error"):
            raise ChunkError(Outcome.STREAM_ERROR, classify(200, chunk, in_stream=True))
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return _NOTHING
        choice = choices[0]
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = {}
        content = delta.get("content")
        text = self._text(content) if content and isinstance(content, str) else ""
        reason = choice.get("finish_reason")
        try:
            tools = self._tools(delta["tool_calls"]) if delta.get("tool_calls") else False
            if reason == "error":
                raise ChunkError(Outcome.STREAM_ERROR, classify(200, chunk, in_stream=True))
        except ChunkError as exc:
            if not text:
                raise
            return Parsed(text, True, True, False, exc)
        if reason and isinstance(reason, str):
            self.finish_reason = reason
        return Parsed(text, True, True) if text or tools else _CHOICE

    def _note_metadata(self, chunk: dict[str, Any]) -> None:
        model = chunk.get("model")
        if model and isinstance(model, str):
            self.served_model = model
        if self.completion_id is None and isinstance(chunk.get("id"), str):
            self.completion_id = chunk["id"]
        usage = chunk.get("usage")
        if usage is not None and isinstance(usage, dict):
            self.usage = Usage.from_payload(usage)

    def _text(self, content: str) -> str:
        """A delta's text (within the reply's size cap)."""
        self.text_chars += len(content)
        if self.text_chars > self.max_text_chars:
            raise _bad(f"reply longer than {self.max_text_chars} characters", Action.NEXT)
        return content

    def _tools(self, tool_deltas: Any) -> bool:
        """Merge a delta's tool-call parts; whether it had any."""
        if not isinstance(tool_deltas, list) or not tool_deltas:
            return False
        for tool_delta in tool_deltas:
            if not self._add_tool_delta(tool_delta):
                raise _bad(f"tool-call arguments longer than {self.max_tool_args_chars} characters", Action.NEXT)
        return True

    def _add_tool_delta(self, tool_delta: Any) -> bool:
        """Merge one streamed tool-call delta; False if the arguments grew past the cap."""
        if not isinstance(tool_delta, dict):
            return True
        builders = self._builders
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
                if builder.size > self.max_tool_args_chars:
                    return False
        return True

    def finish(self, ttft: float | None = None) -> AttemptDone:
        """The stream ended: the whole reply, or :class:`ChunkError` if it is truncated, empty or unusable."""
        try:
            return self._finish(ttft)
        except ChunkError:
            raise
        except Exception as exc:
            raise unreadable(exc) from None

    def _finish(self, ttft: float | None) -> AttemptDone:
        if self.finish_reason is None:
            # Even after [DONE]: llama.cpp's server, interrupted by a newer request, sends [DONE] mid-reply.
            # A reply only counts as whole when its last choice says why it stopped.
            raise _bad("stream ended before the reply was finished (truncated: no finish_reason)")
        tool_calls = self._tool_calls()
        if self.text_chars == 0 and not tool_calls:
            raise _bad(f"empty reply (finish_reason={self.finish_reason})", Action.NEXT)
        return AttemptDone(self.served_model, tool_calls, self.usage, self.finish_reason, self.completion_id, ttft)

    def _tool_calls(self) -> list[ToolCall]:
        """Complete tool calls in index order; :class:`ChunkError` if any is unusable."""
        calls: list[ToolCall] = []
        for index in sorted(self._builders):
            builder = self._builders[index]
            if not builder.name:
                raise _bad(f"tool call #{index} has no function name", Action.NEXT)
            arguments = "".join(builder.arguments).strip() or "{}"
            try:
                parsed = json.loads(arguments)
            except ValueError:
                raise _bad(f"tool call {builder.name!r} has invalid JSON arguments: {_shown(arguments)!r}",
                           Action.NEXT) from None
            if not isinstance(parsed, dict):
                raise _bad(f"tool call {builder.name!r} arguments are not a JSON object", Action.NEXT)
            calls.append(ToolCall(id=builder.id or f"call_{index}_{int(time.time() * 1000)}",
                                  name=builder.name, arguments=arguments))
        return calls
