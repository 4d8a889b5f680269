"""Telemetry with the agent running: the router's turn span sits under LiveKit's ``llm_request``, and
no key, prompt or reply reaches any exported span or metric unless content capture is opted in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from livekit.agents import AgentSession
from livekit.agents.telemetry import gen_ai
from livekit.agents.telemetry import tracer as livekit_tracer

from openrouter_voice.telemetry import names as n
from openrouter_voice.telemetry.content import hand_to_livekit
from openrouter_voice.testing import Script
from tests.conftest import TEST_KEY

PROMPT = "Tell me about the zebra-quokka-7731 password"
REPLY = "Marmalade-unicorn-4412 is all I can say."
PRIMARY, BACKUP = "a/primary", "b/backup"


@pytest.fixture
def livekit_spans(otel) -> Iterator[Any]:
    """LiveKit's spans go to the test's provider while the test runs (content off unless it says)."""
    saved, capture = livekit_tracer._tracer_provider, gen_ai.capture_content_enabled()

    def hand(content: bool) -> None:
        hand_to_livekit(otel.tracers, content=content)

    yield hand
    livekit_tracer.set_provider(saved)
    gen_ai.set_capture_content(capture)


async def run_turn(make_agent, otel, user_input: str = PROMPT) -> None:
    kit = make_agent([PRIMARY, BACKUP])
    kit.upstream.script(PRIMARY, Script(status=429, retry_after=5))
    kit.upstream.script(BACKUP, Script(text=REPLY, usage={"prompt_tokens": 30, "completion_tokens": 9,
                                                            "cost": 0.0001}))
    otel.telemetry.instrument(kit.llm.router)
    async with AgentSession(llm=kit.llm) as session:
        await session.start(kit.assistant())
        result = await session.run(user_input=user_input)
        result.expect.next_event().is_message(role="assistant")
    otel.tracers.force_flush()


def everything_exported(otel) -> list[str]:
    """Every attribute key and value of every span, span event and metric point, as text."""
    texts: list[str] = []
    for span in otel.finished_spans():
        texts.append(span.name)
        for attributes in [span.attributes, *(e.attributes for e in span.events)]:
            texts.extend(f"{k}={v}" for k, v in (attributes or {}).items())
        texts.append(str(span.status.description or ""))
    for name in otel.metrics():
        texts.append(name)
        texts.extend(f"{k}={v}" for attrs, _ in otel.points(name) for k, v in attrs.items())
    return texts


async def test_router_turn_span_is_a_child_of_livekits_llm_request(make_agent, otel, livekit_spans):
    livekit_spans(False)
    await run_turn(make_agent, otel)
    spans = otel.finished_spans()
    [request] = [s for s in spans if s.name == "llm_request"]
    [turn] = [s for s in spans if s.name == f"chat {PRIMARY}"]
    assert turn.parent is not None and turn.parent.span_id == request.context.span_id
    assert turn.context.trace_id == request.context.trace_id
    attempts = [s for s in spans if s.name == n.ATTEMPT_SPAN]
    assert sorted(a.attributes[n.MODEL] for a in attempts) == [PRIMARY, BACKUP]
    assert all(a.parent is not None and a.parent.span_id == turn.context.span_id for a in attempts)
    # the distinction LiveKit's span cannot make: asked for the primary, served by the backup
    assert (turn.attributes[n.REQUEST_MODEL], turn.attributes[n.RESPONSE_MODEL]) == (PRIMARY, BACKUP)


async def test_no_key_prompt_or_reply_reaches_spans_or_metrics(make_agent, otel, livekit_spans):
    livekit_spans(False)
    await run_turn(make_agent, otel)
    names = {s.name for s in otel.finished_spans()}
    assert {"agent_turn", "llm_request", f"chat {PRIMARY}"} <= names  # LiveKit's spans were exported too
    exported = "\n".join(everything_exported(otel))
    for secret in (TEST_KEY, "zebra-quokka", "Marmalade-unicorn"):
        assert secret not in exported


async def test_content_reaches_spans_only_when_opted_in(make_agent, otel, livekit_spans):
    livekit_spans(True)  # OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true
    await run_turn(make_agent, otel)
    exported = "\n".join(everything_exported(otel))
    assert "zebra-quokka" in exported  # LiveKit records the conversation once allowed...
    assert TEST_KEY not in exported  # ...never the key
