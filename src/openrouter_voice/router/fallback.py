"""The fallback router: one reply from the first model in an ordered chain that can give it.

>>> router = FallbackRouter(models=["openai/gpt-4o-mini", "google/gemini-2.5-flash-lite"],
...                         api_key="sk-or-...", first_token_timeout=1.5)
>>> reply = await router.complete([{"role": "user", "content": "Hi"}])  # doctest: +SKIP
>>> async for chunk in router.stream(messages):  # doctest: +SKIP
...     print(chunk.text, end="")
>>> await router.aclose()  # doctest: +SKIP

How it decides, per model, in chain order (see :func:`errors.classify`):

* 401 -> the key is bad: nothing else on that endpoint is tried; :class:`AuthenticationError`
  if no other endpoint answers.
* 402 -> out of credits: only ``:free`` models on that endpoint are still tried.
* 404 / retired -> excluded for an hour. 429 / 503 -> cooldown for Retry-After.
  408, 5xx, connection errors, first-token timeouts, stalls, broken streams -> cooldown, next model.
* 400 / 422 -> the request is wrong for every model: :class:`BadRequestError` at once.
* Text already spoken when a model fails -> the next model continues it (prefill), repeats dropped.

OpenRouter's server-side fallback (``models=[...]`` in the body) and ``provider`` preferences may be
passed through as extra body fields; a server-side list must not repeat models of the client-side
chain (that would try the same broken model twice per turn), which raises :class:`ConfigurationError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx2

from ..config import OPENROUTER_BASE_URL, Settings, load_settings
from .attempt import AttemptDone, AttemptFailed, Deadlines, stream_attempt
from .continuation import RepeatGuard, continuation_messages
from .errors import (
    Action,
    AllModelsFailedError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ErrorInfo,
    InsufficientCreditsError,
)
from .health import HealthTracker
from .redact import register_secret
from .types import Attempt, Completion, Message, Outcome, StreamChunk, Target, ToolSpec, Usage

logger = logging.getLogger("openrouter_voice.router")

OPENROUTER = "openrouter"


def _http_client(max_connections: int) -> httpx2.AsyncClient:
    # Pooled keep-alive connections: a warm TLS connection saves ~100 ms of a voice turn.
    limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_connections,
                          keepalive_expiry=60.0)
    # Deadlines are enforced by the router per attempt; these are only backstops.
    timeout = httpx2.Timeout(connect=10.0, read=120.0, write=10.0, pool=10.0)
    return httpx2.AsyncClient(limits=limits, timeout=timeout, follow_redirects=False)


@dataclass(slots=True)
class _Turn:
    """What one request has accumulated across its attempts."""

    messages: list[Message]
    body: dict[str, Any]
    attempts: list[Attempt]
    emitted: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    dead_endpoints: set[str] = field(default_factory=set)  # bad key there
    broke_endpoints: set[str] = field(default_factory=set)  # out of credits there
    auth_failures: list[Attempt] = field(default_factory=list)
    credit_failures: list[Attempt] = field(default_factory=list)


@dataclass(slots=True)
class _Live:
    """An attempt in flight."""

    target: Target
    attempt: Attempt
    events: AsyncGenerator[str | AttemptDone, None]
    guard: RepeatGuard | None
    sent_at: float
    index: int


class RouterStream:
    """A streamed reply: iterate for :class:`StreamChunk`; ``result`` once finished; ``aclose`` to stop.

    Stopping early (``aclose``, ``break`` inside ``async with``, or cancellation) closes the upstream
    HTTP stream at once, which for most providers stops generation and billing.
    """

    _generator: AsyncGenerator[StreamChunk, None]

    def __init__(self, attempts: list[Attempt]) -> None:
        self.attempts = attempts
        self.result: Completion | None = None

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        return self

    async def __anext__(self) -> StreamChunk:
        return await self._generator.__anext__()

    async def aclose(self) -> None:
        await self._generator.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()


class FallbackRouter:
    """Chat completions over an ordered chain of models, failing over within a voice latency budget.

    Args:
        models: the chain, primary first: OpenRouter ids, ``model@endpoint`` ids, or :class:`Target`.
            Defaults to ``OPENROUTER_DEFAULT_MODEL`` + ``OPENROUTER_FALLBACK_MODELS``.
        api_key: OpenRouter key (default ``OPENROUTER_API_KEY``).
        base_url: OpenRouter-compatible base URL (default ``https://openrouter.ai/api/v1``).
        first_token_timeout: seconds from sending a request to the first content token before the
            next model is tried; keep-alive comments do not count. The last model tried gets
            ``final_first_token_timeout`` instead, since cutting it off could only end in silence.
        stall_timeout: longest silence between tokens once a reply is streaming. The last model
            tried may pause up to ``final_first_token_timeout`` (a slow local model on a busy CPU
            is better than an apology in mid-sentence).
        hedge_after: if the model has no first token after this many seconds, also ask the next
            model and keep whichever speaks first (the slower one is cancelled). None disables it.
        hedge_budget: at most this share of the requests in flight may hedge at once (at least one),
            so a slow, overloaded upstream is not sent twice the traffic.
        total_timeout: hard bound on any one upstream call.
        max_reply_chars, max_tool_args_chars: size caps on one reply and on one tool call's arguments.
        endpoints: extra OpenAI-compatible endpoints by name, ``{"local": ("http://127.0.0.1:8080/v1", None)}``.
        endpoint_options: extra request fields per endpoint name (e.g. sampling settings for a local model).
        health: share one :class:`HealthTracker` between routers to share what they learn.
        extra_body: fields added to every request (e.g. ``{"provider": {"sort": "latency"}}``).
    """

    def __init__(
        self,
        models: Sequence[str | Target] | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        first_token_timeout: float | None = None,
        stall_timeout: float | None = None,
        final_first_token_timeout: float = 10.0,
        hedge_after: float | None = None,
        hedge_budget: float = 0.1,
        total_timeout: float = 90.0,
        app_name: str | None = None,
        app_url: str | None = None,
        endpoints: dict[str, tuple[str, str | None]] | None = None,
        endpoint_options: dict[str, dict[str, Any]] | None = None,
        health: HealthTracker | None = None,
        http_client: httpx2.AsyncClient | None = None,
        extra_body: dict[str, Any] | None = None,
        max_connections: int = 1000,
        max_reply_chars: int = 200_000,
        max_tool_args_chars: int = 100_000,
        settings: Settings | None = None,
    ) -> None:
        self._settings = settings
        cfg = settings
        needs_settings = (models is None or api_key is None or base_url is None or first_token_timeout is None
                          or stall_timeout is None or app_name is None)
        if cfg is None and needs_settings:
            cfg = load_settings()
        self.api_key = api_key if api_key is not None else (cfg.api_key if cfg else None)
        register_secret(self.api_key)
        self.base_url = (base_url or (cfg.openrouter_base_url if cfg else OPENROUTER_BASE_URL)).rstrip("/")
        self.first_token_timeout = float(
            first_token_timeout if first_token_timeout is not None else (cfg.first_token_timeout if cfg else 2.0))
        self.stall_timeout = float(
            stall_timeout if stall_timeout is not None else (cfg.stall_timeout if cfg else 1.5))
        self.final_first_token_timeout = max(float(final_first_token_timeout), self.first_token_timeout)
        self.total_timeout = float(total_timeout)
        if hedge_after is None and cfg is not None:
            hedge_after = cfg.hedge_after
        self.hedge_after = float(hedge_after) if hedge_after else None
        self.hedge_budget = hedge_budget
        self._in_flight = 0  # requests being served now (for the hedge budget)
        self._hedges_in_flight = 0
        # Size caps: a runaway or hostile upstream must not exhaust memory or speak forever.
        self.max_reply_chars = max_reply_chars
        self.max_tool_args_chars = max_tool_args_chars
        for name, value in (("first_token_timeout", self.first_token_timeout),
                            ("stall_timeout", self.stall_timeout), ("total_timeout", self.total_timeout)):
            if not value > 0:
                raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
        self.app_name = app_name if app_name is not None else (cfg.openrouter_app_name if cfg else None)
        self.app_url = app_url if app_url is not None else (cfg.openrouter_app_url if cfg else None)
        self._endpoints: dict[str, tuple[str, str | None]] = {}
        if cfg is not None:
            for name, endpoint in cfg.endpoints.items():
                key = endpoint.api_key.get_secret_value() if endpoint.api_key else None
                self._endpoints[name] = (endpoint.base_url, key)
        for name, (url, key) in (endpoints or {}).items():
            register_secret(key)
            self._endpoints[name] = (url, key)
        self.endpoint_options = {name: dict(opts) for name, opts in (endpoint_options or {}).items()}
        self.health = health or HealthTracker()
        self.extra_body = dict(extra_body or {})
        self._owns_client = http_client is None
        self._client = http_client or _http_client(max_connections)
        self._models: list[Target] = []
        self._tool_support: dict[str, bool] = {}
        self._chosen: Target | None = None
        self._reported_bad_keys: set[str] = set()
        self.set_models(models if models is not None else (cfg.chain() if cfg else []))

    # -- chain ------------------------------------------------------------------------------

    @property
    def models(self) -> list[Target]:
        """The chain, primary first (a copy)."""
        return list(self._models)

    def add_endpoint(self, name: str, base_url: str, api_key: str | None = None,
                     options: dict[str, Any] | None = None) -> None:
        """Register an OpenAI-compatible endpoint that ``model@name`` ids refer to.

        ``options`` are request fields sent only to this endpoint (they override the turn's own).
        """
        register_secret(api_key)
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
            return Target(name, endpoint, url.rstrip("/"), key)
        return Target(model, OPENROUTER, self.base_url, self.api_key)

    def set_models(self, models: Sequence[str | Target], *, chosen: bool = False) -> None:
        """Replace the chain (primary first). Duplicates are dropped; health is kept.

        ``chosen``: the user picked the primary by name, so it leads even turns that need tools when
        it cannot take them (it answers without tools) instead of going behind tool-capable models.

        >>> router.set_models(["anthropic/claude-3.5-haiku", *[t.label for t in router.models]])  # doctest: +SKIP
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

    # -- requests ---------------------------------------------------------------------------

    def stream(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec] | None = None,
        *,
        tool_choice: Any = None,
        parallel_tool_calls: bool | None = None,
        **extra_body: Any,
    ) -> RouterStream:
        """Stream a reply. Text deltas come as they arrive; tool calls and usage on the final chunk.

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
        stream = RouterStream(attempts)
        stream._generator = self._run(list(messages), body, attempts, sink=stream)
        return stream

    async def complete(
        self,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec] | None = None,
        *,
        tool_choice: Any = None,
        parallel_tool_calls: bool | None = None,
        **extra_body: Any,
    ) -> Completion:
        """Get a whole reply (streamed internally, so deadlines still apply).

        >>> reply = await router.complete([{"role": "user", "content": "Hi"}])  # doctest: +SKIP
        >>> reply.text, reply.model, reply.usage.cost  # doctest: +SKIP
        """
        async with self.stream(messages, tools, tool_choice=tool_choice,
                               parallel_tool_calls=parallel_tool_calls, **extra_body) as stream:
            async for _ in stream:
                pass
        assert stream.result is not None
        return stream.result

    def _headers(self, target: Target) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if target.api_key:
            headers["Authorization"] = f"Bearer {target.api_key}"
        if target.endpoint == OPENROUTER:
            if self.app_url:
                headers["HTTP-Referer"] = self.app_url
            if self.app_name:
                headers["X-Title"] = self.app_name
                headers["X-OpenRouter-Title"] = self.app_name
        return headers

    def set_tool_support(self, support: dict[str, bool]) -> None:
        """Record which models support tool calling (e.g. from the catalog).

        Turns that carry tools go to tool-capable models first; a model known not to support tools
        is tried only after them, with the tools left out, so it can still answer in words.
        """
        self._tool_support.update(support)

    def supports_tools(self, target: Target) -> bool:
        return self._tool_support.get(target.label, True)

    def _plan(self, needs_tools: bool = False) -> list[Target]:
        """Chain order for one request: available models first, in priority order.

        Models that are cooling down go last, soonest-recovering first: when everything is down
        it is better to try than to stay silent. Left out: models excluded for long (404), and those
        whose upstream said when to come back (Retry-After), as asking again before then is refused.
        """
        available = [t for t in self._models if self.health.is_available(t.label)]
        cooling = [t for t in self._models if t not in available and not self.health.told_to_wait(t.label)
                   and self.health.cooldown_remaining(t.label) < self.health.exclude_cooldown / 2]
        cooling.sort(key=lambda t: self.health.cooldown_remaining(t.label))
        plan = available + cooling
        if needs_tools:
            lead = [t for t in plan[:1] if t == self._chosen]  # the user's explicit choice keeps its place
            rest = plan[len(lead):]
            plan = lead + [t for t in rest if self.supports_tools(t)] + [t for t in rest if not self.supports_tools(t)]
        return plan

    def _viable(self, target: Target, turn: _Turn) -> bool:
        if target.endpoint in turn.dead_endpoints:
            return False
        return not (target.endpoint in turn.broke_endpoints and not target.is_free_variant)

    def _launch(self, target: Target, index: int, turn: _Turn, *, last: bool) -> _Live:
        """Send the request for ``target`` (the stream opens on first iteration)."""
        first_token = self.final_first_token_timeout if last else self.first_token_timeout
        stall = max(self.stall_timeout, self.final_first_token_timeout) if last else self.stall_timeout
        deadlines = Deadlines(first_token=first_token, stall=stall, total=self.total_timeout,
                              max_text_chars=self.max_reply_chars, max_tool_args_chars=self.max_tool_args_chars)
        partial = "".join(turn.emitted)
        request_body: dict[str, Any] = {
            **turn.body,
            "model": target.model,
            "messages": continuation_messages(turn.messages, partial) if partial else turn.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if "tools" in request_body and not self.supports_tools(target):
            for key in ("tools", "tool_choice", "parallel_tool_calls"):
                request_body.pop(key, None)
        if target.endpoint != OPENROUTER:
            # OpenRouter-only fields would be rejected or misread by other servers.
            for key in ("models", "provider", "transforms", "plugins", "route", "session_id"):
                request_body.pop(key, None)
        request_body.update(self.endpoint_options.get(target.endpoint, {}))
        attempt = Attempt(target, Outcome.OK)
        turn.attempts.append(attempt)
        self.health.begin(target.label)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("sending %s to %s: %d messages, %d tools, %d body bytes%s; first token within %.2fs, "
                         "stall after %.2fs, circuit %s", target.label, target.base_url, len(request_body["messages"]),
                         len(request_body.get("tools") or ()), len(json.dumps(request_body)),
                         f", continuing after {len(partial)} chars" if partial else "", deadlines.first_token,
                         deadlines.stall, self.health.state(target.label).value)
        events = stream_attempt(self._client, target, request_body, self._headers(target), deadlines)
        return _Live(target, attempt, events, RepeatGuard(partial) if partial else None,
                     asyncio.get_running_loop().time(), index)

    def _record_failure(self, live: _Live, failure: AttemptFailed, turn: _Turn) -> None:
        info = failure.info
        attempt = live.attempt
        attempt.outcome = failure.outcome
        attempt.status = info.status
        attempt.error = info.message
        attempt.error_type = info.error_type
        attempt.retry_after = info.retry_after
        attempt.latency = asyncio.get_running_loop().time() - live.sent_at
        attempt.ttft = failure.ttft
        attempt.served_model = failure.served_model
        attempt.usage = failure.usage
        if failure.usage:
            turn.usage = turn.usage + failure.usage
        self._apply(live.target, info.action, info.message, info.retry_after)
        self._log_attempt(attempt, live.index)
        if info.action is Action.FAIL_ENDPOINT:
            turn.dead_endpoints.add(live.target.endpoint)
            turn.auth_failures.append(attempt)
            self._report_bad_key(live.target.endpoint, info.status)
        elif info.action is Action.SKIP_PAID:
            turn.broke_endpoints.add(live.target.endpoint)
            turn.credit_failures.append(attempt)
        elif info.action is Action.RAISE and not attempt.emitted_text:
            raise BadRequestError(
                f"{live.target.label} rejected the request ({info.status}): {info.message}. "
                "Every model would reject it the same way; fix the request.", turn.attempts) from None

    async def _cancel(self, racers: dict[asyncio.Task[str | AttemptDone], _Live], *, lost_to: _Live | None) -> None:
        """Stop racing attempts and close their HTTP streams."""
        for task in racers:
            task.cancel()
        await asyncio.gather(*racers, return_exceptions=True)
        loop = asyncio.get_running_loop()
        for live in racers.values():
            await live.events.aclose()
            live.attempt.outcome = Outcome.CANCELLED
            live.attempt.latency = loop.time() - live.sent_at
            if lost_to is not None and live.sent_at < lost_to.sent_at:
                # It had a head start and still had no first token: treat it as slow for a while.
                live.attempt.error = f"no first token after {live.attempt.latency:.2f}s; hedged request won"
                self.health.record_failure(live.target.label, reason=live.attempt.error)
            else:
                self.health.end_trial(live.target.label)
            self._log_attempt(live.attempt, live.index)
        racers.clear()

    async def _first_event(self, live: _Live, queue: deque[tuple[int, Target]],
                           turn: _Turn) -> tuple[_Live, str | AttemptDone] | None:
        """Wait for ``live``'s first event; past ``hedge_after`` also race the next viable model.

        Returns the winner and its first event, or None when every racer failed (failures recorded).
        """
        loop = asyncio.get_running_loop()
        racers: dict[asyncio.Task[str | AttemptDone], _Live] = {
            asyncio.ensure_future(anext(live.events)): live}
        hedged = self.hedge_after is None
        hedges = 0
        try:
            while racers:
                timeout = None
                if not hedged:
                    assert self.hedge_after is not None
                    timeout = max(0.0, live.sent_at + self.hedge_after - loop.time())
                done, _ = await asyncio.wait(racers, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    hedged = True
                    while queue and not self._viable(queue[0][1], turn):
                        index, skipped = queue.popleft()
                        turn.attempts.append(Attempt(skipped, Outcome.SKIPPED, error="endpoint unusable"))
                    # Hedge budget: when everything is slow (an overloaded upstream), hedging every
                    # request would double the load; only a share of the requests in flight may hedge.
                    budget = max(1, int(self.hedge_budget * self._in_flight))
                    if queue and self._hedges_in_flight < budget:
                        index, target = queue.popleft()
                        last = not any(self._viable(t, turn) for _, t in queue)
                        hedge = self._launch(target, index, turn, last=last)
                        logger.info("hedging: %s has no first token after %.2fs, also asking %s",
                                    live.target.label, self.hedge_after, target.label)
                        racers[asyncio.ensure_future(anext(hedge.events))] = hedge
                        hedges += 1
                        self._hedges_in_flight += 1
                    continue
                for task in sorted(done, key=lambda t: racers[t].index):
                    racer = racers.pop(task)
                    error = task.exception()
                    if error is None:
                        await self._cancel(racers, lost_to=racer)
                        return racer, task.result()
                    if isinstance(error, AttemptFailed):
                        self._record_failure(racer, error, turn)
                    elif isinstance(error, StopAsyncIteration):
                        self._record_failure(racer, AttemptFailed(Outcome.BAD_RESPONSE, ErrorInfo(
                            None, "stream ended without a reply", Action.COOLDOWN)), turn)
                    else:
                        raise error
            return None
        except BaseException:
            await self._cancel(racers, lost_to=None)
            raise
        finally:
            self._hedges_in_flight -= hedges

    async def _run(
        self,
        messages: list[Message],
        body: dict[str, Any],
        attempts: list[Attempt],
        sink: RouterStream | None = None,
    ) -> AsyncGenerator[StreamChunk, None]:
        plan = self._plan(needs_tools=bool(body.get("tools")))
        for target in self._models:
            if target not in plan:
                reason, label = self.health.reason(target.label), target.label
                why = (f"cooling down for {self.health.cooldown_remaining(label):.0f}s as asked (Retry-After) after "
                       f"{reason}" if self.health.told_to_wait(label) else f"excluded: {reason}")
                attempts.append(Attempt(target, Outcome.SKIPPED, error=why))
        turn = _Turn(messages, body, attempts)
        logger.debug("turn plan: %s%s", [t.label for t in plan] or "nothing to try",
                     f" (left out: {[a.model for a in attempts]})" if attempts else "")
        queue: deque[tuple[int, Target]] = deque(enumerate(plan))
        self._in_flight += 1
        try:
            # aclosing: a consumer that stops early must close the attempt's HTTP stream now, not at GC.
            async with contextlib.aclosing(self._turn(turn, queue, sink)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            self._in_flight -= 1

    async def _turn(self, turn: _Turn, queue: deque[tuple[int, Target]],
                    sink: RouterStream | None) -> AsyncGenerator[StreamChunk, None]:
        loop = asyncio.get_running_loop()
        attempts = turn.attempts

        while queue:
            index, target = queue.popleft()
            if not self._viable(target, turn):
                reason = ("API key rejected on this endpoint" if target.endpoint in turn.dead_endpoints
                          else "out of credits (paid model)")
                attempts.append(Attempt(target, Outcome.SKIPPED, error=reason))
                continue
            last = not any(self._viable(t, turn) for _, t in queue)
            raced = await self._first_event(self._launch(target, index, turn, last=last), queue, turn)
            if raced is None:
                continue
            live, first = raced
            attempt = live.attempt
            finished = False
            try:
                event: str | AttemptDone = first
                events = live.events
                while True:
                    if isinstance(event, str):
                        text = live.guard.feed(event) if live.guard else event
                        if text:
                            attempt.emitted_text = True
                            turn.emitted.append(text)
                            yield StreamChunk(text=text, model=live.target.label)
                        event = await anext(events)
                        continue
                    done = event
                    tail = live.guard.flush() if live.guard else ""
                    if tail:
                        attempt.emitted_text = True
                        turn.emitted.append(tail)
                        yield StreamChunk(text=tail, model=done.served_model)
                    attempt.latency = loop.time() - live.sent_at
                    attempt.ttft = done.ttft
                    attempt.served_model = done.served_model
                    attempt.usage = done.usage
                    if done.usage:
                        turn.usage = turn.usage + done.usage
                    self.health.record_success(live.target.label)
                    self._log_attempt(attempt, live.index)
                    logger.debug("%s finished (%s): %d text chars, %d tool calls, usage %s",
                                 done.served_model, done.finish_reason, sum(map(len, turn.emitted)),
                                 len(done.tool_calls), done.usage or "not reported")
                    self._note_passed_over(live.target, attempts)
                    result = Completion(
                        text="".join(turn.emitted), model=done.served_model, tool_calls=done.tool_calls,
                        usage=turn.usage, attempts=attempts, finish_reason=done.finish_reason, id=done.id,
                    )
                    if sink is not None:
                        sink.result = result
                    if result.fell_back:
                        # A failure this turn is news; passing over a model already known to be cooling is not.
                        failed_now = any(a.outcome not in (Outcome.OK, Outcome.SKIPPED) for a in attempts)
                        logger.log(logging.WARNING if failed_now else logging.INFO, "served by fallback %s after: %s",
                                   live.target.label, result.fallback_reason)
                    finished = True
                    await live.events.aclose()
                    yield StreamChunk(model=done.served_model, tool_calls=done.tool_calls, usage=turn.usage,
                                      finish_reason=done.finish_reason)
                    return
            except StopAsyncIteration:
                self._record_failure(live, AttemptFailed(Outcome.BAD_RESPONSE, ErrorInfo(
                    None, "stream ended without a reply", Action.COOLDOWN)), turn)
            except AttemptFailed as failure:
                self._record_failure(live, failure, turn)
            except (asyncio.CancelledError, GeneratorExit):
                if not finished:  # closing after the final chunk is not a cancellation
                    attempt.outcome = Outcome.CANCELLED
                    attempt.latency = loop.time() - live.sent_at
                    self.health.end_trial(live.target.label)
                await live.events.aclose()
                raise

        partial = "".join(turn.emitted)
        if turn.auth_failures and not turn.credit_failures and all(
            a.outcome is Outcome.SKIPPED or a in turn.auth_failures for a in attempts
        ):
            raise AuthenticationError(
                "OpenRouter rejected the API key (401). Fix: set OPENROUTER_API_KEY to a valid key from "
                "https://openrouter.ai/keys (run `openrouter-voice doctor` to check it).", attempts)
        if turn.credit_failures and not partial and all(
            a.outcome is Outcome.SKIPPED or a in turn.credit_failures or a in turn.auth_failures for a in attempts
        ):
            raise InsufficientCreditsError(
                "OpenRouter says the account is out of credits (402) and no ':free' model in the chain answered. "
                "Fix: add credits at https://openrouter.ai/settings/credits or add a ':free' model to "
                "OPENROUTER_FALLBACK_MODELS.", attempts)
        raise AllModelsFailedError(attempts, partial_text=partial)

    def _note_passed_over(self, served: Target, attempts: list[Attempt]) -> None:
        """Record chain models ahead of ``served`` that this turn never tried (cooling down)."""
        tried = {a.target for a in attempts}
        for target in self._models:
            if target == served:
                break
            if target not in tried:
                remaining = self.health.cooldown_remaining(target.label)
                attempts.append(Attempt(target, Outcome.SKIPPED, error=(
                    f"cooling down for {remaining:.0f}s after {self.health.reason(target.label) or 'a failure'}")))

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

    def _apply(self, target: Target, action: Action, reason: str, retry_after: float | None) -> None:
        label = target.label
        logger.debug("decision for %s: %s (%s%s)", label, action.value, reason,
                     f", Retry-After {retry_after:g}s" if retry_after is not None else "")
        if action is Action.COOLDOWN:
            self.health.record_failure(label, reason=reason, retry_after=retry_after)
        elif action is Action.EXCLUDE:
            self.health.record_failure(label, reason=reason, exclude=True)
        elif action is Action.NO_TOOLS:
            # Healthy, but it cannot take tools: from now on it gets turns without them (and after the others).
            if self.supports_tools(target):
                logger.warning("%s does not support tool calling; it will answer without tools", label)
            self.set_tool_support({label: False})
            self.health.end_trial(label)
        else:
            # The model itself is fine (bad request, bad key, no credit): no cooldown, end any trial.
            self.health.end_trial(label)

    def _log_attempt(self, attempt: Attempt, index: int) -> None:
        logger.info(
            "attempt %d model=%s outcome=%s status=%s ttft=%s latency=%.3fs%s",
            index + 1, attempt.model, attempt.outcome.value, attempt.status if attempt.status is not None else "-",
            f"{attempt.ttft:.3f}s" if attempt.ttft is not None else "-", attempt.latency,
            f" error={attempt.error!r}" if attempt.error else "",
        )

    async def warmup(self) -> None:
        """Open pooled connections to every endpoint in the chain before the first turn.

        A cold TLS handshake costs ~100-300 ms of the first reply; a tiny unbilled request
        (``GET /key`` on OpenRouter, ``GET /models`` elsewhere) leaves a warm connection behind.
        Failures are ignored: warming up is an optimisation, not a check.

        >>> await router.warmup()  # doctest: +SKIP
        """
        seen: set[str] = set()
        for target in self._models:
            if target.base_url in seen:
                continue
            seen.add(target.base_url)
            path = "/key" if target.endpoint == OPENROUTER else "/models"
            headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
            try:
                async with asyncio.timeout(5.0):
                    response = await self._client.get(target.base_url + path, headers=headers)
                    await response.aread()
            except (TimeoutError, httpx2.HTTPError) as exc:
                logger.debug("warm-up of %s failed: %s", target.endpoint, type(exc).__name__)

    async def aclose(self) -> None:
        """Close pooled connections (only if the router created its HTTP client)."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
