"""A router turn as spans: one ``chat {primary}`` span per turn (started in the caller's context, so
under LiveKit's ``llm_request`` when the agent runs), and a child per request sent to a model with its
outcome, reason, time to first token and whether it was a hedge or a continuation. Models the turn
did not ask (cooling down, excluded) are events on the turn span.

Attempt spans are written when the turn ends, with the times the router recorded: the turn pays
nothing per chunk or per attempt.

>>> from opentelemetry.sdk.trace import TracerProvider
>>> span = start_turn_span(TracerProvider().get_tracer("demo"), "openai/gpt-4o-mini", started=0.0)
>>> span.name
'chat openai/gpt-4o-mini'
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from . import names as n
from .record import AttemptRecord, TurnRecord, provider_name


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def start_turn_span(tracer: Tracer, primary: str, *, started: float) -> Span:
    """The turn's span, a child of whatever span is current (LiveKit's ``llm_request``)."""
    return tracer.start_span(f"{n.TURN_SPAN} {primary}", kind=SpanKind.CLIENT, start_time=_ns(started),
                             attributes={n.OPERATION_NAME: n.CHAT, n.REQUEST_MODEL: primary})


def end_turn_span(tracer: Tracer, span: Span, turn: TurnRecord) -> None:
    """Write the attempts under ``span`` and end it at the turn's end."""
    context = trace.set_span_in_context(span)
    for attempt in turn.attempts:
        if attempt.sent:
            _attempt_span(tracer, context, attempt)
        else:
            span.add_event("model skipped", {n.MODEL: attempt.model, n.REASON: attempt.reason},
                           timestamp=_ns(turn.started))
    span.set_attribute(n.PROVIDER_NAME, turn.provider)
    if turn.served:
        span.set_attribute(n.RESPONSE_MODEL, turn.served)
    if (first := turn.time_to_first_chunk) is not None:
        span.set_attribute("gen_ai.response.time_to_first_chunk", first)
    input_tokens = sum(a.input_tokens for a in turn.attempts)
    output_tokens = sum(a.output_tokens for a in turn.attempts)
    if input_tokens or output_tokens:
        span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", output_tokens)
    cost = sum(a.cost or 0.0 for a in turn.attempts)
    if cost:
        span.set_attribute(n.COST, cost)
    span.set_attribute("openrouter_voice.fallbacks", len(turn.fallbacks()))
    if turn.error_type:
        span.set_attribute(n.ERROR_TYPE, turn.error_type)
        span.set_status(Status(StatusCode.ERROR))
    span.end(end_time=_ns(turn.ended))


def _attempt_span(tracer: Tracer, context: Context, attempt: AttemptRecord) -> None:
    attributes: dict[str, str | bool | int | float] = {
        n.MODEL: attempt.model, n.REQUEST_MODEL: attempt.model, n.PROVIDER_NAME: provider_name(attempt.model),
        n.OUTCOME: attempt.outcome, n.REASON: attempt.reason,
        "openrouter_voice.hedge": attempt.hedge, "openrouter_voice.continuation": attempt.continuation,
    }
    if attempt.ttft is not None:
        attributes["gen_ai.response.time_to_first_chunk"] = attempt.ttft
    if attempt.status is not None:
        attributes["http.response.status_code"] = attempt.status
    if attempt.cost:
        attributes[n.COST] = attempt.cost
    span = tracer.start_span(n.ATTEMPT_SPAN, context=context, kind=SpanKind.CLIENT,
                             start_time=_ns(attempt.started), attributes=attributes)
    if attempt.failed:
        span.set_attribute(n.ERROR_TYPE, attempt.reason)
        span.set_status(Status(StatusCode.ERROR))
    span.end(end_time=_ns(attempt.started + attempt.latency))
