"""Scenario 9, fleet health: 4 processes x N sessions per system against the scripted upstream.

Every system gets its own 4 processes (:mod:`bench.fleet_worker`) and its own lane of the upstream;
the four systems run at once, each phase in fresh lanes:

* **hang** / **429**: sessions arrive in each process every ``EVERY`` s (the processes interleaved);
  once every process has served ``PRE`` healthy sessions (each says so on its pipe), the primary
  starts hanging, or answering 429 with Retry-After 30 (t0). A turn *pays* when its first token
  comes later than 1.1 x the median healthy TTFT measured before t0 in the same phase (primary and
  backup are scripted alike, so that is the backup's healthy TTFT);
* **trial**: the primary answers 429 with a short Retry-After (``RETRY_AFTER_TRIAL``) from then on;
  one process meets it, and when that Retry-After has ended every process starts ``BURST`` sessions at
  once (told through its pipe): the primary's calls in that burst are the half-open trials.

Then :mod:`bench.fleet` measures what needs two processes or a Redis that dies: propagation of 1 transition
at a time, the sink's hot-path cost, and turn latency with Redis up and killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from . import fleet
from .fleet_worker import EMBEDDED, FLEET_SYSTEMS, LITELLM, PER_SESSION, REDIS
from .scenarios import BACKUP, HEALTHY, PRIMARY, ROOT, VOICE, Lane

PROCESSES = 4
EVERY = 0.5  # seconds between new sessions in one process
PAUSE = 2.5  # the caller speaks between a session's two turns (longer than the 2 s first-token deadline)
PRE = 2  # healthy sessions per process before t0
WARM = 10  # healthy turns per process first, so hedge delays are learnt (shared: from the whole fleet)
RETRY_AFTER = 30
RETRY_AFTER_TRIAL = 1
BURST = 5  # sessions each process starts at once when the trial's Retry-After has ended
PAID_RATIO = 1.1
FIRST_COOLDOWN = 5.0  # our router's first backoff after a hang, the shortest cooldown any system here sets
PROPAGATION_TARGET = 0.1
CAP = 10.0
FAILURES = {"hang": {"hang": True}, "429": {"status": 429, "retry_after": RETRY_AFTER}}


def log(text: str) -> None:
    print(text, flush=True)


class Process:
    """One fleet process: JSON commands on its stdin, answers (and ``pre`` events) on its stdout."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.answers: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.fleet_worker", cwd=ROOT, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, limit=2**24)
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        while raw := await self.process.stdout.readline():
            message = json.loads(raw)
            await (self.events if "event" in message else self.answers).put(message)
        await self.answers.put(None)
        await self.events.put({"event": "exit"})

    async def send(self, **command: Any) -> None:
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()

    async def answer(self) -> dict[str, Any]:
        message = await self.answers.get()
        if message is None:
            raise RuntimeError("a fleet process died (its stderr is above)")
        return message

    async def ask(self, **command: Any) -> dict[str, Any]:
        await self.send(**command)
        return await self.answer()

    async def event(self) -> None:
        if (await self.events.get())["event"] == "exit":
            raise RuntimeError("a fleet process died (its stderr is above)")

    async def stop(self) -> None:
        process = self.process
        if process is None:
            return
        with contextlib.suppress(Exception):
            await self.send(op="quit")
            await asyncio.wait_for(process.wait(), 5)
        if process.returncode is None:
            process.kill()
            await process.wait()
        if self.reader is not None:
            self.reader.cancel()


@dataclass
class Phase:
    """One system in one phase: every turn, the upstream's calls, and the processes' watchers."""

    t0: float = 0.0
    turns: list[list[dict[str, Any]]] = field(default_factory=list)  # per process
    calls: list[tuple[str, float, int | None]] = field(default_factory=list)
    watch: list[list[float] | None] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float | None:
    return fleet.percentile(values, q) if values else None


@contextlib.contextmanager
def servers() -> Iterator[tuple[Any, Any, Any]]:
    from openrouter_voice.fleet.embedded import EmbeddedStore
    from openrouter_voice.testing.redis_server import RedisServer

    with RedisServer() as ours, RedisServer() as theirs, EmbeddedStore() as embedded:
        yield ours, theirs, embedded


class Fleet:
    def __init__(self, base_url: str, urls: dict[str, str | None], sessions: int) -> None:
        self.base_url = base_url
        self.urls = urls
        self.sessions = sessions
        self.procs = {system: [Process() for _ in range(PROCESSES)] for system in FLEET_SYSTEMS}
        self.runs = 0

    def all(self) -> list[tuple[str, int, Process]]:
        return [(system, i, p) for system, procs in self.procs.items() for i, p in enumerate(procs)]

    async def start(self) -> None:
        await asyncio.gather(*(p.start() for _, _, p in self.all()))

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for _, _, p in self.all()), return_exceptions=True)

    async def setup(self, name: str, scripts: dict[str, Any]) -> dict[str, Lane]:
        """Fresh lanes (models) and store prefixes for a phase; every process ready on them."""
        self.runs += 1
        lanes = {system: Lane(self.base_url, f"f9{name}{k}") for k, system in enumerate(FLEET_SYSTEMS)}
        for lane in lanes.values():
            await lane.script(scripts)
        answers = await asyncio.gather(*(p.ask(op="setup", system=system, lane=lanes[system].name,
                                               base_url=self.base_url, url=self.urls[system], cap=CAP,
                                               prefix=f"bench9-{self.runs}-{name}")
                                         for system, _, p in self.all()))
        if not all(a.get("ok") for a in answers):
            raise RuntimeError(f"scenario 9 {name}: a fleet process could not sync with its store")
        return lanes

    async def teardown(self, lanes: dict[str, Lane]) -> None:
        await asyncio.gather(*(p.ask(op="teardown") for _, _, p in self.all()))
        await self.close_lanes(lanes)

    @staticmethod
    async def close_lanes(lanes: dict[str, Lane]) -> None:
        for lane in lanes.values():
            await lane.aclose()

    async def phase(self, name: str) -> dict[str, Phase]:
        """The hang or 429 phase: sessions arriving throughout, the primary failing at t0."""
        healthy = {PRIMARY: HEALTHY, BACKUP: HEALTHY}
        lanes = await self.setup(name, healthy)
        try:
            await asyncio.gather(*(p.ask(op="warm", turns=WARM) for _, _, p in self.all()))
            for lane in lanes.values():
                await lane.script(healthy)  # forget the warm-up's calls
            start = time.time() + 0.5
            for _, i, p in self.all():
                await p.send(op="sessions", count=self.sessions, every=EVERY, offset=i * EVERY / PROCESSES,
                             pause=PAUSE, start=start, tag0=100_000 * (i + 1), pre=PRE,
                             watch_for=self.sessions * EVERY + 2 * PAUSE + CAP)
            await asyncio.gather(*(p.event() for _, _, p in self.all()))  # every process served PRE sessions
            out = {system: Phase() for system in FLEET_SYSTEMS}
            for system, lane in lanes.items():
                await lane.script({PRIMARY: FAILURES[name], BACKUP: HEALTHY})
                out[system].t0 = time.time()
            for system, _, p in self.all():
                result = await p.answer()
                out[system].turns.append(result["turns"])
                out[system].watch.append(result["watch"])
            for system, lane in lanes.items():
                out[system].calls = await lane.calls()
        except BaseException:
            await self.close_lanes(lanes)  # the processes are stopped by measure(): they may not answer
            raise
        await self.teardown(lanes)
        return out

    async def trial(self) -> dict[str, int]:
        """Primary calls when every process sends at once as the cooldown ends (one is the trial)."""
        lanes = await self.setup("trial", {PRIMARY: {"status": 429, "retry_after": RETRY_AFTER_TRIAL},
                                           BACKUP: HEALTHY})
        try:
            firsts = await asyncio.gather(*(self.procs[s][0].ask(op="burst", tag0=-900_000, count=1)
                                            for s in FLEET_SYSTEMS))
            # Two turns: LiteLLM cools a model down at its second failure (allowed_fails=1). Each verdict came
            # before that turn's first token (from the backup): every cooldown has ended by this time.
            ends = [t["started"] + (t["ttft"] or CAP) + RETRY_AFTER_TRIAL for f in firsts for t in f["turns"]]
            await asyncio.sleep(max(0.0, max(ends) + 0.05 - time.time()))
            await asyncio.gather(*(p.ask(op="burst", tag0=100_000 * (i + 1), count=BURST)
                                   for _, i, p in self.all()))
            counts = {system: sum(1 for role, _, tag in await lane.calls() if role == PRIMARY and (tag or 0) > 0)
                      for system, lane in lanes.items()}
        except BaseException:
            await self.close_lanes(lanes)
            raise
        await self.teardown(lanes)
        return counts


def paid(phase: Phase) -> dict[str, Any]:
    """Turns that paid the failure (after t0), per process; wasted calls; propagation samples."""
    turns = [(i, t) for i, process in enumerate(phase.turns) for t in process]
    before = [t["ttft"] for _, t in turns if t["ttft"] is not None and t["started"] + t["ttft"] < phase.t0]
    baseline = statistics.median(before) if before else VOICE["ttft"]
    after = [(i, t) for i, t in turns if t["ttft"] is None or t["started"] + t["ttft"] >= phase.t0]
    calls = Counter(tag for _, _, tag in phase.calls)
    primary = Counter(tag for role, _, tag in phase.calls if role == PRIMARY)
    # A turn that never called the primary cannot have paid its failure: its slowness is the machine's.
    paying = [(i, t) for i, t in after if primary[t["tag"]] and (t["ttft"] is None or t["error"] or
                                                                t["ttft"] > PAID_RATIO * baseline)]
    waste = sum(max(0, calls[t["tag"]] - (0 if t["error"] else 1)) for _, t in after)
    watched = [(w[0], w[1]) for w in phase.watch if w]
    first = min((failed for _, failed in watched), default=None)
    respected = sorted(r for r, _ in watched)
    # The first process to respect the failure took the verdict itself; the others learnt it.
    samples = [r - first for r in respected[1:]] if first is not None else []
    # Once the first cooldown has run out, a half-open trial may pay again (by design, one per expiry).
    known = paying if first is None else [(i, t) for i, t in paying
                                          if first + PROPAGATION_TARGET < t["started"] < first + FIRST_COOLDOWN]
    per_process = Counter(i for i, _ in paying)
    return {"baseline": baseline, "turns": len(after), "paid": len(paying),
            "max_per_process": max(per_process.values(), default=0), "paid_after_known": len(known),
            "waste": waste, "waste_per_process": waste / PROCESSES, "propagation": samples,
            "learnt_by": len(respected)}


async def measure(base_url: str, quick: bool) -> dict[str, Any]:
    """Scenario 9's figures (the BENCHMARKS.md section is :func:`bench.fleet_report.section`)."""
    sessions = 6 if quick else 25
    with servers() as (ours, theirs, embedded):
        urls = {PER_SESSION: None, EMBEDDED: embedded.url, REDIS: ours.url, LITELLM: theirs.url}
        fleet_ = Fleet(base_url, urls, sessions)
        results: dict[str, Any] = {"sessions": sessions}
        try:
            await fleet_.start()
            for name in FAILURES:
                log(f"scenario 9 ({name}): {PROCESSES} processes x {sessions} sessions per system, all systems "
                    "at once...")
                phases = await fleet_.phase(name)
                results[name] = {system: paid(phase) for system, phase in phases.items()}
                for system, row in results[name].items():
                    log(f"  {system:26} paid {row['paid']}/{row['turns']} (max {row['max_per_process']}/process), "
                        f"{row['paid_after_known']} after the fleet knew, waste {row['waste']}, learnt by "
                        f"{row['learnt_by']}/{PROCESSES}")
            log("scenario 9 (trial): every process sends at once as the cooldown ends...")
            results["trial"] = await fleet_.trial()
            log("  primary calls: " + ", ".join(f"{s} {n}" for s, n in results["trial"].items()))
        finally:
            await fleet_.stop()
        results["two_process"] = await two_process(ours, embedded, quick)
    return results


async def two_process(server: Any, embedded: Any, quick: bool) -> dict[str, Any]:
    """bench.fleet's figures: propagation one transition at a time, hot path, turns with Redis up / killed."""
    from openrouter_voice.testing import Script, ScriptedUpstream

    transitions, count = (40, 40) if quick else (200, 200)
    log(f"scenario 9: propagation over {transitions} transitions between two processes, Redis killed mid-run...")
    out: dict[str, Any] = {
        REDIS: await fleet.propagation(server.url, transitions),
        EMBEDDED: await fleet.propagation(embedded.url, transitions),
    }
    out["hot_path_us"] = await asyncio.to_thread(fleet.hot_path, server.url, 300 if quick else 2000)
    with ScriptedUpstream() as upstream:
        upstream.script("a/x", Script(text="Fine."))
        out["turns_up"], out["turns_down"] = await fleet.turns(server, upstream, count)
    server.start()  # turns() leaves it killed
    return out
