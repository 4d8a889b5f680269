"""Bad upstream input: caps, total timeout, and a fuzzed SSE stream that must never crash the router."""

from __future__ import annotations

import asyncio
import json

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openrouter_voice.router import AllModelsFailedError, FallbackRouter, Outcome
from openrouter_voice.router.attempt import AttemptDone, AttemptFailed, Deadlines, stream_attempt
from openrouter_voice.router.types import Target
from openrouter_voice.testing import Script
from tests.conftest import USER
from tests.fuzzing import examples
from tests.timing import halfway


async def test_oversized_reply_is_cut_and_the_next_model_answers(upstream, make_router):
    upstream.script("a/chatty", Script(text="word " * 5000))
    upstream.script("b/backup", Script(text="Short answer."))
    reply = await make_router(["a/chatty", "b/backup"], max_reply_chars=1000).complete(USER)
    assert reply.model == "b/backup"
    assert reply.attempts[0].outcome is Outcome.BAD_RESPONSE
    assert "longer than 1000 characters" in (reply.attempts[0].error or "")
    assert len(reply.text) < 1000 + len("Short answer.") + 10


async def test_a_single_sse_event_over_a_megabyte_is_refused(upstream, make_router):
    # One endless "data:" line would otherwise grow in memory until the total timeout.
    blob = json.dumps({"choices": [{"index": 0, "delta": {"content": "x" * 1_200_000}}]})
    upstream.script("a/huge", Script(raw_events=[blob]))
    upstream.script("b/ok", Script(text="Fine."))
    reply = await make_router(["a/huge", "b/ok"], max_reply_chars=10_000_000).complete(USER)
    assert reply.model == "b/ok" and reply.text == "Fine."
    assert reply.attempts[0].outcome is Outcome.BAD_RESPONSE
    assert "malformed stream" in (reply.attempts[0].error or "")


async def test_total_timeout_bounds_a_slow_drip(upstream, make_router):
    upstream.script("a/drip", Script(text="a " * 200, tokens_per_second=20))
    router = make_router(["a/drip"], total_timeout=0.5, stall_timeout=1.0)
    started = asyncio.get_running_loop().time()
    with pytest.raises(AllModelsFailedError) as info:
        await router.complete(USER)
    # cut at 0.5 s, not after the whole reply (200 tokens at 20 a second: 10 s)
    assert asyncio.get_running_loop().time() - started < halfway(0.5, 10.0)
    assert "total limit" in str(info.value)


async def test_huge_tool_arguments_are_refused(upstream, make_router):
    upstream.script("a/huge", Script(text="", tool_calls=[("get_weather", {"location": "x" * 200_000})]))
    upstream.script("b/ok", Script(text="", tool_calls=[("get_weather", {"location": "Paris"})]))
    reply = await make_router(["a/huge", "b/ok"]).complete(USER, tools=[{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object", "properties": {}}}}])
    assert reply.model == "b/ok"
    assert "tool-call arguments longer" in (reply.attempts[0].error or "")


async def test_html_error_page_instead_of_json(upstream, make_router):
    upstream.script("a/proxy", Script(status=502, error_body="<html><body>Bad gateway</body></html>"))
    reply = await make_router(["a/proxy", "b/ok"]).complete(USER)
    assert reply.attempts[0].status == 502
    assert "Bad gateway" in (reply.attempts[0].error or "")


async def test_json_body_with_http_200_instead_of_sse(make_router):
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={"error": {"code": 503, "message": "no capacity"}})

    router = FallbackRouter(models=["a/x"], api_key="k", base_url="http://upstream.test/api/v1",
                            first_token_timeout=1, stall_timeout=1, app_name="t",
                            http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(handler)))
    with pytest.raises(AllModelsFailedError, match="no capacity"):
        await router.complete(USER)


# -- fuzzing the SSE handling --------------------------------------------------------------------

_fragments = st.sampled_from([
    b"data: ", b"data:", b"\n", b"\n\n", b"\r\n", b": OPENROUTER PROCESSING\n\n", b"[DONE]", b"{", b"}",
    b'{"choices":[{"delta":{"content":"hi"}}]}', b'{"choices":[]}', b'{"error":{"code":"x"}}',
    b'{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":"{}"}}]}}]}',
    b'{"choices":[{"finish_reason":"stop","delta":{}}]}', b'{"usage":{"prompt_tokens":"NaN"}}',
    b'{"choices":[{"delta":{"content":null}}]}', b'{"choices":"nope"}', b"null", b"event: x\n", b"id: 1\n",
    b'{"choices":[{"delta":{"tool_calls":[{"index":"0"}]}}]}', b"\xff\xfe", b"retry: 10\n",
])


@settings(max_examples=examples(150), suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.one_of(_fragments, st.binary(max_size=20)), max_size=30))
def test_any_byte_stream_ends_in_done_or_a_typed_failure(pieces):
    body = b"".join(pieces)

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    async def run() -> None:
        async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as client:
            target = Target("a/x", "openrouter", "http://upstream.test/api/v1")
            texts: list[str] = []
            try:
                async for event in stream_attempt(client, target, {"model": "a/x"}, {},
                                                  Deadlines(first_token=1, stall=1, total=2)):
                    if isinstance(event, AttemptDone):
                        assert texts or event.tool_calls  # never an empty "success"
                        for call in event.tool_calls:
                            assert isinstance(json.loads(call.arguments), dict)
                    else:
                        assert isinstance(event, str) and event
                        texts.append(event)
            except AttemptFailed as failure:
                assert failure.info.message

    asyncio.run(run())
