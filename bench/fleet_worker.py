"""One process of scenario 9's fleet (``python -m bench.fleet_worker``; ``python -m bench`` starts 4 per system).

Driven by one JSON command a line on stdin, it answers one JSON line on stdout (plus ``{"event": "pre"}``
while sessions run). A *session* is a voice call: it builds its own system (for our router, a router from
settings, as the agent builds one per session; with a store configured its health is the process's
shared tracker), takes its turns, then closes. Times are wall clock (``time.time``): every process of
the fleet is on this machine.

Commands: ``setup`` (system, lane, store), ``warm`` (healthy turns, so deadlines are learnt), ``sessions``
(open-loop arrivals: session k starts at ``start + offset + k * every``; each says a turn, waits ``pause``
while it is spoken and its caller answers, says a second, and hangs up ``pause`` later), ``burst``
(``count`` sessions at once, two turns back to back), ``teardown``, ``quit``. With a shared system a
watcher records when this process's own view first shows the primary failed (``respected``) and the
verdict's time it saw (``failed_at``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from typing import Any, ClassVar

from .scenarios import Lane
from .systems import LiteLLMRouter, Ours, Reply, System, quiet

PER_SESSION, EMBEDDED, REDIS, LITELLM = "per-session health", "embedded store", "Redis", "LiteLLM Router + Redis"
FLEET_SYSTEMS = [PER_SESSION, EMBEDDED, REDIS, LITELLM]
WATCH_POLL = 0.005  # LiteLLM has no change notification: its cooldown list is read this often


class Shared(Ours):
    """Our router from settings with ``OPENROUTER_VOICE_REDIS_URL`` (the embedded store's or a Redis)."""

    store: ClassVar[dict[str, str]] = {}

    @staticmethod
    def app_settings(base_url: str, **extra: Any) -> Any:
        return Ours.app_settings(base_url, redis_url=Shared.store["url"], redis_prefix=Shared.store["prefix"], **extra)


class SharedLiteLLM(LiteLLMRouter):
    """A session on the process's one LiteLLM Router (an instance of its multi-instance Redis mode)."""

    router_of_process: ClassVar[Any] = None

    async def start(self, base_url: str, models: list[str]) -> None:
        self.router = self.router_of_process
        self.first = "m0"


def say(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


class Worker:
    def __init__(self) -> None:
        self.cls: type[System] = Ours
        self.system = PER_SESSION
        self.lane: Lane | None = None
        self.cap = 10.0
        self.watcher: asyncio.Task[tuple[float, float] | None] | None = None

    async def setup(self, command: dict[str, Any]) -> dict[str, Any]:
        self.system, self.cap = command["system"], float(command["cap"])
        self.lane = Lane(command["base_url"], command["lane"])
        if self.system in (EMBEDDED, REDIS):
            Shared.store = {"url": command["url"], "prefix": command["prefix"]}
            self.cls = Shared
            tracker = Shared.app_settings(self.lane.base_url).shared_health()
            from openrouter_voice.fleet import store_of

            store = store_of(tracker)
            assert store is not None
            return {"ok": await store.wait_synced(30.0)}
        if self.system == LITELLM:
            host, port = command["url"].removeprefix("redis://").split("/")[0].split(":")
            # LiteLLM's documented multi-instance mode: the instances share cooldowns through this Redis.
            SharedLiteLLM.router_of_process = LiteLLMRouter.build(self.lane.base_url, self.lane.models,
                                                                  redis_host=host, redis_port=int(port))
            self.cls = SharedLiteLLM
        else:
            self.cls = Ours
        return {"ok": True}

    async def one_session(self, tags: list[int], pause: float,
                          first_done: asyncio.Event | None = None) -> list[dict[str, Any]]:
        assert self.lane is not None
        system = self.cls()
        await system.start(self.lane.base_url, self.lane.models)
        out = []
        try:
            for tag in tags:
                started = time.time()
                out.append(turn(tag, started, await system.reply(tag, self.cap)))
                if first_done is not None:
                    first_done.set()
                    first_done = None
                await asyncio.sleep(pause)  # the reply is spoken; the caller answers, or hangs up after it
        finally:
            await system.close()
        return out

    async def sessions(self, command: dict[str, Any]) -> dict[str, Any]:
        count, every, offset, pause = (int(command["count"]), float(command["every"]), float(command["offset"]),
                                       float(command["pause"]))
        start, base = float(command["start"]), int(command["tag0"])
        self.watcher = asyncio.ensure_future(self.watch(float(command["watch_for"])))
        firsts = [asyncio.Event() for _ in range(count)]

        async def session(k: int) -> list[dict[str, Any]]:
            await asyncio.sleep(max(0.0, start + offset + k * every - time.time()))  # its caller calls in
            return await self.one_session([base + 10 * k, base + 10 * k + 1], pause, firsts[k])

        tasks = [asyncio.ensure_future(session(k)) for k in range(count)]
        await firsts[int(command["pre"]) - 1].wait()
        say({"event": "pre"})
        turns = [t for result in await asyncio.gather(*tasks) for t in result]
        return {"turns": turns, "watch": await self.stop_watch()}

    async def burst(self, command: dict[str, Any]) -> dict[str, Any]:
        base, count = int(command["tag0"]), int(command["count"])
        results = await asyncio.gather(*(self.one_session([base + 10 * k, base + 10 * k + 1], 0.0)
                                         for k in range(count)))
        return {"turns": [t for result in results for t in result]}

    async def watch(self, limit: float) -> tuple[float, float] | None:
        """(respected, failed_at): when this process's view first showed the primary failed, and the verdict's
        own time as that view has it. None for per-session health (no process-wide view)."""
        assert self.lane is not None
        primary = self.lane.models[0]
        if self.system in (EMBEDDED, REDIS):
            from openrouter_voice.fleet import store_of

            tracker = Shared.app_settings(self.lane.base_url).shared_health()
            store = store_of(tracker)
            assert store is not None
            if await store.wait_for(lambda: tracker.shared_view(primary).failures > 0, limit):
                return time.time(), tracker.shared_view(primary).failed_at
        elif self.system == LITELLM:
            router = SharedLiteLLM.router_of_process
            ids = router.registry().names(kind="ids")[:1]  # the primary's deployment id (model_list order)
            deadline = time.time() + limit
            while time.time() < deadline:
                active = await router.health().cooldowns.async_get_active_cooldowns(ids, None)
                if active:
                    return time.time(), float(active[0][1]["timestamp"])
                await asyncio.sleep(WATCH_POLL)
        return None

    async def stop_watch(self) -> list[float] | None:
        watcher, self.watcher = self.watcher, None
        if watcher is None:
            return None
        if not watcher.done():
            watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            result = await watcher
            return list(result) if result else None
        return None

    async def teardown(self) -> dict[str, Any]:
        await self.stop_watch()
        if self.cls is Shared:
            from openrouter_voice.fleet import aclose_all

            await aclose_all()
        SharedLiteLLM.router_of_process = None
        if self.lane is not None:
            await self.lane.aclose()
            self.lane = None
        return {"ok": True}


def turn(tag: int, started: float, reply: Reply) -> dict[str, Any]:
    return {"tag": tag, "started": started, "ttft": reply.ttft, "served_by": reply.served_by, "error": reply.error}


async def main() -> None:
    # A Ctrl-C reaches the whole process group: the benchmark stops its processes itself (quit, then kill).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    quiet()
    worker = Worker()
    loop = asyncio.get_running_loop()
    handlers = {"setup": worker.setup, "sessions": worker.sessions, "burst": worker.burst}
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                break
            command = json.loads(line)
            op = command["op"]
            if op == "quit":
                break
            if op == "teardown":
                say(await worker.teardown())
            elif op == "warm":
                say({"turns": [t for k in range(0, int(command["turns"]), 5)
                               for t in await worker.burst({"tag0": -1000 - 100 * k, "count": 5})]})
            else:
                say(await handlers[op](command))
    finally:
        await worker.teardown()


if __name__ == "__main__":
    asyncio.run(main())
