"""Chaos soak: many concurrent AgentSession conversations through random upstream faults.

Every turn must end with exactly one assistant message: the intended reply, whole and unrepeated,
or the apology. Afterwards no task, socket or stream may be left behind, and memory stays bounded.
`pytest --soak-long` runs a longer soak (200 sessions x 50 turns).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import statistics
import time
import weakref

import psutil
import pytest
from livekit.agents import AgentSession

from openrouter_voice.agent import APOLOGY, Assistant, OpenRouterLLM
from openrouter_voice.agent.llm import APOLOGY_AFTER_PARTIAL
from openrouter_voice.router import FallbackRouter, HealthTracker
from openrouter_voice.testing import ChaosScript, LoopLagMonitor, intended_reply
from tests.conftest import TEST_KEY
from tests.timing import slowed

pytestmark = pytest.mark.slow
MODELS = ["a/primary", "b/second", "c/third"]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_chaos_soak(upstream, request, capsys):
    long = request.config.getoption("--soak-long")
    sessions, turns = (200, 50) if long else (int(os.environ.get("SOAK_SESSIONS", 50)), int(os.environ.get("SOAK_TURNS", 20)))
    chaos = [ChaosScript(seed=seed, fault_rate=0.25) for seed in range(len(MODELS))]
    for model, script in zip(MODELS, chaos, strict=True):
        upstream.script(model, script)
    # The server's record of every request body (each the whole conversation so far) would be most of the
    # memory measured below, and is the test's, not the agent's.
    upstream.record_requests = False
    # Every session, LLM and router of the soak, to check that none outlives its conversation.
    ended: list[weakref.ref[object]] = []
    # One health tracker shared by every session's router, as in one worker process.
    health = HealthTracker(base_cooldown=0.2, max_cooldown=1.0)
    fds_before = open_fds()
    process = psutil.Process()
    rss_samples: list[int] = []

    async def sample_memory() -> None:
        while True:
            rss_samples.append(process.memory_info().rss)
            await asyncio.sleep(0.25)

    latencies: list[float] = []
    outcomes = {"reply": 0, "apology": 0}
    fallbacks = 0
    # The deadlines, in seconds; scaled below by what this machine does now (see calibrate()).
    deadlines = {"first_token_timeout": 0.3, "stall_timeout": 0.3, "final_first_token_timeout": 0.6,
                 "hedge_after": 0.15, "total_timeout": 10.0}

    async def calibrate() -> float:
        """p95 latency of healthy turns with every session at once, on this machine now: 50 LiveKit
        sessions in one loop keep it busy, and on a shared machine a healthy model's first token can be
        read later than the 0.3 s deadline, which would fail healthy models (not the router's fault)."""
        upstream.script("h/healthy", ChaosScript(seed=99, fault_rate=0.0))
        healthy: list[float] = []

        async def one(n: int) -> None:
            await asyncio.sleep(n * 0.02)  # arrival spread, as below
            llm = OpenRouterLLM(router=FallbackRouter(["h/healthy"], api_key=TEST_KEY, base_url=upstream.base_url),
                                owns_router=True)
            try:
                async with AgentSession(llm=llm) as session:
                    await session.start(Assistant(llm=llm))
                    for turn in range(2):
                        started = time.monotonic()
                        await session.run(user_input=f"calibration {n} turn {turn}")
                        healthy.append(time.monotonic() - started)
            finally:
                await llm.aclose()

        await asyncio.gather(*(one(n) for n in range(sessions)))
        return statistics.quantiles(healthy, n=20)[18]

    async def conversation(n: int) -> None:
        nonlocal fallbacks
        await asyncio.sleep(n * 0.02)  # sessions arrive over a second, not in one loop iteration
        router = FallbackRouter(models=MODELS, api_key=TEST_KEY, base_url=upstream.base_url, app_name="soak",
                                health=health, **deadlines)
        llm = OpenRouterLLM(router=router)
        try:
            async with AgentSession(llm=llm) as session:
                ended.extend(weakref.ref(part) for part in (session, llm, router))
                await session.start(Assistant(llm=llm))
                history: list[dict[str, str]] = []
                for turn in range(turns):
                    text = f"session {n} turn {turn}: tell me something"
                    history.append({"role": "user", "content": text})
                    started = time.monotonic()
                    result = await session.run(user_input=text)
                    latencies.append(time.monotonic() - started)
                    messages = [e.item for e in result.events if e.type == "message"]
                    assert len(messages) == 1, f"turn {turn} of session {n}: {len(messages)} messages"
                    said = messages[0].text_content or ""
                    expected = intended_reply(history)
                    if said == expected:
                        outcomes["reply"] += 1
                        history.append({"role": "assistant", "content": said})
                    else:
                        # Only the apology may replace a reply, after at most a prefix of it.
                        assert said == APOLOGY or (said.endswith(APOLOGY_AFTER_PARTIAL) and
                                                   expected.startswith(said.removesuffix(APOLOGY_AFTER_PARTIAL))), \
                            said
                        outcomes["apology"] += 1
                        history.append({"role": "assistant", "content": said})
            fallbacks += llm.stats.fallbacks
        finally:
            await llm.aclose()
            await router.aclose()  # the LLM does not own a router it was given

    # As the worker's prewarm would: LiveKit's lazy imports and first-use set-up happen before the
    # sessions, and what start-up created is moved out of the garbage collector's way (gc.freeze).
    warm_llm = OpenRouterLLM(router=FallbackRouter(["x/warm"], base_url=upstream.base_url), owns_router=True)
    async with AgentSession(llm=warm_llm) as warm:
        await warm.start(Assistant(llm=warm_llm))
        await warm.run(user_input="warm up")
    await warm_llm.aclose()
    # A healthy reply must never miss a deadline only because the machine is slow now: each deadline is
    # at least 3 times the healthy turn's p95 measured just before, with every session busy (on an idle
    # 2-core machine that p95 is well under 0.1 s, and the deadlines stay as set). Every time bound scales,
    # the spoken-reply checks too (seen: healthy replies cut as too slow to speak at load 9, p95 6 s).
    async with LoopLagMonitor() as healthy_lag:
        healthy_p95 = await calibrate()
    scale = max(1.0, 3 * healthy_p95 / deadlines["first_token_timeout"])
    deadlines = slowed(scale, **deadlines)
    sampler = asyncio.create_task(sample_memory())
    gc.collect()
    gc.freeze()
    started = time.monotonic()
    try:
        async with LoopLagMonitor() as lag:
            await asyncio.gather(*(conversation(n) for n in range(sessions)))
    finally:
        gc.unfreeze()
    elapsed = time.monotonic() - started
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    faults = sum(c.injected.total() - c.injected["ok"] for c in chaos)
    p50 = statistics.median(latencies)
    p95 = statistics.quantiles(latencies, n=20)[18]
    with capsys.disabled():  # the figures belong in CI's log even when the test passes
        print(f"\nsoak: {sessions} sessions x {turns} turns = {len(latencies)} turns in {elapsed:.1f}s; "
              f"faults injected {faults} ({dict(sum((c.injected for c in chaos), start=type(chaos[0].injected)()))}); "
              f"replies {outcomes['reply']}, apologies {outcomes['apology']}, fallback turns {fallbacks}; "
              f"turn latency p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms (healthy p95 {healthy_p95 * 1000:.0f} "
              f"ms: deadlines x{scale:.1f}); worst loop lag {lag.worst * 1000:.0f} ms "
              f"(busy {lag.worst_busy * 1000:.0f} ms, of which GC pauses up to {lag.gc_worst * 1000:.0f} ms; "
              f"longest step {lag.worst_steps * 1000:.0f} ms)")

    assert len(latencies) == sessions * turns
    assert faults >= sessions * turns * 0.2
    assert outcomes["reply"] >= 0.95 * sessions * turns  # three models rarely all fail in one turn
    assert fallbacks > 0
    # No step of any session may stall the others (a blocked loop delays every session's audio). CPython's
    # full garbage collections are reported, not asserted: their pauses grow with every object the 50
    # LiveKit sessions keep alive, whatever code runs (tests/router/test_router_soak.py bounds the whole lag).
    # The bound: 50 ms of CPU, or on a busy machine 3 times the longest step of the healthy sessions
    # measured just before (the same code paths, without faults).
    bound = max(0.05, 3 * healthy_lag.worst_steps)
    assert lag.worst_steps < bound, f"a step blocked the event loop for {lag.worst_steps * 1000:.0f} ms"
    # Nothing left behind: streams, tasks, sockets; memory bounded.
    await upstream.wait_until_idle()
    # (the scripted server's idle keep-alive handlers are the server's, not ours)
    leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()
                and "web_protocol" not in repr(t)]
    assert leftover == [], leftover[:5]
    gc.collect()
    assert open_fds() <= fds_before + 2
    # No leak: a conversation that ended leaves nothing of its session, LLM or router behind.
    kept = [ref() for ref in ended if ref() is not None]
    assert kept == [], f"{len(kept)} of {len(ended)} ended sessions' parts are still alive: {kept[:3]}"
    # Bounded memory while they run. A live session keeps its conversation: LiveKit's chat context, and
    # every event it emitted (AgentSession._recorded_events, for its session report), so memory grows
    # with turns until the session ends, by design. What is bounded is that growth per turn (measured:
    # 8-15 KB a turn in the default soak, 0.1 KB in the long one, once the server keeps no bodies).
    half = len(rss_samples) // 2
    growth = max(rss_samples[half:]) - max(rss_samples[:half])
    per_turn_kb = growth / max(1, sessions * turns // 2) / 1024
    with capsys.disabled():
        print(f"soak memory: RSS grew by {growth / 2**20:.0f} MB in the second half, {per_turn_kb:.1f} KB a turn")
    assert per_turn_kb < 64, f"RSS grew by {growth / 2**20:.0f} MB in the second half: {per_turn_kb:.0f} KB a turn"
