"""Model health shared by every process of a deployment (outside the router, which stays store-free).

With ``OPENROUTER_VOICE_REDIS_URL`` set, :func:`health_for` gives every router built from settings in
this process one :class:`~openrouter_voice.router.HealthTracker` shared through Redis or Valkey
(:class:`.store.RedisHealthStore`); without it, None (the router keeps its own in-process tracker).

>>> from openrouter_voice.config import load_settings
>>> health_for(load_settings(redis_url=None)) is None
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..router.health import HealthTracker
from .store import RedisHealthStore

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["RedisHealthStore", "aclose_all", "health_for", "store_of"]

_shared: dict[tuple[str, str], RedisHealthStore] = {}


def health_for(settings: Settings) -> HealthTracker | None:
    """This process's tracker shared through the configured Redis (one per URL and prefix), or None."""
    if settings.redis_url is None:
        return None
    url, prefix = settings.redis_url.get_secret_value(), settings.redis_prefix
    store = _shared.get((url, prefix))
    if store is None or store.tracker is None:
        store = _shared[(url, prefix)] = RedisHealthStore(url, prefix=prefix)
        store.attach(HealthTracker())
    else:
        store.attach(store.tracker)  # starts it on this event loop if it is not running yet
    assert store.tracker is not None
    return store.tracker


def store_of(tracker: HealthTracker) -> RedisHealthStore | None:
    """The Redis store ``tracker`` shares through, if any."""
    return tracker.sink if isinstance(tracker.sink, RedisHealthStore) else None


async def aclose_all() -> None:
    """Close every shared store of this process (at exit, or between tests)."""
    stores = list(_shared.values())
    _shared.clear()
    for store in stores:
        await store.aclose()
