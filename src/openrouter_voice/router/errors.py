"""Typed errors and the per-error decision table.

Every message here is built from status codes and upstream error text that went through
:func:`openrouter_voice.redact.redact`, so an API key never ends up in an exception.
"""

from __future__ import annotations

import email.utils
import enum
import time
from dataclasses import dataclass
from typing import Any

from ..redact import redact
from .types import Attempt


class RouterError(Exception):
    """Base class of every error the router raises."""


class ConfigurationError(RouterError):
    """The router was built with values that cannot work (no models, bad URL, bad timeout...)."""


class AuthenticationError(RouterError):
    """The API key was rejected (HTTP 401). Retrying other models with the same key cannot help."""

    def __init__(self, message: str, attempts: list[Attempt] | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts or []


class InsufficientCreditsError(RouterError):
    """The account is out of credits (HTTP 402) and no free model in the chain could answer."""

    def __init__(self, message: str, attempts: list[Attempt] | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts or []


class BadRequestError(RouterError):
    """The request itself is malformed (HTTP 400/422): every model would reject it the same way."""

    def __init__(self, message: str, attempts: list[Attempt] | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts or []


class AllModelsFailedError(RouterError):
    """No model in the chain produced a reply. ``attempts`` holds what happened on each."""

    def __init__(self, attempts: list[Attempt], *, partial_text: str = "") -> None:
        self.attempts = attempts
        self.partial_text = partial_text
        tried = "; ".join(a.describe() for a in attempts) or "no model was available"
        super().__init__(f"all models failed: {tried}")


class Action(enum.Enum):
    """What the router does after an error."""

    NEXT = "next"  # try the next model; this model is healthy (the error was about the request)
    COOLDOWN = "cooldown"  # try the next model; this one cools down (Retry-After when given)
    EXCLUDE = "exclude"  # try the next model; keep this one out for a long time (404, retired)
    NO_TOOLS = "no_tools"  # try the next model; this one is healthy but cannot take tools (send it none)
    SKIP_PAID = "skip_paid"  # out of credits: only ``:free`` models on the same endpoint may still answer
    FAIL_ENDPOINT = "fail_endpoint"  # bad key: nothing more on this endpoint can work
    RAISE = "raise"  # the request is bad for every model: stop and tell the caller


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A parsed upstream error and the router's decision about it."""

    status: int | None
    message: str
    action: Action
    code: str | None = None
    error_type: str | None = None
    retry_after: float | None = None


_LONG_EXCLUDE_CODES = {"model_not_found", "model_deprecated", "free_variant_ended"}
_REQUEST_PROBLEM_TYPES = {"context_length_exceeded", "content_policy_violation", "refusal"}
_TRANSIENT_TYPES = {"rate_limit_exceeded", "provider_overloaded", "provider_unavailable", "timeout", "server"}


MAX_RETRY_AFTER = 3600.0
"""The longest wait an upstream can ask for (the router's own exclusion hour); longer is clamped."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), clamped into
    [0, :data:`MAX_RETRY_AFTER`]; None if absent or unreadable.

    >>> parse_retry_after("7"), parse_retry_after("1e999"), parse_retry_after("-5"), parse_retry_after("NaN")
    (7.0, 3600.0, 0.0, None)
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            seconds = when.timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return _clamp_wait(seconds)


def _clamp_wait(seconds: float) -> float | None:
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _as_float(value: Any) -> float | None:
    """A ``retry_after`` from an error body: a JSON number (any size, even ``1e999``) or a string."""
    if isinstance(value, str):
        return parse_retry_after(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return _clamp_wait(float(value))
    except OverflowError:  # an integer too big for a float: "very long"
        return MAX_RETRY_AFTER if value > 0 else 0.0


def classify(
    status: int | None,
    payload: Any,
    *,
    retry_after_header: str | None = None,
    in_stream: bool = False,
) -> ErrorInfo:
    """Decide what to do with an upstream error.

    ``payload`` is the decoded JSON body (or SSE chunk) if any; OpenRouter puts its error under
    ``error`` with ``code``, ``message`` and ``metadata`` and sometimes ``availability``.

    >>> classify(429, {"error": {"code": 429, "message": "slow down"}}, retry_after_header="7").retry_after
    7.0
    """
    err: dict[str, Any] = {}
    if isinstance(payload, dict):
        raw = payload.get("error")
        if isinstance(raw, dict):
            err = raw
        elif isinstance(raw, str):
            err = {"message": raw}
    message = redact(str(err.get("message") or "")).strip()[:500]
    code_raw = err.get("code")
    code = str(code_raw) if code_raw is not None else None
    metadata = err.get("metadata") if isinstance(err.get("metadata"), dict) else {}
    assert isinstance(metadata, dict)
    error_type = metadata.get("error_type") if isinstance(metadata.get("error_type"), str) else None
    availability = err.get("availability") if isinstance(err.get("availability"), dict) else {}
    if not availability and isinstance(payload, dict) and isinstance(payload.get("availability"), dict):
        availability = payload["availability"]
    assert isinstance(availability, dict)

    # In-stream errors carry the HTTP-like code in error.code (int or string such as "429").
    effective = status
    if in_stream or status is None or status == 200:
        try:
            effective = int(code) if code is not None else None
        except ValueError:
            effective = None

    retry_after = parse_retry_after(retry_after_header)
    if retry_after is None:
        retry_after = _as_float(availability.get("retry_after"))
    if retry_after is None:
        retry_after = _as_float(metadata.get("retry_after"))

    avail_code = availability.get("code") if isinstance(availability.get("code"), str) else None
    if not message:
        message = _default_message(effective)

    def info(action: Action) -> ErrorInfo:
        return ErrorInfo(effective, message, action, code=avail_code or code, error_type=error_type,
                         retry_after=retry_after)

    if error_type == "authentication" or effective == 401:
        return info(Action.FAIL_ENDPOINT)
    if error_type == "payment_required" or effective == 402:
        return info(Action.SKIP_PAID)
    if effective == 404 and "tool use" in message.lower():
        # "No endpoints found that support tool use": the model exists, only not with tools.
        return info(Action.NO_TOOLS)
    if avail_code in _LONG_EXCLUDE_CODES or effective == 404:
        return info(Action.EXCLUDE)
    if error_type in _REQUEST_PROBLEM_TYPES or effective in (403, 413):
        # Another model may accept it (bigger context, other moderation); this one is healthy.
        return info(Action.NEXT)
    if error_type in _TRANSIENT_TYPES or availability.get("retryable") is True:
        return info(Action.COOLDOWN)
    if effective in (400, 422) and not in_stream:
        return info(Action.RAISE)
    # 408, 429, 5xx, 524, 529, unknown in-stream failures: the model (or its provider) is unwell now.
    return info(Action.COOLDOWN)


def _default_message(status: int | None) -> str:
    return {
        400: "bad request",
        401: "invalid API key",
        402: "insufficient credits",
        403: "request flagged by moderation",
        404: "model not found",
        408: "upstream timeout",
        413: "request too large",
        422: "unprocessable request",
        429: "rate limited",
        500: "upstream server error",
        502: "provider error",
        503: "no provider available",
        524: "provider timeout",
        529: "provider overloaded",
    }.get(status or 0, "upstream error")
