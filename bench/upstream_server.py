"""The scripted upstream in its own process, with a small control API for the benchmark.

POST /_control/script  {"model": {Script fields} | [..] | {"continue": FULL_TEXT, ...}}
POST /_control/reset   forget scripts and records
GET  /_control/requests  [[model, t_received, last_message_role], ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

from aiohttp import web

from openrouter_voice.testing import Script, ScriptedUpstream


def continuing(full: str, **fields: Any) -> Any:
    """A model that honours prefill: it continues ``full`` after whatever the assistant already said."""

    def script(body: dict[str, Any]) -> Script:
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        if last.get("role") == "assistant" and full.startswith(str(last.get("content", ""))):
            return Script(text=full[len(str(last["content"])):], **fields)
        return Script(text=full, **fields)

    return script


class BenchUpstream(ScriptedUpstream):
    def _app(self) -> web.Application:
        app = super()._app()
        app.router.add_post("/_control/script", self._control_script)
        app.router.add_post("/_control/reset", self._control_reset)
        app.router.add_get("/_control/requests", self._control_requests)
        app.router.add_get("/v1/models", self._models)
        return app

    async def _control_script(self, request: web.Request) -> web.Response:
        for model, spec in (await request.json()).items():
            if isinstance(spec, list):
                self.script(model, [Script(**s) for s in spec])
            elif "continue" in spec:
                spec = dict(spec)
                self.script(model, continuing(spec.pop("continue"), **spec))
            else:
                self.script(model, Script(**spec))
        return web.json_response({"ok": True})

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _control_requests(self, request: web.Request) -> web.Response:
        return web.json_response([[r.model, r.received_at, (r.messages[-1].get("role") if r.messages else None)]
                                  for r in self.requests])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    upstream = BenchUpstream(port=args.port)

    async def serve() -> None:
        await upstream.start()
        print("ready", flush=True)
        await asyncio.Event().wait()  # until the benchmark terminates this process

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
