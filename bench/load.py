"""Client-side cost, each measurement in a fresh process (run by ``python -m bench``, prints one JSON line).

``--mode overhead``: CPU per request and per chunk of every system, from fast replies of 10 and 400
tokens in interleaved batches (drift on the machine hits every system alike); the least disturbed
batch counts, and CPU = fixed + chunks x per_chunk gives both parts.

``--mode load``: N concurrent streams through one system: throughput, added latency, CPU per
1,000 chunks and peak RSS growth. The upstream (another process) was scripted by the caller.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import time
from typing import Any

from .scenarios import BACKUP, PRIMARY, Lane
from .systems import BY_NAME, System, quiet

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * PAGE


async def overhead(lane: Lane, names: list[str], batches: int, requests: int) -> dict[str, Any]:
    systems: list[System] = [BY_NAME[n]() for n in names]
    for system in systems:
        await system.start(lane.base_url, lane.models)
    best: dict[tuple[str, int], float] = {}
    try:
        for length in (10, 400):
            text = " ".join(f"w{i}" for i in range(length))  # distinct: LiteLLM cuts streams that repeat a chunk
            await lane.script({PRIMARY: {"text": text}, BACKUP: {"text": text}})
            for system in systems:
                for _ in range(5):  # warm pools, caches and lazy imports
                    await system.reply(-1, 30)
            for _ in range(batches):
                for system in systems:
                    gc.collect()
                    cpu = time.process_time()
                    for i in range(requests):
                        reply = await system.reply(i, 30)
                        if len(reply.deltas) != length:
                            raise RuntimeError(f"{system.name}: {len(reply.deltas)} chunks, expected {length}")
                    key = (system.name, length)
                    best[key] = min(best.get(key, float("inf")), (time.process_time() - cpu) / requests)
    finally:
        for system in systems:
            await system.close()
    out: dict[str, Any] = {}
    for system in systems:
        per_chunk = (best[(system.name, 400)] - best[(system.name, 10)]) / 390
        out[system.name] = {"ms_per_request": (best[(system.name, 10)] - 10 * per_chunk) * 1e3,
                            "us_per_chunk": per_chunk * 1e6}
    return out


async def load(lane: Lane, name: str, streams: int, cap: float, ttft: float, tokens: int) -> dict[str, Any]:
    system = BY_NAME[name]()
    await system.start(lane.base_url, lane.models)
    try:
        await system.reply(-1, cap)
        gc.collect()
        baseline = peak = rss()
        sampling = True

        async def sample() -> None:
            nonlocal peak
            while sampling:
                peak = max(peak, rss())
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        cpu, t0 = time.process_time(), time.perf_counter()
        replies = await asyncio.gather(*(system.reply(i, cap) for i in range(streams)))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu
        sampling = False
        await sampler
    finally:
        await system.close()
    done = [r for r in replies if r.error is None and len(r.text.split()) >= tokens]
    # Latency from the common start: a busy event loop may start some requests late.
    added = sorted(r.started + r.ttft - t0 - ttft for r in done if r.ttft is not None)
    chunks = sum(len(r.deltas) for r in replies)
    errors: dict[str, int] = {}
    for r in replies:
        if r not in done:
            key = r.error or "incomplete reply"
            errors[key] = errors.get(key, 0) + 1
    return {
        "completed": len(done), "failed": streams - len(done), "errors": errors, "wall_s": wall,
        "streams_per_s": len(done) / wall, "chunks_per_s": chunks / wall,
        "p50_added_ms": statistics.median(added) * 1e3 if added else None,
        "p99_added_ms": added[min(len(added) - 1, round(0.99 * (len(added) - 1)))] * 1e3 if added else None,
        "cpu_s": cpu, "cpu_ms_per_1000_chunks": cpu / max(chunks, 1) * 1e6,
        "peak_rss_growth_mb": (peak - baseline) / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--lane", required=True)
    parser.add_argument("--mode", choices=["overhead", "load"], required=True)
    parser.add_argument("--systems", required=True, help="system names separated by ';'")
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--cap", type=float, default=20.0)
    parser.add_argument("--ttft", type=float, default=0.3)
    parser.add_argument("--tokens", type=int, default=1)
    args = parser.parse_args()
    quiet()
    names = args.systems.split(";")

    async def measure() -> dict[str, Any]:
        lane = Lane(args.base_url, args.lane)
        try:
            if args.mode == "overhead":
                return await overhead(lane, names, args.batches, args.requests)
            return await load(lane, names[0], args.streams, args.cap, args.ttft, args.tokens)
        finally:
            await lane.aclose()

    print(json.dumps(asyncio.run(measure())), flush=True)


if __name__ == "__main__":
    main()
