"""The pure SSE chunk parser, without a socket."""

from __future__ import annotations

import json

import pytest

from openrouter_voice.router.chunks import ChunkError, ChunkParser
from openrouter_voice.router.errors import Action
from openrouter_voice.router.types import Outcome


def chunk(**fields: object) -> str:
    return json.dumps(fields)


def test_text_model_usage_and_finish_are_collected():
    parser = ChunkParser("a/asked")
    assert parser.feed(chunk(id="gen-1", model="a/served", choices=[{"delta": {"role": "assistant"}}])).content is False
    assert parser.feed(chunk(choices=[{"delta": {"content": "Hello"}}])).text == "Hello"
    assert parser.feed(chunk(choices=[{"delta": {"content": " there"}, "finish_reason": "stop"}])).text == " there"
    assert parser.feed(chunk(choices=[], usage={"prompt_tokens": 3, "completion_tokens": 2, "cost": 0.01})).content is False
    assert parser.feed("[DONE]").done
    done = parser.finish(ttft=0.25)
    assert (done.served_model, done.id, done.finish_reason, done.ttft) == ("a/served", "gen-1", "stop", 0.25)
    assert done.usage is not None and done.usage.total_tokens == 5 and done.usage.cost == 0.01


def test_tool_call_deltas_are_assembled_in_index_order():
    parser = ChunkParser("m")
    calls = [{"index": 1, "id": "c2", "function": {"name": "b", "arguments": "{}"}},
             {"index": 0, "id": "c1", "function": {"name": "get_weather", "arguments": '{"loc'}}]
    assert parser.feed(chunk(choices=[{"delta": {"tool_calls": calls}}])).content
    parser.feed(chunk(choices=[{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'ation": "Paris"}'}}]},
                                "finish_reason": "tool_calls"}]))
    done = parser.finish()
    assert [(c.id, c.name, json.loads(c.arguments)) for c in done.tool_calls] == [
        ("c1", "get_weather", {"location": "Paris"}), ("c2", "b", {})]


@pytest.mark.parametrize(("data", "outcome", "action"), [
    ('{"error": {"code": 502, "message": "Provider returned error"}}', Outcome.STREAM_ERROR, None),
    ("not json", Outcome.BAD_RESPONSE, Action.COOLDOWN),
    ("[1, 2]", Outcome.BAD_RESPONSE, Action.COOLDOWN),
    (chunk(choices=[{"delta": {"content": "x" * 11}}]), Outcome.BAD_RESPONSE, Action.NEXT),
])
def test_failures_in_the_stream_carry_the_routers_decision(data, outcome, action):
    parser = ChunkParser("m", max_text_chars=10)
    with pytest.raises(ChunkError) as info:
        parser.feed(data)
    assert info.value.outcome is outcome
    if action is not None:
        assert info.value.info.action is action


@pytest.mark.parametrize(("events", "message"), [
    ([chunk(choices=[{"delta": {"content": "cut"}}])], "truncated"),
    ([chunk(choices=[{"delta": {}, "finish_reason": "stop"}])], "empty reply"),
    ([chunk(choices=[{"delta": {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{oops"}}]},
                      "finish_reason": "tool_calls"}])], "invalid JSON"),
])
def test_unusable_endings_are_failures(events, message):
    parser = ChunkParser("m")
    for data in events:
        parser.feed(data)
    with pytest.raises(ChunkError, match=message):
        parser.finish()


def test_text_sent_with_an_error_in_the_same_event_is_kept_then_the_error_reported():
    parser = ChunkParser("m")
    parsed = parser.feed(chunk(choices=[{"delta": {"content": "Half a sen"}, "finish_reason": "error"}],
                               error=None))
    assert parsed.text == "Half a sen" and parsed.error is not None
    assert parsed.error.outcome is Outcome.STREAM_ERROR


def test_a_usage_only_trailer_is_not_a_choice():
    parser = ChunkParser("m")
    parser.feed(chunk(choices=[{"delta": {"content": "Hi"}, "finish_reason": "stop"}]))
    assert parser.feed(chunk(choices=[], usage={"prompt_tokens": 1})).choice is False
    assert parser.feed(chunk(choices=[{"delta": {}}])).choice is True
