"""Suspected hangs, shared through Redis apart from the circuits: a short-lived mark per model.

When a hedge beats a model that has given no first token past its hedge delay, its process marks it
suspect (:meth:`~openrouter_voice.router.health.HealthTracker.suspect`); every process then tries it
after the healthy models until the pending request is judged. The mark is one script: the key
``{prefix}:suspect:{model}`` (JSON text) set with a Redis expiry at the mark's hard expiry, so a
crashed process cannot leave it behind, and published on the events channel with ``"kind":
"suspect"`` (``until`` 0: cleared), which the store's listener applies within milliseconds. A message
on the channel is trusted no more than any other (:func:`parse_suspect`).

>>> raw = payload("a/x", "no first token after 0.80s", 1700000002.0, 1699999999.2)
>>> parse_suspect(raw, now=1700000000.0)
('a/x', 'no first token after 0.80s', 1700000002.0, 1699999999.2)
>>> parse_suspect('{"model": "a/x", "failures": 1, "version": 3}', now=0.0) is None  # a circuit state
True
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..router.health import HealthTracker
from .messages import MAX_MESSAGE, MAX_MODEL, MAX_REASON, MessageError

MAX_SUSPECT = 30.0
"""Seconds: the longest a mark may last (a message asking for longer is clamped: hostile or a bad clock)."""

# KEYS: the suspect key. ARGV: payload, time to live in ms ('0': clear), channel.
SCRIPT = r"""
local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'string' and t ~= 'none' then redis.call('DEL', KEYS[1]) end
if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
"""


Mark = tuple[str, str | None, float, float]
"""(model, reason, until, since): wall-clock seconds, ``until`` 0 for a cleared mark."""


def payload(model: str, reason: str | None, until: float, since: float) -> str:
    """The published text of a mark (``until`` 0: the mark is cleared; ``since``: when the silent request
    was sent, so a request sent later that speaks ends the mark)."""
    return json.dumps({"kind": "suspect", "model": model, "reason": (reason or "")[:MAX_REASON], "until": until,
                       "since": since})


def script_args(model: str, reason: str | None, until: float, since: float, *, now: float,
                channel: str) -> list[str]:
    """:data:`SCRIPT`'s arguments: the mark expires in Redis when it does here (at least 1 ms: 0 clears).

    >>> script_args("m", None, 0.0, 0.0, now=5.0, channel="c")[1:]
    ['0', 'c']
    """
    ttl = 0 if not until else max(1, math.ceil(min(until - now, MAX_SUSPECT) * 1000))
    return [payload(model, reason, until, since), str(ttl), channel]


def parse_suspect(raw: Any, *, now: float) -> Mark | None:
    """A channel message -> :data:`Mark` if it is a suspect mark, None if it is something else (a circuit
    state); :class:`MessageError` for a malformed mark."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str) or '"suspect"' not in raw or len(raw) > MAX_MESSAGE:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None  # parse_state names the problem
    if not isinstance(data, dict) or data.get("kind") != "suspect":
        return None
    model, reason = data.get("model"), data.get("reason")
    until, since = _time(data, "until"), _time(data, "since")
    if not isinstance(model, str) or not 0 < len(model) <= MAX_MODEL or not model.isprintable():
        raise MessageError("suspect mark: no valid model id")
    if reason is not None and not isinstance(reason, str):
        raise MessageError("suspect mark: reason is not text")
    return model, (reason or None) and reason[:MAX_REASON], min(until, now + MAX_SUSPECT) if until else 0.0, since


def _time(data: dict[str, Any], field: str) -> float:
    value = data.get(field, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise MessageError(f"suspect mark: {field} {value!r} is not a time")
    return float(value)


def apply(tracker: HealthTracker | None, mark: Mark) -> None:
    """Take a parsed mark as ``tracker``'s local copy."""
    if tracker is not None:
        model, reason, until, since = mark
        tracker.apply_suspect(model, reason=reason, until=until, since=since)


def apply_stored(tracker: HealthTracker | None, model: str, raw: Any, *, now: float) -> None:
    """Take a live mark read from ``model``'s key (None: it has none) under that model id: how a process that
    started or reconnected after the mark was published learns it. Expired marks are gone from Redis, and
    ended ones were deleted with their clearing message; :class:`MessageError` for a malformed one.

    >>> import time
    >>> from openrouter_voice.router.health import HealthTracker
    >>> tracker, now = HealthTracker(), time.time()
    >>> apply_stored(tracker, "a/x", payload("a/x", "no first token", now + 5, now - 1), now=now)
    >>> tracker.is_suspect("a/x"), tracker.is_suspect("b/y")
    (True, False)
    """
    found = parse_suspect(raw, now=now) if raw is not None else None
    if found is not None and found[2] > now:
        apply(tracker, (model, *found[1:]))
