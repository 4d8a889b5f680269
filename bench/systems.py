"""The systems under test behind one interface: stream one reply, timing each text delta.

Each peer is configured the way its documentation recommends for low-latency streaming; ``settings``
says how, and BENCHMARKS.md copies it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

API_KEY = "bench-key"
Deltas = AsyncIterator[tuple[str, str | None]]


def ours_defaults() -> dict[str, float]:
    """The app's own defaults (what `openrouter-voice` users get), read from its settings."""
    from openrouter_voice.config import Settings

    return {k: float(Settings.model_fields[k].default) for k in ("first_token_timeout", "stall_timeout", "hedge_after")}


def messages_for(tag: int) -> list[dict[str, Any]]:
    # The tag lets the upstream attribute every call (retries, hedges, probes) to its request.
    return [{"role": "user", "content": f"Tell me about the weather. [r{tag}]"}]


@dataclass
class Reply:
    """What the user got: text deltas timed in seconds since the request, and how it ended."""

    started: float = 0.0  # time.perf_counter() when the request was sent
    deltas: list[tuple[float, str]] = field(default_factory=list)
    served_by: str | None = None  # the model whose text the user got first
    error: str | None = None
    timed_out: bool = False
    total: float = 0.0

    @property
    def ttft(self) -> float | None:
        return self.deltas[0][0] if self.deltas else None

    @property
    def text(self) -> str:
        return "".join(d for _, d in self.deltas)


class System:
    """One way of getting a reply from a chain [primary, backup]."""

    name: ClassVar[str] = "?"
    settings: ClassVar[str] = ""

    @classmethod
    def describe(cls) -> str:
        """How the system is configured, for BENCHMARKS.md."""
        return cls.settings

    async def start(self, base_url: str, models: list[str]) -> None:
        raise NotImplementedError

    async def texts(self, messages: list[dict[str, Any]]) -> Deltas:
        """The reply's text deltas with the model that served each (None if unknown); raises on failure."""
        raise NotImplementedError
        yield  # an async generator, like the implementations

    async def close(self) -> None:
        pass

    async def reply(self, tag: int, cap: float) -> Reply:
        """One request, given up after ``cap`` seconds (the text so far is kept)."""
        out = Reply(started=time.perf_counter())
        started = out.started
        try:
            async with asyncio.timeout(cap), contextlib.aclosing(self.texts(messages_for(tag))) as texts:  # type: ignore[type-var]
                async for text, model in texts:
                    if text:
                        out.deltas.append((time.perf_counter() - started, text))
                        out.served_by = out.served_by or model
        except TimeoutError:
            out.timed_out = True
            out.error = f"> {cap:g} s (timed out)"
        except Exception as exc:
            out.error = type(exc).__name__
        out.total = time.perf_counter() - started
        return out


class BareHttpx(System):
    """No fallback at all: one httpx stream to the first model (the baseline for overhead)."""

    name = "bare httpx"
    settings = "httpx.AsyncClient (pool of 1000) streaming from the first model only; no fallback"

    def client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
        return httpx.AsyncClient(timeout=httpx.Timeout(60.0), limits=limits)

    async def start(self, base_url: str, models: list[str]) -> None:
        self.url = base_url + "/chat/completions"
        self.model = models[0]
        self.clients = [self.client()]
        self.next = 0

    async def texts(self, messages: list[dict[str, Any]]) -> Deltas:
        self.next = (self.next + 1) % len(self.clients)
        body = {"model": self.model, "messages": messages, "stream": True}
        async with self.clients[self.next].stream("POST", self.url, json=body) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                for choice in json.loads(line[6:]).get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield text, self.model

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()


class BareHttpx2(BareHttpx):
    """Bare streaming on httpx2, the httpx fork our router, the openai SDK and LiveKit's plugin use."""

    name = "bare httpx2"
    settings = ("as bare httpx but on httpx2 (pydantic's fork, whose pool bookkeeping is linear; the HTTP library "
                "our router uses; overhead and load only)")

    def client(self) -> Any:
        import httpx2

        limits = httpx2.Limits(max_connections=1000, max_keepalive_connections=1000)
        return httpx2.AsyncClient(timeout=httpx2.Timeout(60.0), limits=limits)


class Ours(System):
    name = "openrouter-voice"

    @classmethod
    def describe(cls) -> str:
        d = ours_defaults()
        return (f"FallbackRouter(first_token_timeout={d['first_token_timeout']:g}, "
                f"stall_timeout={d['stall_timeout']:g}, hedge_after={d['hedge_after']:g}): the app's defaults (its "
                "first-token deadline ignores keep-alives; "
                "past hedge_after it also asks the backup and keeps whichever speaks first), on its own httpx2 client")

    @staticmethod
    def app_settings(base_url: str, **extra: Any) -> Any:
        """The app's settings with its defaults, pointed at the scripted upstream (``extra``: more of them)."""
        from openrouter_voice.config import Settings

        return Settings(openrouter_api_key=API_KEY, openrouter_base_url=base_url, openrouter_app_name="bench",
                        local_fallback=False, _env_file=None, **extra)  # type: ignore[call-arg]

    async def start(self, base_url: str, models: list[str]) -> None:
        from openrouter_voice.app import build_router

        # Assembled as the app assembles it (openrouter_voice.app), from settings with the defaults; the
        # scripted upstream's catalog does not list the bench's ids, so the catalog check is skipped.
        self.router = await build_router(self.app_settings(base_url), models=models, check=False, **ours_defaults())

    async def texts(self, messages: list[dict[str, Any]]) -> Deltas:
        async with self.router.stream(messages) as stream:
            async for chunk in stream:
                if chunk.text:
                    yield chunk.text, chunk.model

    async def close(self) -> None:
        await self.router.aclose()


class LiveKitFallback(System):
    """LiveKit's FallbackAdapter over openai.LLM.with_openrouter instances, driven as an AgentSession would."""

    name = "LiveKit FallbackAdapter"
    settings = ("FallbackAdapter([openai.LLM.with_openrouter(model=m, base_url=...) for m in chain]) with its "
                "documented defaults: attempt_timeout=5.0 (an httpx read-gap timeout), max_retry_per_llm=0, "
                "retry_interval=0.5, "
                "retry_on_chunk_sent=False, sticky=False; each chat() gets AgentSession's default llm_conn_options "
                "APIConnectOptions(max_retry=3, retry_interval=2.0, timeout=10.0). The plugin's client: 50 "
                "connections, no SDK retries")
    retry_on_chunk_sent: ClassVar[bool] = False

    async def start(self, base_url: str, models: list[str]) -> None:
        from livekit.agents import llm as lk_llm
        from livekit.agents.types import APIConnectOptions
        from livekit.plugins import openai as lk_openai

        self.lk_llm = lk_llm
        self.conn_options = APIConnectOptions()  # AgentSession's default llm_conn_options
        self.llms = [lk_openai.LLM.with_openrouter(model=m, api_key=API_KEY, base_url=base_url) for m in models]
        self.adapter = lk_llm.FallbackAdapter(self.llms, retry_on_chunk_sent=self.retry_on_chunk_sent)

    async def texts(self, messages: list[dict[str, Any]]) -> Deltas:
        ctx = self.lk_llm.ChatContext()
        for message in messages:
            ctx.add_message(role=message["role"], content=message["content"])
        async with self.adapter.chat(chat_ctx=ctx, conn_options=self.conn_options) as stream:
            async for chunk in stream:
                if chunk.delta and chunk.delta.content:
                    # the instance whose stream produced this chunk (set before the chunk is forwarded)
                    yield chunk.delta.content, self.adapter._active_instance.model

    async def close(self) -> None:
        # Background recovery probes outlive the turn and aclose() leaves them running: stop them
        # so they do not spill into the next measurement.
        tasks = [s.recovering_task for s in self.adapter._status if s.recovering_task and not s.recovering_task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.adapter.aclose()
        for instance in self.llms:
            await instance.aclose()


class LiveKitRetryOnChunk(LiveKitFallback):
    """The same adapter with its opt-in ``retry_on_chunk_sent=True`` (only in the mid-stream scenarios)."""

    name = "LiveKit, retry_on_chunk_sent=True"
    settings = "as LiveKit FallbackAdapter but retry_on_chunk_sent=True (only in scenario 5)"
    retry_on_chunk_sent = True


class LiteLLMRouter(System):
    name = "LiteLLM Router"

    @classmethod
    def describe(cls) -> str:
        d = ours_defaults()
        return (f"Router(model_list=[openrouter/<model> with api_base=the scripted upstream], fallbacks=[{{primary: "
                f"[backup]}}], num_retries=0, stream_timeout={d['first_token_timeout']:g} (the same first-token budget "
                "as ours; LiteLLM applies it to every read), timeout=30, allowed_fails=1, cooldown_time=30, "
                "enable_mid_stream_fallback_continuation=True with model_info supports_assistant_prefill=True (its "
                "documented way to continue a stream that broke mid-reply))")

    async def start(self, base_url: str, models: list[str]) -> None:
        self.router = self.build(base_url, models)
        self.first = "m0"

    @staticmethod
    def build(base_url: str, models: list[str], **extra: Any) -> Any:
        """The Router as described; ``extra`` adds options (scenario 9: its Redis settings)."""
        import litellm  # LITELLM_LOCAL_MODEL_COST_MAP is set in bench/__init__.py: no price-list download
        from litellm import Router

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        names = [f"m{i}" for i in range(len(models))]
        return Router(
            model_list=[{"model_name": n, "litellm_params": {"model": f"openrouter/{m}", "api_base": base_url,
                                                               "api_key": API_KEY},
                         "model_info": {"supports_assistant_prefill": True}}
                        for n, m in zip(names, models, strict=True)],
            fallbacks=[{names[0]: names[1:]}],
            num_retries=0, timeout=30, stream_timeout=ours_defaults()["first_token_timeout"],
            allowed_fails=1, cooldown_time=30, enable_mid_stream_fallback_continuation=True, **extra,
        )

    async def texts(self, messages: list[dict[str, Any]]) -> Deltas:
        response: Any = await self.router.acompletion(model=self.first, messages=messages, stream=True)
        try:
            async for chunk in response:
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield choice.delta.content, chunk.model
        finally:
            await response.aclose()  # a capped request must not leave its upstream stream open


class NaiveLoop(System):
    """The seed guide's approach: try each model in turn with the openai SDK, the next on any exception."""

    name = "naive loop"
    settings = ("for model in chain: openai.AsyncOpenAI(base_url=...).chat.completions.create(stream=True), the next "
                "model on any exception; SDK defaults (timeout 600 s with 5 s connect, max_retries=2, honours "
                "Retry-After up to 2 minutes)")

    async def start(self, base_url: str, models: list[str]) -> None:
        import openai

        self.models = models
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=API_KEY)

    async def texts(self, messages: list[dict[str, Any]]) -> Deltas:
        error: Exception | None = None
        for model in self.models:
            try:
                stream = await self.client.chat.completions.create(model=model, messages=messages,  # type: ignore[arg-type]
                                                                   stream=True)
                async with stream:
                    async for chunk in stream:
                        for choice in chunk.choices:
                            if choice.delta.content:
                                yield choice.delta.content, model
                return
            except Exception as exc:  # the seed guide's "except: try the next model"
                error = exc
        assert error is not None
        raise error

    async def close(self) -> None:
        await self.client.close()


def quiet() -> None:
    """The systems log their expected failovers loudly; keep the benchmark's output readable."""
    for name in ("livekit", "livekit.agents", "livekit.plugins.openai", "LiteLLM", "LiteLLM Router", "LiteLLM Proxy",
                 "litellm", "openai", "httpx", "openrouter_voice"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


class OursWithTelemetry(Ours):
    """Our router with the process's telemetry on, as the worker has it: every turn recorded in the
    OpenTelemetry SDK's metrics (read by a Prometheus reader) and, for the second, also traced."""

    name = "openrouter-voice, metrics on"
    traced = False

    @classmethod
    def describe(cls) -> str:
        return ("the same router observed by openrouter_voice.telemetry: OpenTelemetry SDK metrics with a Prometheus "
                "reader" + (", and spans through a BatchSpanProcessor" if cls.traced else ""))

    async def start(self, base_url: str, models: list[str]) -> None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
        from prometheus_client import CollectorRegistry

        from openrouter_voice.telemetry import RouterTelemetry

        class Discard(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        await super().start(base_url, models)
        self.meters = MeterProvider(metric_readers=[PrometheusMetricReader(registry=CollectorRegistry())])
        self.tracers = TracerProvider()
        self.tracers.add_span_processor(BatchSpanProcessor(Discard()))
        telemetry = RouterTelemetry(meter=self.meters.get_meter("bench"),
                                    tracer=self.tracers.get_tracer("bench") if self.traced else None)
        telemetry.instrument(self.router)

    async def close(self) -> None:
        await super().close()
        self.meters.shutdown()
        self.tracers.shutdown()


class OursTraced(OursWithTelemetry):
    name = "openrouter-voice, metrics and traces on"
    traced = True


PEERS: list[type[System]] = [LiveKitFallback, LiteLLMRouter, NaiveLoop]
SYSTEMS: list[type[System]] = [Ours, *PEERS]
BY_NAME: dict[str, type[System]] = {cls.name: cls for cls in [BareHttpx, BareHttpx2, *SYSTEMS, LiveKitRetryOnChunk,
                                                              OursWithTelemetry, OursTraced]}
