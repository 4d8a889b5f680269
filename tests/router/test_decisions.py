"""Per-error decisions: fail fast, skip, cooldown, Retry-After, exclusion."""

from __future__ import annotations

import logging
import time

import pytest

from openrouter_voice.router import (
    AllModelsFailedError,
    AuthenticationError,
    BadRequestError,
    HealthTracker,
    InsufficientCreditsError,
    Outcome,
)
from openrouter_voice.router.errors import Action, classify, parse_retry_after
from openrouter_voice.testing import Script, ScriptedUpstream
from tests.conftest import TEST_KEY, USER
from tests.timing import halfway


async def test_bad_key_fails_fast_with_clear_message_and_one_request(make_router):
    upstream_key_checked = ScriptedUpstream(api_key="the-real-key-123456")
    async with upstream_key_checked as up:
        router = make_router(["a/one", "b/two", "c/three"], base_url=up.base_url)
        started = time.monotonic()
        with pytest.raises(AuthenticationError) as info:
            await router.complete(USER)
        assert time.monotonic() - started < halfway(0.0, 0.5)  # no first-token deadline waited out
        assert len(up.requests) == 1  # the other models share the key: not tried
    message = str(info.value)
    assert "OPENROUTER_API_KEY" in message and "401" in message
    assert TEST_KEY not in message and TEST_KEY not in repr(info.value.attempts)


async def test_a_bad_key_hidden_by_another_endpoints_answer_is_still_reported_once(upstream, make_router, caplog):
    async with ScriptedUpstream(api_key="the-real-key-123456") as openrouter:
        upstream.script("gemma", Script(text="Local answer."))
        router = make_router(["a/one", "b/two", "gemma@local"], base_url=openrouter.base_url,
                             endpoints={"local": (upstream.base_url, None)})
        for _ in range(2):
            assert (await router.complete(USER)).text == "Local answer."
        assert len(openrouter.requests) == 2  # one per turn: b/two shares the bad key
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert "OpenRouter rejected OPENROUTER_API_KEY (401)" in errors[0] and "openrouter.ai/keys" in errors[0]
    assert TEST_KEY not in caplog.text


async def test_402_skips_paid_models_but_tries_free_ones(upstream, make_router):
    upstream.script("a/paid", Script(status=402, error_message="Insufficient credits"))
    upstream.script("b/paid-too", Script(text="never"))
    upstream.script("c/model:free", Script(text="Free model answers."))
    reply = await make_router(["a/paid", "b/paid-too", "c/model:free"]).complete(USER)
    assert reply.text == "Free model answers."
    assert [r.model for r in upstream.requests] == ["a/paid", "c/model:free"]
    assert reply.attempts[1].outcome is Outcome.SKIPPED


async def test_402_without_free_models_raises_credit_error_after_one_request(upstream, make_router):
    upstream.script("a/paid", Script(status=402, error_message="Insufficient credits"))
    with pytest.raises(InsufficientCreditsError, match="credits"):
        await make_router(["a/paid", "b/paid", "c/paid"]).complete(USER)
    assert len(upstream.requests) == 1


async def test_404_model_is_excluded_for_a_long_time(upstream, make_router):
    upstream.script("gone/model", Script(status=404, error_message="No endpoints found for gone/model"))
    upstream.script("b/backup", Script(text="Here."))
    router = make_router(["gone/model", "b/backup"])
    await router.complete(USER)
    await router.complete(USER)
    assert [r.model for r in upstream.requests] == ["gone/model", "b/backup", "b/backup"]
    assert router.health.cooldown_remaining("gone/model") > 3000


async def test_a_model_without_tool_use_stays_healthy_and_gets_turns_without_tools(upstream, make_router):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    upstream.script("a/notools", [
        Script(status=404, error_message='No endpoints found that support tool use. Try disabling "get_weather".'),
        Script(text="Plain words.")])
    upstream.script("b/backup", Script(text="Backup with tools."))
    router = make_router(["a/notools", "b/backup"])
    assert (await router.complete(USER, tools=tools)).model == "b/backup"
    assert router.health.cooldown_remaining("a/notools") == 0  # not excluded as if retired
    assert (await router.complete(USER, tools=tools)).model == "b/backup"  # tool-capable models first now
    reply = await router.complete(USER)  # a turn without tools: the primary again
    assert reply.model == "a/notools" and reply.text == "Plain words."
    assert [r.model for r in upstream.requests] == ["a/notools", "b/backup", "b/backup", "a/notools"]


async def test_a_chosen_primary_without_tools_leads_tool_turns_and_gets_none(upstream, make_router):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    upstream.script("a/notools", Script(text="Chosen and tool-less."))
    upstream.script("b/backup", Script(text="Backup."))
    router = make_router(["b/backup"])
    router.set_tool_support({"a/notools": False})
    router.set_models(["a/notools", "b/backup"], chosen=True)
    reply = await router.complete(USER, tools=tools)
    assert reply.model == "a/notools"
    assert "tools" not in upstream.requests[-1].body
    router.set_models(["a/notools", "b/backup"])  # not chosen by the user: tool-capable models go first
    assert (await router.complete(USER, tools=tools)).model == "b/backup"


async def test_availability_model_deprecated_is_excluded(upstream, make_router):
    upstream.script("old/model", Script(status=410, error_body={"error": {
        "code": 410, "message": "retired", "availability": {"code": "model_deprecated", "retryable": False}}}))
    upstream.script("b/backup", Script(text="Here."))
    router = make_router(["old/model", "b/backup"])
    await router.complete(USER)
    assert router.health.cooldown_remaining("old/model") > 3000


async def test_429_retry_after_sets_cooldown_and_primary_returns_after_it(upstream, make_router):
    upstream.script("a/primary", [Script(status=429, retry_after=0.4), Script(text="Primary is back.")])
    upstream.script("b/backup", Script(text="Backup."))
    now = [1000.0]  # the health tracker's clock, moved by hand: no sleeping, no race with a loaded machine
    router = make_router(["a/primary", "b/backup"], health=HealthTracker(clock=lambda: now[0]))
    first = await router.complete(USER)
    assert first.text == "Backup."
    assert router.health.cooldown_remaining("a/primary") == pytest.approx(0.4)
    during = await router.complete(USER)  # primary cooling down: not sent to it
    assert during.text == "Backup."
    assert [r.model for r in upstream.requests] == ["a/primary", "b/backup", "b/backup"]
    now[0] += 0.45
    after = await router.complete(USER)
    assert after.text == "Primary is back."
    assert after.model == "a/primary"
    assert router.health.state("a/primary").value == "closed"


async def test_503_retry_after_from_availability_body(upstream, make_router):
    upstream.script("a/primary", Script(status=503, error_body={"error": {
        "code": 503, "message": "No capacity", "availability": {"code": "capacity_exhausted",
                                                                "retryable": True, "retry_after": 30}}}))
    router = make_router(["a/primary", "b/backup"])
    reply = await router.complete(USER)
    assert reply.attempts[0].retry_after == 30
    assert 29 < router.health.cooldown_remaining("a/primary") <= 30


@pytest.mark.parametrize("status", [408, 500, 502, 524, 529])
async def test_transient_statuses_move_on_with_cooldown(upstream, make_router, status):
    upstream.script("a/primary", Script(status=status))
    upstream.script("b/backup", Script(text="Backup."))
    router = make_router(["a/primary", "b/backup"])
    reply = await router.complete(USER)
    assert reply.text == "Backup."
    assert reply.attempts[0].status == status
    assert router.health.cooldown_remaining("a/primary") > 0


async def test_400_raises_bad_request_without_trying_others(upstream, make_router):
    upstream.script("a/primary", Script(status=400, error_message="messages: field required"))
    with pytest.raises(BadRequestError, match="field required"):
        await make_router(["a/primary", "b/backup"]).complete(USER)
    assert len(upstream.requests) == 1


async def test_context_length_error_tries_next_model_without_cooldown(upstream, make_router):
    upstream.script("a/small", Script(status=400, error_type="context_length_exceeded",
                                      error_message="maximum context length is 8192"))
    upstream.script("b/large", Script(text="Long context OK."))
    router = make_router(["a/small", "b/large"])
    reply = await router.complete(USER)
    assert reply.text == "Long context OK."
    assert router.health.cooldown_remaining("a/small") == 0


async def test_moderation_403_tries_next_model(upstream, make_router):
    upstream.script("a/moderated", Script(status=403, error_message="flagged"))
    upstream.script("b/other", Script(text="Answer."))
    reply = await make_router(["a/moderated", "b/other"]).complete(USER)
    assert reply.text == "Answer."


async def test_connection_refused_moves_on(upstream, make_router):
    router = make_router(["dead/model@down", "b/backup"], endpoints={"down": ("http://127.0.0.1:9/v1", None)})
    reply = await router.complete(USER)
    assert reply.text
    assert reply.attempts[0].outcome is Outcome.CONNECTION_ERROR


async def test_all_failing_raises_with_every_attempt(upstream, make_router):
    upstream.script("a/one", Script(status=500))
    upstream.script("b/two", Script(status=429, retry_after=10))
    with pytest.raises(AllModelsFailedError) as info:
        await make_router(["a/one", "b/two"]).complete(USER)
    assert [a.model for a in info.value.attempts] == ["a/one", "b/two"]
    assert "a/one" in str(info.value) and "429" in str(info.value)


async def test_everything_cooling_down_is_still_tried_not_silent(upstream, make_router):
    upstream.script("a/one", [Script(status=500), Script(text="Recovered.")])
    upstream.script("b/two", Script(status=500))
    router = make_router(["a/one", "b/two"])
    with pytest.raises(AllModelsFailedError):
        await router.complete(USER)
    reply = await router.complete(USER)  # both cooling: try anyway, soonest first
    assert reply.text == "Recovered."


async def test_models_told_to_wait_are_not_asked_again_before_their_retry_after(upstream, make_router):
    upstream.script("a/one", Script(status=429, retry_after=60))
    upstream.script("b/two", Script(status=503, retry_after=60))
    router = make_router(["a/one", "b/two"])
    for _ in range(3):
        with pytest.raises(AllModelsFailedError) as info:
            await router.complete(USER)
    assert [r.model for r in upstream.requests] == ["a/one", "b/two"]  # later turns sent nothing
    assert "as asked (Retry-After)" in str(info.value)


async def test_debug_logging_tells_the_whole_story_of_a_turn(upstream, make_router, caplog):
    caplog.set_level(logging.DEBUG, logger="openrouter_voice")
    upstream.script("a/one", Script(status=429, retry_after=7))
    upstream.script("b/two", Script(text="Hi."))
    await make_router(["a/one", "b/two"]).complete(USER)
    text = caplog.text
    assert "turn plan: ['a/one', 'b/two']" in text
    assert "sending a/one to http://127.0.0.1:" in text and "1 messages, 0 tools" in text
    assert "decision for a/one: cooldown" in text and "Retry-After 7s" in text
    assert "b/two finished (stop): 3 text chars" in text
    assert TEST_KEY not in text


def test_classify_table():
    assert classify(401, None).action is Action.FAIL_ENDPOINT
    assert classify(402, None).action is Action.SKIP_PAID
    assert classify(404, None).action is Action.EXCLUDE
    assert classify(404, {"error": {"code": 404, "message": "No endpoints found that support tool use."}}).action \
        is Action.NO_TOOLS
    assert classify(429, None, retry_after_header="12").retry_after == 12
    assert classify(None, {"error": {"code": "429", "message": "x"}}, in_stream=True).status == 429
    assert classify(200, {"error": {"code": 500, "metadata": {"error_type": "authentication"}}},
                    in_stream=True).action is Action.FAIL_ENDPOINT
    assert classify(400, {"error": {"message": "bad"}}).action is Action.RAISE
    assert classify(500, {"error": {"message": "Bearer sk-or-v1-abcdef0123456789 leaked"}}).message == \
        "Bearer *** leaked"


def test_parse_retry_after_forms():
    assert parse_retry_after("5") == 5
    assert parse_retry_after("0.25") == 0.25
    assert parse_retry_after("garbage") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert 9 < (parse_retry_after(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 10)))
                or 0) <= 10
