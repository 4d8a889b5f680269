"""Tool calls, health/circuit behaviour, cancellation and leaks, endpoints, secrets in logs."""

from __future__ import annotations

import asyncio
import json
import logging
import os

import pytest

from openrouter_voice.router import ConfigurationError, FallbackRouter, HealthTracker, Outcome
from openrouter_voice.testing import Script
from tests.conftest import TEST_KEY, USER
from tests.timing import until

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a place",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}


async def test_tool_call_deltas_are_assembled_and_emitted_once_complete(upstream, make_router):
    upstream.script("a/model", Script(text="", tool_calls=[("get_weather", {"location": "Paris"}),
                                                           ("get_weather", {"location": "Rome"})]))
    router = make_router(["a/model"])
    chunks = [c async for c in router.stream(USER, tools=[WEATHER_TOOL])]
    with_calls = [c for c in chunks if c.tool_calls]
    assert len(with_calls) == 1 and with_calls[0] is chunks[-1]
    calls = with_calls[0].tool_calls
    assert [c.name for c in calls] == ["get_weather", "get_weather"]
    assert [json.loads(c.arguments) for c in calls] == [{"location": "Paris"}, {"location": "Rome"}]
    assert calls[0].id != calls[1].id
    assert upstream.requests[0].body["tools"] == [WEATHER_TOOL]


async def test_half_emitted_tool_call_is_never_returned(upstream, make_router):
    upstream.script("a/broken", Script(raw_events=[
        '{"id":"g","model":"a/broken","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1",'
        '"type":"function","function":{"name":"get_weather","arguments":"{\\"loca"}}]}}]}',
        '{"id":"g","model":"a/broken","choices":[{"index":0,"delta":{},"finish_reason":"error"}],'
        '"error":{"code":502,"message":"died"}}',
    ]))
    upstream.script("b/backup", Script(text="", tool_calls=[("get_weather", {"location": "Oslo"})]))
    reply = await make_router(["a/broken", "b/backup"]).complete(USER, tools=[WEATHER_TOOL])
    assert [json.loads(c.arguments) for c in reply.tool_calls] == [{"location": "Oslo"}]


async def test_invalid_tool_arguments_move_on(upstream, make_router):
    upstream.script("a/bad", Script(text="", tool_calls=[("get_weather", "{location: Paris")]))
    upstream.script("b/good", Script(text="", tool_calls=[("get_weather", {"location": "Paris"})]))
    reply = await make_router(["a/bad", "b/good"]).complete(USER, tools=[WEATHER_TOOL])
    assert reply.model == "b/good"
    assert "invalid JSON" in (reply.attempts[0].error or "")


async def test_half_open_admits_one_trial_at_a_time():
    now = [0.0]
    health = HealthTracker(base_cooldown=5, clock=lambda: now[0])
    health.record_failure("m", reason="500")
    assert not health.is_available("m")
    now[0] = 6.0
    assert health.is_available("m")
    assert health.begin("m") is True  # the trial
    assert not health.is_available("m")  # a concurrent request does not pile onto a maybe-broken model
    health.record_failure("m", reason="500 again")
    assert health.cooldown_remaining("m") == 10.0  # backoff doubled
    now[0] = 17.0
    health.begin("m")
    health.record_success("m")
    assert health.state("m").value == "closed" and health.is_available("m")


def test_only_the_latest_failure_decides_whether_the_upstream_asked_for_the_wait():
    now = [0.0]
    health = HealthTracker(base_cooldown=5, clock=lambda: now[0])
    health.record_failure("m", reason="429", retry_after=2)
    assert health.told_to_wait("m")
    now[0] = 3.0  # its Retry-After is over; the trial then stalls
    assert not health.told_to_wait("m") and health.begin("m")
    health.record_failure("m", reason="stall")
    assert health.cooldown_remaining("m") > 0 and not health.told_to_wait("m")  # our estimate: may be tried


async def test_retry_after_never_shortens_a_long_exclusion():
    health = HealthTracker()
    health.record_failure("m", reason="404", exclude=True)
    health.record_failure("m", reason="429", retry_after=1)
    assert health.cooldown_remaining("m") > 3000


async def test_cancelling_a_stream_closes_the_upstream_connection(upstream, make_router):
    upstream.script("a/long", Script(text=" ".join(["word"] * 400), tokens_per_second=50))
    router = make_router(["a/long"])
    stream = router.stream(USER)
    got = 0
    async for chunk in stream:
        got += bool(chunk.text)
        if got == 3:
            break
    await stream.aclose()
    await upstream.wait_until_idle()
    assert stream.attempts[0].outcome is Outcome.CANCELLED


async def test_task_cancellation_mid_first_token_wait_leaks_nothing(upstream, make_router):
    upstream.script("a/hangs", Script(hang=True))
    router = make_router(["a/hangs"], first_token_timeout=5, final_first_token_timeout=5)
    task = asyncio.create_task(router.complete(USER))
    await until(lambda: len(upstream.requests) == 1, "the request to be in flight")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    def leftover() -> list[asyncio.Task[object]]:
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and "router" in repr(t)]

    # The half-open/trial bookkeeping was released and no task is left behind.
    assert router.health.is_available("a/hangs")
    await until(lambda: not leftover(), "the router's tasks to end")


@pytest.mark.parametrize("hedging", [False, True], ids=["read in the turn's task", "read in a race task"])
async def test_cancelling_a_turn_before_its_first_token_closes_the_upstream_stream(upstream, make_router, hedging):
    # A primary that can be hedged reads its first event in a race task; one that cannot, in the turn's
    # own task. Either way, cancelling the turn while the upstream holds the first token closes the stream
    # at once (nothing keeps generating) and records the attempt as cancelled, not failed.
    upstream.script("a/slow", Script(text="Late.", ttft=30))
    upstream.script("b/backup", Script(text="Backup."))
    models = ["a/slow", "b/backup"] if hedging else ["a/slow"]
    router = make_router(models, hedge_after=20 if hedging else None, first_token_timeout=25,
                         final_first_token_timeout=25)
    stream = router.stream(USER)
    task = asyncio.create_task(anext(stream))
    await until(lambda: upstream.open_streams == 1, "the request to be in flight")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await upstream.wait_until_idle()
    assert [a.outcome for a in stream.attempts] == [Outcome.CANCELLED]
    assert router.health.is_available("a/slow")


async def test_connections_are_pooled_and_reused(upstream, make_router):
    router = make_router(["a/model"])
    for _ in range(5):
        await router.complete(USER)
    # Five sequential requests over one kept-alive connection.
    pool = router._client._transport._pool
    assert len(upstream.requests) == 5
    assert len(pool.connections) == 1


async def test_other_openai_compatible_endpoint_in_chain(upstream, make_router):
    local_url = upstream.base_url.replace("/api/v1", "/v1")
    router = make_router(["a/primary", "gemma@local"], endpoints={"local": (local_url, None)},
                         extra_body={"provider": {"sort": "latency"}},
                         endpoint_options={"local": {"repeat_penalty": 1.3, "stop": ["\n\n"]}})
    upstream.script("a/primary", Script(status=502))
    upstream.script("gemma", Script(text="Local answer."))
    reply = await router.complete(USER)
    assert reply.text == "Local answer."
    local_request = upstream.requests_for("gemma")[0]
    assert local_request.path == "/v1/chat/completions"
    assert "provider" not in local_request.body  # OpenRouter-only fields are not sent elsewhere
    assert local_request.body["repeat_penalty"] == 1.3 and local_request.body["stop"] == ["\n\n"]
    assert "repeat_penalty" not in upstream.requests_for("a/primary")[0].body
    headers = {k.lower() for k in local_request.headers}
    assert "authorization" not in headers and "x-title" not in headers


def test_unknown_endpoint_is_a_clear_configuration_error():
    with pytest.raises(ConfigurationError, match="OPENROUTER_VOICE_ENDPOINTS"):
        FallbackRouter(models=["gemma@nowhere"], api_key="k", base_url="http://127.0.0.1:1/api/v1",
                       first_token_timeout=1, stall_timeout=1, app_name="x")


def test_server_side_models_must_not_double_the_chain():
    with pytest.raises(ConfigurationError, match="both in the client-side chain"):
        FallbackRouter(models=["a/x", "b/y"], api_key="k", base_url="http://127.0.0.1:1/api/v1",
                       first_token_timeout=1, stall_timeout=1, app_name="x", extra_body={"models": ["b/y"]})


async def test_server_side_models_pass_through(upstream, make_router):
    router = make_router(["a/x"], extra_body={"models": ["c/z"]})
    await router.complete(USER)
    assert upstream.requests[0].body["models"] == ["c/z"]


async def test_set_models_switches_primary_and_keeps_health(upstream, make_router):
    router = make_router(["a/x", "b/y"])
    router.health.record_failure("b/y", reason="429", retry_after=60)
    router.set_models(["c/z", "a/x", "b/y", "a/x"])
    assert [t.model for t in router.models] == ["c/z", "a/x", "b/y"]
    await router.complete(USER)
    assert upstream.requests[-1].model == "c/z"
    assert router.health.cooldown_remaining("b/y") > 50


async def test_each_attempt_logged_at_info_and_key_never_logged(upstream, make_router, caplog):
    caplog.set_level(logging.DEBUG)
    upstream.script("a/primary", Script(status=429, retry_after=1,
                                        error_message=f"key {TEST_KEY} is rate limited"))
    upstream.script("b/backup", Script(text="Fine."))
    await make_router(["a/primary", "b/backup"]).complete(USER)
    attempts = [r for r in caplog.records if r.name == "openrouter_voice.router" and "attempt" in r.getMessage()]
    assert len(attempts) == 2 and all(r.levelno == logging.INFO for r in attempts)
    assert "model=a/primary outcome=http_error status=429" in attempts[0].getMessage()
    assert "model=b/backup outcome=ok" in attempts[1].getMessage()
    assert TEST_KEY not in caplog.text


async def test_no_sockets_left_after_many_requests(upstream, make_router):
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    upstream.script("a/primary", Script(hang=True))
    upstream.script("b/backup", Script(text="ok"))
    router = make_router(["a/primary", "b/backup"], first_token_timeout=0.05)
    await router.complete(USER)
    baseline = open_fds()
    for _ in range(20):
        router.health.reset()
        await router.complete(USER)
    await until(lambda: open_fds() <= baseline + 2, "the failed attempts' sockets to close")


def test_router_defaults_come_from_settings(monkeypatch):
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-fromenv0123456789")
    monkeypatch.setenv("OPENROUTER_DEFAULT_MODEL", "openai/gpt-4o-mini")
    monkeypatch.setenv("OPENROUTER_FALLBACK_MODELS", "google/gemini-2.5-flash-lite, meta-llama/llama-3.1-8b-instruct")
    monkeypatch.setenv("OPENROUTER_APP_NAME", "my-app")
    monkeypatch.setenv("OPENROUTER_FIRST_TOKEN_TIMEOUT", "1.25")
    monkeypatch.setenv("OPENROUTER_DRIBBLE_WORDS_PER_SECOND", "1.5")
    monkeypatch.setenv("OPENROUTER_DRIBBLE_WINDOW", "3")
    monkeypatch.setenv("OPENROUTER_FIRST_SENTENCE_TIMEOUT", "0.8")
    from openrouter_voice.config import load_settings

    router = FallbackRouter.from_settings(load_settings())
    assert [t.model for t in router.models] == ["openai/gpt-4o-mini", "google/gemini-2.5-flash-lite",
                                                "meta-llama/llama-3.1-8b-instruct"]
    assert router.api_key == "sk-or-v1-fromenv0123456789"
    assert router.app_name == "my-app" and router.first_token_timeout == 1.25
    assert (router.dribble_words_per_second, router.dribble_window) == (1.5, 3.0)
    assert router.first_sentence_timeout == 0.8


async def test_models_without_tool_support_go_last_and_without_tools(upstream, make_router):
    router = make_router(["a/no-tools", "b/tools"])
    router.set_tool_support({"a/no-tools": False})
    upstream.script("b/tools", Script(status=500))
    upstream.script("a/no-tools", Script(text="I can only talk."))
    reply = await router.complete(USER, tools=[WEATHER_TOOL])
    assert [r.model for r in upstream.requests] == ["b/tools", "a/no-tools"]
    assert "tools" not in upstream.requests[1].body
    assert reply.text == "I can only talk."
    await router.complete(USER)  # without tools, chain order is unchanged
    assert upstream.requests[-1].model == "a/no-tools"


async def test_warmup_leaves_a_pooled_connection_and_sends_no_chat_request(upstream, make_router):
    router = make_router(["a/x", "b/y"])
    await router.warmup()
    assert upstream.requests == []  # nothing billable
    assert len(router._client._transport._pool.connections) == 1
    await router.complete(USER)
    assert len(router._client._transport._pool.connections) == 1  # the chat reused it


async def test_closing_after_the_final_chunk_keeps_the_attempt_ok(upstream, make_router):
    router = make_router(["a/x"])
    stream = router.stream(USER)
    async for chunk in stream:
        if chunk.usage is not None:
            break  # a consumer that stops at the final chunk, as LiveKit's does
    await stream.aclose()
    assert stream.result is not None
    assert [a.outcome for a in stream.result.attempts] == [Outcome.OK]
    assert not stream.result.fell_back
