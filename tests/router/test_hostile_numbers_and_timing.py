"""Hostile upstreams: absurd numbers in valid JSON, and error bodies that drip.

Each reply that cannot be understood is that model's typed failure and the chain moves on; each byte
is read under the deadline in force, so a dripping error body cannot hold a turn past it.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from openrouter_voice.router import Outcome, Usage
from openrouter_voice.router.catalog import parse_models
from openrouter_voice.router.errors import MAX_RETRY_AFTER, classify
from openrouter_voice.testing import Script
from tests.conftest import USER
from tests.timing import halfway

HUGE = "1" + "0" * 400  # a 400-digit integer: valid JSON, too big for a float
TEXT = '{"choices":[{"delta":{"content":"Hello there."}}]}'
FINISH = '{"choices":[{"delta":{},"finish_reason":"stop"}]}'


@pytest.mark.parametrize("value", ["1e999", "-1e999", "NaN", "Infinity", HUGE, f"-{HUGE}"])
def test_usage_with_absurd_numbers_counts_them_as_absent(value):
    usage = Usage.from_payload(json.loads(
        f'{{"prompt_tokens": {value}, "completion_tokens": 5, "total_tokens": {value}, "cost": {value},'
        f' "prompt_tokens_details": {{"cached_tokens": {value}}}}}'))
    assert usage == Usage(prompt_tokens=0, completion_tokens=5, total_tokens=5, cost=None)


@pytest.mark.parametrize("value", ["1e999", "NaN", "Infinity", HUGE, f"-{HUGE}", '"1e999"', "-5"])
@pytest.mark.parametrize("where", ["metadata", "availability"])
def test_retry_after_in_the_body_is_clamped(value, where):
    payload = json.loads(f'{{"error": {{"code": 429, "{where}": {{"retry_after": {value}}}}}}}')
    retry_after = classify(429, payload).retry_after
    assert retry_after is None or 0.0 <= retry_after <= MAX_RETRY_AFTER


async def test_absurd_usage_after_text_still_serves_the_reply(upstream, make_router):
    # The text is already spoken when the usage arrives: the reply must stand, the usage be absent.
    upstream.script("a/x", Script(raw_events=[TEXT, FINISH, f'{{"choices":[],"usage":{{"prompt_tokens":1e999,'
                                                              f'"completion_tokens":{HUGE},"cost":NaN}}}}', "[DONE]"]))
    reply = await make_router(["a/x"]).complete(USER)
    assert reply.text == "Hello there."
    assert reply.usage.prompt_tokens == 0 and reply.usage.completion_tokens == 0 and reply.usage.cost is None


async def test_absurd_retry_after_falls_back_and_cools_down_at_most_the_exclusion_hour(upstream, make_router):
    upstream.script("a/x", Script(status=429, error_body=json.loads(
        f'{{"error": {{"code": 429, "message": "slow", "metadata": {{"retry_after": {HUGE}}}}}}}')))
    upstream.script("b/y", Script(text="Backup."))
    router = make_router(["a/x", "b/y"])
    reply = await router.complete(USER)
    assert reply.text == "Backup."
    assert reply.attempts[0].retry_after == MAX_RETRY_AFTER
    assert 0 < router.health.cooldown_remaining("a/x") <= MAX_RETRY_AFTER


async def test_an_unreadable_stream_is_that_models_typed_failure(upstream, make_router, caplog):
    # 100,000 nested arrays: valid-looking JSON that makes the decoder recurse too deep.
    upstream.script("a/x", Script(raw_events=["[" * 100_000 + "]" * 100_000]))
    upstream.script("b/y", Script(text="Backup."))
    caplog.set_level("DEBUG", logger="openrouter_voice")
    reply = await make_router(["a/x", "b/y"]).complete(USER)
    assert reply.text == "Backup."
    assert reply.attempts[0].outcome is Outcome.BAD_RESPONSE
    assert "RecursionError" in caplog.text  # a parser bug would not hide: its type is in the debug log


def test_a_bad_catalog_entry_is_skipped_with_one_warning(caplog):
    good = {"id": "a/good", "name": "Good", "context_length": 1000, "pricing": {"prompt": "0.000001"}}
    bad = [{**good, "id": "b/inf", "context_length": 1e999}, {**good, "id": "c/nan", "pricing": {"prompt": "NaN"}},
           {**good, "id": "d/huge", "context_length": int(HUGE)}, {**good, "id": "e/inf", "pricing": {"completion": 1e999}}]
    with caplog.at_level("WARNING"):
        models = parse_models({"data": [good, *bad]})
    assert [m.id for m in models] == ["a/good"]
    assert len(caplog.records) == 1 and "skipped 4 model catalog entries" in caplog.text


# -- every byte under the deadline ----------------------------------------------------------------

DRIP = Script(status=429, retry_after=7, error_body={"error": {"code": 429, "message": "rate limited " * 20}},
              error_body_drip=0.2)


@pytest.mark.parametrize("status", [429, 500])
async def test_a_dripping_error_body_does_not_hold_the_turn(upstream, make_router, status):
    upstream.script("a/drips", Script(**{**DRIP.__dict__, "status": status}))
    upstream.script("b/healthy", Script(text="Backup answer."))
    router = make_router(["a/drips", "b/healthy"], first_token_timeout=3.0)
    started = time.monotonic()
    first = None
    async for chunk in router.stream(USER):
        if chunk.text and first is None:
            first = time.monotonic() - started
    assert first is not None and first < halfway(0.0, 3.0), first  # decided at once, not at the deadline


async def test_a_dripping_429_is_decided_from_its_status_and_retry_after(upstream, make_router):
    upstream.script("a/drips", DRIP)
    upstream.script("b/healthy", Script(text="Backup answer."))
    reply = await make_router(["a/drips", "b/healthy"], first_token_timeout=1.0).complete(USER)
    assert reply.attempts[0].status == 429 and reply.attempts[0].retry_after == 7.0
    assert reply.attempts[0].outcome is Outcome.HTTP_ERROR


async def test_twenty_concurrent_turns_with_dripping_errors_all_fall_over_in_time(upstream, make_router):
    upstream.script("a/drips", DRIP)
    upstream.script("b/healthy", Script(text="Backup answer.", ttft=0.05))
    # No hedging: each turn must fall over by itself, not be rescued by a hedge budget.
    router = make_router(["a/drips", "b/healthy"], first_token_timeout=3.0, hedge_after=None)

    async def turn() -> float:
        started = time.monotonic()
        async for chunk in router.stream(USER):
            if chunk.text:
                return time.monotonic() - started
        raise AssertionError("no text")

    # Every turn must reach a/drips first: it is not yet cooling down when they all start.
    firsts = await asyncio.gather(*(turn() for _ in range(20)))
    assert max(firsts) < halfway(0.0, 3.0), sorted(firsts)[-3:]  # none waited for its deadline
    await upstream.wait_until_idle()
