"""One request's work across the chain: launching attempts (raced to their first event by
:mod:`.first_event`), recording each failure, continuing a broken reply, and choosing the final error.

The router hands a turn its plan (models in order) and a :class:`TurnPolicy` (what the turn needs
from the router, as plain values and callables), so this module never imports the router.

>>> runner = TurnRunner(policy, Turn(messages, body, attempts), plan)  # doctest: +SKIP
>>> async for chunk in runner.run(on_result=print):  # doctest: +SKIP
...     print(chunk.text, end="")
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .attempt import AttemptFailed, stream_attempt
from .chunks import AttemptDone
from .continuation import RepeatGuard
from .deadlines import hedge_delay
from .errors import (
    Action,
    AllModelsFailedError,
    AuthenticationError,
    BadRequestError,
    ErrorInfo,
    InsufficientCreditsError,
    RouterError,
)
from .first_event import ENDED_EARLY, Live, first_event, log_attempt
from .plan import order, soonest_retry
from .policy import TurnPolicy
from .request import request_body
from .types import Attempt, Completion, Message, Outcome, StreamChunk, Target, Usage

logger = logging.getLogger("openrouter_voice.router")


@dataclass(slots=True)
class Turn:
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

    def viable(self, target: Target) -> bool:
        """False once this turn learnt that ``target``'s endpoint rejects the key or (paid) is out of credit."""
        if target.endpoint in self.dead_endpoints:
            return False
        return not (target.endpoint in self.broke_endpoints and not target.is_free_variant)

    def final_error(self) -> RouterError:
        """The error to raise when no model could answer."""
        partial = "".join(self.emitted)
        attempts = self.attempts
        if self.auth_failures and not self.credit_failures and all(
            a.outcome is Outcome.SKIPPED or a in self.auth_failures for a in attempts
        ):
            return AuthenticationError(
                "OpenRouter rejected the API key (401). Fix: set OPENROUTER_API_KEY to a valid key from "
                "https://openrouter.ai/keys (run `openrouter-voice doctor` to check it).", attempts)
        if self.credit_failures and not partial and all(
            a.outcome is Outcome.SKIPPED or a in self.credit_failures or a in self.auth_failures for a in attempts
        ):
            return InsufficientCreditsError(
                "OpenRouter says the account is out of credits (402) and no ':free' model in the chain answered. "
                "Fix: add credits at https://openrouter.ai/settings/credits or add a ':free' model to "
                "OPENROUTER_FALLBACK_MODELS.", attempts)
        return AllModelsFailedError(attempts, partial_text=partial)


class TurnRunner:
    """Serves one turn: tries ``plan`` in order (hedging past a slow model) until one replies."""

    def __init__(self, policy: TurnPolicy, turn: Turn, plan: Sequence[Target]) -> None:
        self.policy = policy
        self.health = policy.health
        self.turn = turn
        self.queue: deque[tuple[int, Target]] = deque(enumerate(plan))

    async def run(self, on_result: Callable[[Completion], None]) -> AsyncGenerator[StreamChunk, None]:
        """Text chunks as they arrive, then a final chunk with tool calls and usage; raises a
        :class:`RouterError` when no model could answer."""
        turn, queue = self.turn, self.queue
        wait_budget = self.policy.limits.retry_after_wait
        while queue or (wait_budget := await self._wait_for_retry_after(wait_budget)) >= 0:
            if not queue:
                continue
            index, target = queue.popleft()
            if not turn.viable(target):
                reason = ("API key rejected on this endpoint" if target.endpoint in turn.dead_endpoints
                          else "out of credits (paid model)")
                turn.attempts.append(Attempt(target, Outcome.SKIPPED, error=reason))
                continue
            raced = await first_event(self._launch(target, index, last=self._is_last()), self.policy, hedge=self._hedge,
                                      failed=self._record_failure, apply=self._apply)
            if raced is None:
                continue
            live, first = raced
            chunks = self._serve(live, first, on_result)
            try:
                try:  # contextlib.aclosing's work, without its object and two coroutines per turn
                    async for chunk in chunks:
                        yield chunk
                finally:
                    await chunks.aclose()
                return
            except AttemptFailed as failure:
                self._record_failure(live, failure)
                if live.attempt.emitted_text:  # said now, not when the next model's first words come
                    yield StreamChunk(model=live.target.label, broke=True)
        raise turn.final_error()

    async def _wait_for_retry_after(self, budget: float) -> float:
        """Nothing is left to try. Queue the chain's models this turn has not tried (or only raced and
        cancelled) that may be asked
        now (a Retry-After ended meanwhile); if there are none, but one may be asked again within
        ``budget`` seconds, wait for it first: a caller would rather hear an answer a moment later than
        an apology. Returns the budget left, or -1 when there is nothing more to try."""
        # A hedge race's loser was cancelled, not failed: it may still answer (or continue the winner's
        # reply if the winner breaks).
        tried = {a.target for a in self.turn.attempts if a.outcome not in (Outcome.SKIPPED, Outcome.CANCELLED)}
        rest = [t for t in self.policy.chain if t not in tried and self.turn.viable(t)]
        ready = order(rest, self.health)  # as a new turn would plan them: available first, then cooling
        if not ready:
            waiting = [t for t in rest if self.health.told_to_wait(t.label)]
            wait = soonest_retry(waiting, self.health, limit=budget)
            if wait is None:
                return -1.0
            logger.info("nothing else to try; waiting %.2fs for %s's Retry-After to end", wait,
                        min(waiting, key=lambda t: self.health.wait_remaining(t.label)).label)
            wait = max(wait, 0.005)  # clocks differ by microseconds: never spin on a zero wait
            await asyncio.sleep(wait)
            budget -= wait
            ready = order(rest, self.health)
        start = len(self.turn.attempts)
        self.queue.extend((start + i, target) for i, target in enumerate(ready))
        return budget

    def _is_last(self) -> bool:
        return not any(self.turn.viable(t) for _, t in self.queue)

    async def _serve(self, live: Live, first: str | AttemptDone,
                     on_result: Callable[[Completion], None]) -> AsyncGenerator[StreamChunk, None]:
        """Stream the winner's reply (through its repeat guard when continuing), then finish the turn."""
        turn, attempt, label = self.turn, live.attempt, live.target.label  # per chunk: no property call
        finished = False
        try:
            event = first
            while isinstance(event, str):
                text = live.guard.feed(event) if live.guard else event
                if text:
                    attempt.emitted_text = True
                    turn.emitted.append(text)
                    yield StreamChunk(text=text, model=label)
                event = await _next(live)
            tail = live.guard.flush() if live.guard else ""
            if tail:
                attempt.emitted_text = True
                turn.emitted.append(tail)
                yield StreamChunk(text=tail, model=event.served_model)
            result = self._succeed(live, event)
            on_result(result)
            finished = True
            await live.events.aclose()
            yield StreamChunk(model=event.served_model, tool_calls=event.tool_calls, usage=turn.usage,
                              finish_reason=event.finish_reason)
        except (asyncio.CancelledError, GeneratorExit):
            if not finished:  # closing after the final chunk is not a cancellation
                attempt.outcome = Outcome.CANCELLED
                attempt.latency = asyncio.get_running_loop().time() - live.sent_at
                self.health.end_trial(live.target.label)
            await live.events.aclose()
            raise

    def _succeed(self, live: Live, done: AttemptDone) -> Completion:
        turn, attempt = self.turn, live.attempt
        attempt.latency = asyncio.get_running_loop().time() - live.sent_at
        attempt.ttft = done.ttft
        attempt.served_model = done.served_model
        attempt.usage = done.usage
        if done.usage:
            turn.usage = turn.usage + done.usage
        self.health.record_success(live.target.label, sent=live.sent)
        # one call per reply, not per chunk; a continuation's sentence began elsewhere: no sample
        sentence = live.sentence.span if live.sentence is not None and live.guard is None else None
        self.health.record_reply(live.target.label, ttft=done.ttft, gaps=live.gaps, sentence=sentence,
                                 cost=done.usage.cost if done.usage else None)
        log_attempt(attempt, live.index)
        if logger.isEnabledFor(logging.DEBUG):  # the sum walks every chunk of the reply
            logger.debug("%s finished (%s): %d text chars, %d tool calls, usage %s", done.served_model,
                         done.finish_reason, sum(map(len, turn.emitted)), len(done.tool_calls),
                         done.usage or "not reported")
        self._note_passed_over(live.target)
        result = Completion(text="".join(turn.emitted), model=done.served_model, tool_calls=done.tool_calls,
                            usage=turn.usage, attempts=turn.attempts, finish_reason=done.finish_reason, id=done.id)
        if result.fell_back:
            # A failure this turn is news; passing over a model already known to be cooling is not.
            failed_now = any(a.outcome not in (Outcome.OK, Outcome.SKIPPED) for a in turn.attempts)
            logger.log(logging.WARNING if failed_now else logging.INFO, "served by fallback %s after: %s",
                       live.target.label, result.fallback_reason)
        return result

    # -- launching ----------------------------------------------------------------------------

    def _launch(self, target: Target, index: int, *, last: bool, hedging: bool = False) -> Live:
        """Send the request for ``target`` (the stream opens on first iteration)."""
        policy, turn = self.policy, self.turn
        latency = self.health.latency(target.label)
        deadlines, stall_why = policy.limits.deadlines(latency, last=last)
        hedge = None if last else hedge_delay(latency, policy.limits.hedge_after)
        partial = "".join(turn.emitted)
        sentence, sentence_why = policy.limits.sentence_watch(latency, last=last, said=partial)
        body = request_body(target, turn.messages, turn.body, partial=partial,
                            with_tools=policy.supports_tools(target), options=policy.options(target.endpoint))
        attempt = Attempt(target, Outcome.OK, started=time.time(), hedge=hedging, continuation=bool(partial))
        turn.attempts.append(attempt)
        sent = self.health.now()
        self.health.begin(target.label)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("sending %s to %s: %d messages, %d tools, %d body bytes%s; first token within %.2fs, "
                         "hedge after %s, stall after %.2fs (%s), first sentence within %s, circuit %s",
                         target.label, target.base_url,
                         len(body["messages"]), len(body.get("tools") or ()), len(json.dumps(body)),
                         f", continuing after {len(partial)} chars" if partial else "", deadlines.first_token,
                         f"{hedge.seconds:.2f}s ({hedge.why})" if hedge else "never", deadlines.stall, stall_why.why,
                         f"{sentence.bound:.2f}s of the first token ({sentence_why})" if sentence and sentence.bound
                         else f"unchecked ({sentence_why})", self.health.state(target.label).value)
        gaps: list[float] = []
        events = stream_attempt(policy.client, target, body, policy.headers(target), deadlines, gaps, sentence)
        return Live(target, attempt, events, RepeatGuard(partial) if partial else None,
                    asyncio.get_running_loop().time(), index, sent, hedge.seconds if hedge else None, gaps, sentence)

    def _hedge(self, slow: Live) -> Live | None:
        """Launch the next viable model beside ``slow``, if the hedge budget allows."""
        queue = self.queue
        while queue and not self.turn.viable(queue[0][1]):
            _, skipped = queue.popleft()
            self.turn.attempts.append(Attempt(skipped, Outcome.SKIPPED, error="endpoint unusable"))
        if not queue or not self.policy.hedges.allows():
            return None
        index, target = queue.popleft()
        hedge = self._launch(target, index, last=self._is_last(), hedging=True)
        logger.info("hedging: %s has no first token after %.2fs, also asking %s",
                    slow.target.label, slow.hedge_after or 0.0, target.label)
        return hedge

    # -- recording outcomes ------------------------------------------------------------------

    def _record_failure(self, live: Live, failure: AttemptFailed) -> None:
        info, attempt, turn = failure.info, live.attempt, self.turn
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
        self._apply(live.target, info)
        log_attempt(attempt, live.index)
        if info.action is Action.FAIL_ENDPOINT:
            turn.dead_endpoints.add(live.target.endpoint)
            turn.auth_failures.append(attempt)
            self.policy.report_bad_key(live.target.endpoint, info.status)
        elif info.action is Action.SKIP_PAID:
            turn.broke_endpoints.add(live.target.endpoint)
            turn.credit_failures.append(attempt)
        elif info.action is Action.RAISE and not attempt.emitted_text:
            raise BadRequestError(
                f"{live.target.label} rejected the request ({info.status}): {info.message}. "
                "Every model would reject it the same way; fix the request.", turn.attempts) from None

    def _apply(self, target: Target, info: ErrorInfo) -> None:
        """Tell the circuit breaker what the failure means for the model."""
        label, action = target.label, info.action
        logger.debug("decision for %s: %s (%s%s)", label, action.value, info.message,
                     f", Retry-After {info.retry_after:g}s" if info.retry_after is not None else "")
        if action is Action.COOLDOWN:
            self.health.record_failure(label, reason=info.message, retry_after=info.retry_after)
        elif action is Action.EXCLUDE:
            self.health.record_failure(label, reason=info.message, exclude=True)
        elif action is Action.NO_TOOLS:
            # Healthy, but it cannot take tools: from now on it gets turns without them (and after the others).
            self.policy.mark_tool_less(target)
            self.health.end_trial(label)
        else:
            # The model itself is fine (bad request, bad key, no credit): no cooldown, end any trial.
            self.health.end_trial(label)

    def _note_passed_over(self, served: Target) -> None:
        """Record chain models ahead of ``served`` that this turn never tried (cooling down)."""
        chain = self.policy.chain
        if chain and chain[0] == served:  # the usual turn: nothing was ahead of it
            return
        tried = {a.target for a in self.turn.attempts}
        for target in chain:
            if target == served:
                break
            if target not in tried and self.health.is_available(target.label):  # ordered later for this turn
                self.turn.attempts.append(Attempt(target, Outcome.SKIPPED, error=f"ranked behind {served.label}"))
            elif target not in tried:
                remaining = self.health.cooldown_remaining(target.label)
                self.turn.attempts.append(Attempt(target, Outcome.SKIPPED, error=(
                    f"cooling down for {remaining:.0f}s after {self.health.reason(target.label) or 'a failure'}")))


async def _next(live: Live) -> str | AttemptDone:
    try:
        return await anext(live.events)
    except StopAsyncIteration:  # (inside an async generator it would turn into a RuntimeError)
        raise AttemptFailed(Outcome.BAD_RESPONSE, ENDED_EARLY) from None

