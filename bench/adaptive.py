"""Scenarios for deadlines learnt from history: 1b (what hedging costs in healthy traffic) and 8 (dribble).

1b: healthy primary and backup whose first token varies naturally (``TTFT_DIST``); one fresh system
serves ``turns`` turns, ``TRAFFIC_BATCH`` at a time; waste = extra upstream calls per turn (hedges).
8: after ``WARM_TURNS`` healthy replies, the primary says ``DRIBBLE_AFTER`` words, then one word
every ``DRIBBLE_INTERVAL`` s (alive, slower than speech); the backup honours prefill. The figure is
the whole reply's duration, compared with the same system's healthy replies of the same text.
"""

from __future__ import annotations

import asyncio
import statistics

from .scenarios import (
    BACKUP,
    FULL,
    HEALTHY_VARIED,
    PRIMARY,
    VARIED,
    WARM_TURNS,
    Cell,
    Lane,
    Request,
    failure_note,
    record,
    repeat,
    session,
    word_diff,
    words,
)
from .systems import Reply, System

TRAFFIC_BATCH = 10
DRIBBLE_AFTER = 4
DRIBBLE_INTERVAL = 0.7


async def healthy_traffic(lane: Lane, cell: Cell, cls: type[System], turns: int, cap: float) -> None:
    """Scenario 1b: ``turns`` healthy turns; how many extra upstream calls did hedging cost?"""
    system = cls()
    await lane.script({PRIMARY: {"text": "Hi."}, BACKUP: {"text": "Hi."}})
    await system.start(lane.base_url, lane.models)
    try:
        await system.reply(-1, cap)
        await lane.script({PRIMARY: HEALTHY_VARIED, BACKUP: HEALTHY_VARIED})
        replies: list[Reply] = []
        for start in range(0, turns, TRAFFIC_BATCH):
            tags = range(start, min(turns, start + TRAFFIC_BATCH))
            replies += await asyncio.gather(*(system.reply(tag, cap) for tag in tags))
        await asyncio.sleep(0.1)
        calls = await lane.calls()
    finally:
        await system.close()
    per_tag: dict[int, int] = {}
    for _, _, tag in calls:
        if tag is not None and tag >= 0:
            per_tag[tag] = per_tag.get(tag, 0) + 1
    for tag, reply in enumerate(replies):
        record(cell, Request(reply, [("?", 0.0)] * per_tag.get(tag, 0)))
        cell.extra["hedged"].append(1.0 if per_tag.get(tag, 0) > 1 else 0.0)


async def dribble(lane: Lane, cell: Cell, cls: type[System], runs: int, cap: float) -> None:
    """Scenario 8: the primary dribbles after a few words; is the whole reply delivered in time, unrepeated?"""
    primary = {"text": FULL, **VARIED, "dribble_after_tokens": DRIBBLE_AFTER, "dribble_interval": DRIBBLE_INTERVAL}
    backup = {"continue": FULL, **VARIED}

    async def one_run() -> None:
        warmed: list[Reply] = []
        (request,) = await session(lane, cls, {PRIMARY: primary, BACKUP: backup}, 1, cap, warm_turns=WARM_TURNS,
                                   warmed=warmed)
        reply = request.reply
        cell.requests += 1
        healthy = [r.deltas[-1][0] for r in warmed if r.deltas and r.error is None and r.text == FULL]
        cell.extra["healthy"].extend(healthy)
        repeated, missing = word_diff(reply.text)
        cell.extra["missing"].append(missing)
        if len(words(reply.text)) >= len(words(FULL)) and reply.error is None:
            duration = reply.deltas[-1][0]
            cell.values.append(duration)
            if healthy:
                cell.extra["ratio"].append(duration / statistics.median(healthy))
            cell.waste.append(max(0, len(request.calls) - 2))
            cell.extra["repeated"].append(repeated)
            cell.extra["exact"].append(1.0 if reply.text == FULL else 0.0)
        else:
            cell.failures.append(failure_note(reply))
            cell.waste.append(max(0, len(request.calls) - 1))

    await repeat(runs, one_run, cell)
