"""Scenarios 1-6: one system against the scripted upstream, a fresh system per run.

A run: start the system, warm it with one healthy request (a live agent has served turns before its
primary fails) and, where deadlines learnt from history matter (3, 4, 5c, 5d, 8), with
``WARM_TURNS`` healthy replies, script the scenario, send the run's requests in order, then ask the
upstream which calls each request caused. Scripts name the models ``primary`` and ``backup``; a :class:`Lane` maps
them to this process's own model names on the shared upstream.
"""

from __future__ import annotations

import asyncio
import difflib
import itertools
import re
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .systems import Reply, System

ROOT = Path(__file__).resolve().parent.parent
PRIMARY, BACKUP = "primary", "backup"
VOICE = {"ttft": 0.3, "tokens_per_second": 75.0}  # a voice model at its median: first token at 300 ms, 75 tokens/s
# A healthy model's first token varies naturally: log-normal with p50 300 ms, p95 600 ms, and 2% at 1.2 s.
TTFT_DIST = {"p50": 0.3, "p95": 0.6, "slow_share": 0.02, "slow": 1.2}
VARIED = {"ttft_dist": TTFT_DIST, "tokens_per_second": 75.0}
SHORT = "Sunny and mild today, no rain."  # TTFT scenarios: short, so runs are quick
FULL = ("Today will be mostly sunny with a light breeze from the west, a high of twenty two degrees, "
        "and a clear evening.")  # mid-stream scenarios
CUT_AT = 8  # words the primary says before it fails (scenario 5)
HEALTHY = {"text": SHORT, **VOICE}  # the physical limit and 1, 2, 6: a constant, so their tight ratios are not noise
HEALTHY_VARIED = {"text": SHORT, **VARIED}  # 1b, and the backups of 3 and 4
WARM = {"text": "Hi."}
WARM_TURNS = 10  # healthy replies before a scenario whose deadlines follow history (the router needs 10 TTFTs)
WARM_BATCH = 5  # sent this many at once, so warming up costs ~2 s a run
RETRY_AFTER_LONG = 30  # scenario 2: the primary cools down for longer than the 11 requests take
RETRY_AFTER_SHORT = 2  # scenario 6
COOLING_REQUESTS = 10
RECOVERED_REQUESTS = 5


class Upstream:
    """The scripted upstream process (bench.upstream_server)."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "bench.upstream_server"], cwd=ROOT,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if not line or line[0] != "ready":
            self.process.kill()
            raise RuntimeError("the scripted upstream did not start")
        self.base_url = f"http://127.0.0.1:{int(line[1])}/api/v1"

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Lane:
    """One process's view of the shared upstream: its own model names, scripts and records."""

    def __init__(self, base_url: str, name: str) -> None:
        self.base_url = base_url
        self.name = name
        self.models = [f"{name}/{PRIMARY}", f"{name}/{BACKUP}"]
        self.control = httpx.AsyncClient(base_url=base_url.replace("/api/v1", "/_control"), timeout=30,
                                         params={"lane": name})

    def model(self, role: str) -> str:
        return f"{self.name}/{role}"

    async def script(self, scripts: dict[str, Any]) -> float:
        """Replace the lane's scripts ({"primary": spec, "backup": spec}) and forget its calls; returns when
        (time.monotonic) it took effect."""
        response = await self.control.post("/script", json={self.model(k): v for k, v in scripts.items()})
        response.raise_for_status()
        return time.monotonic()

    async def calls(self) -> list[tuple[str, float, int | None]]:
        """(role, received_at, request tag) of every call since the last script."""
        return [(m.rsplit("/", 1)[1], t, tag) for m, t, tag in (await self.control.get("/requests")).json()]

    async def aclose(self) -> None:
        await self.control.aclose()


@dataclass
class Request:
    """One measured request: what the user got and which upstream calls it caused."""

    reply: Reply
    calls: list[tuple[str, float]]  # (role, received_at)


@dataclass
class Cell:
    """One system x scenario over all runs."""

    values: list[float] = field(default_factory=list)  # TTFT, or the continuation gap in scenario 5 (s)
    waste: list[float] = field(default_factory=list)  # wasted upstream calls per request
    failures: list[str] = field(default_factory=list)  # requests whose user got no (whole) answer
    requests: int = 0
    not_repeated: str = ""  # why the runs stopped early
    extra: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


Table = dict[str, dict[str, Cell]]


async def session(lane: Lane, cls: type[System], scripts: dict[str, Any], count: int, cap: float,
                  start_at: Callable[[int], float] | None = None, warm_turns: int = 0,
                  warmed: list[Reply] | None = None) -> list[Request]:
    """One run: a fresh, warmed-up system sends ``count`` requests; stops after a request that timed out.

    ``warm_turns``: healthy replies of FULL (varied TTFT) first, kept in ``warmed``."""
    system = cls()
    await lane.script({PRIMARY: WARM, BACKUP: WARM})
    await system.start(lane.base_url, lane.models)
    try:
        await system.reply(-1, cap)
        if warm_turns:
            healthy = {"text": FULL, **VARIED}
            await lane.script({PRIMARY: healthy, BACKUP: healthy})
            for start in range(0, warm_turns, WARM_BATCH):
                size = min(WARM_BATCH, warm_turns - start)
                batch = await asyncio.gather(*(system.reply(-1, cap) for _ in range(size)))
                if warmed is not None:
                    warmed.extend(batch)
        t0 = await lane.script(scripts)
        replies = []
        for i in range(count):
            if start_at is not None:
                await asyncio.sleep(max(0.0, t0 + start_at(i) - time.monotonic()))
            replies.append(await system.reply(i, cap))
            if replies[-1].timed_out:
                break  # the rest would wait out the cap the same way
        await asyncio.sleep(0.1)  # let background calls (recovery probes) reach the upstream
        calls = await lane.calls()
    finally:
        await system.close()
    return [Request(r, [(m, t) for m, t, tag in calls if tag == i]) for i, r in enumerate(replies)]


def failure_note(reply: Reply) -> str:
    count = len(words(reply.text))
    cause = reply.error or "no error raised"
    return f"cut after {count} words ({cause})" if count else f"no reply ({cause})"


def words(text: str) -> list[str]:
    # Splits "lightToday" (a restart glued to the cut-off text) into the two words a listener hears.
    return re.findall(r"[A-Z]?[a-z']+|\d+", text)


def word_diff(text: str) -> tuple[int, int]:
    """(repeated, missing) words of ``text`` against the intended reply FULL."""
    repeated = missing = 0
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, words(FULL), words(text), autojunk=False).get_opcodes():
        if op in ("insert", "replace"):
            repeated += j2 - j1
        if op in ("delete", "replace"):
            missing += i2 - i1
    return repeated, missing


def record(cell: Cell, request: Request) -> None:
    reply = request.reply
    cell.requests += 1
    if reply.ttft is not None and reply.error is None:
        cell.values.append(reply.ttft)
        cell.waste.append(max(0, len(request.calls) - 1))
    else:
        cell.failures.append(failure_note(reply))
        cell.waste.append(len(request.calls) - (1 if reply.text else 0))


async def repeat(runs: int, one_run: Callable[[], Awaitable[None]], cell: Cell) -> None:
    """Repeat a run; stop early when it timed out or twice failed alike (the next runs would repeat it)."""
    for index in range(runs):
        failures = len(cell.failures)
        await one_run()
        if cell.failures and "timed out" in cell.failures[-1]:
            cell.not_repeated = f"timed out; not repeated (runs: {index + 1})"
            return
        if index == 1 and len(cell.failures) > failures and not cell.values:
            cell.not_repeated = "failed alike in the first 2 runs; not repeated"
            return


async def healthy_limit(lane: Lane, cls: type[System], runs: int, cap: float) -> list[float]:
    """The physical limit: the healthy backup's own TTFT (``cls`` is bare httpx)."""
    values = []
    for _ in range(runs):
        for request in await session(lane, cls, {PRIMARY: HEALTHY}, 3, cap):
            if request.reply.ttft is not None:
                values.append(request.reply.ttft)
    return values


async def simple(lane: Lane, cell: Cell, cls: type[System], scripts: dict[str, Any], runs: int, cap: float,
                 warm_turns: int = 0) -> None:
    """Scenarios 1, 3, 4: one request per run."""

    async def one_run() -> None:
        (request,) = await session(lane, cls, scripts, 1, cap, warm_turns=warm_turns)
        record(cell, request)

    await repeat(runs, one_run, cell)


async def rate_limited(lane: Lane, head: Cell, rest: Cell, cls: type[System], runs: int, cap: float) -> None:
    """Scenario 2: the primary answers 429 + Retry-After; the first request, then 10 more while it cools down.

    The 10 follow-ups run in the first half of the runs only: 10 samples a run are plenty.
    """
    scripts = {PRIMARY: {"status": 429, "retry_after": RETRY_AFTER_LONG}, BACKUP: HEALTHY}
    done = [0]

    async def one_run() -> None:
        follow_ups = COOLING_REQUESTS if done[0] < max(1, (runs + 1) // 2) else 0
        done[0] += 1
        requests = await session(lane, cls, scripts, 1 + follow_ups, cap)
        record(head, requests[0])
        for request in requests[1:]:
            record(rest, request)
        if requests[0].reply.timed_out:
            rest.not_repeated = "not run: the first request timed out (the loop keeps no state; each would too)"

    await repeat(runs, one_run, head)


async def mid_stream(lane: Lane, cell: Cell, cls: type[System], failure: str, backup_continues: bool,
                     runs: int, cap: float, twin: Cell | None = None) -> None:
    """Scenario 5: the primary says CUT_AT words, then errors (in-stream error event) or stalls.

    ``twin``: the same failure with the other kind of backup, already measured; if the system never
    asked the backup there, the backup's behaviour cannot change its outcome and it is not run again.
    """
    if twin is not None and twin.failures and not twin.values and not twin.extra.get("asked_backup"):
        cell.failures, cell.requests = list(twin.failures), twin.requests
        cell.not_repeated = "as with the other backup: it never asked the backup, so it was not run again"
        return
    primary = {"text": FULL, **VARIED, failure: CUT_AT}
    backup = {"continue": FULL, **VARIED} if backup_continues else {"text": FULL, **VARIED}
    warm_turns = WARM_TURNS if failure == "stall_after_tokens" else 0  # a stall deadline follows history

    async def one_run() -> None:
        (request,) = await session(lane, cls, {PRIMARY: primary, BACKUP: backup}, 1, cap, warm_turns=warm_turns)
        reply = request.reply
        cell.requests += 1
        if any(role == BACKUP for role, _ in request.calls):
            cell.extra["asked_backup"].append(1.0)
        repeated, missing = word_diff(reply.text)
        cell.extra["missing"].append(missing)
        if len(words(reply.text)) > CUT_AT and reply.error is None:
            # The user hears CUT_AT words, silence, then the rest: the longest silence is the failover's cost.
            times = [t for t, _ in reply.deltas]
            cell.values.append(max(b - a for a, b in itertools.pairwise(times)))
            cell.waste.append(max(0, len(request.calls) - 2))
            cell.extra["repeated"].append(repeated)
            cell.extra["exact"].append(1.0 if reply.text == FULL else 0.0)
        else:
            cell.failures.append(failure_note(reply))
            cell.waste.append(max(0, len(request.calls) - 1))

    await repeat(runs, one_run, cell)


async def recovery(lane: Lane, cell: Cell, cls: type[System], runs: int, cap: float) -> None:
    """Scenario 6: 429 with a short Retry-After, then healthy. Do the next requests go back to the primary?"""
    healthy_from = RETRY_AFTER_SHORT - 0.1  # healthy by the time a client honouring Retry-After returns
    scripts = {PRIMARY: {"phases": [{"for": healthy_from, "status": 429, "retry_after": RETRY_AFTER_SHORT},
                                    HEALTHY]},
               BACKUP: HEALTHY}

    async def one_run() -> None:
        requests = await session(lane, cls, scripts, 1 + RECOVERED_REQUESTS, cap,
                                 start_at=lambda i: 0.0 if i == 0 else RETRY_AFTER_SHORT + 0.3)
        for request in requests[1:]:
            record(cell, request)
            cell.extra["back_to_primary"].append(1.0 if request.reply.served_by == lane.model(PRIMARY) else 0.0)
        if len(requests) <= 1:
            cell.failures.append(failure_note(requests[0].reply))
        cell.extra["waste_first"].append(max(0, len(requests[0].calls) - 1))

    await repeat(runs, one_run, cell)
