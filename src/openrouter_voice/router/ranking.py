"""Predictive ranking (off by default): put a model whose providers are failing right now behind the
others before a turn starts, from OpenRouter's own endpoint statistics.

``GET /api/v1/models/{author}/{slug}/endpoints`` lists a model's providers with ``uptime_last_5m``
(percent; ``latency_last_30m`` percentiles only when authenticated). OpenRouter fails over between
a model's providers by itself, so a model is as available as its best provider: a model whose best
``uptime_last_5m`` is below ``min_uptime`` goes behind the models that are fine (order otherwise
kept). A background task refreshes the figures, at most one request per chain model per
``interval`` (60 s), never on a turn's path: a turn only reads what is already known. Figures older
than a few intervals are forgotten.

>>> ranking = UptimeRanking()
>>> a, b = Target("a/x", "openrouter", "https://openrouter.ai/api/v1"), Target("b/y", "openrouter", "")
>>> ranking.learn("a/x", {"data": {"endpoints": [{"uptime_last_5m": 61.0}, {"uptime_last_5m": 72.5}]}})
72.5
>>> [t.model for t in ranking.order([a, b])]
['b/y', 'a/x']
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx2

from ..fetch import fetch
from .defaults import OPENROUTER
from .types import Target

logger = logging.getLogger("openrouter_voice.router")

MIN_UPTIME = 90.0
"""Percent: a model whose best provider was up less than this in the last 5 minutes goes behind the others."""
REFRESH_INTERVAL = 60.0
"""Seconds between two requests for one model's statistics."""
FORGET_AFTER = 5
"""Intervals after which a figure that could not be refreshed is dropped."""


class UptimeRanking:
    """Recent uptime per model, refreshed in the background, and the chain order it suggests."""

    def __init__(self, *, min_uptime: float = MIN_UPTIME, interval: float = REFRESH_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.min_uptime = min_uptime
        self.interval = interval
        self._clock = clock
        self._uptime: dict[str, tuple[float, float]] = {}  # model -> (uptime %, when learnt)
        self._asked: dict[str, float] = {}  # model -> when last requested
        self._targets: list[Target] = []
        self._task: asyncio.Task[None] | None = None

    def uptime(self, model: str) -> float | None:
        """The best provider's ``uptime_last_5m`` (percent) if known and recent."""
        known = self._uptime.get(model)
        if known is None or self._clock() - known[1] > FORGET_AFTER * self.interval:
            return None
        return known[0]

    def learn(self, model: str, payload: Any) -> float | None:
        """Take one ``/endpoints`` reply; returns the uptime learnt (None if the reply had none)."""
        endpoints = payload.get("data", {}).get("endpoints") if isinstance(payload, dict) else None
        figures = []
        for endpoint in endpoints if isinstance(endpoints, list) else []:
            value = endpoint.get("uptime_last_5m") if isinstance(endpoint, dict) else None
            if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 100:
                figures.append(float(value))
        if not figures:
            return None
        best = max(figures)
        before = self.uptime(model)
        self._uptime[model] = (best, self._clock())
        if (best < self.min_uptime) != (before is not None and before < self.min_uptime):
            logger.info("predictive ranking: %s's best provider was up %.0f%% in the last 5 minutes: %s", model, best,
                        "it goes behind the others" if best < self.min_uptime else "back in its place")
        return best

    def order(self, plan: Sequence[Target]) -> list[Target]:
        """``plan`` with the models known to be failing right now moved behind the others (a stable partition)."""
        poor = [t for t in plan if (u := self.uptime(t.model)) is not None and u < self.min_uptime
                and t.endpoint == OPENROUTER]
        return [t for t in plan if t not in poor] + poor

    async def refresh(self, client: httpx2.AsyncClient, targets: Sequence[Target]) -> int:
        """Ask for each OpenRouter model's statistics not asked for within ``interval``; returns requests sent."""
        sent = 0
        for target in targets:
            now = self._clock()
            if target.endpoint != OPENROUTER or now - self._asked.get(target.model, -self.interval) < self.interval:
                continue
            self._asked[target.model] = now
            sent += 1
            headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else None
            url = f"{target.base_url.rstrip('/')}/models/{target.model}/endpoints"
            try:
                response = await fetch(client, url, seconds=5.0, max_bytes=1 << 20, headers=headers)
                if response.status_code == 200:
                    self.learn(target.model, response.json())
                else:
                    logger.debug("predictive ranking: %s endpoints answered %d", target.model, response.status_code)
            except (httpx2.HTTPError, ValueError) as exc:
                logger.debug("predictive ranking: %s endpoints unavailable (%s)", target.model, type(exc).__name__)
        return sent

    def start(self, client: httpx2.AsyncClient, targets: Sequence[Target]) -> None:
        """Refresh ``targets`` in the background from now on (returns at once; idempotent)."""
        self._targets = list(targets)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run(client))

    async def _run(self, client: httpx2.AsyncClient) -> None:
        while True:
            await self.refresh(client, self._targets)
            await asyncio.sleep(self.interval)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
