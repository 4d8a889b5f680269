"""Run the failover benchmark: ``make bench`` (or ``python -m bench [--quick] [--runs N]``).

Starts the scripted upstream in its own process on 127.0.0.1, runs every scenario against every
system in the same run, and writes BENCHMARKS.md and bench/ttft.png.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

from .systems import SYSTEMS, BareHttpx, Ours, Reply, System, with_cap

P, B = "bench/primary", "bench/backup"
FULL = ("Today will be mostly sunny with a light breeze from the west, a high of twenty two degrees in the "
        "afternoon, and a cool clear evening with no rain expected until the weekend.")
VOICE = {"ttft": 0.3, "tokens_per_second": 75.0}  # realistic voice-model timing
HEALTHY = {"text": FULL, **VOICE}
ROOT = Path(__file__).resolve().parent.parent


class Upstream:
    """The scripted upstream process and its control API."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}/api/v1"
        self.process = subprocess.Popen([sys.executable, "-m", "bench.upstream_server", "--port", str(self.port)],
                                        stdout=subprocess.PIPE, cwd=ROOT)
        assert self.process.stdout is not None
        self.process.stdout.readline()  # "ready"
        self.control = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}/_control", timeout=10)

    async def script(self, scripts: dict[str, Any]) -> None:
        await self.control.post("/reset")
        await self.control.post("/script", json=scripts)

    async def requests(self) -> list[tuple[str, float, str]]:
        return [tuple(r) for r in (await self.control.get("/requests")).json()]  # type: ignore[misc]

    async def close(self) -> None:
        await self.control.aclose()
        self.process.terminate()
        self.process.wait(10)


@dataclass
class Cell:
    """One system x scenario: samples over runs."""

    ttfts: list[float] = field(default_factory=list)
    waste: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, value: float) -> None:
        self.extra.setdefault(key, []).append(value)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def words(text: str) -> list[str]:
    return text.split()


def repeated_words(text: str) -> int:
    """Words beyond the intended reply (a restart repeats the start of the sentence)."""
    return max(0, len(words(text)) - len(words(FULL))) if text != FULL else 0


async def run_system(system: System, upstream: Upstream, scripts: dict[str, Any], requests: int,
                     cap: float, pause: float = 0.0, before: Any = None) -> tuple[list[Reply], list[Any]]:
    await upstream.script(scripts)
    await system.start(upstream.base_url, [P, B])
    replies: list[Reply] = []
    try:
        for i in range(requests):
            if before is not None:
                await before(i)
            replies.append(await with_cap(system.reply(), cap))
            if pause:
                await asyncio.sleep(pause)
    finally:
        await system.close()
    await asyncio.sleep(0.2)
    return replies, await upstream.requests()


async def scenarios(upstream: Upstream, runs: int, cap: float, log: Any) -> dict[str, dict[str, Cell]]:
    table: dict[str, dict[str, Cell]] = {}

    def cell(scenario: str, system: str) -> Cell:
        return table.setdefault(scenario, {}).setdefault(system, Cell())

    # The physical limit: the healthy backup's own time to first token.
    for _ in range(runs):
        replies, _ = await run_system(BareHttpx(), upstream, {P: HEALTHY}, 3, cap)
        for reply in replies:
            if reply.ttft is not None:
                cell("limit", "backup alone").ttfts.append(reply.ttft)

    simple = {
        "1 healthy primary": {P: HEALTHY, B: HEALTHY},
        "2 429 + Retry-After (1st)": {P: {"status": 429, "retry_after": 30}, B: HEALTHY},
        "3 primary hangs": {P: {"hang": True}, B: HEALTHY},
        "4 keep-alive only": {P: {"keepalive_only": True, "keepalive_interval": 0.25}, B: HEALTHY},
    }
    for system_cls in [BareHttpx, *SYSTEMS]:
        for name, scripts in simple.items():
            if system_cls is BareHttpx and not name.startswith("1"):
                continue
            requests = 11 if name.startswith("2") else 1
            timed_out = False
            for _ in range(runs):
                if timed_out:
                    break
                replies, records = await run_system(system_cls(), upstream, scripts, requests, cap)
                first = replies[0]
                c = cell(name, system_cls.name)
                if first.ttft is None:
                    c.notes.append(first.error or "no reply")
                    timed_out = first.error is not None and "timed out" in first.error
                else:
                    c.ttfts.append(first.ttft)
                if name.startswith("2"):
                    c.waste.append(sum(1 for r in records if r[0] == P))
                    later = cell("2 ... next 10 while cooling", system_cls.name)
                    later.ttfts.extend(r.ttft for r in replies[1:] if r.ttft is not None)
                    later.waste.append(sum(1 for r in records[2:] if r[0] == P))
                else:
                    c.waste.append(max(0, len(records) - 1))
            log(f"  {system_cls.name:24} {name}: {fmt(median(cell(name, system_cls.name).ttfts))}")

    # 5: text then an error event / a stall; the backup honours prefill (continues the sentence).
    mid = {
        "5a error after text": {P: {**HEALTHY, "error_after_tokens": 8}, B: {"continue": FULL, **VOICE}},
        "5b stall after text": {P: {**HEALTHY, "stall_after_tokens": 8}, B: {"continue": FULL, **VOICE}},
    }
    for system_cls in SYSTEMS:
        for name, scripts in mid.items():
            for _ in range(runs):
                replies, records = await run_system(system_cls(), upstream, scripts, 1, cap)
                reply = replies[0]
                timed_out = bool(reply.error and "timed out" in reply.error)
                c = cell(name, system_cls.name)
                gaps = [b[0] - a[0] for a, b in zip(reply.deltas, reply.deltas[1:], strict=False)]
                if reply.text == FULL or len(words(reply.text)) > 8:
                    c.ttfts.append(max(gaps) if gaps else 0.0)  # time from the failure to the continuation
                else:
                    c.notes.append(f"reply cut after {len(words(reply.text))} words ({reply.error or 'no error'})")
                c.add("repeated", repeated_words(reply.text))
                c.add("exact", 1.0 if reply.text == FULL else 0.0)
                c.waste.append(max(0, len(records) - 1))
                if timed_out:
                    break  # every run would wait out the cap again
            log(f"  {system_cls.name:24} {name}: gap {fmt(median(cell(name, system_cls.name).ttfts))}")

    # 6: the primary recovers after its Retry-After: does traffic go back to it?
    for system_cls in SYSTEMS:
        recover_at: list[float] = []

        async def before(i: int, recover_at: list[float] = recover_at) -> None:
            if i == 1:
                await asyncio.sleep(2.5)  # past the 2 s Retry-After
                recover_at.append(time.monotonic())

        for _ in range(max(1, runs // 2)):
            scripts = {P: [{"status": 429, "retry_after": 2}, HEALTHY], B: HEALTHY}
            recover_at.clear()
            replies, records = await run_system(system_cls(), upstream, scripts, 6, cap, pause=0.3, before=before)
            c = cell("6 primary recovers", system_cls.name)
            after = [r for r in records if r[0] == P and recover_at and r[1] >= recover_at[0]]
            c.add("back_to_primary", min(1.0, len(after) / 5))
            c.ttfts.extend(r.ttft for r in replies[1:] if r.ttft is not None)
            c.waste.append(max(0, len(records) - 6))
        back = median(cell("6 primary recovers", system_cls.name).extra["back_to_primary"])
        log(f"  {system_cls.name:24} 6 recovery: {back}")
    return table


async def overhead(upstream: Upstream, requests: int) -> dict[str, float]:
    """Client CPU over bare httpx, split into a fixed per-request part and a per-chunk part.

    Both systems stream fast replies of 10 and of 400 tokens in alternating batches (so drift in
    the machine hits both alike), keeping each one's least disturbed batch; CPU = fixed + chunks x
    per_chunk gives both parts, and ours minus bare httpx is the overhead.
    """
    systems: list[System] = [BareHttpx(), Ours()]
    for system in systems:
        await system.start(upstream.base_url, [P, B])
    best: dict[tuple[str, int], float] = {}
    try:
        for length in (10, 400):
            await upstream.script({P: {"text": " ".join(["word"] * length)}})
            for system in systems:
                for _ in range(5):  # warm up pools and caches
                    await system.reply()
            for _ in range(7):
                for system in systems:
                    cpu = time.process_time()
                    for _ in range(requests):
                        await system.reply()
                    key = (system.name, length)
                    best[key] = min(best.get(key, float("inf")), (time.process_time() - cpu) / requests)
    finally:
        for system in systems:
            await system.close()
    cost = {}
    for system in systems:
        per_chunk = (best[(system.name, 400)] - best[(system.name, 10)]) / 390
        cost[system.name] = (best[(system.name, 10)] - 10 * per_chunk, per_chunk)
    (bare_fixed, bare_chunk), (ours_fixed, ours_chunk) = cost["bare httpx"], cost["openrouter-voice"]
    return {"ms_per_request": (ours_fixed - bare_fixed) * 1000, "us_per_chunk": (ours_chunk - bare_chunk) * 1e6,
            "bare_ms": bare_fixed * 1000, "ours_ms": ours_fixed * 1000,
            "bare_us_chunk": bare_chunk * 1e6, "ours_us_chunk": ours_chunk * 1e6}


async def load(upstream: Upstream, streams: int) -> dict[str, dict[str, float]]:
    """N concurrent streams through one process: throughput, added latency, CPU per 1000 chunks, memory."""
    out: dict[str, dict[str, float]] = {}
    # A short voice reply (12 tokens): the scripted server shares the 2 cores with the client, and a
    # saturated server would measure the server, not the systems under test.
    await upstream.script({P: {"text": " ".join(FULL.split()[:12]), **VOICE}})
    for system_cls in (BareHttpx, Ours):
        system = system_cls()
        await system.start(upstream.base_url, [P, B])
        await system.reply()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        cpu, wall = time.process_time(), time.perf_counter()
        replies = await asyncio.gather(*(system.reply() for _ in range(streams)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        chunks = sum(len(r.deltas) for r in replies)
        ttfts = sorted(r.ttft for r in replies if r.ttft is not None)
        out[system_cls.name] = {
            "ok": len(ttfts), "failed": streams - len(ttfts), "wall_s": wall, "streams_per_s": len(ttfts) / wall,
            "p50_added_ms": (statistics.median(ttfts) - VOICE["ttft"]) * 1000,
            "p99_added_ms": (ttfts[int(0.99 * (len(ttfts) - 1))] - VOICE["ttft"]) * 1000,
            "cpu_ms_per_1000_chunks": cpu / max(chunks, 1) * 1e6,
            "peak_rss_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024,
        }
        await system.close()
    return out


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


def cell_text(c: Cell | None) -> str:
    if c is None:
        return "n/a"
    if not c.ttfts:
        return (c.notes[0] if c.notes else "no reply").replace("|", "/")
    text = f"{fmt(median(c.ttfts))} (p95 {fmt(p95(c.ttfts))})"
    if c.waste:
        text += f", waste {statistics.mean(c.waste):.1f}"
    if c.notes:
        text += f"; {len(c.notes)} run(s): {c.notes[0]}"
    return text


def report(table: dict[str, dict[str, Cell]], over: dict[str, float], loaded: dict[str, dict[str, float]],
           runs: int, cap: float, elapsed: float, streams: int) -> str:
    limit = median(table["limit"]["backup alone"].ttfts) or 0.3
    systems = [s.name for s in SYSTEMS]
    scenario_names = [s for s in table if s != "limit"]
    lines = ["# Failover benchmark", "",
             f"Measured {time.strftime('%Y-%m-%d')} by `make bench` in {elapsed:.0f} s: {runs} runs per cell, "
             f"medians with p95, each request capped at {cap:g} s. Scripted upstream (`openrouter_voice.testing`) "
             f"in its own process on 127.0.0.1: healthy models answer with first token at "
             f"{VOICE['ttft'] * 1000:.0f} ms and {VOICE['tokens_per_second']:.0f} tokens/s. "
             f"Physical limit (the healthy backup's own TTFT, bare httpx): **{fmt(limit)}**.", "",
             f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
             f"Python {platform.python_version()}; " + ", ".join(
                 f"{p} {_version(p)}" for p in ("httpx", "livekit-agents", "livekit-plugins-openai", "litellm",
                                                "openai")) + ".", "",
             "TTFT = time to the first token of the answer the user gets; for 5a/5b the figure is the gap "
             "from the failure to the continuation. Waste = upstream calls that did not serve the reply "
             "(mean per scenario run; for 2 over all 11 requests).", "",
             "| scenario | " + " | ".join(systems) + " |", "|---|" + "---|" * len(systems)]
    for name in scenario_names:
        row = [cell_text(table[name].get(s)) for s in systems]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    bare = table["1 healthy primary"].get("bare httpx")
    if bare:
        lines += ["", f"Bare httpx to a healthy primary: {cell_text(bare)}."]
    lines += ["", "## Mid-stream failures (5a, 5b)", "",
              "| scenario | system | exact reply | repeated words (median) | reply |", "|---|---|---|---|---|"]
    for name in ("5a error after text", "5b stall after text"):
        for s in systems:
            c = table[name].get(s)
            if c is None:
                continue
            exact = statistics.mean(c.extra.get("exact", [0]))
            rep = statistics.median(c.extra.get("repeated", [0]))
            lines.append(f"| {name} | {s} | {exact * 100:.0f}% | {rep:.0f} | {cell_text(c)} |")
    lines += ["", "## Recovery (6)", "", "Share of the 5 requests after the primary's Retry-After that went back "
              "to the primary:", ""]
    for s in systems:
        c = table["6 primary recovers"].get(s)
        if c:
            lines.append(f"- {s}: {statistics.mean(c.extra['back_to_primary']) * 100:.0f}%")
    ours = {name: median(table[name]["openrouter-voice"].ttfts) for name in scenario_names
            if table[name].get("openrouter-voice") and table[name]["openrouter-voice"].ttfts}
    lines += ["", "## Ratios", "", "Ours / peer (median TTFT; < 1 means we are faster) and ours / physical limit:", "",
              "| scenario | " + " | ".join(f"vs {s}" for s in systems[1:]) + " | vs limit |",
              "|---|" + "---|" * len(systems)]
    for name, value in ours.items():
        if value is None:
            continue
        ratios = []
        for s in systems[1:]:
            peer = table[name].get(s)
            peer_value = median(peer.ttfts) if peer and peer.ttfts else None
            ratios.append(f"{value / peer_value:.2f}" if peer_value else "peer failed")
        lines.append(f"| {name} | " + " | ".join(ratios) + f" | {value / limit:.2f} |")
    lines += ["", "## Overhead and load (7)", "",
              f"Client CPU over bare httpx (fast streams of 10 and 400 tokens, fitted as fixed + per chunk): "
              f"**{over['ms_per_request']:.3f} ms/request** and **{over['us_per_chunk']:.1f} us/chunk** "
              f"(bare httpx {over['bare_ms']:.2f} ms + {over['bare_us_chunk']:.1f} us/chunk; ours "
              f"{over['ours_ms']:.2f} ms + {over['ours_us_chunk']:.1f} us/chunk).", "",
              f"{streams} concurrent streams through one process on 2 cores (upstream in another process):", "",
              "| system | completed | failed | wall | streams/s | p50 added | p99 added | CPU per 1000 chunks "
              "| peak RSS growth |",
              "|---|---|---|---|---|---|---|---|---|"]
    for s, m in loaded.items():
        lines.append(f"| {s} | {m['ok']:.0f} | {m['failed']:.0f} | {m['wall_s']:.2f} s | {m['streams_per_s']:.0f} | "
                     f"{m['p50_added_ms']:.0f} ms | {m['p99_added_ms']:.0f} ms | "
                     f"{m['cpu_ms_per_1000_chunks']:.0f} ms | {m['peak_rss_growth_mb']:.0f} MB |")
    lines += ["", "## Targets", "", *targets(table, over, limit), "", "## Settings", ""]
    lines += [f"- **{cls.name}**: {cls().describe()}" for cls in [BareHttpx, *SYSTEMS]]
    lines += ["", "![TTFT per scenario](bench/ttft.png)", ""]
    return "\n".join(lines)


def targets(table: dict[str, dict[str, Cell]], over: dict[str, float], limit: float) -> list[str]:
    from .systems import FIRST_TOKEN_TIMEOUT

    def ours(name: str) -> float | None:
        c = table.get(name, {}).get("openrouter-voice")
        return median(c.ttfts) if c and c.ttfts else None

    out = []

    def check(label: str, value: float | None, bound: float, unit: str = "s") -> None:
        ok = value is not None and value <= bound
        shown = "-" if value is None else (f"{value:.3f} {unit}" if unit else f"{value:.2f}")
        out.append(f"- {'met' if ok else 'MISSED'}: {label}: {shown} (target <= {bound:.3f} {unit})")

    check("known-bad primary (429) <= 1.1 x backup TTFT", ours("2 429 + Retry-After (1st)"), 1.1 * limit)
    check("hanging primary <= first-token timeout + 1.1 x backup TTFT", ours("3 primary hangs"),
          FIRST_TOKEN_TIMEOUT + 1.1 * limit)
    check("keep-alive-only primary <= first-token timeout + 1.1 x backup TTFT", ours("4 keep-alive only"),
          FIRST_TOKEN_TIMEOUT + 1.1 * limit)
    for name in ("5a error after text", "5b stall after text"):
        c = table[name].get("openrouter-voice")
        rep = max(c.extra.get("repeated", [0])) if c else None
        out.append(f"- {'met' if rep == 0 else 'MISSED'}: {name}: {rep} repeated words (target 0)")
    check("overhead per request", over["ms_per_request"], 1.0, "ms")
    check("overhead per chunk", over["us_per_chunk"], 20.0, "us")
    return out


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def plot(table: dict[str, dict[str, Cell]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = [s.name for s in SYSTEMS]
    names = [n for n in table if n != "limit"]
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / len(systems)
    for i, s in enumerate(systems):
        values = [median(table[n][s].ttfts) if table[n].get(s) and table[n][s].ttfts else 0 for n in names]
        ax.bar([x + i * width for x in range(len(names))], values, width, label=s)
    limit = median(table["limit"]["backup alone"].ttfts)
    if limit:
        ax.axhline(limit, color="black", linestyle="--", linewidth=1, label="backup alone (limit)")
    ax.set_xticks([x + width * (len(systems) - 1) / 2 for x in range(len(names))])
    ax.set_xticklabels([n.replace(" ", "\n", 1) for n in names], fontsize=8)
    ax.set_ylabel("median TTFT / continuation gap (s), 0 = no reply")
    ax.set_yscale("symlog", linthresh=1)
    ax.legend(fontsize=8)
    ax.set_title("Time to first token of the answer the user gets")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 runs per cell, 100 streams (about 2 minutes)")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--streams", type=int, default=None)
    parser.add_argument("--cap", type=float, default=8.0, help="seconds before a request counts as timed out")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the systems' own failover warnings are expected here
    runs = args.runs or (2 if args.quick else 4)
    streams = args.streams or (100 if args.quick else 500)
    started = time.perf_counter()
    upstream = Upstream()

    def log(text: str) -> None:
        print(text, flush=True)

    try:
        log(f"scenarios ({runs} runs each)...")
        table = await scenarios(upstream, runs, args.cap, log)
        log("overhead...")
        over = await overhead(upstream, 20)
        log(f"load ({streams} streams)...")
        loaded = await load(upstream, streams)
    finally:
        await upstream.close()
    text = report(table, over, loaded, runs, args.cap, time.perf_counter() - started, streams)
    Path(args.out).write_text(text + "\n", encoding="utf-8")  # noqa: ASYNC240 - once, at the end
    plot(table, ROOT / "bench" / "ttft.png")
    print(text)


if __name__ == "__main__":
    asyncio.run(main())
