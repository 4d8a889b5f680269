"""Router-level chaos soak: many concurrent conversations through random faults lose nothing."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Awaitable

from openrouter_voice.router import AllModelsFailedError
from openrouter_voice.testing import ChaosScript, LoopLagMonitor, intended_reply
from tests.timing import slowed, until


async def timed(turn: Awaitable[object]) -> float:
    started = time.monotonic()
    await turn
    return time.monotonic() - started


async def test_concurrent_conversations_through_random_faults(upstream, make_router, capsys):
    chaos = [ChaosScript(seed=s, fault_rate=0.35) for s in (1, 2, 3)]
    models = ["a/one", "b/two", "c/three"]
    for model, script in zip(models, chaos, strict=True):
        upstream.script(model, script)
    # A healthy reply must never miss a deadline only because the machine is slow now: the deadlines are
    # at least 3 times a healthy turn's p95 measured just before, with every conversation at once.
    upstream.script("h/healthy", ChaosScript(seed=99, fault_rate=0.0))
    calibration = make_router(["h/healthy"])
    healthy = await asyncio.gather(*(timed(calibration.complete([{"role": "user", "content": f"calibration {n}"}]))
                                     for n in range(15 * 3)))
    healthy_p95 = statistics.quantiles(healthy, n=20)[18]
    scale = max(1.0, 3 * healthy_p95 / 0.3)
    router = make_router(models, **slowed(scale, first_token_timeout=0.3, stall_timeout=0.3,
                                          final_first_token_timeout=0.6, hedge_after=0.15))
    fds_before = len(os.listdir("/proc/self/fd"))
    outcomes: list[str] = []

    async def conversation(n: int) -> None:
        messages: list[dict[str, str]] = []
        for turn in range(6):
            messages.append({"role": "user", "content": f"conversation {n} turn {turn}"})
            try:
                reply = await router.complete(messages)
            except AllModelsFailedError:
                outcomes.append("apology")
                messages.pop()
                continue
            assert reply.text == intended_reply(messages), reply.attempts  # nothing lost or repeated
            outcomes.append("reply")
            messages.append({"role": "assistant", "content": reply.text})

    async with LoopLagMonitor() as lag:
        await asyncio.gather(*(conversation(n) for n in range(15)))
    injected = sum(c.injected.total() - c.injected["ok"] for c in chaos)
    with capsys.disabled():  # the figures belong in CI's log even when the test passes
        print(f"\nrouter soak: turns={len(outcomes)} replies={outcomes.count('reply')} "
              f"apologies={outcomes.count('apology')} faults={injected} worst loop lag={lag.worst * 1000:.1f} ms "
              f"(healthy p95 {healthy_p95 * 1000:.0f} ms: deadlines x{scale:.1f})")
    assert len(outcomes) == 90
    assert injected > 20
    assert outcomes.count("reply") >= 85  # three models rarely all fail in one turn
    # CPU time of the longest step, without GC pauses: time waiting for a CPU on a busy machine is no
    # router step's (the wall-clock worst is printed above)
    assert lag.worst_steps < 0.05, f"a router step blocked the event loop for {lag.worst_steps * 1000:.0f} ms"
    await upstream.wait_until_idle()
    # Pooled keep-alive connections are expected while the router lives; closing it must free them all.
    await router.aclose()
    await until(lambda: len(os.listdir("/proc/self/fd")) <= fds_before + 2, "the router's sockets to close")
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()
                and "stream_attempt" in repr(t)]
    assert leftover == []
