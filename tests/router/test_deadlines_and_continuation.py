"""First-token deadline, stalls, and mid-stream continuation with nothing repeated."""

from __future__ import annotations

import time
from typing import Any

import pytest

from openrouter_voice.router import AllModelsFailedError, Outcome
from openrouter_voice.router.continuation import CONTINUE_INSTRUCTION, RepeatGuard
from openrouter_voice.testing import Script
from tests.conftest import USER
from tests.timing import halfway

FULL = "The weather in Paris is sunny with a high of twenty two degrees today."


def continuing_backup(restart: bool = False, overlap_words: int = 0) -> Any:
    """A backup that honours prefill (continues after the partial), ignores it (starts over), or
    picks up ``overlap_words`` words back."""

    def script(body: dict[str, Any]) -> Script:
        messages = body["messages"]
        if messages[-1]["role"] == "assistant":
            partial = messages[-1]["content"]
            assert FULL.startswith(partial)
            rest = FULL[len(partial):]
            if overlap_words:
                rest = FULL[len(" ".join(partial.split()[:-overlap_words])):].lstrip()
            return Script(text=FULL if restart else rest, tokens_per_second=500)
        return Script(text=FULL, tokens_per_second=500)

    return script


async def test_hanging_primary_costs_at_most_the_first_token_deadline(upstream, make_router):
    upstream.script("a/hangs", Script(hang=True))
    upstream.script("b/backup", Script(text="Backup answer.", ttft=0.05))
    router = make_router(["a/hangs", "b/backup"], first_token_timeout=0.4)
    started = time.monotonic()
    first_text_at = None
    async for chunk in router.stream(USER):
        if chunk.text and first_text_at is None:
            first_text_at = time.monotonic() - started
    assert first_text_at is not None
    assert 0.4 <= first_text_at < halfway(0.4 + 0.05, 2.0)  # not the last model's 2 s deadline
    assert router.health.state("a/hangs").value == "open"


async def test_keepalive_only_primary_is_cut_at_the_deadline(upstream, make_router):
    # Keep-alive comments every 50 ms must not reset the deadline (livekit/agents#6171).
    upstream.script("a/keepalive", Script(keepalive_only=True, keepalive_interval=0.05))
    upstream.script("b/backup", Script(text="Backup answer.", ttft=0.05))
    router = make_router(["a/keepalive", "b/backup"], first_token_timeout=0.4)
    started = time.monotonic()
    reply = await router.complete(USER)
    elapsed = time.monotonic() - started
    assert reply.text == "Backup answer."
    assert reply.attempts[0].outcome is Outcome.FIRST_TOKEN_TIMEOUT
    assert elapsed < halfway(0.4 + 0.05, 2.0)  # cut at 0.4 s: keep-alives did not reset it


async def test_slow_but_within_deadline_is_not_cut(upstream, make_router):
    upstream.script("a/slowish", Script(text="Made it.", ttft=0.25))
    reply = await make_router(["a/slowish", "b/backup"], first_token_timeout=0.5).complete(USER)
    assert reply.model == "a/slowish"


async def test_last_model_gets_the_longer_final_deadline(upstream, make_router):
    upstream.script("a/only", Script(text="Slow but sure.", ttft=0.8))
    reply = await make_router(["a/only"], first_token_timeout=0.3, final_first_token_timeout=2.0).complete(USER)
    assert reply.text == "Slow but sure."


async def test_last_model_may_pause_longer_than_the_stall_timeout(upstream, make_router):
    # A local model on a busy CPU pauses between tokens; on the last model, cutting the pause could
    # only end in an apology, so it gets the final deadline instead of the stall timeout.
    upstream.script("a/slow-drip", Script(text="One two three.", ttft=0.05, tokens_per_second=2))
    router = make_router(["a/slow-drip"], stall_timeout=0.2, final_first_token_timeout=2.0)
    reply = await router.complete(USER)
    assert reply.text == "One two three." and reply.attempts[0].outcome is Outcome.OK
    # Not last: the same pauses are a stall and the backup continues the reply.
    upstream.script("b/backup", Script(text="Backup.", ttft=0.05))
    reply = await make_router(["a/slow-drip", "b/backup"], stall_timeout=0.2).complete(USER)
    assert reply.attempts[0].outcome is Outcome.STALL and reply.model == "b/backup"


async def test_error_after_text_continues_on_next_model_with_prefill(upstream, make_router):
    upstream.script("a/primary", Script(text=FULL, error_after_tokens=5))
    upstream.script("b/backup", continuing_backup())
    router = make_router(["a/primary", "b/backup"])
    pieces = [c.text async for c in router.stream(USER) if c.text]
    assert "".join(pieces) == FULL
    backup_request = upstream.requests_for("b/backup")[0]
    assert backup_request.messages[:-2] == USER
    assert backup_request.messages[-2] == {"role": "system", "content": CONTINUE_INSTRUCTION}
    assert backup_request.messages[-1] == {"role": "assistant", "content": "The weather in Paris is"}


async def test_a_break_is_announced_once_between_the_words_said_and_their_continuation(upstream, make_router):
    # A speaking consumer says the words it holds at the break, before the next model's first word.
    upstream.script("a/primary", Script(text=FULL, error_after_tokens=5))
    upstream.script("b/backup", continuing_backup())
    chunks = [c async for c in make_router(["a/primary", "b/backup"]).stream(USER)]
    breaks = [i for i, c in enumerate(chunks) if c.broke]
    assert len(breaks) == 1
    said, rest = chunks[: breaks[0]], chunks[breaks[0] + 1:]
    assert chunks[breaks[0]].text == "" and chunks[breaks[0]].model == "a/primary"
    assert "".join(c.text for c in said) == "The weather in Paris is"
    assert {c.model for c in said} == {"a/primary"} and {c.model for c in rest if c.text} == {"b/backup"}
    assert "".join(c.text for c in said + rest) == FULL


@pytest.mark.parametrize("primary", [Script(status=502), Script(text=FULL)], ids=["fails before a word", "healthy"])
async def test_no_break_is_announced_when_no_words_were_cut(upstream, make_router, primary):
    upstream.script("a/primary", primary)
    upstream.script("b/backup", Script(text=FULL))
    chunks = [c async for c in make_router(["a/primary", "b/backup"]).stream(USER)]
    assert not any(c.broke for c in chunks) and "".join(c.text for c in chunks) == FULL


async def test_continuation_drops_repeat_when_backup_starts_over(upstream, make_router):
    upstream.script("a/primary", Script(text=FULL, error_after_tokens=5))
    upstream.script("b/backup", continuing_backup(restart=True))
    reply = await make_router(["a/primary", "b/backup"]).complete(USER)
    assert reply.text == FULL  # "The weather in Paris is" is not said twice
    assert reply.text.count("The weather") == 1


async def test_continuation_drops_the_words_a_backup_picks_up_again(upstream, make_router):
    upstream.script("a/primary", Script(text=FULL, error_after_tokens=5))
    upstream.script("b/backup", continuing_backup(overlap_words=2))  # "Paris is sunny with..."
    reply = await make_router(["a/primary", "b/backup"]).complete(USER)
    assert reply.text == FULL


async def test_stall_after_text_continues_within_stall_timeout(upstream, make_router):
    upstream.script("a/primary", Script(text=FULL, stall_after_tokens=4))
    upstream.script("b/backup", continuing_backup())
    router = make_router(["a/primary", "b/backup"], stall_timeout=0.3)
    started = time.monotonic()
    reply = await router.complete(USER)
    assert reply.text == FULL
    assert reply.attempts[0].outcome is Outcome.STALL
    assert time.monotonic() - started < halfway(0.3, 2.0)  # the stall deadline, not the backup's


async def test_dropped_connection_mid_stream_continues(upstream, make_router):
    upstream.script("a/primary", Script(text=FULL, drop_after_tokens=3))
    upstream.script("b/backup", continuing_backup())
    reply = await make_router(["a/primary", "b/backup"]).complete(USER)
    assert reply.text == FULL
    assert reply.attempts[0].outcome in (Outcome.CONNECTION_ERROR, Outcome.BAD_RESPONSE)


async def test_partial_text_kept_when_every_model_fails(upstream, make_router):
    upstream.script("a/primary", Script(text=FULL, error_after_tokens=3))
    upstream.script("b/backup", Script(status=500))
    with pytest.raises(AllModelsFailedError) as info:
        await make_router(["a/primary", "b/backup"]).complete(USER)
    assert info.value.partial_text == "The weather in"


def test_repeat_guard_cases():
    guard = RepeatGuard("Hello there")
    assert guard.feed("Hel") == ""
    assert guard.feed("lo there, friend") == ", friend"
    assert guard.feed(" again") == " again"
    guard = RepeatGuard("Hello there")
    assert guard.feed(" and welcome") == " and welcome"
    guard = RepeatGuard("Hello there")
    assert guard.feed("Hello") == ""
    assert guard.flush() == ""  # it only ever repeated
    guard = RepeatGuard("Hello there")
    assert guard.feed("Help") == "Help"
    guard = RepeatGuard("It is sunny in")
    assert guard.feed("sunny") == ""  # could be the last words again: held back
    assert guard.feed(" in Paris") == " Paris"
    guard = RepeatGuard("It is sunny in")
    assert guard.feed("in the morning") == "in the morning"  # one word is not an overlap


def test_repeat_guard_prefers_a_whole_restart_over_an_overlap_it_begins_with():
    # The cut reply ends with the words it began with: a restart first matches the short overlap.
    guard = RepeatGuard("I can help. I can")
    out = "".join(guard.feed(word) for word in ["I", " can", " help.", " I", " can", " check", " it."])
    assert out + guard.flush() == " check it."
