"""One "process of the fleet" for the multi-process tests: a router built from settings (so it shares
health through the Redis in its environment), driven by JSON commands on stdin, one JSON answer per
command on stdout. Every wait is bounded and answers ``{"ok": false}`` when the bound passes.

    python -m tests.fleet.child a/primary b/backup
    python -m tests.fleet.child --hedge a/primary b/backup   # hedging, first-token deadline far away
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

from openrouter_voice.config import Settings
from openrouter_voice.fleet import aclose_all, store_of
from openrouter_voice.router import CircuitState, FallbackRouter, RouterError

USER = [{"role": "user", "content": "What's up?"}]


def settings() -> Settings:
    return Settings(_env_file=None, local_fallback=False)  # type: ignore[call-arg]


async def serve(models: list[str]) -> None:
    hedging = models[:1] == ["--hedge"]
    if hedging:  # a hang is hedged past at once and judged only long after the test is over
        router = FallbackRouter.from_settings(settings(), models[1:], first_token_timeout=60.0, stall_timeout=0.5,
                                              final_first_token_timeout=60.0, hedge_after=0.1)
    else:
        router = FallbackRouter.from_settings(settings(), models, first_token_timeout=0.5, stall_timeout=0.5,
                                              final_first_token_timeout=2.0, hedge_after=None)
    store = store_of(router.health)
    assert store is not None, "OPENROUTER_VOICE_REDIS_URL is not set"
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            command = json.loads(line)
            if command["op"] == "quit":
                return
            answer = await handle(command, router)
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
    finally:
        await router.aclose()
        await aclose_all()


async def turn(router: FallbackRouter) -> dict[str, Any]:
    try:
        reply = await router.complete(USER)
    except RouterError as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "model": reply.model, "attempts": [[a.model, a.outcome.value] for a in reply.attempts]}


async def handle(command: dict[str, Any], router: FallbackRouter) -> dict[str, Any]:
    store = store_of(router.health)
    assert store is not None
    health, op, limit = router.health, command["op"], float(command.get("limit", 10.0))
    model = command.get("model", "")
    if op == "sync":
        return {"ok": await store.wait_synced(limit)}
    if op == "turn":
        return await turn(router)
    if op == "wait":
        started = time.monotonic()
        conditions = {
            "unavailable": lambda: not health.is_available(model),
            "failures": lambda: health.shared_view(model).failures >= int(command["at_least"]),
            "online": lambda: store.online,
            "suspect": lambda: health.is_suspect(model),
        }
        ok = await store.wait_for(conditions[command["until"]], limit)
        return {"ok": ok, "seconds": time.monotonic() - started}
    if op == "turns_until_failures":
        # Turns back to back until the fleet has seen ``at_least`` failures of ``model`` (or the bounds pass).
        started, results = time.monotonic(), []
        while health.shared_view(model).failures < int(command["at_least"]):
            if len(results) >= int(command.get("max", 2000)) or time.monotonic() - started > limit:
                break
            results.append(await turn(router))
        sent = sum(1 for r in results for m, outcome in r.get("attempts", []) if m == model and outcome != "skipped")
        return {"ok": health.shared_view(model).failures >= int(command["at_least"]), "turns": len(results),
                "failed": sum(1 for r in results if not r["ok"]), "sent_to_model": sent}
    if op == "state":
        view = health.shared_view(model)
        return {"ok": True, "failures": view.failures, "open": health.state(model) is CircuitState.OPEN,
                "told": health.told_to_wait(model)}
    return {"ok": False, "error": f"unknown op {op!r}"}


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    asyncio.run(serve(sys.argv[1:]))


if __name__ == "__main__":
    main()
