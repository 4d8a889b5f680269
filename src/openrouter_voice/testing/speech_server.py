"""What the scripted Deepgram and Cartesia servers share: an aiohttp server on 127.0.0.1, per-connection
scripts (one, or a list whose last repeats) that can be changed mid-call, and the faults common to both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from aiohttp import web


@dataclass
class Fault:
    """A fault at the handshake: ``status`` (HTTP error, e.g. 401 or 503) or ``hang`` (the TCP
    connection is accepted and the upgrade never answered)."""

    status: int | None = None
    hang: bool = False


S = TypeVar("S", bound=Fault)


class SpeechServer(Generic[S]):
    """Base of the scripted speech services. ``script(...)`` applies to connections already open
    (they take the first script, at their next decision) and to the next ones (in order, the last
    repeating), so a test can break a provider in the middle of a call."""

    default: S

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self._scripts: list[S] = [self.default]
        self._next = 0
        self._generation = 0
        self._open: set[web.WebSocketResponse] = set()
        self._runner: web.AppRunner | None = None
        self.handshakes = 0
        self.auth: list[str | None] = []

    def script(self, source: S | Sequence[S]) -> None:
        """Script what connections do from now on (see the class docstring)."""
        self._scripts = [source] if isinstance(source, Fault) else list(source)
        self._generation += 1
        self._next = 1 if self._open else 0

    def _take(self) -> tuple[S, int]:
        script = self._scripts[min(self._next, len(self._scripts) - 1)]
        self._next += 1
        return script, self._generation

    def _current(self, script: S, generation: int) -> tuple[S, int]:
        """An open connection's script: its own, or the first new one if the script changed since."""
        if generation != self._generation:
            return self._scripts[0], self._generation
        return script, generation

    async def _handshake(self, request: web.Request, auth_header: str) -> tuple[web.WebSocketResponse | None, S, int]:
        self.handshakes += 1
        self.auth.append(request.headers.get(auth_header))
        script, generation = self._take()
        if script.hang:
            await asyncio.Event().wait()  # until the client gives up or the server stops
        if script.status is not None:
            return None, script, generation  # the handler answers with the scripted status
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=16 * 1024 * 1024)
        await ws.prepare(request)
        self._open.add(ws)
        return ws, script, generation

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def drop_connections(self) -> None:
        """Cut every open socket now, without a close frame (a network failure)."""
        for ws in list(self._open):
            abort(ws)

    async def start(self) -> Self:
        app = web.Application()
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server: Any = site._server
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for ws in list(self._open):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 0.5)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()


def refusal(status: int) -> web.Response:
    """The scripted handshake failure (Deepgram and Cartesia both answer errors as JSON)."""
    return web.json_response({"err_code": "SCRIPTED", "err_msg": f"scripted failure {status}"}, status=status)


def abort(ws: web.WebSocketResponse) -> None:
    """Drop ``ws``'s TCP connection without a close frame."""
    transport = ws._req.transport if ws._req is not None else None
    if transport is not None:
        transport.abort()
