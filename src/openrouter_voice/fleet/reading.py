"""Reading the fleet's shared state from Redis in one round trip (the store's backstop, the health view).

>>> samples([b"0.3", b"nan", b"-1", b"junk", "0.25"])
[0.3, 0.25]
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..router.latency import ModelLatency

MAX_MODELS = 256


async def members(client: aioredis.Redis, key: str) -> list[str]:
    """The model ids the fleet knows (sorted, at most :data:`MAX_MODELS`); none if ``key`` is not a set."""
    try:
        raw = await client.smembers(key)  # type: ignore[misc]
    except RedisError as exc:
        if "WRONGTYPE" in str(exc):
            return []
        raise
    return sorted(m.decode("utf-8", "replace") if isinstance(m, bytes) else str(m) for m in raw)[:MAX_MODELS]


async def read_models(client: aioredis.Redis, key: Callable[[str, str], str], models: list[str], *,
                      latency: bool) -> list[tuple[str, Any, Any, list[float], list[float], list[float]]]:
    """Per model: its hash (or the error reading it), its suspect mark (None if it has none), and with
    ``latency`` its TTFT, gap and first-sentence samples."""
    async with client.pipeline(transaction=False) as pipe:
        for model in models:
            pipe.hgetall(key("m", model))
            pipe.get(key("suspect", model))
            if latency:
                pipe.lrange(key("ttft", model), 0, -1)
                pipe.lrange(key("gap", model), 0, -1)
                pipe.lrange(key("sentence", model), 0, -1)
        replies = await pipe.execute(raise_on_error=False)
    step = 5 if latency else 2
    return [(model, replies[i * step], replies[i * step + 1],
             *([samples(replies[i * step + k]) for k in (2, 3, 4)] if latency else [[], [], []]))
            for i, model in enumerate(models)]


def samples(raw: Any) -> list[float]:
    """Latency samples from a Redis list: finite, non-negative numbers only (anything else is dropped)."""
    values = []
    for item in raw if isinstance(raw, list) else []:
        try:
            value = float(item)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value) and value >= 0:
            values.append(value)
    return values


async def epoch(client: aioredis.Redis, key: str) -> str:
    """A random mark this Redis keeps while it keeps our data: a new one means it lost everything
    (restarted without persistence, or flushed). Portable where INFO is restricted (managed servers)."""
    mark = await client.get(key)
    if mark is None:
        await client.set(key, uuid.uuid4().hex, nx=True)
        mark = await client.get(key)
    return mark.decode("ascii", "replace") if isinstance(mark, bytes) else str(mark)


def keep_samples(ring: ModelLatency, ttft: list[float], gap: list[float], sentence: list[float]) -> None:
    """Replace a model's local latency samples with the fleet's (a kind the fleet has none of is kept)."""
    for kept, fresh in ((ring.ttft, ttft), (ring.gap, gap), (ring.sentence, sentence)):
        if fresh:
            kept.replace(fresh)
