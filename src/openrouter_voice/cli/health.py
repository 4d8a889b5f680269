"""``openrouter-voice health``: the model health the fleet shares, refreshing in place like ``top``.

>>> rows = [ModelRow("a/x", "open", 29.5, "HTTP 429 (Retry-After 30s)", 1, 0.31, 0.52, 40, 0.67, {"HTTP 429": 1})]
>>> health_table(rows, source="redis://127.0.0.1:6379/0 (prefix openrouter-voice)").row_count
1
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from ..config import Settings
from ..fleet.embedded import find_advertised
from ..fleet.urls import masked
from ..fleet.view import ModelRow, as_json, read_fleet

NOTHING = ("Nothing to show: no agent worker with its embedded health store runs on this machine, and "
           "OPENROUTER_VOICE_REDIS_URL is not set (set it to share model health across processes and machines, "
           "and to see it here).")
_COLOURS = {"closed": "green", "suspect": "orange1", "open": "red", "half-open": "yellow", "excluded": "magenta",
            "tool-less": "cyan"}


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


def health_table(rows: list[ModelRow], *, source: str) -> Table:
    """The rows as a rich table titled with where they come from."""
    table = Table(title=f"model health - {escape(source)}")
    for column in ("model", "state", "cooldown left", "why", "TTFT p50 / p95", "hedge after", "recent failures",
                   "cost"):
        table.add_column(column)
    for row in rows:
        colour = _COLOURS.get(row.state, "white")
        failures = ", ".join(f"{escape(reason)} x{count}" for reason, count in row.recent_failures.items()) or "-"
        table.add_row(
            escape(row.model), f"[{colour}]{row.state}[/{colour}]",
            f"{row.cooldown_left:.1f} s" if row.cooldown_left else "-", escape(row.why or "-"),
            f"{_seconds(row.ttft_p50)} / {_seconds(row.ttft_p95)} (n={row.ttft_samples})" if row.ttft_samples else "-",
            _seconds(row.hedge_delay), failures, f"${row.cost:.4f}" if row.cost is not None else "-")
    return table


def where(settings: Settings) -> tuple[str, str] | None:
    """The URL to read health from and how to name it: OPENROUTER_VOICE_REDIS_URL, else the embedded
    store of an agent worker running on this machine (found through its runtime file), else None."""
    if settings.redis_url is not None:
        url = settings.redis_url.get_secret_value()
        return url, f"{masked(url)} (prefix {settings.redis_prefix})"
    running = find_advertised()
    if running is None:
        return None
    url, pid = running
    return url, f"embedded store of the agent worker, pid {pid} ({url}, prefix {settings.redis_prefix})"


def run_health(settings: Settings, *, once: bool, as_json_output: bool, interval: float, out: Console,
               err: Console) -> int:
    """Print the fleet's health (once, or live until Ctrl-C). Returns the exit code."""
    found = where(settings)
    if found is None:
        if as_json_output:
            out.print_json(json.dumps({"source": None, "models": [], "note": NOTHING}))
        else:
            err.print(NOTHING)
        return 0
    url, source = found
    hedge_after = settings.hedge_after or None

    async def read() -> list[ModelRow]:
        return await read_fleet(url, settings.redis_prefix, settings.chain(), hedge_after=hedge_after)

    try:
        rows = asyncio.run(read())
    except (RedisError, OSError) as exc:
        err.print(f"[red]Cannot read model health from {escape(masked(url))}: {type(exc).__name__}.[/red] "
                  "Fix: start Redis there, or correct OPENROUTER_VOICE_REDIS_URL (or, for a worker's embedded "
                  "store, check that the worker still runs).")
        return 1
    if as_json_output:
        out.print_json(json.dumps(as_json(rows, source=source)))
        return 0
    if once:
        out.print(health_table(rows, source=source))
        return 0
    return _live(read, rows, source=source, interval=interval, out=out)


def _live(read: Callable[[], Awaitable[list[ModelRow]]], rows: list[ModelRow], *, source: str, interval: float,
          out: Console) -> int:
    async def loop() -> None:
        current = rows
        with Live(health_table(current, source=source), console=out, refresh_per_second=4) as live:
            while True:
                await asyncio.sleep(interval)
                try:
                    current = await read()
                    live.update(health_table(current, source=source))
                except (RedisError, OSError) as exc:
                    live.update(health_table(current, source=f"{source} - unreachable ({type(exc).__name__})"))

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a live view ends
        asyncio.run(loop())
    return 0
