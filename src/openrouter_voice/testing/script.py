"""What the scripted upstream does per request (:class:`Script`), how it encodes a stream
(:class:`StreamChunks`), what it received (:class:`RecordedRequest`), and the catalog it serves by default.

>>> Script(text="Hello there!").tokens()
['Hello', ' there!']
>>> sorted(m["id"] for m in default_catalog())[:2]
['anthropic/claude-3.5-haiku', 'anthropic/claude-haiku-4.5']
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

KEEPALIVE = b": OPENROUTER PROCESSING\n\n"


@dataclass
class Script:
    """How the server answers one request for a model.

    Timing: ``ttft`` seconds before the first token, then ``tokens_per_second``. Failures:
    ``status`` (HTTP error, with ``retry_after`` and ``error_body``; ``error_body_drip`` sends the headers
    at once and then the body one byte every that many seconds), ``hang`` (accept and never
    answer), ``keepalive_only`` (send keep-alive comments forever), ``error_after_tokens`` (in-stream
    error event with ``error_code``), ``stall_after_tokens`` (stop sending, keep the connection open),
    ``drop_after_tokens`` (close the connection abruptly), ``dribble_after_tokens`` (from then on one
    token every ``dribble_interval`` seconds: alive, but slower than speech). ``raw_events`` sends
    exactly those SSE data payloads (for malformed-input tests). ``tool_calls`` are (name, arguments)
    pairs streamed in pieces.
    """

    text: str = "Hello! How can I help you today?"
    ttft: float = 0.0
    tokens_per_second: float = 0.0  # 0 = as fast as possible
    status: int | None = None
    retry_after: float | str | None = None
    error_body: Any = None
    error_body_drip: float | None = None
    error_code: int | str = 502
    error_message: str = "Provider returned error"
    error_type: str | None = None
    hang: bool = False
    keepalive_only: bool = False
    keepalive_interval: float = 0.2
    error_after_tokens: int | None = None
    stall_after_tokens: int | None = None
    drop_after_tokens: int | None = None
    dribble_after_tokens: int | None = None
    dribble_interval: float = 0.7
    tool_calls: Sequence[tuple[str, dict[str, Any] | str]] = ()
    usage: dict[str, Any] | None = None
    served_model: str | None = None
    finish_reason: str | None = "stop"
    send_done: bool = True
    raw_events: Sequence[str] | None = None
    keepalive_before_first_token: bool = True

    def tokens(self) -> list[str]:
        """Split ``text`` into word-sized tokens that concatenate back to it."""
        return re.findall(r"\s*\S+|\s+", self.text) if self.text else []


ScriptSource = Script | Sequence[Script] | Callable[[dict[str, Any]], Script]


@dataclass
class RecordedRequest:
    """What the server received."""

    model: str
    body: dict[str, Any]
    headers: dict[str, str]
    path: str
    received_at: float = field(default_factory=time.monotonic)

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self.body.get("messages")
        return messages if isinstance(messages, list) else []


@dataclass(frozen=True)
class StreamChunks:
    """Encodes one streamed generation's SSE events, each with its id, creation time and served model.

    >>> chunk = StreamChunks("gen-1", "openai/gpt-4o-mini", 1_750_000_000)
    >>> chunk({"content": "Hi"})[:60]
    b'data: {"id":"gen-1","object":"chat.completion.chunk","create'
    >>> chunk.usage({"total_tokens": 3}).endswith(b'"choices": [], "usage": {"total_tokens": 3}}\\n\\n')
    True
    """

    gen_id: str
    served: str
    created: int

    def __call__(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        payload: dict[str, Any] = {
            "id": self.gen_id, "object": "chat.completion.chunk", "created": self.created, "model": self.served,
            "provider": "Scripted",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        payload.update(extra)
        return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"

    def usage(self, usage: dict[str, Any]) -> bytes:
        """The last event: no choices, the generation's usage."""
        return b"data: " + json.dumps({
            "id": self.gen_id, "object": "chat.completion.chunk", "created": self.created, "model": self.served,
            "choices": [], "usage": usage,
        }).encode() + b"\n\n"


def usage_payload(script: Script, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
        "cost": round(prompt_tokens * 1e-7 + completion_tokens * 4e-7, 10),
    }
    if script.usage:
        usage.update(script.usage)
        if "total_tokens" not in script.usage:
            usage["total_tokens"] = int(usage["prompt_tokens"]) + int(usage["completion_tokens"])
    return usage


def default_catalog() -> list[dict[str, Any]]:
    """A small catalog in OpenRouter's ``/api/v1/models`` shape (ids that exist on OpenRouter in 2026)."""

    def model(model_id: str, name: str, prompt: str, completion: str, context: int,
              tools: bool = True, expiration: str | None = None) -> dict[str, Any]:
        params = ["max_tokens", "temperature", "stop"] + (["tools", "tool_choice"] if tools else [])
        return {
            "id": model_id, "canonical_slug": model_id, "name": name, "created": 1_750_000_000,
            "description": name, "context_length": context,
            "architecture": {"modality": "text->text", "input_modalities": ["text"], "output_modalities": ["text"]},
            "pricing": {"prompt": prompt, "completion": completion},
            "top_provider": {"context_length": context, "max_completion_tokens": 16384, "is_moderated": False},
            "supported_parameters": params, "expiration_date": expiration,
        }

    return [
        model("google/gemini-2.5-flash-lite", "Google: Gemini 2.5 Flash Lite", "0.0000001", "0.0000004", 1048576),
        model("google/gemini-2.5-flash", "Google: Gemini 2.5 Flash", "0.0000003", "0.0000025", 1048576),
        model("openai/gpt-4o-mini", "OpenAI: GPT-4o-mini", "0.00000015", "0.0000006", 128000,
              expiration="2027-01-14"),
        model("openai/gpt-4.1-mini", "OpenAI: GPT-4.1 Mini", "0.0000004", "0.0000016", 1047576),
        model("anthropic/claude-3.5-haiku", "Anthropic: Claude 3.5 Haiku", "0.0000008", "0.000004", 200000),
        model("anthropic/claude-haiku-4.5", "Anthropic: Claude Haiku 4.5", "0.000001", "0.000005", 200000),
        model("meta-llama/llama-3.1-8b-instruct", "Meta: Llama 3.1 8B Instruct", "0.00000002", "0.00000003",
              131072),
        model("mistralai/mistral-7b-instruct", "Mistral: Mistral 7B Instruct", "0.000000028", "0.000000054",
              32768, tools=False),
        model("meta-llama/llama-3.3-70b-instruct:free", "Meta: Llama 3.3 70B Instruct (free)", "0", "0", 131072),
    ]
