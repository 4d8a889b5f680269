"""Wire-format behaviour over real sockets: SSE, keep-alives, usage, headers, served model."""

from __future__ import annotations

import pytest

from openrouter_voice.router import AllModelsFailedError, Outcome
from openrouter_voice.testing import Script
from tests.conftest import TEST_KEY, USER


async def test_stream_yields_deltas_in_order_and_final_usage(upstream, make_router):
    upstream.script("openai/gpt-4o-mini", Script(text="It is sunny in Paris today.", tokens_per_second=200,
                                                 served_model="openai/gpt-4o-mini-2024-07-18",
                                                 usage={"prompt_tokens": 12, "completion_tokens": 7,
                                                        "cost": 0.00042}))
    router = make_router(["openai/gpt-4o-mini"])
    chunks = [c async for c in router.stream(USER)]
    texts = [c.text for c in chunks if c.text]
    assert len(texts) == 6  # one delta per word, streamed, not one blob
    assert "".join(texts) == "It is sunny in Paris today."
    final = chunks[-1]
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.total_tokens) == (12, 7, 19)
    assert final.usage.cost == pytest.approx(0.00042)
    assert final.model == "openai/gpt-4o-mini-2024-07-18"


async def test_complete_reports_served_model_and_attempts(upstream, make_router):
    upstream.script("openai/gpt-4o-mini", Script(text="Hi.", served_model="openai/gpt-4o-mini-2024-07-18"))
    reply = await make_router(["openai/gpt-4o-mini"]).complete(USER)
    assert reply.text == "Hi."
    assert reply.model == "openai/gpt-4o-mini-2024-07-18"
    assert [a.outcome for a in reply.attempts] == [Outcome.OK]
    assert not reply.fell_back
    assert reply.attempts[0].ttft is not None


async def test_keepalive_comments_are_skipped(upstream, make_router):
    # 0.3 s of ": OPENROUTER PROCESSING" comments before the first token.
    upstream.script("a/model", Script(text="Still here.", ttft=0.3, keepalive_interval=0.05))
    reply = await make_router(["a/model"]).complete(USER)
    assert reply.text == "Still here."
    assert reply.attempts[0].ttft is not None and reply.attempts[0].ttft >= 0.29


async def test_attribution_and_auth_headers_are_sent(upstream, make_router):
    await make_router(["a/model"]).complete(USER)
    headers = {k.lower(): v for k, v in upstream.requests[0].headers.items()}
    assert headers["authorization"] == f"Bearer {TEST_KEY}"
    assert headers["http-referer"] == "https://example.test/app"
    assert headers["x-title"] == "voice-tests"
    assert headers["x-openrouter-title"] == "voice-tests"
    body = upstream.requests[0].body
    assert body["stream"] is True and body["model"] == "a/model"
    assert body["messages"] == USER


async def test_extra_body_passes_provider_preferences_through(upstream, make_router):
    router = make_router(["a/model"], extra_body={"provider": {"sort": "latency"}})
    await router.complete(USER, temperature=0.2)
    body = upstream.requests[0].body
    assert body["provider"] == {"sort": "latency"}
    assert body["temperature"] == 0.2


async def test_in_stream_error_before_tokens_falls_back(upstream, make_router):
    upstream.script("a/primary", Script(error_after_tokens=0, error_code=502, error_message="upstream died"))
    upstream.script("b/backup", Script(text="Backup here."))
    reply = await make_router(["a/primary", "b/backup"]).complete(USER)
    assert reply.text == "Backup here."
    assert reply.attempts[0].outcome is Outcome.STREAM_ERROR
    assert reply.attempts[0].error == "upstream died"
    assert reply.fell_back


@pytest.mark.parametrize("code", [429, "429", "server_error"])
async def test_in_stream_error_codes_int_or_string(upstream, make_router, code):
    upstream.script("a/primary", Script(error_after_tokens=0, error_code=code))
    upstream.script("b/backup", Script(text="Fine."))
    reply = await make_router(["a/primary", "b/backup"]).complete(USER)
    assert reply.text == "Fine."
    assert reply.attempts[0].outcome is Outcome.STREAM_ERROR
    assert reply.attempts[0].status == (429 if code in (429, "429") else None)


async def test_error_event_with_empty_choices_is_not_a_silent_success(upstream, make_router):
    upstream.script("a/only", Script(raw_events=[
        '{"id":"gen-1","model":"a/only","choices":[],"error":{"code":503,"message":"overloaded"}}',
    ]))
    with pytest.raises(AllModelsFailedError) as info:
        await make_router(["a/only"]).complete(USER)
    assert info.value.attempts[0].outcome is Outcome.STREAM_ERROR
    assert "overloaded" in str(info.value)


async def test_truncated_stream_is_a_failure_not_a_short_success(upstream, make_router):
    # Text, then the connection closes cleanly with no finish_reason and no [DONE].
    upstream.script("a/only", Script(raw_events=[
        '{"id":"g","model":"a/only","choices":[{"index":0,"delta":{"content":"Half a sen"}}]}',
    ]))
    with pytest.raises(AllModelsFailedError) as info:
        await make_router(["a/only"]).complete(USER)
    assert info.value.partial_text == "Half a sen"
    assert "truncated" in str(info.value)


async def test_done_without_a_finish_reason_is_a_cut_reply_and_the_backup_continues(upstream, make_router):
    # What llama.cpp's server sends when a newer request interrupts the reply it is generating.
    upstream.script("a/local", Script(raw_events=[
        '{"id":"g","model":"a/local","choices":[{"index":0,"delta":{"content":"Paris is the"}}]}', "[DONE]"]))
    upstream.script("b/backup", Script(text=" capital of France."))
    reply = await make_router(["a/local", "b/backup"]).complete(USER)
    assert reply.text == "Paris is the capital of France."
    assert reply.attempts[0].outcome is Outcome.BAD_RESPONSE and "no finish_reason" in (reply.attempts[0].error or "")


async def test_malformed_json_chunk_moves_on(upstream, make_router):
    upstream.script("a/primary", Script(raw_events=["{not json"]))
    upstream.script("b/backup", Script(text="OK."))
    reply = await make_router(["a/primary", "b/backup"]).complete(USER)
    assert reply.text == "OK."
    assert reply.attempts[0].outcome is Outcome.BAD_RESPONSE
    assert "malformed JSON" in (reply.attempts[0].error or "")


async def test_empty_reply_moves_on(upstream, make_router):
    upstream.script("a/primary", Script(text=""))
    upstream.script("b/backup", Script(text="Something to say."))
    reply = await make_router(["a/primary", "b/backup"]).complete(USER)
    assert reply.text == "Something to say."
    assert "empty reply" in (reply.attempts[0].error or "")


async def test_unknown_finish_reason_is_accepted(upstream, make_router):
    upstream.script("a/only", Script(text="Done.", finish_reason="end_turn_custom"))
    reply = await make_router(["a/only"]).complete(USER)
    assert reply.text == "Done." and reply.finish_reason == "end_turn_custom"


async def test_usage_totals_include_failed_attempts_that_billed(upstream, make_router):
    upstream.script("a/primary", Script(raw_events=[
        '{"id":"g","model":"a/primary","choices":[{"index":0,"delta":{"content":"Hel"}}]}',
        '{"id":"g","model":"a/primary","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":1,"cost":0.001}}',
        '{"id":"g","model":"a/primary","choices":[{"index":0,"delta":{},"finish_reason":"error"}],'
        '"error":{"code":502,"message":"cut"}}',
    ]))
    upstream.script("b/backup", Script(text="lo there.", usage={"prompt_tokens": 20, "completion_tokens": 3,
                                                                "cost": 0.002}))
    reply = await make_router(["a/primary", "b/backup"]).complete(USER)
    assert reply.usage.prompt_tokens == 30
    assert reply.usage.cost == pytest.approx(0.003)
    assert reply.attempts[0].usage is not None and reply.attempts[0].usage.cost == pytest.approx(0.001)


def test_router_and_testing_never_import_livekit():
    import subprocess
    import sys

    code = ("import sys, openrouter_voice.router, openrouter_voice.testing, openrouter_voice.router.catalog;"
            "print(sorted(m for m in sys.modules if m.startswith('livekit')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
