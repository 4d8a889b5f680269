"""The fallback router: one reply from the first model in an ordered chain that can give it.

>>> router = FallbackRouter(["openai/gpt-4o-mini", "google/gemini-2.5-flash-lite"],
...                         api_key="sk-or-...", first_token_timeout=1.5)
>>> reply = await router.complete([{"role": "user", "content": "Hi"}])  # doctest: +SKIP
>>> async for chunk in router.stream(messages):  # doctest: +SKIP
...     print(chunk.text, end="")
>>> await router.aclose()  # doctest: +SKIP

How it decides, per model, in chain order (see :func:`errors.classify`):

* 401 -> bad key: nothing else on that endpoint is tried (:class:`AuthenticationError` if nothing answers).
* 402 -> out of credits: only ``:free`` models are still tried. 404 / retired -> excluded for an hour.
* 429 / 503 -> cooldown for Retry-After. 408, 5xx, connection errors, first-token timeouts, stalls,
  replies slower than speech, broken streams -> cooldown, next model.
* 400 / 422 -> the request is wrong for every model: :class:`BadRequestError` at once.
* Text already spoken when a model fails -> the next model continues it (prefill), repeats dropped.

OpenRouter's server-side fallback (``models=[...]`` in the body) and ``provider`` preferences may be
passed through as extra body fields; a server-side list must not repeat models of the client-side
chain (that would try the same broken model twice per turn), which raises :class:`ConfigurationError`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import httpx2

from ..redact import register_secret
from . import defaults
from .connections import http_client as new_client
from .connections import warm_up
from .defaults import OPENROUTER
from .errors import ConfigurationError
from .events import TurnObserver, end_watches, start_watches
from .health import HealthTracker
from .plan import left_out, order, tools_first
from .policy import HedgeBudget, Limits, TurnPolicy, check_limits
from .ranking import UptimeRanking
from .request import header_safe, headers_for, sendable
from .stragglers import Stragglers
from .stream import RouterStream
from .turn import Turn, TurnRunner
from .types import Attempt, Completion, Message, StreamChunk, Target, ToolSpec

if TYPE_CHECKING:
    from ..config import Settings

logger = logging.getLogger("openrouter_voice.router")


class FallbackRouter:
    """Chat completions over an ordered chain of models, failing over within a voice latency budget.

    Every argument is a plain value with a documented default (:mod:`.defaults`); nothing is read
    from the environment. :meth:`from_settings` builds one from the app's settings (``.env``).

    Args:
        models: the chain, primary first: OpenRouter ids, ``model@endpoint`` ids, or :class:`Target`.
        api_key: the OpenRouter key (None: requests go without one).
        base_url: OpenRouter-compatible base URL (default ``https://openrouter.ai/api/v1``).
        first_token_timeout: seconds from sending a request to the first content token before the
            next model is tried; keep-alive comments do not count. The last model tried gets
            ``final_first_token_timeout`` instead, since cutting it off could only end in silence.
        stall_timeout: longest silence between tokens once a reply is streaming. The last model
            tried may pause up to ``final_first_token_timeout`` (a slow local model on a busy CPU
            is better than an apology in mid-sentence).
        hedge_after: if the model has no first token after this many seconds, also ask the next
            model and keep whichever speaks first; None or 0: never. A model with history is hedged
            at its own p95 TTFT, and its stall deadline follows its rhythm (:mod:`.deadlines`).
        dribble_words_per_second, dribble_window: a reply slower than this (words/s over the window)
            is too slow for speech; the next model continues it (not for the last model). 0: off.
        first_sentence_timeout: in spoken requests (``stream(..., spoken=True)``), seconds from the first
            token to the end of the first speakable sentence before the next model continues the reply,
            until the model has a history of its own (:mod:`.first_sentence`; not for the last model). 0: off.
        predictive_ranking: refresh OpenRouter's endpoint statistics in the background and try a model
            whose providers are failing right now after the others (:mod:`.ranking`).
        hedge_budget: at most this share of the requests in flight may hedge at once (at least one),
            so a slow, overloaded upstream is not sent twice the traffic.
        total_timeout: hard bound on any one upstream call.
        app_name, app_url: OpenRouter's app attribution headers, ``X-Title`` (and ``X-OpenRouter-Title``)
            and ``HTTP-Referer`` (printable ASCII), sent on every OpenRouter request; None: not sent.
        max_reply_chars, max_tool_args_chars: size caps on one reply and on one tool call's arguments.
        endpoints: extra OpenAI-compatible endpoints by name, ``{"local": ("http://127.0.0.1:8080/v1", None)}``.
        endpoint_options: extra request fields per endpoint name (e.g. sampling settings for a local model).
        health: share one :class:`HealthTracker` between routers to share what they learn.
        extra_body: fields added to every request (e.g. ``{"provider": {"sort": "latency"}}``).

    >>> router = FallbackRouter(["openai/gpt-4o-mini", "llama3.2@ollama"], api_key="sk-or-...",
    ...                         endpoints={"ollama": ("http://127.0.0.1:11434/v1", None)})
    >>> [t.label for t in router.models], router.hedge_after, router.first_token_timeout
    (['openai/gpt-4o-mini', 'llama3.2@ollama'], 1.0, 2.0)
    """

    def __init__(
        self,
        models: Sequence[str | Target],
        *,
        api_key: str | None = None,
        base_url: str = defaults.OPENROUTER_BASE_URL,
        first_token_timeout: float = defaults.FIRST_TOKEN_TIMEOUT,
        stall_timeout: float = defaults.STALL_TIMEOUT,
        final_first_token_timeout: float = defaults.FINAL_FIRST_TOKEN_TIMEOUT,
        hedge_after: float | None = defaults.HEDGE_AFTER,
        hedge_budget: float = defaults.HEDGE_BUDGET,
        dribble_words_per_second: float = defaults.DRIBBLE_WORDS_PER_SECOND,
        dribble_window: float = defaults.DRIBBLE_WINDOW,
        first_sentence_timeout: float = defaults.FIRST_SENTENCE_TIMEOUT,
        predictive_ranking: bool = False,
        total_timeout: float = defaults.TOTAL_TIMEOUT,
        app_name: str | None = defaults.APP_NAME,
        app_url: str | None = defaults.APP_URL,
        endpoints: dict[str, tuple[str, str | None]] | None = None,
        endpoint_options: dict[str, dict[str, Any]] | None = None,
        health: HealthTracker | None = None,
        http_client: httpx2.AsyncClient | None = None,
        extra_body: dict[str, Any] | None = None,
        max_connections: int = defaults.MAX_CONNECTIONS,
        max_reply_chars: int = defaults.MAX_REPLY_CHARS,
        max_tool_args_chars: int = defaults.MAX_TOOL_ARGS_CHARS,
    ) -> None:
        register_secret(api_key)
        self.api_key = header_safe("api_key (OPENROUTER_API_KEY)", api_key)
        self.base_url = base_url.rstrip("/")
        self.first_token_timeout = float(first_token_timeout)
        self.stall_timeout = float(stall_timeout)
        self.final_first_token_timeout = max(float(final_first_token_timeout), self.first_token_timeout)
        self.total_timeout = float(total_timeout)
        self.hedge_after = float(hedge_after) if hedge_after else None
        check_limits(first_token=self.first_token_timeout, stall=self.stall_timeout, total=self.total_timeout,
                     dribble_words_per_second=dribble_words_per_second, dribble_window=dribble_window,
                     first_sentence=first_sentence_timeout)
        self.dribble_words_per_second = float(dribble_words_per_second)
        self.first_sentence_timeout = float(first_sentence_timeout)
        self.dribble_window = float(dribble_window)
        self._hedges = HedgeBudget(hedge_budget)
        # Size caps: a runaway or hostile upstream must not exhaust memory or speak forever.
        self.max_reply_chars = max_reply_chars
        self.max_tool_args_chars = max_tool_args_chars
        self.app_name = header_safe("app_name", app_name)
        self.app_url = header_safe("app_url", app_url)
        self._endpoints: dict[str, tuple[str, str | None]] = {}
        for name, (url, key) in (endpoints or {}).items():
            self.add_endpoint(name, url, key)
        self.endpoint_options = {name: dict(opts) for name, opts in (endpoint_options or {}).items()}
        self.health = health or HealthTracker()
        self._stragglers = Stragglers(self.health)
        self.ranking = UptimeRanking() if predictive_ranking else None
        self.extra_body = dict(extra_body or {})
        self._owns_client = http_client is None
        self._client = http_client or new_client(max_connections)
        self._models: list[Target] = []
        self._policies: dict[bool, tuple[tuple[Any, ...], TurnPolicy]] = {}  # by spoken: see _policy
        self._tool_support: dict[str, bool] = {}
        self._chosen: Target | None = None
        self._reported_bad_keys: set[str] = set()
        self.observers: list[TurnObserver] = []  # told of every turn (:mod:`.events`), e.g. telemetry
        self.set_models(models)

    @classmethod
    def from_settings(cls, settings: Settings, models: Sequence[str | Target] | None = None,
                      **overrides: Any) -> FallbackRouter:
        """A router configured from the app's settings (environment and ``.env``): key, base URL,
        timeouts, hedging, app attribution and extra endpoints. ``models`` replaces the configured
        chain; ``overrides`` replace any other constructor argument (``hedge_after=None`` turns
        hedging off whatever the settings say).

        >>> from openrouter_voice.config import load_settings
        >>> router = FallbackRouter.from_settings(load_settings(hedge_after=0.8), ["openai/gpt-4o-mini"])
        >>> router.hedge_after, FallbackRouter.from_settings(load_settings(), hedge_after=None).hedge_after
        (0.8, None)
        """
        endpoints = {name: (endpoint.base_url, endpoint.api_key.get_secret_value() if endpoint.api_key else None)
                     for name, endpoint in settings.endpoints.items()}
        options: dict[str, Any] = {
            "api_key": settings.api_key, "base_url": settings.openrouter_base_url,
            "first_token_timeout": settings.first_token_timeout, "stall_timeout": settings.stall_timeout,
            "hedge_after": settings.hedge_after, "app_name": settings.openrouter_app_name,
            "dribble_words_per_second": settings.dribble_words_per_second,
            "dribble_window": settings.dribble_window, "predictive_ranking": settings.predictive_ranking,
            "first_sentence_timeout": settings.first_sentence_timeout,
            "app_url": settings.openrouter_app_url, "endpoints": endpoints,
        }
        shared = settings.shared_health()  # the fleet's (Redis) when configured: every such router shares it
        if shared is not None:
            options["health"] = shared
        # Endpoints given here join the configured ones (same name: the one given here wins).
        options.update(overrides, endpoints={**endpoints, **(overrides.get("endpoints") or {})})
        return cls(settings.chain() if models is None else models, **options)

    # -- chain ------------------------------------------------------------------------------

    @property
    def models(self) -> list[Target]:
        """The chain, primary first (a copy)."""
        return list(self._models)

    def add_endpoint(self, name: str, base_url: str, api_key: str | None = None,
                     options: dict[str, Any] | None = None) -> None:
        """Register an OpenAI-compatible endpoint that ``model@name`` ids refer to; ``options`` are request
        fields sent only to this endpoint (they override the turn's own)."""
        register_secret(api_key)
        header_safe(f"the api_key of endpoint {name!r} (OPENROUTER_VOICE_ENDPOINTS)", api_key)
        self._endpoints[name] = (base_url.rstrip("/"), api_key)
        if options:
            self.endpoint_options[name] = dict(options)

    def target(self, model: str | Target) -> Target:
        """Resolve a chain entry to a :class:`Target`; raises :class:`ConfigurationError` if unknown."""
        if isinstance(model, Target):
            return model
        model = model.strip()
        if not model:
            raise ConfigurationError("empty model id in the chain")
        if "@" in model:
            name, _, endpoint = model.rpartition("@")
            if endpoint not in self._endpoints:
                known = ", ".join(sorted(self._endpoints)) or "none"
                raise ConfigurationError(
                    f"model {model!r} names endpoint {endpoint!r}, which is not configured (known: {known}). "
                    "Add it to OPENROUTER_VOICE_ENDPOINTS or via FallbackRouter(endpoints=...).")
            url, key = self._endpoints[endpoint]
            return Target(name, endpoint, url, key)
        return Target(model, OPENROUTER, self.base_url, self.api_key)

    def set_models(self, models: Sequence[str | Target], *, chosen: bool = False) -> None:
        """Replace the chain (primary first). Duplicates are dropped; health is kept.

        ``chosen``: the user picked the primary by name, so it leads even turns that need tools when
        it cannot take them (it answers without tools) instead of going behind tool-capable models.

        >>> router = FallbackRouter(["openai/gpt-4o-mini"])
        >>> router.set_models(["anthropic/claude-3.5-haiku", *[t.label for t in router.models]])
        >>> [t.label for t in router.models]
        ['anthropic/claude-3.5-haiku', 'openai/gpt-4o-mini']
        """
        targets: list[Target] = []
        for model in models:
            target = self.target(model)
            if target not in targets:
                targets.append(target)
        if not targets:
            raise ConfigurationError(
                "the model chain is empty: pass models=[...] or set OPENROUTER_DEFAULT_MODEL")
        server_side = self.extra_body.get("models")
        if isinstance(server_side, list):
            doubled = sorted({t.model for t in targets} & {str(m) for m in server_side})
            if doubled:
                raise ConfigurationError(
                    f"{', '.join(doubled)} appear both in the client-side chain and in OpenRouter's server-side "
                    "'models' list; each failing model would be tried twice per turn. Keep each model in one list.")
        self._models = targets
        self._chosen = targets[0] if chosen else None

    def set_tool_support(self, support: dict[str, bool]) -> None:
        """Record which models support tool calling (e.g. from the catalog).

        Turns that carry tools go to tool-capable models first; a model known not to support tools
        is tried only after them, with the tools left out, so it can still answer in words.
        """
        self._tool_support.update(support)

    def supports_tools(self, target: Target) -> bool:
        return self._tool_support.get(target.label, True) and not self.health.tool_less(target.label)

    def _plan(self, needs_tools: bool = False) -> list[Target]:
        """Chain order for one request (see :mod:`.plan`)."""
        rank = None
        if self.ranking is not None:  # refreshed in the background: this turn uses only what is known
            self.ranking.start(self._client, self._models)
            rank = self.ranking.order
        plan = order(self._models, self.health, rank=rank)
        return tools_first(plan, self.supports_tools, self._chosen) if needs_tools else plan

    # -- requests ---------------------------------------------------------------------------

    def stream(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec] | None = None,
        *,
        tool_choice: Any = None,
        parallel_tool_calls: bool | None = None,
        spoken: bool = False,
        **extra_body: Any,
    ) -> RouterStream:
        """Stream a reply. Text deltas come as they arrive; tool calls and usage on the final chunk.

        ``spoken``: the reply goes to a speech synthesiser, which starts on whole sentences, so a model
        is also judged by when its first sentence ends (``first_sentence_timeout``): a listener hears
        nothing before it, whereas a reader sees each word (text turns need only the dribble check).

        >>> async with router.stream([{"role": "user", "content": "Hi"}]) as stream:  # doctest: +SKIP
        ...     async for chunk in stream:
        ...         print(chunk.text, end="")
        """
        attempts: list[Attempt] = []
        body: dict[str, Any] = {**self.extra_body, **extra_body}
        if tools:
            body["tools"] = list(tools)
            if tool_choice is not None:
                body["tool_choice"] = tool_choice
            if parallel_tool_calls is not None:
                body["parallel_tool_calls"] = parallel_tool_calls
        ready = sendable(list(messages), body)  # unsendable (NaN, objects): BadRequestError before any request
        stream = RouterStream(attempts)
        stream._generator = self._run(ready, body, attempts, sink=stream, spoken=spoken)
        return stream

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec] | None = None,
        *,
        tool_choice: Any = None,
        parallel_tool_calls: bool | None = None,
        spoken: bool = False,
        **extra_body: Any,
    ) -> Completion:
        """Get a whole reply (streamed internally, so deadlines still apply).

        >>> reply = await router.complete([{"role": "user", "content": "Hi"}])  # doctest: +SKIP
        >>> reply.text, reply.model, reply.usage.cost  # doctest: +SKIP
        """
        async with self.stream(messages, tools, tool_choice=tool_choice,
                               parallel_tool_calls=parallel_tool_calls, spoken=spoken, **extra_body) as stream:
            async for _ in stream:
                pass
        assert stream.result is not None
        return stream.result

    async def _run(self, messages: list[Message], body: dict[str, Any], attempts: list[Attempt],
                   sink: RouterStream, spoken: bool = False) -> AsyncGenerator[StreamChunk, None]:
        plan = self._plan(needs_tools=bool(body.get("tools")))
        attempts.extend(left_out(self._models, plan, self.health))
        if logger.isEnabledFor(logging.DEBUG):  # its arguments are built before logging could drop them
            logger.debug("turn plan: %s%s", [t.label for t in plan] or "nothing to try",
                         f" (left out: {[a.model for a in attempts]})" if attempts else "")
        runner = TurnRunner(self._policy(spoken=spoken), Turn(messages, body, attempts), plan)

        def keep(result: Completion) -> None:
            sink.result = result

        watches = start_watches(self.observers, self._models) if self.observers else ()
        error: BaseException | None = None
        self._hedges.in_flight += 1
        chunks = runner.run(on_result=keep)
        try:
            # Closed here (contextlib.aclosing's work, without its object and two coroutines per turn): a
            # consumer that stops early must close the attempt's HTTP stream now, not at GC.
            try:
                async for chunk in chunks:
                    yield chunk
            finally:
                await chunks.aclose()
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._hedges.in_flight -= 1
            if watches:
                end_watches(watches, attempts, sink.result, error)

    def _policy(self, *, spoken: bool = False) -> TurnPolicy:
        """What a turn needs from the router. Kept while the settings it holds stay the same: building it
        took ~5 us of every request in the overhead benchmark (scenario 7)."""
        settings = (self._models, self._client, self.first_token_timeout, self.final_first_token_timeout,
                    self.stall_timeout, self.total_timeout, self.hedge_after, self.max_reply_chars,
                    self.max_tool_args_chars, self.dribble_words_per_second, self.dribble_window,
                    self.first_sentence_timeout if spoken else 0.0, self.app_name, self.app_url)
        kept = self._policies.get(spoken)
        if kept is not None and kept[0] == settings:
            return kept[1]
        limits = Limits(first_token=self.first_token_timeout, final_first_token=self.final_first_token_timeout,
                        stall=self.stall_timeout, total=self.total_timeout, hedge_after=self.hedge_after,
                        max_reply_chars=self.max_reply_chars, max_tool_args_chars=self.max_tool_args_chars,
                        dribble_words_per_second=self.dribble_words_per_second, dribble_window=self.dribble_window,
                        first_sentence=self.first_sentence_timeout if spoken else 0.0)
        app_name, app_url = self.app_name, self.app_url
        headers: dict[int, tuple[Target, dict[str, str]]] = {}  # by the identity of the chain's targets

        def headers_of(target: Target) -> dict[str, str]:
            known = headers.get(id(target))
            if known is None or known[0] is not target:
                known = headers[id(target)] = (target, headers_for(target, app_name=app_name, app_url=app_url))
            return known[1]

        policy = TurnPolicy(
            client=self._client, health=self.health, hedges=self._hedges, limits=limits,
            stragglers=self._stragglers, chain=self.models, headers=headers_of,
            supports_tools=self.supports_tools, mark_tool_less=self._mark_tool_less,
            options=lambda endpoint: self.endpoint_options.get(endpoint, {}), report_bad_key=self._report_bad_key)
        self._policies[spoken] = (settings, policy)
        return policy

    def _mark_tool_less(self, target: Target) -> None:
        if self.supports_tools(target):
            logger.warning("%s does not support tool calling; it will answer without tools", target.label)
        self.set_tool_support({target.label: False})
        self.health.mark_tool_less(target.label)  # shared: the fleet's other sessions learn it too

    def _report_bad_key(self, endpoint: str, status: int | None) -> None:
        # Other endpoints (the local model) may still answer the turn, which would hide a bad key
        # behind working replies: say it once, loudly, with the fix.
        if endpoint in self._reported_bad_keys:
            return
        self._reported_bad_keys.add(endpoint)
        if endpoint == OPENROUTER:
            logger.error("OpenRouter rejected OPENROUTER_API_KEY (%s): every OpenRouter model is skipped. Fix: create "
                         "a key at https://openrouter.ai/keys and set OPENROUTER_API_KEY", status or "auth error")
        else:
            logger.error("endpoint %r rejected its api_key (%s): its models are skipped. Fix: correct it in "
                         "OPENROUTER_VOICE_ENDPOINTS", endpoint, status or "auth error")

    async def warmup(self) -> None:
        """Open pooled connections to every endpoint in the chain before the first turn: a cold TLS
        handshake costs ~100-300 ms of the first reply; a tiny unbilled request (``GET /key`` on OpenRouter,
        ``GET /models`` elsewhere) leaves a warm connection. Failures are ignored (an optimisation, not a check).

        >>> await router.warmup()  # doctest: +SKIP
        """
        await warm_up(self._client, self._models)

    async def aclose(self) -> None:
        """Stop watching hedge losers; close pooled connections (only if the router created its HTTP client)."""
        await self._stragglers.aclose()
        if self.ranking is not None:
            await self.ranking.aclose()
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
