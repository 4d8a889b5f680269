"""A scripted OpenRouter-compatible server on 127.0.0.1, for tests, benchmarks and rehearsals.

Script each model's behaviour, point a router (yours or ours) at ``base_url``, and read back what
the server received:

>>> async with ScriptedUpstream() as up:  # doctest: +SKIP
...     up.script("openai/gpt-4o-mini", Script(status=429, retry_after=5))
...     up.script("google/gemini-2.5-flash-lite", Script(text="Hello there!", ttft=0.3, tokens_per_second=80))
...     router = FallbackRouter(models=["openai/gpt-4o-mini", "google/gemini-2.5-flash-lite"],
...                             api_key="test", base_url=up.base_url)
...     reply = await router.complete([{"role": "user", "content": "Hi"}])
...     assert [r.model for r in up.requests] == ["openai/gpt-4o-mini", "google/gemini-2.5-flash-lite"]

Run it standalone with ``python -m openrouter_voice.testing --port 8089 --script scenario.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from .script import KEEPALIVE, RecordedRequest, Script, ScriptSource, StreamChunks, default_catalog, usage_payload


class ScriptedUpstream:
    """An aiohttp server speaking OpenRouter's chat-completions wire format (streaming and not).

    Models without a script answer with ``default`` (a healthy short reply). ``/api/v1/models``
    serves ``catalog`` (or, when set, ``catalog_body`` as it is: a 200 that is not a catalog);
    ``/api/v1/key`` serves ``key_info``. Requests with a wrong bearer key get 401 when ``api_key`` is set.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        default: Script | None = None,
        catalog: list[dict[str, Any]] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.default = default or Script()
        self.catalog: list[dict[str, Any]] = catalog if catalog is not None else default_catalog()
        self.catalog_body: Any = None
        self.key_info: dict[str, Any] = {"label": "test", "limit": None, "limit_remaining": None,
                                         "usage": 0.0, "is_free_tier": False}
        self.requests: list[RecordedRequest] = []
        # False: keep no request (a long soak's bodies, each the conversation so far, grow as turns squared)
        self.record_requests = True
        self.catalog_requests = 0
        # /api/v1/models/{author}/{slug}/endpoints: model id -> its providers' figures (e.g. uptime_last_5m)
        self.endpoint_stats: dict[str, list[dict[str, Any]]] = {}
        self.endpoint_requests: list[str] = []
        self.open_streams = 0
        self._scripts: dict[str, ScriptSource] = {}
        self._counters: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.random = random.Random(0)

    # -- scripting --------------------------------------------------------------------------

    def script(self, model: str, source: ScriptSource) -> None:
        """Script ``model``: one Script, a list (one per request, the last repeats), or a callable."""
        self._scripts[model] = source
        self._counters[model] = 0

    def set_catalog(self, models: list[dict[str, Any]]) -> None:
        self.catalog = models

    def requests_for(self, model: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.model == model]

    def reset(self) -> None:
        """Forget scripts and recorded requests."""
        self._scripts.clear()
        self._counters.clear()
        self.requests.clear()

    async def wait_until_idle(self, limit: float = 10.0) -> None:
        """Return once no stream is open on the server (a client's close reaches the server a few loop
        turns later); ``TimeoutError`` if streams are still open after ``limit`` seconds (a leak).
        Tests wait on this instead of sleeping for a guessed while."""
        deadline = time.monotonic() + limit
        while self.open_streams:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.open_streams} stream(s) still open after {limit} s")
            await asyncio.sleep(0.005)

    def _pick(self, model: str, body: dict[str, Any]) -> Script:
        source = self._scripts.get(model)
        if source is None:
            return self.default
        if isinstance(source, Script):
            return source
        if callable(source):
            return source(body)
        index = self._counters.get(model, 0)
        self._counters[model] = index + 1
        return source[min(index, len(source) - 1)]

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/api/v1``: give this to the router as its base URL."""
        return f"http://{self.host}:{self.port}/api/v1"

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/api/v1/chat/completions", self._chat)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/api/v1/models", self._models)
        app.router.add_get("/api/v1/models/{author}/{slug}/endpoints", self._endpoints)
        app.router.add_get("/api/v1/key", self._key)
        return app

    async def start(self) -> Self:
        """Start serving in the running event loop."""
        self._runner = web.AppRunner(self._app(), access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=2048)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop serving and close every open connection."""
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def start_in_thread(self) -> Self:
        """Serve from a background thread with its own event loop (for sync code and benchmarks)."""
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._thread_loop = loop
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # surface bind errors to the caller
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._thread = threading.Thread(target=run, name="scripted-upstream", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    def stop_thread(self) -> None:
        if self._thread_loop is not None and self._thread is not None:
            self._thread_loop.call_soon_threadsafe(self._thread_loop.stop)
            self._thread.join(10)
            self._thread = None
            self._thread_loop = None

    def __enter__(self) -> Self:
        return self.start_in_thread()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_thread()

    # -- handlers ---------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        if self.api_key is None:
            return True
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _models(self, request: web.Request) -> web.Response:
        self.catalog_requests += 1
        if self.catalog_body is not None:
            return web.json_response(self.catalog_body)
        models = self.catalog
        wanted = request.query.get("supported_parameters")
        if wanted:
            models = [m for m in models if wanted in (m.get("supported_parameters") or [])]
        return web.json_response({"data": models})

    async def _endpoints(self, request: web.Request) -> web.Response:
        model = f"{request.match_info['author']}/{request.match_info['slug']}"
        self.endpoint_requests.append(model)
        if model not in self.endpoint_stats:
            return web.json_response({"error": {"code": 404, "message": "Model not found"}}, status=404)
        return web.json_response({"data": {"id": model, "name": model, "endpoints": self.endpoint_stats[model]}})

    async def _key(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": {"code": 401, "message": "No auth credentials found"}}, status=401)
        return web.json_response({"data": self.key_info})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": {"code": 400, "message": "Invalid JSON body"}}, status=400)
        if not isinstance(body, dict):
            return web.json_response({"error": {"code": 400, "message": "Body must be an object"}}, status=400)
        model = str(body.get("model", ""))
        if self.record_requests:
            self.requests.append(RecordedRequest(model, body, dict(request.headers), request.path))
        if not self._authorized(request):
            return web.json_response({"error": {"code": 401, "message": "User not found."}}, status=401)
        script = self._pick(model, body)
        if script.status is not None:
            return await self._error_response(request, script)
        if script.hang:
            await asyncio.sleep(3600)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", [])
                            if isinstance(m, dict)) + 5
        if not body.get("stream"):
            return await self._non_stream(script, model, prompt_tokens)
        return await self._stream(request, script, model, prompt_tokens)

    async def _error_response(self, request: web.Request, script: Script) -> web.StreamResponse:
        assert script.status is not None
        headers = {}
        if script.retry_after is not None:
            headers["Retry-After"] = str(script.retry_after)
        payload = script.error_body
        if payload is None:
            error: dict[str, Any] = {"code": script.status, "message": script.error_message}
            if script.error_type:
                error["metadata"] = {"error_type": script.error_type}
            payload = {"error": error}
        if script.error_body_drip is not None:
            return await self._drip(request, script, payload, headers)
        if isinstance(payload, str | bytes):
            return web.Response(status=script.status, body=payload, headers=headers, content_type="text/plain")
        return web.json_response(payload, status=script.status, headers=headers)

    async def _drip(self, request: web.Request, script: Script, payload: Any,
                    headers: dict[str, str]) -> web.StreamResponse:
        """Headers at once, then the error body one byte every ``script.error_body_drip`` seconds."""
        assert script.status is not None
        assert script.error_body_drip is not None
        raw = payload if isinstance(payload, bytes) else (
            payload.encode() if isinstance(payload, str) else json.dumps(payload).encode())
        response = web.StreamResponse(status=script.status, headers={**headers, "Content-Type": "application/json"})
        await response.prepare(request)
        if script.status < 200 or script.status in (204, 304):
            # these carry no body (RFC 9110): the client has the whole reply and may send its next request
            # on this connection, which a handler still "dripping" would leave unread
            return response
        with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
            for byte in raw:
                await response.write(bytes([byte]))
                await asyncio.sleep(script.error_body_drip)
        return response

    async def _non_stream(self, script: Script, model: str, prompt_tokens: int) -> web.Response:
        await asyncio.sleep(script.ttft)
        tokens = script.tokens()
        message: dict[str, Any] = {"role": "assistant", "content": script.text}
        if script.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function",
                 "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}
                for i, (name, args) in enumerate(script.tool_calls)
            ]
        return web.json_response({
            "id": f"gen-{time.time_ns()}", "object": "chat.completion", "model": script.served_model or model,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if script.tool_calls else script.finish_reason}],
            "usage": usage_payload(script, prompt_tokens, len(tokens)),
        })

    async def _stream(self, request: web.Request, script: Script, model: str,
                      prompt_tokens: int) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Generation-Id": f"gen-{time.time_ns()}",
        })
        await response.prepare(request)
        self.open_streams += 1
        try:
            await self._stream_body(request, response, script, model, prompt_tokens)
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the client went away: that is what cancellation tests check
        finally:
            self.open_streams -= 1
        return response

    async def _stream_body(self, request: web.Request, response: web.StreamResponse, script: Script,
                           model: str, prompt_tokens: int) -> None:
        chunk = StreamChunks(f"gen-{time.time_ns()}", script.served_model or model, int(time.time()))
        if script.raw_events is not None:
            for raw in script.raw_events:
                await response.write(b"data: " + raw.encode() + b"\n\n")
            return
        if script.keepalive_only:
            while True:
                await response.write(KEEPALIVE)
                await asyncio.sleep(script.keepalive_interval)
        await self._await_first_token(response, script)
        await response.write(chunk({"role": "assistant", "content": ""}))
        sent = await self._stream_tokens(request, response, script, chunk)
        if sent is not None:
            await self._finish_stream(response, script, chunk, prompt_tokens, sent)

    @staticmethod
    async def _await_first_token(response: web.StreamResponse, script: Script) -> None:
        """Wait ``script.ttft``, with keep-alive comments like OpenRouter sends meanwhile."""
        remaining = script.ttft
        if script.keepalive_before_first_token and remaining > 0:
            await response.write(KEEPALIVE)
        while remaining > 0:
            step = min(remaining, script.keepalive_interval)
            await asyncio.sleep(step)
            remaining -= step
            if remaining > 0 and script.keepalive_before_first_token:
                await response.write(KEEPALIVE)

    async def _stream_tokens(self, request: web.Request, response: web.StreamResponse, script: Script,
                             chunk: StreamChunks) -> int | None:
        """Send the text token by token; the number sent, or None when a scripted fault ended the stream."""
        interval = 1.0 / script.tokens_per_second if script.tokens_per_second > 0 else 0.0
        tokens = script.tokens()
        sent = 0
        for index, token in enumerate(tokens):
            if await self._play_faults(request, response, script, chunk, index, end=False):
                return None
            if script.dribble_after_tokens is not None and index >= script.dribble_after_tokens:
                interval = script.dribble_interval
            if index and interval:
                await asyncio.sleep(interval)
            await response.write(chunk({"content": token}))
            sent += 1
        if await self._play_faults(request, response, script, chunk, len(tokens), end=True):
            return None
        return sent

    async def _play_faults(self, request: web.Request, response: web.StreamResponse, script: Script,
                           chunk: StreamChunks, reached: int, end: bool) -> bool:
        """Play the faults due once ``reached`` tokens went out; True when one ended the stream."""
        if _due(script.error_after_tokens, reached, end):
            await self._send_stream_error(response, chunk, script)
            return True
        if _due(script.stall_after_tokens, reached, end):
            await asyncio.sleep(3600)
        if _due(script.drop_after_tokens, reached, end):
            self._drop(request)
            return True
        return False

    @staticmethod
    async def _finish_stream(response: web.StreamResponse, script: Script, chunk: StreamChunks,
                             prompt_tokens: int, sent: int) -> None:
        """Tool calls (arguments in two pieces), the finish reason, usage and ``[DONE]``."""
        for i, (name, args) in enumerate(script.tool_calls):
            arguments = args if isinstance(args, str) else json.dumps(args)
            half = len(arguments) // 2
            await response.write(chunk({"tool_calls": [{"index": i, "id": f"call_{i}_{chunk.gen_id}",
                                                        "type": "function",
                                                        "function": {"name": name, "arguments": ""}}]}))
            for piece in (arguments[:half], arguments[half:]):
                await response.write(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
        finish = "tool_calls" if script.tool_calls else script.finish_reason
        if finish is not None:
            await response.write(chunk({}, finish))
        await response.write(chunk.usage(usage_payload(script, prompt_tokens, sent + len(script.tool_calls) * 8)))
        if script.send_done:
            await response.write(b"data: [DONE]\n\n")

    async def _send_stream_error(self, response: web.StreamResponse, chunk: StreamChunks,
                                 script: Script) -> None:
        error: dict[str, Any] = {"code": script.error_code, "message": script.error_message}
        if script.error_type:
            error["metadata"] = {"error_type": script.error_type}
        await response.write(chunk({"content": ""}, "error", error=error))
        await response.write(b"data: [DONE]\n\n")

    @staticmethod
    def _drop(request: web.Request) -> None:
        transport = request.transport
        if transport is not None:
            transport.abort()


def _due(after: int | None, reached: int, end: bool) -> bool:
    # within the text a fault is due once `after` tokens went out; at its end, any fault set past the last one
    return after is not None and (after >= reached if end else reached >= after)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a scripted upstream from the command line (for rehearsing a chain by hand)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m openrouter_voice.testing", description=main.__doc__)
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--script", help="JSON file: {model: {Script fields} or [ {...}, ... ]}")
    args = parser.parse_args(argv)
    upstream = ScriptedUpstream(port=args.port)
    if args.script:
        with open(args.script, encoding="utf-8") as handle:
            scripts = json.load(handle)
        for model, spec in scripts.items():
            upstream.script(model, [Script(**s) for s in spec] if isinstance(spec, list) else Script(**spec))

    async def serve() -> None:
        await upstream.start()
        print(f"scripted upstream on {upstream.base_url}", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
