"""A real redis-server per test module (no mocks), and stores closed after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from openrouter_voice.fleet import RedisHealthStore, aclose_all
from openrouter_voice.router import HealthTracker
from openrouter_voice.testing.redis_server import RedisServer, RedisServerMissing


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
    except RedisServerMissing as exc:  # never skipped silently: CI installs it
        pytest.fail(str(exc), pytrace=False)
    with server:
        yield server


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix of its own per test: tests sharing one server never see each other's health."""
    return "t-" + request.node.name[:40]


@pytest.fixture
async def make_store(redis_server: RedisServer, prefix: str) -> AsyncIterator[Callable[..., RedisHealthStore]]:
    stores: list[RedisHealthStore] = []

    def make(**kwargs: object) -> RedisHealthStore:
        store = RedisHealthStore(redis_server.url, prefix=prefix, **kwargs)  # type: ignore[arg-type]
        store.attach(HealthTracker())
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.aclose()
    await aclose_all()
