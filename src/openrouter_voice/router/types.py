"""Value types the router hands to its callers: targets, chunks, usage, attempts, completions."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from .numbers import count, finite

MAX_COST = 1e6
"""USD for one request: anything above is a bogus value, not a bill."""

#: An OpenAI-style chat message (``{"role": "user", "content": "..."}``).
Message = dict[str, Any]
#: An OpenAI-style tool definition (``{"type": "function", "function": {...}}``).
ToolSpec = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Target:
    """One place a model can be reached: a model id on an OpenAI-compatible endpoint.

    ``endpoint`` names the endpoint (``"openrouter"`` for OpenRouter itself); ``base_url`` and
    ``api_key`` say how to reach it. ``repr`` never shows the key.

    >>> Target("openai/gpt-4o-mini", "openrouter", "https://openrouter.ai/api/v1", "sk-or-...")
    Target(model='openai/gpt-4o-mini', endpoint='openrouter')
    """

    model: str
    endpoint: str
    base_url: str
    api_key: str | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        """``model`` for OpenRouter, ``model@endpoint`` for other endpoints."""
        return self.model if self.endpoint == "openrouter" else f"{self.model}@{self.endpoint}"

    @property
    def is_free_variant(self) -> bool:
        return self.model.endswith(":free")

    def __repr__(self) -> str:
        return f"Target(model={self.model!r}, endpoint={self.endpoint!r})"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call (arguments is the JSON string the model produced)."""

    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class Usage:
    """Token and cost accounting. ``cost`` is USD as reported by OpenRouter (None when unknown)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost: float | None = None

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Usage:
        """Parse an OpenAI/OpenRouter ``usage`` object, tolerating missing or null fields; a count or
        cost that is not a sane finite number (``1e999``, ``NaN``, a 400-digit integer) counts as absent.

        >>> Usage.from_payload({"prompt_tokens": 1e999, "completion_tokens": 3, "cost": float("nan")})
        Usage(prompt_tokens=0, completion_tokens=3, total_tokens=3, cached_tokens=0, reasoning_tokens=0, cost=None)
        """

        def _int(value: Any) -> int:
            return count(value) or 0

        prompt_details = data.get("prompt_tokens_details") or {}
        completion_details = data.get("completion_tokens_details") or {}
        cost = data.get("cost")
        prompt = _int(data.get("prompt_tokens"))
        completion = _int(data.get("completion_tokens"))
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=_int(data.get("total_tokens")) or prompt + completion,
            cached_tokens=_int(prompt_details.get("cached_tokens")) if isinstance(prompt_details, dict) else 0,
            reasoning_tokens=(
                _int(completion_details.get("reasoning_tokens")) if isinstance(completion_details, dict) else 0
            ),
            cost=finite(cost, high=MAX_COST, strings=False),
        )

    def __add__(self, other: Usage) -> Usage:
        cost: float | None
        if self.cost is None and other.cost is None:
            cost = None
        else:
            cost = (self.cost or 0.0) + (other.cost or 0.0)
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            cost=cost,
        )


class Outcome(enum.StrEnum):
    """How one attempt on one model ended."""

    OK = "ok"
    SKIPPED = "skipped"  # not sent: cooling down, or excluded by an earlier decision
    HTTP_ERROR = "http_error"
    STREAM_ERROR = "stream_error"  # in-stream error event (HTTP 200)
    FIRST_TOKEN_TIMEOUT = "first_token_timeout"
    STALL = "stall"
    CONNECTION_ERROR = "connection_error"
    BAD_RESPONSE = "bad_response"
    CANCELLED = "cancelled"


@dataclass(slots=True)
class Attempt:
    """The record of one model tried for one request."""

    target: Target
    outcome: Outcome
    status: int | None = None
    error: str | None = None
    error_type: str | None = None
    retry_after: float | None = None
    latency: float = 0.0  # seconds from send to end of attempt
    ttft: float | None = None  # seconds from send to first content token
    served_model: str | None = None
    usage: Usage | None = None
    emitted_text: bool = False
    started: float = 0.0  # wall-clock time (time.time) the request was sent; 0 if never sent
    hedge: bool = False  # sent beside a slow model that had no first token yet
    continuation: bool = False  # sent to continue a reply another model broke off

    @property
    def model(self) -> str:
        return self.target.label

    def describe(self) -> str:
        """A one-line human summary, e.g. ``openai/gpt-4o-mini: http_error 429 (rate limited)``."""
        parts = [f"{self.model}: {self.outcome.value}"]
        if self.status is not None:
            parts.append(str(self.status))
        if self.error:
            parts.append(f"({self.error})")
        return " ".join(parts)


@dataclass(slots=True)
class StreamChunk:
    """One piece of a streamed reply.

    ``text`` is a delta to append. ``tool_calls`` only ever holds complete calls (they arrive
    on the final chunk). ``model`` is the model that served this chunk; ``usage`` is set on the
    final chunk and totals every attempt of the request. ``broke`` marks a chunk without text, sent
    the moment ``model`` failed after some text: the next model continues after it (a speaking
    consumer can say the words it holds now rather than wait for the rest of their sentence).
    """

    text: str = ""
    model: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    broke: bool = False


@dataclass(slots=True)
class Completion:
    """A whole reply: what :meth:`FallbackRouter.complete` returns (and a stream's ``result``).

    >>> reply.text, reply.model, reply.usage.cost, [a.describe() for a in reply.attempts]  # doctest: +SKIP
    """

    text: str
    model: str
    tool_calls: list[ToolCall]
    usage: Usage
    attempts: list[Attempt]
    finish_reason: str | None = None
    id: str | None = None

    @property
    def fell_back(self) -> bool:
        """True when the reply did not come from the head of the chain on its first try."""
        return any(a.outcome is not Outcome.OK for a in self.attempts)

    @property
    def fallback_reason(self) -> str | None:
        """Why earlier models did not serve, e.g. ``"openai/gpt-4o-mini: http_error 429"``; None if none failed."""
        failed = [a.describe() for a in self.attempts if a.outcome is not Outcome.OK]
        return "; ".join(failed) or None
