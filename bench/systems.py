"""The systems under test, behind one interface: stream a reply, report timed text deltas.

Each peer is configured the way its documentation recommends for low-latency streaming; the
settings are stated in ``describe()`` and copied into BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

MESSAGES = [{"role": "user", "content": "Tell me about the weather."}]
FIRST_TOKEN_TIMEOUT = 2.0  # ours: the app default (OPENROUTER_FIRST_TOKEN_TIMEOUT)
HEDGE_AFTER = 1.0  # ours: the app default (OPENROUTER_HEDGE_AFTER)


@dataclass
class Reply:
    """What the user got: timed text deltas (seconds since the request), and any error."""

    deltas: list[tuple[float, str]] = field(default_factory=list)
    error: str | None = None
    total: float = 0.0

    @property
    def ttft(self) -> float | None:
        return self.deltas[0][0] if self.deltas else None

    @property
    def text(self) -> str:
        return "".join(d for _, d in self.deltas)


class System:
    name = "?"

    async def start(self, base_url: str, models: list[str]) -> None:
        raise NotImplementedError

    async def reply(self) -> Reply:
        raise NotImplementedError

    async def close(self) -> None:
        pass

    def describe(self) -> str:
        return ""


class BareHttpx(System):
    """No fallback at all: one httpx stream to the first model (the overhead baseline)."""

    name = "bare httpx"

    async def start(self, base_url: str, models: list[str]) -> None:
        self.url = base_url + "/chat/completions"
        self.model = models[0]
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(30.0))

    async def reply(self) -> Reply:
        out = Reply()
        started = time.perf_counter()
        body = {"model": self.model, "messages": MESSAGES, "stream": True}
        try:
            async with self.client.stream("POST", self.url, json=body) as response:
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            out.deltas.append((time.perf_counter() - started, text))
        except Exception as exc:
            out.error = type(exc).__name__
        out.total = time.perf_counter() - started
        return out

    async def close(self) -> None:
        await self.client.aclose()

    def describe(self) -> str:
        return "httpx.AsyncClient stream to the primary only, no fallback (baseline)"


class Ours(System):
    name = "openrouter-voice"

    async def start(self, base_url: str, models: list[str]) -> None:
        from openrouter_voice.router import FallbackRouter

        self.router = FallbackRouter(models=models, api_key="bench-key", base_url=base_url, app_name="bench",
                                     first_token_timeout=FIRST_TOKEN_TIMEOUT, stall_timeout=1.5,
                                     hedge_after=HEDGE_AFTER)

    async def reply(self) -> Reply:
        from openrouter_voice.router import RouterError

        out = Reply()
        started = time.perf_counter()
        try:
            async with self.router.stream(MESSAGES) as stream:
                async for chunk in stream:
                    if chunk.text:
                        out.deltas.append((time.perf_counter() - started, chunk.text))
        except RouterError as exc:
            out.error = type(exc).__name__
        out.total = time.perf_counter() - started
        return out

    async def close(self) -> None:
        await self.router.aclose()

    def describe(self) -> str:
        return (f"FallbackRouter(first_token_timeout={FIRST_TOKEN_TIMEOUT}, stall_timeout=1.5, "
                f"hedge_after={HEDGE_AFTER}) - the app's defaults")


class NaiveLoop(System):
    """The seed guide's approach: try each model in turn with the openai SDK, next on any exception."""

    name = "naive loop"

    async def start(self, base_url: str, models: list[str]) -> None:
        import openai

        self.models = models
        # SDK defaults: 600 s timeout, 2 retries with backoff (what a loop that sets nothing gets).
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key="bench-key")

    async def reply(self) -> Reply:
        out = Reply()
        started = time.perf_counter()
        for model in self.models:
            try:
                stream = await self.client.chat.completions.create(model=model, messages=MESSAGES,  # type: ignore[arg-type]
                                                                   stream=True)
                async for chunk in stream:
                    for choice in chunk.choices:
                        if choice.delta.content:
                            out.deltas.append((time.perf_counter() - started, choice.delta.content))
                break
            except Exception as exc:
                out.error = type(exc).__name__
                continue
        else:
            out.total = time.perf_counter() - started
            return out
        out.error = None
        out.total = time.perf_counter() - started
        return out

    async def close(self) -> None:
        await self.client.close()

    def describe(self) -> str:
        return ("for model in chain: openai.AsyncOpenAI(...).chat.completions.create(stream=True); except: next "
                "(SDK defaults: timeout 600 s, max_retries 2)")


class LiveKitFallback(System):
    """LiveKit's FallbackAdapter over openai.LLM.with_openrouter instances, driven as a session would."""

    name = "LiveKit FallbackAdapter"

    async def start(self, base_url: str, models: list[str]) -> None:
        from livekit.agents import llm as lk_llm
        from livekit.plugins import openai as lk_openai

        logging.getLogger("livekit.agents").setLevel(logging.CRITICAL)
        self.llms = [lk_openai.LLM.with_openrouter(model=m, api_key="bench-key", base_url=base_url) for m in models]
        self.adapter = lk_llm.FallbackAdapter(self.llms)  # documented defaults: attempt_timeout=5.0
        self.lk_llm = lk_llm

    async def reply(self) -> Reply:
        from livekit.agents.types import APIConnectOptions

        out = Reply()
        ctx = self.lk_llm.ChatContext()
        ctx.add_message(role="user", content=MESSAGES[0]["content"])
        started = time.perf_counter()
        try:
            # AgentSession's default llm_conn_options: max_retry=3 around the whole adapter.
            async with self.adapter.chat(chat_ctx=ctx, conn_options=APIConnectOptions(max_retry=3)) as stream:
                async for chunk in stream:
                    if chunk.delta and chunk.delta.content:
                        out.deltas.append((time.perf_counter() - started, chunk.delta.content))
        except Exception as exc:
            out.error = type(exc).__name__
        out.total = time.perf_counter() - started
        return out

    async def close(self) -> None:
        await self.adapter.aclose()
        for llm in self.llms:
            await llm.aclose()

    def describe(self) -> str:
        return ("FallbackAdapter([openai.LLM.with_openrouter(m) ...]) with its defaults (attempt_timeout=5.0, "
                "max_retry_per_llm=0, retry_on_chunk_sent=False), AgentSession's conn_options max_retry=3")


class LiteLLMRouter(System):
    name = "LiteLLM Router"

    async def start(self, base_url: str, models: list[str]) -> None:
        import os

        # LiteLLM fetches a price list from GitHub at import unless told to use its bundled copy;
        # the benchmark must only talk to 127.0.0.1.
        os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
        import litellm
        from litellm import Router

        litellm.suppress_debug_info = True
        logging.getLogger("LiteLLM").setLevel(logging.CRITICAL)
        logging.getLogger("LiteLLM Router").setLevel(logging.CRITICAL)
        names = [f"m{i}" for i in range(len(models))]
        self.router = Router(
            model_list=[{"model_name": n, "litellm_params": {"model": f"openai/{m}", "api_base": base_url,
                                                               "api_key": "bench-key"}}
                        for n, m in zip(names, models, strict=True)],
            fallbacks=[{names[0]: names[1:]}],
            num_retries=0, timeout=30, stream_timeout=FIRST_TOKEN_TIMEOUT, allowed_fails=1, cooldown_time=30,
        )
        self.first = names[0]

    async def reply(self) -> Reply:
        out = Reply()
        started = time.perf_counter()
        try:
            response = await self.router.acompletion(model=self.first, messages=MESSAGES, stream=True)
            async for chunk in response:  # type: ignore[union-attr]
                for choice in chunk.choices:
                    if choice.delta.content:
                        out.deltas.append((time.perf_counter() - started, choice.delta.content))
        except Exception as exc:
            out.error = type(exc).__name__
        out.total = time.perf_counter() - started
        return out

    def describe(self) -> str:
        return ("Router(fallbacks=[{primary: [backup]}], num_retries=0, stream_timeout=2.0, allowed_fails=1, "
                "cooldown_time=30) - stream_timeout as its docs suggest for streaming latency")


SYSTEMS: list[type[System]] = [Ours, LiveKitFallback, LiteLLMRouter, NaiveLoop]


async def with_cap(coro: Any, cap: float) -> Reply:
    """Run one request, giving up after ``cap`` seconds (reported as timed out)."""
    try:
        return await asyncio.wait_for(coro, cap)
    except TimeoutError:
        return Reply(error=f"> {cap:g} s (timed out)", total=cap)
