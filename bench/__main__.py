"""Run the failover benchmark: ``make bench`` (or ``python -m bench [--quick] [--runs N]`` from the repo root).

Starts the scripted upstream in its own process on 127.0.0.1 and one process ("lane") per system.
The healthy baseline (1) runs one lane at a time, so millisecond differences are the systems' own;
the failure scenarios (2-6) run in all lanes at once, since they mostly wait on timeouts. Then CPU
overhead and N concurrent streams (7) are measured with each system in a fresh process, and fleet health
(9, bench/fleet_scenario.py) with 4 processes per system. Writes BENCHMARKS.md and bench/ttft.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from . import fleet_scenario, report
from .adaptive import DRIBBLE_AFTER, DRIBBLE_INTERVAL
from .lane import ORDER, load_cell
from .scenarios import (
    BACKUP,
    CUT_AT,
    PRIMARY,
    RECOVERED_REQUESTS,
    RETRY_AFTER_LONG,
    RETRY_AFTER_SHORT,
    ROOT,
    TTFT_DIST,
    VOICE,
    WARM_TURNS,
    Lane,
    Table,
    Upstream,
)
from .systems import (
    SYSTEMS,
    BareHttpx,
    BareHttpx2,
    LiteLLMRouter,
    LiveKitFallback,
    LiveKitRetryOnChunk,
    NaiveLoop,
    Ours,
    OursTraced,
    OursWithTelemetry,
    System,
    ours_defaults,
)

LOAD_TOKENS = 20
LOAD_SYSTEMS: list[type[System]] = [BareHttpx, BareHttpx2, Ours, LiveKitFallback, LiteLLMRouter, NaiveLoop]
OVERHEAD_ROUNDS = 5  # fresh processes the overhead figures are the median of
OVERHEAD_SYSTEMS: list[type[System]] = [BareHttpx, BareHttpx2, Ours, OursWithTelemetry, OursTraced, LiveKitFallback,
                                        LiteLLMRouter, NaiveLoop]
BARE_ROW = "1 bare httpx"


def log(text: str) -> None:
    print(text, flush=True)


class Worker:
    """A lane process (bench.lane) running one system's scenarios."""

    def __init__(self, cls: type[System], index: int) -> None:
        self.cls = cls
        self.lane = f"lane{index}"
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - read on failure, closed in quit()
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, base_url: str, runs: int, cap: float) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.lane", "--base-url", base_url, "--lane", self.lane, "--system",
            self.cls.name, "--runs", str(runs), "--cap", str(cap), cwd=ROOT, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=self.stderr)

    async def _line(self) -> tuple[str, str]:
        assert self.process is not None
        assert self.process.stdout is not None
        raw = await self.process.stdout.readline()
        if not raw:
            self.stderr.seek(0)
            tail = self.stderr.read().decode(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(f"lane {self.cls.name} died: " + " / ".join(tail))
        kind, _, rest = raw.decode().rstrip("\n").partition(" ")
        return kind, rest

    async def ready(self) -> None:
        while (await self._line())[0] != "ready":
            pass

    async def run(self, keys: str) -> dict[str, Any]:
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write(f"run {keys}\n".encode())
        await self.process.stdin.drain()
        started = time.perf_counter()
        while True:
            kind, rest = await self._line()
            if kind == "log":
                log(f"  {time.perf_counter() - started:6.1f} s  {rest}")
            elif kind == "result":
                result: dict[str, Any] = json.loads(rest)
                return result

    async def quit(self) -> None:
        if self.process is not None and self.process.stdin is not None:
            self.process.stdin.write(b"quit\n")
            await self.process.stdin.drain()
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.stderr.close()


async def scenarios(base_url: str, wanted: str, runs: int, cap: float) -> tuple[Table, list[float]]:
    workers = {cls: Worker(cls, i) for i, cls in enumerate([BareHttpx, *SYSTEMS, LiveKitRetryOnChunk])}
    table: Table = {}
    limit: list[float] = []

    def merge(result: dict[str, Any], rename: dict[str, str] | None = None) -> None:
        for name, row in result["table"].items():
            for system, data in row.items():
                table.setdefault((rename or {}).get(name, name), {})[system] = load_cell(data)

    try:
        log("starting one process per system and pre-warming them...")
        for worker in workers.values():
            await worker.start(base_url, runs, cap)
        await asyncio.gather(*(w.ready() for w in workers.values()))
        log("physical limit and scenario 1, one system at a time...")
        result = await workers[BareHttpx].run("L1" if "1" in wanted else "L")
        limit = result["limit"]
        merge(result, {ORDER[0]: BARE_ROW})
        if "1" in wanted:
            for cls in SYSTEMS:
                merge(await workers[cls].run("1"))
        # 1b (healthy traffic, "h") counts calls rather than milliseconds: it runs with the parallel ones.
        keys = "".join(k for k in "23456" if k in wanted) + ("h" if "1" in wanted else "") + \
            ("8" if "8" in wanted else "")
        if keys:
            log(f"scenarios {', '.join(k.replace('h', '1b') for k in keys)}, all systems at once (each in its own "
                "process)...")
            jobs = [workers[cls].run(keys) for cls in SYSTEMS]
            if "5" in keys:
                jobs.append(workers[LiveKitRetryOnChunk].run("5"))
            for result in await asyncio.gather(*jobs):
                merge(result)
    finally:
        await asyncio.gather(*(w.quit() for w in workers.values()), return_exceptions=True)
    ordered: Table = {name: table[name] for name in [BARE_ROW, *ORDER] if name in table}
    return ordered, limit


def in_fresh_process(args: list[str], timeout: float) -> dict[str, Any]:
    try:
        done = subprocess.run([sys.executable, "-m", "bench.load", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {timeout:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def overhead(base_url: str, batches: int, requests: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Each system's CPU per request and per chunk: the median of ``rounds`` fresh processes (one process's
    least disturbed batch still moves by +-0.03 ms a request from run to run, as much as a target's margin),
    with each round's figure over bare httpx2 kept to show that spread."""
    log(f"overhead: CPU per request and per chunk, {rounds} fresh processes...")
    results: list[dict[str, dict[str, float]]] = []
    for _ in range(rounds):
        result = in_fresh_process(["--base-url", base_url, "--lane", "overhead", "--mode", "overhead", "--batches",
                                   str(batches), "--requests", str(requests), "--systems",
                                   ";".join(c.name for c in OVERHEAD_SYSTEMS)], timeout=900)
        if "error" in result:
            log(f"  overhead failed: {result['error']}")
            continue
        results.append(result)
        base = result.get("bare httpx2", {}).get("ms_per_request", 0.0)
        log("  " + ", ".join(f"{name} {cost['ms_per_request'] - base:+.3f}" for name, cost in result.items()
                             if not name.startswith("bare ")) + " ms/request over bare httpx2")
    out: dict[str, dict[str, Any]] = {}
    for name in (results[0] if results else {}):
        runs = [r[name] for r in results if name in r]
        out[name] = {key: statistics.median(run[key] for run in runs) for key in ("ms_per_request", "us_per_chunk")}
        out[name]["over_httpx2_runs"] = [run["ms_per_request"] - r["bare httpx2"]["ms_per_request"]
                                         for run, r in zip(runs, results, strict=True) if "bare httpx2" in r]
    for name, cost in out.items():
        log(f"  {name:40} {cost['ms_per_request']:.3f} ms/request, {cost['us_per_chunk']:.1f} us/chunk (median)")
    return out


async def load(base_url: str, streams: int, cap: float) -> dict[str, dict[str, Any]]:
    log(f"scenario 7: {streams} concurrent streams, each system in a fresh process...")
    text = " ".join(f"w{i}" for i in range(LOAD_TOKENS))
    lane = Lane(base_url, "load")
    out: dict[str, dict[str, Any]] = {}
    try:
        for cls in LOAD_SYSTEMS:
            await lane.script({PRIMARY: {"text": text, **VOICE}, BACKUP: {"text": text, **VOICE}})
            result = await asyncio.to_thread(in_fresh_process, [
                "--base-url", base_url, "--lane", "load", "--mode", "load", "--systems", cls.name, "--streams",
                str(streams), "--cap", str(cap), "--ttft", str(VOICE["ttft"]), "--tokens", str(LOAD_TOKENS)],
                cap + 180)
            if "error" not in result:
                result["calls"] = f"{(len(await lane.calls()) - 1) / streams:.2f}/stream"  # less the warm-up
                log(f"  {cls.name:40} {result['completed']} completed, {result['failed']} failed, "
                    f"{result['wall_s']:.1f} s, p50 +{result['p50_added_ms'] or 0:.0f} ms, "
                    f"{result['cpu_ms_per_1000_chunks']:.0f} ms CPU/1000 chunks")
            else:
                log(f"  {cls.name:40} {result['error']}")
            out[cls.name] = result
    finally:
        await lane.aclose()
    return out


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores (`nproc`), {cpu}, {memory:.0f} GiB RAM, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")


def versions() -> str:
    packages = ["openrouter-voice", "httpx", "httpcore", "httpx2", "aiohttp", "livekit-agents",
                "livekit-plugins-openai", "openai", "litellm", "matplotlib"]
    out = []
    for package in packages:
        try:
            out.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            out.append(f"{package} (not installed)")
    return ", ".join(out)


def notes(loaded: dict[str, dict[str, Any]], cap: float) -> list[str]:
    d = ours_defaults()
    lines = [
        "## Notes", "",
        f"- Scenario 2: Retry-After {RETRY_AFTER_LONG} s, so all 11 requests fall inside the cooldown (the 10 "
        f"follow-ups run in half of the runs). Scenario 6: 429 with Retry-After {RETRY_AFTER_SHORT} s and healthy "
        f"from then on; one request during the cooldown, then {RECOVERED_REQUESTS} after it; the share is of those "
        f"{RECOVERED_REQUESTS} served by the primary. Waste counts background probes too: LiveKit re-sends the "
        "whole turn to a failed model (a real, billed generation) and does not read Retry-After.",
        f"- Scenario 5: the primary fails after {CUT_AT} words. \"Repeated words\" are words of the final text beyond "
        "the intended reply (a restart repeats the sentence start); \"missing\" are words of the intended reply that "
        "never came (a cut reply).",
        f"- In 1b, 3, 4, 5 and 8, healthy models' first tokens are drawn per request from a log-normal "
        f"(p50 {TTFT_DIST['p50'] * 1000:.0f} ms, p95 {TTFT_DIST['p95'] * 1000:.0f} ms) "
        f"with {TTFT_DIST['slow_share']:.0%} at {TTFT_DIST['slow']:g} s; 3, 4, "
        f"5c, 5d and 8 start after {WARM_TURNS} healthy replies, so a system that learns has seen the models work. "
        f"Our router then hedges a hanging or keep-alive-only primary at that primary's own p95 TTFT + a margin "
        f"(hedge_after, {d['hedge_after']:g} s, is only the ceiling) and calls a stall after a few times its usual "
        f"gap between tokens (at least 0.3 s; stall_timeout, {d['stall_timeout']:g} s, is the ceiling). 1b shows "
        "what hedging at the p95 costs in healthy traffic. The physical limit and scenarios 1, 2 and 6 keep a constant "
        f"{VOICE['ttft'] * 1000:.0f} ms (the distribution's median), so their tight ratios measure the systems, not "
        "the draw.",
        f"- Scenario 8: the primary says {DRIBBLE_AFTER} words, then one word every {DRIBBLE_INTERVAL:g} s; the "
        "figure is the whole reply's duration, and the ratio is over the same system's healthy replies of that "
        "text (the warm-up).",
        "- LiveKit's attempt_timeout and LiteLLM's stream_timeout are read-gap timeouts: keep-alive comments "
        "(`: OPENROUTER PROCESSING`) reset them (livekit/agents#6171). The naive loop has the SDK's 600 s timeout and "
        "waits out a Retry-After (twice) before it moves on.",
        f"- Any request is capped at {cap:g} s; a voice user would have hung up long before.",
        "- Scenario 1 ran one system at a time; scenarios 2-6 ran all systems at once, each in its own process, "
        "against the upstream's separate models per process. They load the 2 cores lightly (a stream or two per "
        "system at 75 tokens/s), so their timings are the systems' own.",
    ]
    lines.append(
        "- Scenario 7: httpx's connection pool (httpcore) walks every pooled connection on each request start and end "
        "(encode/httpcore#1035), so with hundreds of open streams the event loop falls behind: compare the bare "
        "httpx and bare httpx2 rows. Our router is built on httpx2 for that reason; on httpx, an earlier run of this "
        "benchmark saw 193 of its 500 streams miss the first-token deadline while queued in that pool.")
    ours = loaded.get(Ours.name, {})
    if ours.get("failed"):
        lines.append(f"- **Scenario 7: our router failed {ours['failed']} of {streams_of(ours)} concurrent streams.**")
    return lines


def streams_of(result: dict[str, Any]) -> str:
    return str(result["completed"] + result["failed"]) if "completed" in result else "?"


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 runs per cell, 100 streams, 8 s cap (~2 minutes)")
    parser.add_argument("--runs", type=int, help="runs per cell (default 9; --quick 2)")
    parser.add_argument("--streams", type=int, help="concurrent streams in scenario 7 (default 500; --quick 100)")
    parser.add_argument("--cap", type=float,
                        help="seconds before a request counts as timed out (default 20; --quick 8)")
    parser.add_argument("--scenarios", default="123456789",
                        help="which scenarios to run, e.g. 157 (default all; 1 includes 1b)")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"), help="where to write the report")
    parser.add_argument("--plot", default=str(ROOT / "bench" / "ttft.png"), help="where to write the plot")
    args = parser.parse_args()
    runs = args.runs or (2 if args.quick else 9)
    streams = args.streams or (100 if args.quick else 500)
    cap = args.cap or (8.0 if args.quick else 20.0)
    started = time.perf_counter()
    # A terminated run cleans up like an interrupted one: its processes and servers are stopped.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    upstream = Upstream()
    table: Table = {}
    limit: list[float] = []
    try:
        if any(key in args.scenarios for key in "1234568"):
            table, limit = await scenarios(upstream.base_url, args.scenarios, runs, cap)
        costs = (overhead(upstream.base_url, 3 if args.quick else 5, 10, 1 if args.quick else OVERHEAD_ROUNDS)
                 if "7" in args.scenarios else {})
        loaded = await load(upstream.base_url, streams, cap) if "7" in args.scenarios else {}
        fleet = await fleet_scenario.measure(upstream.base_url, args.quick) if "9" in args.scenarios else None
    finally:
        upstream.close()
    elapsed = time.perf_counter() - started
    command = "python -m bench" + " ".join(["", *sys.argv[1:]]).rstrip()
    meta = {
        "command": command, "date": time.strftime("%Y-%m-%d"), "elapsed": elapsed, "runs": runs, "cap": cap,
        "streams": streams, "overhead_rounds": 1 if args.quick else OVERHEAD_ROUNDS, "load_tokens": LOAD_TOKENS,
        "machine": machine(), "versions": versions(),
        "first_token_timeout": ours_defaults()["first_token_timeout"],
        "described": [BareHttpx, BareHttpx2, *SYSTEMS, LiveKitRetryOnChunk, OursWithTelemetry, OursTraced],
        "notes": notes(loaded, cap), "fleet": fleet,
    }
    out = Path(args.out)
    text = report.render(table, limit, costs, loaded, meta)
    # The voice and offline benchmarks (bench/voice, bench/offline) own their sections of the same file: keep them.
    old = out.read_text(encoding="utf-8") if out.exists() else ""  # noqa: ASYNC240
    for section in ("voice-benchmark", "offline-answers"):
        begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
        if begin in old and end in old:
            text = text.rstrip() + "\n\n" + old[old.index(begin):old.index(end) + len(end)] + "\n"
    out.write_text(text, encoding="utf-8")  # noqa: ASYNC240
    report.plot(table, report.median(limit) or VOICE["ttft"], cap, Path(args.plot))
    log(f"\nwrote {args.out} and {args.plot} in {elapsed:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
