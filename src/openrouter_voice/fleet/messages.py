"""Reading health states that come from Redis, trusting nothing: a message on the channel or a hash
may have been written by anything that can reach the server.

>>> model, state, healed = parse_state('{"model": "a/x", "failures": 2, "open_until": 1700000030.5, '
...                                    '"failed_at": 1700000000.5, "reason": "429", "version": 4}')
>>> model, state.failures, state.open_until, state.version, healed
('a/x', 2, 1700000030.5, 4, False)
>>> parse_state('{"model": "a/x", "failures": "lots"}')
Traceback (most recent call last):
...
openrouter_voice.fleet.messages.MessageError: failures: 'lots' is not a number
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from ..router.sharing import SharedState

MAX_MESSAGE = 4096
MAX_MODEL = 300
MAX_REASON = 300


class MessageError(ValueError):
    """A health state from Redis that is not one (malformed, hostile, or from another program)."""


def parse_state(raw: Any) -> tuple[str, SharedState, bool]:
    """A published or returned state (JSON text) -> (model, state, whether a wrong-typed key was replaced)."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str) or len(raw) > MAX_MESSAGE:
        raise MessageError("not a short JSON text")
    try:
        data = json.loads(raw)
    except ValueError:
        raise MessageError("not JSON") from None
    if not isinstance(data, dict):
        raise MessageError("not a JSON object")
    model = data.get("model")
    if not isinstance(model, str) or not 0 < len(model) <= MAX_MODEL or not model.isprintable():
        raise MessageError("no valid model id")
    return model, state_from_mapping(data), _number(data, "healed") == 1


def state_from_mapping(data: Mapping[str, Any]) -> SharedState:
    """Fields (numbers, or numbers as text as Redis keeps them) -> :class:`SharedState`."""
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise MessageError("reason: not text")
    return SharedState(
        failures=int(_number(data, "failures")), open_until=_number(data, "open_until"),
        failed_at=_number(data, "failed_at"), reason=(reason or None) and reason[:MAX_REASON],
        told_until=_number(data, "told_until"), successes=int(_number(data, "successes")),
        total_failures=int(_number(data, "total_failures")), tool_less=_number(data, "tool_less") == 1,
        version=int(_number(data, "version")))


def _number(data: Mapping[str, Any], field: str) -> float:
    value = data.get(field, 0)
    if isinstance(value, bool):
        raise MessageError(f"{field}: {value!r} is not a number")
    try:
        number = float(value if value not in (None, "") else 0)
    except (TypeError, ValueError):
        raise MessageError(f"{field}: {value!r} is not a number") from None
    if not math.isfinite(number) or number < 0 or number > 1e12:
        raise MessageError(f"{field}: {value!r} is out of range")
    return number


def parse_fields(fields: Any) -> SharedState:
    """A model's hash as read from Redis (bytes or text) -> :class:`SharedState`; :class:`MessageError`
    for anything that is not numbers where numbers belong.

    >>> parse_fields({b"failures": b"1", b"open_until": b"1700000030.5", b"version": b"3"}).open_until
    1700000030.5
    """
    if not isinstance(fields, dict):
        raise MessageError("not a hash")
    decoded = {(k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)):
               (v.decode("utf-8", "replace") if isinstance(v, bytes) else v) for k, v in fields.items()}
    return state_from_mapping(decoded)
