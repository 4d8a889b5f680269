"""The scripted upstream in its own process, with a small control API for the benchmark.

``python -m bench.upstream_server`` serves :class:`ScriptedUpstream` (unchanged: this
module only subclasses it) on 127.0.0.1, plus a control API. Each benchmark process works in its
own *lane*: its models are named ``<lane>/primary`` and ``<lane>/backup`` and the control calls
take ``?lane=<lane>``, so lanes run side by side without touching each other's scripts.

POST /_control/script    {model: spec}: forget the lane's scripts and records, then script each model.
                         spec: {Script fields} | [{..}, ..] (one per request, the last repeats) |
                         {"continue": FULL, ..} (honours prefill: continues FULL after the assistant's
                         partial reply) | {"phases": [{"for": seconds, ..}, .., {..}]} (changes with time,
                         e.g. 429 until its Retry-After has passed, then healthy); any spec may carry
                         "ttft_dist": {"p50": s, "p95": s, "slow_share": f, "slow": s}: each request then
                         draws its TTFT from a log-normal (p50, p95), or ``slow`` with probability
                         ``slow_share`` (a healthy model's natural spread, seeded per model)
GET  /_control/requests  the lane's calls: [[model, received_at (CLOCK_MONOTONIC), request tag], ..]

The benchmark tags each request's user message with ``[r<n>]``, so every upstream call (retries,
hedges, background recovery probes) is counted against the request that caused it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import re
import time
import zlib
from collections.abc import Callable
from typing import Any

from aiohttp import web

from openrouter_voice.testing import Script, ScriptedUpstream

TAG = re.compile(r"\[r(-?\d+)\]")


def continuing(full: str, **fields: Any) -> Callable[[dict[str, Any]], Script]:
    """A model that honours prefill: it continues ``full`` after whatever the assistant already said."""

    def script(body: dict[str, Any]) -> Script:
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        said = str(last.get("content") or "") if last.get("role") == "assistant" else ""
        if said and full.startswith(said):
            return Script(text=full[len(said):], **fields)
        return Script(text=full, **fields)

    return script


def phased(phases: list[dict[str, Any]]) -> Callable[[dict[str, Any]], Script]:
    """A model whose behaviour changes with time since it was scripted (each phase lasts ``for`` seconds)."""
    started = time.monotonic()
    ends, scripts, elapsed = [], [], 0.0
    for phase in phases:
        phase = dict(phase)
        elapsed += float(phase.pop("for", float("inf")))
        ends.append(elapsed)
        scripts.append(build(f"phase{len(scripts)}", phase))

    def script(body: dict[str, Any]) -> Script:
        now = time.monotonic() - started
        source = next((s for end, s in zip(ends, scripts, strict=True) if now < end), scripts[-1])
        return source if isinstance(source, Script) else source(body)

    return script


_scripted: dict[str, int] = {}


def varied(model: str, dist: dict[str, float], make: Callable[[dict[str, Any], dict[str, Any]], Script]
           ) -> Callable[[dict[str, Any]], Script]:
    """Each request's TTFT drawn from ``dist``, then ``make(body, fields)``. Seeded per model and per time it is
    scripted: a benchmark is reproducible, yet each run draws its own TTFTs."""
    _scripted[model] = _scripted.get(model, 0) + 1
    rng = random.Random(zlib.crc32(f"{model}#{_scripted[model]}".encode()))
    mu, sigma = math.log(dist["p50"]), math.log(dist["p95"] / dist["p50"]) / 1.645

    def script(body: dict[str, Any]) -> Script:
        slow = rng.random() < dist.get("slow_share", 0.0)
        return make(body, {"ttft": dist["slow"] if slow else rng.lognormvariate(mu, sigma)})

    return script


def build(model: str, spec: dict[str, Any] | list[dict[str, Any]]) -> Any:
    """The script source a control spec describes (see the module docstring)."""
    if isinstance(spec, list):
        return [Script(**s) for s in spec]
    spec = dict(spec)
    if "phases" in spec:
        return phased(spec["phases"])
    dist = spec.pop("ttft_dist", None)
    full = spec.pop("continue", None)

    def make(body: dict[str, Any], extra: dict[str, Any]) -> Script:
        return continuing(full, **spec, **extra)(body) if full is not None else Script(**spec, **extra)

    if dist is not None:
        return varied(model, dist, make)
    return (lambda body: make(body, {})) if full is not None else Script(**spec)


def tag_of(body: dict[str, Any]) -> int | None:
    match = TAG.search(json.dumps(body.get("messages") or []))
    return int(match.group(1)) if match else None


class BenchUpstream(ScriptedUpstream):
    def _app(self) -> web.Application:
        app = super()._app()
        app.router.add_post("/_control/script", self._control_script)
        app.router.add_get("/_control/requests", self._control_requests)
        return app

    def _forget(self, lane: str) -> None:
        """Forget the scripts and records of one lane's models (``lane/...``), leaving other lanes alone."""
        prefix = lane + "/"
        self.requests[:] = [r for r in self.requests if not r.model.startswith(prefix)]
        for model in [m for m in self._scripts if m.startswith(prefix)]:
            del self._scripts[model]
            self._counters.pop(model, None)

    async def _control_script(self, request: web.Request) -> web.Response:
        self._forget(request.query["lane"])
        for model, spec in (await request.json()).items():
            self.script(model, build(model, spec))
        return web.json_response({"ok": True})

    async def _control_requests(self, request: web.Request) -> web.Response:
        prefix = request.query["lane"] + "/"
        return web.json_response([[r.model, r.received_at, tag_of(r.body)] for r in self.requests
                                  if r.model.startswith(prefix)])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream_server")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (printed as 'ready PORT')")
    args = parser.parse_args()
    upstream = BenchUpstream(host="127.0.0.1", port=args.port)

    async def serve() -> None:
        await upstream.start()
        print(f"ready {upstream.port}", flush=True)
        await asyncio.Event().wait()  # until the benchmark terminates this process

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
