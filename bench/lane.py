"""One system's scenarios in a process of its own (``python -m bench`` starts one per system).

Lanes let the slow scenarios of different systems (a peer waiting out a 5 s read timeout or the
cap) overlap in time without sharing an event loop, an HTTP pool or a garbage collector. Protocol on
stdin/stdout, one line each: the lane pre-warms its system and says ``ready``; then ``run <keys>``
(scenario keys: ``L`` the physical limit, ``1``-``6``, ``h`` healthy traffic (1b), ``8`` dribble)
answers ``log <text>`` lines and one ``result <json>``; ``quit`` ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import defaultdict
from dataclasses import fields
from typing import Any

from .adaptive import dribble, healthy_traffic
from .report import outcome
from .scenarios import (
    BACKUP,
    FULL,
    HEALTHY,
    HEALTHY_VARIED,
    PRIMARY,
    WARM,
    WARM_TURNS,
    Cell,
    Lane,
    Table,
    healthy_limit,
    mid_stream,
    rate_limited,
    recovery,
    session,
    simple,
)
from .systems import BY_NAME, System, quiet

S1, S2A, S2B = "1 healthy primary", "2 429 + Retry-After: 1st request", "2 ... next 10 while it cools down"
S1B = "1b healthy traffic, varied TTFT: extra calls"
S3, S4 = "3 primary hangs (after warm-up)", "4 primary sends only keep-alives (after warm-up)"
S5 = {  # name: (failure, backup honours prefill)
    "5a error after text, backup continues": ("error_after_tokens", True),
    "5b error after text, backup restarts": ("error_after_tokens", False),
    "5c stall after text, backup continues (after warm-up)": ("stall_after_tokens", True),
    "5d stall after text, backup restarts (after warm-up)": ("stall_after_tokens", False),
}
S6 = "6 primary recovers after Retry-After"
S8 = "8 primary dribbles a word every 0.7 s (after warm-up)"
ORDER = [S1, S1B, S2A, S2B, S3, S4, *S5, S6, S8]
KEEPALIVES = {"keepalive_only": True, "keepalive_interval": 0.5}


def say(kind: str, text: str) -> None:
    print(f"{kind} {text}", flush=True)


async def prewarm(lane: Lane, cls: type[System], cap: float) -> None:
    """Pay the library's one-off costs (lazy imports, first failover and continuation paths) before measuring."""
    await session(lane, cls, {PRIMARY: {"status": 429, "retry_after": 1}, BACKUP: WARM}, 1, cap)
    await session(lane, cls, {PRIMARY: {"text": FULL, "error_after_tokens": 3}, BACKUP: {"continue": FULL}}, 1, cap)


async def run(lane: Lane, cls: type[System], keys: str, runs: int, cap: float, table: Table) -> dict[str, Any]:
    limit: list[float] = []

    def cell(name: str) -> Cell:
        return table.setdefault(name, {}).setdefault(cls.name, Cell())

    def done(*names: str) -> None:
        for name in names:
            say("log", f"{name:40} {cls.name:34} {outcome(cell(name), name)}")

    if "L" in keys:
        limit = await healthy_limit(lane, cls, runs, cap)
    if "1" in keys:
        await simple(lane, cell(S1), cls, {PRIMARY: HEALTHY, BACKUP: HEALTHY}, runs, cap)
        done(S1)
    if "2" in keys:
        await rate_limited(lane, cell(S2A), cell(S2B), cls, runs, cap)
        done(S2A, S2B)
    if "3" in keys:
        await simple(lane, cell(S3), cls, {PRIMARY: {"hang": True}, BACKUP: HEALTHY_VARIED}, runs, cap, WARM_TURNS)
        done(S3)
    if "4" in keys:
        await simple(lane, cell(S4), cls, {PRIMARY: KEEPALIVES, BACKUP: HEALTHY_VARIED}, runs, cap, WARM_TURNS)
        done(S4)
    if "5" in keys:
        for name, (failure, continues) in S5.items():
            twin = None if continues else next(n for n, (f, c) in S5.items() if f == failure and c)
            await mid_stream(lane, cell(name), cls, failure, continues, runs, cap,
                             twin=table.get(twin, {}).get(cls.name) if twin else None)
            done(name)
    if "6" in keys:
        await recovery(lane, cell(S6), cls, max(1, runs // 2), cap)
        done(S6)
    if "h" in keys:
        await healthy_traffic(lane, cell(S1B), cls, max(100, 25 * runs), cap)
        done(S1B)
    if "8" in keys:
        await dribble(lane, cell(S8), cls, runs, cap)
        done(S8)
    return {"limit": limit, "table": {name: {s: dump(c) for s, c in row.items()} for name, row in table.items()}}


def dump(cell: Cell) -> dict[str, Any]:
    # Not dataclasses.asdict: it cannot copy a defaultdict.
    return {f.name: dict(cell.extra) if f.name == "extra" else getattr(cell, f.name) for f in fields(cell)}


def load_cell(data: dict[str, Any]) -> Cell:
    return Cell(**{**data, "extra": defaultdict(list, data["extra"])})


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lane")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--lane", required=True)
    parser.add_argument("--system", required=True)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--cap", type=float, required=True)
    args = parser.parse_args()
    quiet()
    cls = BY_NAME[args.system]
    lane = Lane(args.base_url, args.lane)
    table: Table = {}
    try:
        await prewarm(lane, cls, args.cap)
        say("ready", "")
        loop = asyncio.get_running_loop()
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
            if not line or line[0] == "quit":
                break
            say("result", json.dumps(await run(lane, cls, line[1], args.runs, args.cap, table)))
    finally:
        await lane.aclose()


if __name__ == "__main__":
    asyncio.run(main())
