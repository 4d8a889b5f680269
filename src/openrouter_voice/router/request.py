"""What one attempt sends: the request body for a target and its headers.

>>> from openrouter_voice.router.types import Target
>>> local = Target("gemma", "local", "http://127.0.0.1:8080/v1")
>>> body = request_body(local, [{"role": "user", "content": "Hi"}], {"tools": [{}], "provider": {}},
...                     partial="", with_tools=False, options={"temperature": 0.3})
>>> sorted(body)
['messages', 'model', 'stream', 'stream_options', 'temperature']
>>> headers_for(Target("openai/gpt-4o-mini", "openrouter", "https://x", "sk-or-1"), app_name="demo", app_url=None)
{'Accept': 'text/event-stream', 'Authorization': 'Bearer sk-or-1', 'X-Title': 'demo', 'X-OpenRouter-Title': 'demo'}
"""

from __future__ import annotations

import json
from typing import Any

from .continuation import continuation_messages
from .defaults import OPENROUTER
from .errors import BadRequestError, ConfigurationError
from .types import Message, Target

# OpenRouter-only fields: other servers would reject or misread them.
_OPENROUTER_ONLY = ("models", "provider", "transforms", "plugins", "route", "session_id")
_TOOL_FIELDS = ("tools", "tool_choice", "parallel_tool_calls")
NO_TOOLS_INSTRUCTION = (
    "You cannot use tools or look up live information right now; if asked for live data such as the "
    "weather, say it is unavailable at the moment."
)


def request_body(target: Target, messages: list[Message], body: dict[str, Any], *, partial: str,
                 with_tools: bool, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The streaming request for ``target``: the turn's ``body`` and ``messages`` (continuing after
    ``partial`` text already spoken), tools left out unless ``with_tools``, endpoint ``options`` last.

    A turn that carried tools, sent without them, also tells the model (:data:`NO_TOOLS_INSTRUCTION`)
    that it cannot look anything up, so it says so instead of inventing live data such as weather."""
    dropped_tools = not with_tools and bool(body.get("tools"))
    if dropped_tools:
        messages = _without_tools(messages)
    request: dict[str, Any] = {
        **body,
        "model": target.model,
        "messages": continuation_messages(messages, partial) if partial else messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if not with_tools:
        for key in _TOOL_FIELDS:
            request.pop(key, None)
    if target.endpoint != OPENROUTER:
        for key in _OPENROUTER_ONLY:
            request.pop(key, None)
    request.update(options or {})
    return request


def _without_tools(messages: list[Message]) -> list[Message]:
    """``messages`` with :data:`NO_TOOLS_INSTRUCTION` added to the leading system message (or as one):
    some chat templates (Gemma's) accept a system message only first."""
    first = messages[0] if messages else None
    if first is not None and first.get("role") == "system" and isinstance(first.get("content"), str):
        return [{**first, "content": f"{first['content']}\n\n{NO_TOOLS_INSTRUCTION}"}, *messages[1:]]
    return [{"role": "system", "content": NO_TOOLS_INSTRUCTION}, *messages]


def headers_for(target: Target, *, app_name: str | None, app_url: str | None) -> dict[str, str]:
    """Headers of a request to ``target``: its key, and OpenRouter's app attribution."""
    headers = {"Accept": "text/event-stream"}
    if target.api_key:
        headers["Authorization"] = f"Bearer {target.api_key}"
    if target.endpoint == OPENROUTER:
        if app_url:
            headers["HTTP-Referer"] = app_url
        if app_name:
            headers["X-Title"] = app_name
            headers["X-OpenRouter-Title"] = app_name
    return headers


def header_safe(argument: str, value: str | None) -> str | None:
    """``value`` if it can go in an HTTP header (printable ASCII: no line break or control character);
    else :class:`ConfigurationError` naming ``argument`` (never the value: it may be a key).

    >>> header_safe("app_name", "My App")
    'My App'
    >>> header_safe("api_key (OPENROUTER_API_KEY)", "sk-or-1\\r\\nX-Injected: 1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    openrouter_voice.router.errors.ConfigurationError: api_key (OPENROUTER_API_KEY) cannot go in an HTTP header: ...
    """
    if value is not None and not (value.isascii() and value.isprintable()):
        raise ConfigurationError(f"{argument} cannot go in an HTTP header: it contains a line break, control or "
                                 "non-ASCII character. Fix: use printable ASCII on one line")
    return value


def encodable(messages: list[Message]) -> list[Message]:
    """``messages`` with text that cannot be encoded as UTF-8 (lone surrogates, e.g. from non-UTF-8
    input decoded with ``surrogateescape``) replaced by U+FFFD; only what changes is copied.

    >>> encodable([{"role": "user", "content": "caf\\udce9"}])
    [{'role': 'user', 'content': 'caf\\ufffd'}]
    """
    return [_clean(message) for message in messages]


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # Through UTF-16: a high+low pair becomes its character, a lone half becomes U+FFFD.
            return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        return value
    if isinstance(value, dict):
        cleaned = {key: _clean(item) for key, item in value.items()}
        return value if all(cleaned[key] is value[key] for key in value) else cleaned
    if isinstance(value, list):
        items = [_clean(item) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def sendable(messages: list[Message], body: dict[str, Any]) -> list[Message]:
    """:func:`encodable` ``messages``, checked by :func:`check_body` with ``body``. One encoding in C answers
    both for the usual turn (nothing to mend, all sendable): the walk :func:`encodable` does in Python
    took ~2 us of every request in the overhead benchmark (scenario 7).

    >>> sendable([{"role": "user", "content": "caf\\udce9"}], {"temperature": 0.2})
    [{'role': 'user', 'content': 'caf\\ufffd'}]
    """
    try:
        json.dumps({**body, "messages": messages}, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError):  # a lone surrogate (UnicodeEncodeError) or worse
        messages = encodable(messages)
        check_body(body, messages)
    return messages


def check_body(body: dict[str, Any], messages: list[Message]) -> None:
    """:class:`BadRequestError` at once if the turn's messages, extra fields or tools cannot be sent as
    JSON (NaN, infinity, objects JSON does not know): every model would be sent the same unsendable request."""
    try:
        json.dumps({**body, "messages": messages}, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise BadRequestError(f"the request cannot be sent as JSON ({type(exc).__name__}: {str(exc)[:200]}). "
                              "Fix: pass only finite numbers, strings, lists and dicts") from None
