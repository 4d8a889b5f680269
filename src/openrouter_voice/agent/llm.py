"""``OpenRouterLLM``: a LiveKit ``llm.LLM`` whose every turn goes through :class:`FallbackRouter`.

Drop it into any session, like livekit-plugins-openai's ``openai.LLM``:

>>> from openrouter_voice.agent import OpenRouterLLM
>>> llm_ = OpenRouterLLM(models=["google/gemini-2.5-flash-lite", "openai/gpt-4o-mini"])
>>> llm_.primary
'google/gemini-2.5-flash-lite'
>>> session = AgentSession(llm=llm_)  # doctest: +SKIP

The router owns fallback, deadlines and retries. LiveKit's own ``LLMStream`` retry (up to
``conn_options.max_retry`` re-runs of ``_run`` on a retryable ``APIError``) would re-send whole
chains and, after text was spoken, duplicate it; so this stream never raises a retryable error,
disables retry once output was sent, and when every model fails (or anything else breaks) it speaks
a short apology instead of raising: an unrecoverable LLM error would otherwise leave the session
silent (livekit/agents#6009).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from livekit.agents import APIConnectionError, APIConnectOptions, llm
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given

from ..router import (
    AllModelsFailedError,
    AuthenticationError,
    Completion,
    FallbackRouter,
    InsufficientCreditsError,
    RouterError,
    RouterStream,
    Target,
    Usage,
)
from .breaks import ReplyBroke
from .honesty import LiveLookupGuard

logger = logging.getLogger("openrouter_voice.agent")

APOLOGY = "I'm having trouble reaching my language models, please try again in a moment."
APOLOGY_AFTER_PARTIAL = " Sorry, I lost my train of thought there. Please ask me again in a moment."


@dataclass(frozen=True, slots=True)
class FallbackEvent:
    """Emitted as ``"fallback"`` when a turn was not served by the first model tried."""

    served_by: str
    reason: str
    attempts: list[str]


@dataclass(frozen=True, slots=True)
class TurnEvent:
    """Emitted as ``"turn_completed"`` after every turn: who served it, tokens and cost."""

    model: str
    usage: Usage
    fell_back: bool
    apologised: bool
    latency: float


@dataclass(slots=True)
class SessionStats:
    """Running totals for a session (or the lifetime of this LLM instance)."""

    turns: int = 0
    fallbacks: int = 0
    apologies: int = 0
    usage: Usage = field(default_factory=Usage)
    models: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        cost = f"${self.usage.cost:.6f}" if self.usage.cost is not None else "unknown cost"
        used = ", ".join(f"{m} x{n}" for m, n in self.models.most_common()) or "none"
        return (f"{self.turns} turns, {self.usage.prompt_tokens} prompt + {self.usage.completion_tokens} "
                f"completion tokens, {cost}, models: {used}, fallbacks: {self.fallbacks}, "
                f"apologies: {self.apologies}")


class OpenRouterLLM(llm.LLM[Literal["fallback", "turn_completed"]]):
    """LiveKit LLM over OpenRouter with client-side fallback across a chain of models.

    Like LiveKit's own plugins, it reads what it is not given from the environment (and ``.env``)
    when it builds its router; ``router=`` (e.g. from :func:`openrouter_voice.app.build_router`)
    takes a router assembled elsewhere.

    Args:
        models: the chain, primary first (default: OPENROUTER_DEFAULT_MODEL + OPENROUTER_FALLBACK_MODELS).
        api_key, base_url, first_token_timeout: as for :class:`FallbackRouter` (default: the settings).
        router: use this router instead of building one (shared health, custom endpoints).
        owns_router: whether :meth:`aclose` closes the router too (default: only one it built).
        temperature, max_completion_tokens, parallel_tool_calls, tool_choice: request options.
        apology: what the user hears when every model fails (None to raise instead).
        spoken: the replies are spoken (the default: a LiveKit session feeds them to its TTS), so the
            router also judges each model by its first speakable sentence (``first_sentence_timeout``);
            a text-only chat passes False.

    >>> llm_ = OpenRouterLLM(models=["openai/gpt-4o-mini", "google/gemini-2.5-flash-lite"], first_token_timeout=1.5)
    >>> llm_.router.first_token_timeout, llm_.primary
    (1.5, 'openai/gpt-4o-mini')
    >>> llm_.on("fallback", lambda ev: print("served by", ev.served_by, "because", ev.reason))  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        models: Sequence[str | Target] | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        first_token_timeout: float | None = None,
        router: FallbackRouter | None = None,
        owns_router: bool | None = None,
        temperature: NotGivenOr[float] = NOT_GIVEN,
        max_completion_tokens: NotGivenOr[int] = NOT_GIVEN,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_body: dict[str, Any] | None = None,
        apology: str | None = APOLOGY,
        spoken: bool = True,
    ) -> None:
        super().__init__()
        if router is None:
            from ..config import load_settings

            given = {"api_key": api_key, "base_url": base_url, "first_token_timeout": first_token_timeout}
            router = FallbackRouter.from_settings(load_settings(), models,
                                                  **{k: v for k, v in given.items() if v is not None})
            owns_router = True if owns_router is None else owns_router
        self._router = router
        self._owns_router = bool(owns_router)
        self._opts: dict[str, Any] = dict(extra_body or {})
        if is_given(temperature):
            self._opts["temperature"] = temperature
        if is_given(max_completion_tokens):
            self._opts["max_tokens"] = max_completion_tokens
        self._parallel_tool_calls = parallel_tool_calls
        self._tool_choice = tool_choice
        self.apology = apology
        self.spoken = spoken
        self.last_completion: Completion | None = None
        self.stats = SessionStats()
        self._served_model: str | None = None

    @property
    def router(self) -> FallbackRouter:
        return self._router

    @property
    def model(self) -> str:
        """The model that served the last turn (what metrics report), else the configured primary."""
        return self._served_model or self._router.models[0].label

    @property
    def provider(self) -> str:
        return "openrouter"

    @property
    def primary(self) -> str:
        return self._router.models[0].label

    def update_options(self, *, models: NotGivenOr[Sequence[str]] = NOT_GIVEN,
                       temperature: NotGivenOr[float] = NOT_GIVEN) -> None:
        """Change the chain (primary first) or the temperature for the following turns."""
        if is_given(models):
            self._router.set_models(list(models))
        if is_given(temperature):
            self._opts["temperature"] = temperature

    def switch_model(self, model: str, *, supports_tools: bool | None = None) -> None:
        """Put ``model`` at the head of the chain, keeping the rest of the chain behind it.

        The user chose it, so it leads every turn; if ``supports_tools`` is False it answers without tools.
        """
        if supports_tools is not None:
            self._router.set_tool_support({model: supports_tools})
        self._router.set_models([model, *[t for t in self._router.models if t.label != model]], chosen=True)
        self._router.health.reset(model)
        self._served_model = None

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> OpenRouterLLMStream:
        extra = dict(self._opts)
        if is_given(extra_kwargs):
            extra.update(extra_kwargs)
        parallel = parallel_tool_calls if is_given(parallel_tool_calls) else self._parallel_tool_calls
        choice = tool_choice if is_given(tool_choice) else self._tool_choice
        return OpenRouterLLMStream(
            self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options, extra=extra,
            parallel_tool_calls=parallel if is_given(parallel) else None,
            tool_choice=_tool_choice(choice) if is_given(choice) else None,
        )

    def serves_without_tools(self, label: str) -> bool:
        """Whether the chain model ``label`` gets its turns without tools (it cannot call them)."""
        try:
            return not self._router.supports_tools(self._router.target(label))
        except RouterError:  # not a chain label (e.g. a provider's own model name)
            return False

    async def _prewarm_impl(self) -> None:
        await self._router.warmup()

    def _record(self, completion: Completion | None, *, apologised: bool, started: float) -> None:
        self.stats.turns += 1
        if completion is None:
            self.stats.apologies += 1
            return
        self.last_completion = completion
        self._served_model = completion.model
        self.stats.usage = self.stats.usage + completion.usage
        self.stats.models[completion.model] += 1
        if completion.fell_back:
            self.stats.fallbacks += 1
            reason = completion.fallback_reason or "earlier models failed"
            logger.warning("turn served by fallback model %s: %s", completion.model, reason)
            self.emit("fallback", FallbackEvent(completion.model, reason,
                                                [a.describe() for a in completion.attempts]))
        cost = f"${completion.usage.cost:.6f}" if completion.usage.cost is not None else "n/a"
        logger.debug("turn: model=%s prompt=%d completion=%d cost=%s fallback=%s", completion.model,
                    completion.usage.prompt_tokens, completion.usage.completion_tokens, cost, completion.fell_back)
        self.emit("turn_completed", TurnEvent(completion.model, completion.usage, completion.fell_back,
                                              apologised, time.monotonic() - started))

    async def aclose(self) -> None:
        if self._owns_router:
            await self._router.aclose()
        await super().aclose()


def _last_user_text(chat_ctx: llm.ChatContext) -> str:
    for item in reversed(chat_ctx.items):
        if isinstance(item, llm.ChatMessage) and item.role == "user":
            return item.text_content or ""
    return ""


def _tool_choice(choice: llm.ToolChoice) -> Any:
    if isinstance(choice, dict):
        return {"type": "function", "function": {"name": choice["function"]["name"]}}
    return choice


class OpenRouterLLMStream(llm.LLMStream):
    """One turn: router chunks become LiveKit ``ChatChunk``s (text as it comes, tool calls complete)."""

    # No ``llm_request_run`` span per LiveKit retry (there are none: max_retry is 0, the router retries):
    # the router's own turn span, with a child per model asked, sits right under ``llm_request``.
    _llm_attempt_span_name = None

    def __init__(self, llm_: OpenRouterLLM, *, chat_ctx: llm.ChatContext, tools: list[llm.Tool],
                 conn_options: APIConnectOptions, extra: dict[str, Any], parallel_tool_calls: bool | None,
                 tool_choice: Any) -> None:
        super().__init__(llm_, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._orllm = llm_
        self._extra = extra
        self._parallel_tool_calls = parallel_tool_calls
        self._tool_choice = tool_choice
        # Never let the framework re-run a turn that already produced output.
        self._retry_on_chunk_sent = False

    async def _run(self) -> None:
        started = time.monotonic()
        chunk_id = f"orv-{uuid.uuid4().hex[:12]}"
        stream: RouterStream | None = None
        spoke = False
        try:
            messages, _ = self._chat_ctx.to_provider_format("openai")
            tool_schemas = llm.ToolContext(self._tools).parse_function_tools("openai", strict=False)
            stream = self._orllm.router.stream(
                messages, tools=tool_schemas or None,
                tool_choice=self._tool_choice if tool_schemas else None,
                parallel_tool_calls=self._parallel_tool_calls if tool_schemas else None,
                spoken=self._orllm.spoken, **self._extra)
            honest = LiveLookupGuard(_last_user_text(self._chat_ctx), carried_tools=bool(tool_schemas),
                                     tool_less=self._orllm.serves_without_tools)
            async for chunk in stream:
                if chunk.broke:
                    self._event_ch.send_nowait(ReplyBroke(id=chunk_id))
                    continue
                text = honest.filter(chunk.text, chunk.model, spoke=spoke) if chunk.text else ""
                if text:
                    spoke = True
                    self._event_ch.send_nowait(llm.ChatChunk(
                        id=chunk_id, delta=llm.ChoiceDelta(role="assistant", content=text)))
                if chunk.tool_calls:
                    self._event_ch.send_nowait(llm.ChatChunk(id=chunk_id, delta=llm.ChoiceDelta(
                        role="assistant",
                        tool_calls=[llm.FunctionToolCall(name=c.name, arguments=c.arguments, call_id=c.id)
                                    for c in chunk.tool_calls])))
                if chunk.usage is not None:
                    # Report the served model in this turn's metrics (read when the stream ends).
                    self._orllm._served_model = chunk.model or self._orllm._served_model
                    self._event_ch.send_nowait(llm.ChatChunk(id=chunk_id, usage=llm.CompletionUsage(
                        completion_tokens=chunk.usage.completion_tokens, prompt_tokens=chunk.usage.prompt_tokens,
                        prompt_cached_tokens=chunk.usage.cached_tokens,
                        reasoning_tokens=chunk.usage.reasoning_tokens, total_tokens=chunk.usage.total_tokens)))
        except Exception as exc:  # any failure becomes the apology: no turn ends in silence
            self._apologise(exc, spoke=spoke, started=started)
        else:
            # Outside the try: a failing event listener must not turn a whole answer into an apology.
            self._orllm._record(stream.result, apologised=False, started=started)
        finally:
            if stream is not None:
                await stream.aclose()

    def _apologise(self, exc: Exception, *, spoke: bool, started: float) -> None:
        if isinstance(exc, AuthenticationError | InsufficientCreditsError):
            logger.error("%s", exc)  # says what to fix; the user hears the apology
        elif isinstance(exc, AllModelsFailedError):
            logger.error("every model failed this turn: %s", exc)
        elif isinstance(exc, RouterError):
            logger.error("turn failed: %s", exc)
        else:
            # A bug, not an upstream failure: keep the traceback (router messages are redacted, this is ours).
            logger.exception("turn failed unexpectedly")
        if self._orllm.apology is None:
            # Never retryable: the router already tried the whole chain, and LiveKit re-running _run
            # would re-send it (up to max_retry more times) or repeat text already spoken.
            raise APIConnectionError(_describe(exc), retryable=False) from None
        text = APOLOGY_AFTER_PARTIAL if spoke else self._orllm.apology
        self._event_ch.send_nowait(llm.ChatChunk(
            id=f"orv-apology-{uuid.uuid4().hex[:8]}", delta=llm.ChoiceDelta(role="assistant", content=text)))
        self._orllm._record(None, apologised=True, started=started)


def _describe(exc: Exception) -> str:
    # Router messages are redacted; anything else is named by type only, so no key can leak.
    return str(exc) if isinstance(exc, RouterError) else f"unexpected {type(exc).__name__} in OpenRouterLLM"
