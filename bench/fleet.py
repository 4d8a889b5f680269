"""Fleet health figures: ``python -m bench.fleet [--transitions N] [--turns N]`` from the repo root.

Against a real ``redis-server`` on 127.0.0.1 (started here) and the scripted upstream:

1. propagation: a verdict taken in this process, applied in another process's local copy (wall clock,
   same machine), p50 / p99 over alternating failures and recoveries;
2. the hot path: what the sink adds to one verdict (it only queues), against the tracker alone;
3. a turn never waits on Redis: turn latency through a router from settings with Redis up, then
   with Redis killed, against the same upstream in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing as mp
import statistics
import time
from multiprocessing.connection import Connection

from openrouter_voice.config import Settings
from openrouter_voice.fleet import RedisHealthStore, aclose_all
from openrouter_voice.router import FallbackRouter, HealthTracker
from openrouter_voice.testing import Script, ScriptedUpstream
from openrouter_voice.testing.redis_server import RedisServer

PREFIX = "bench-fleet"


def _follower(url: str, pipe: Connection) -> None:
    """The other process: report the wall-clock time at which each new verdict reached its copy."""

    async def follow() -> None:
        store = RedisHealthStore(url, prefix=PREFIX)
        tracker = HealthTracker()
        store.attach(tracker)
        assert await store.wait_synced(30.0)
        pipe.send("ready")
        for expected in itertools.count(1):
            if not await store.wait_for(lambda want=expected % 2: tracker.shared_view("m").failures == want, 10.0):
                break
            pipe.send(time.time())
        await store.aclose()

    asyncio.run(follow())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def propagation(url: str, transitions: int) -> list[float]:
    parent, child = mp.Pipe()
    process = mp.get_context("spawn").Process(target=_follower, args=(url, child), daemon=True)
    process.start()
    loop = asyncio.get_running_loop()
    if not await loop.run_in_executor(None, parent.poll, 60.0):
        raise RuntimeError("the follower process did not start within 60 s")
    parent.recv()
    store = RedisHealthStore(url, prefix=PREFIX)
    tracker = HealthTracker(base_cooldown=60, max_cooldown=60)
    store.attach(tracker)
    assert await store.wait_synced(30.0)
    delays = []
    for i in range(transitions):
        started = time.time()
        if i % 2 == 0:
            tracker.record_failure("m", reason="bench")
        else:
            tracker.record_success("m", sent=tracker.now())
        if not await loop.run_in_executor(None, parent.poll, 10.0):
            raise RuntimeError(f"transition {i} never reached the other process")
        delays.append(parent.recv() - started)
    await store.aclose()
    process.join(15)
    return delays


def hot_path(url: str, rounds: int = 2000) -> tuple[float, float]:
    """Microseconds a turn spends on one failure verdict plus one success (the recovery), without and
    with the Redis sink attached; Redis is given time to take each pair between rounds, as between turns."""

    async def measure(shared: bool) -> float:
        tracker = HealthTracker()
        store = RedisHealthStore(url, prefix=PREFIX + "-hot") if shared else None
        if store is not None:
            store.attach(tracker)
            await store.wait_synced(30.0)
        spent = 0.0
        for _ in range(rounds):
            started = time.perf_counter()
            tracker.record_failure("hot", reason="bench")
            tracker.record_success("hot")
            spent += time.perf_counter() - started
            if store is not None:
                await store.flush(10.0)
        if store is not None:
            await store.aclose()
        return spent / rounds * 1e6

    return asyncio.run(measure(False)), asyncio.run(measure(True))


async def restart(server: RedisServer, rounds: int = 5) -> list[float]:
    """Seconds from a restarted (emptied) Redis accepting connections to holding the open circuit again."""
    import redis.asyncio as aioredis

    store = RedisHealthStore(server.url, prefix=PREFIX + "-restart")
    tracker = HealthTracker()
    store.attach(tracker)
    assert await store.wait_synced(30.0)
    tracker.record_failure("m", reason="bench", retry_after=600)
    assert await store.flush(10.0)
    back = []
    for _ in range(rounds):
        server.kill()
        assert await store.wait_for(lambda: not store.online, 10.0)
        server.start()
        started = time.perf_counter()
        client = aioredis.Redis.from_url(server.url)
        try:
            # A benchmark's 5 ms probe of what a new process would read (the store itself is not asked).
            while not await client.hexists(store.key("m", "m"), "failures"):  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        finally:
            await client.aclose()
        back.append(time.perf_counter() - started)
    await store.aclose()
    return back


async def turns(server: RedisServer, upstream: ScriptedUpstream, count: int) -> tuple[list[float], list[float]]:
    settings = Settings(_env_file=None, openrouter_api_key="sk-or-v1-bench0123456789", local_fallback=False,  # type: ignore[call-arg]
                        openrouter_base_url=upstream.base_url, redis_url=server.url, redis_prefix=PREFIX + "-turns")
    router = FallbackRouter.from_settings(settings, ["a/x", "b/y"], hedge_after=None)
    up: list[float] = []
    down: list[float] = []
    try:
        # Alternating blocks, so that load from elsewhere on the machine falls on both alike.
        for block in range(8):
            sink = up if block % 2 == 0 else down
            if sink is down:
                server.kill()
            elif block:
                server.start()
            for _ in range(count // 4):
                started = time.perf_counter()
                await router.complete([{"role": "user", "content": "Hi"}])
                sink.append(time.perf_counter() - started)
    finally:
        await router.aclose()
        await aclose_all()
    return up, down


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transitions", type=int, default=200)
    parser.add_argument("--turns", type=int, default=200)
    args = parser.parse_args()
    with RedisServer() as server:
        delays = asyncio.run(propagation(server.url, args.transitions))
        back = asyncio.run(restart(server))
        bare, shared = hot_path(server.url)
        with ScriptedUpstream() as upstream:
            upstream.script("a/x", Script(text="Fine."))
            up, down = asyncio.run(turns(server, upstream, args.turns))
    ms = [d * 1000 for d in delays]
    print(f"propagation across processes, {len(ms)} transitions: p50 {percentile(ms, 0.5):.2f} ms, "
          f"p99 {percentile(ms, 0.99):.2f} ms, max {max(ms):.2f} ms")
    print(f"state back in a restarted Redis: {', '.join(f'{b * 1000:.0f}' for b in back)} ms")
    print(f"one failure + one success on the hot path: {bare:.1f} us alone, {shared:.1f} us with the Redis sink "
          f"(+{shared - bare:.1f} us; the Redis work runs off the turn's path)")
    print(f"turn latency with Redis up: p50 {statistics.median(up) * 1000:.2f} ms; with Redis killed: "
          f"p50 {statistics.median(down) * 1000:.2f} ms (ratio {statistics.median(down) / statistics.median(up):.2f})")


if __name__ == "__main__":
    main()
