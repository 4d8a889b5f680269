"""OpenRouterLLM on its own (no session): streaming, tool calls, and LiveKit's retry kept off."""

from __future__ import annotations

import json
from typing import Any

import pytest
from livekit.agents import APIConnectionError, APIConnectOptions, FlushSentinel, function_tool, llm

from openrouter_voice.agent import OpenRouterLLM
from openrouter_voice.agent.breaks import spoken_at_breaks
from openrouter_voice.router import FallbackRouter
from openrouter_voice.testing import Script
from tests.conftest import TEST_KEY, continuing

# What an AgentSession passes by default: LiveKit would re-run a retryable failure 3 more times.
SESSION_DEFAULT = APIConnectOptions(max_retry=3, retry_interval=0.0)


@function_tool
async def get_weather(location: str) -> str:
    """Weather for a place.

    Args:
        location: The place.
    """
    return location


def user_says(text: str) -> llm.ChatContext:
    ctx = llm.ChatContext.empty()
    ctx.add_message(role="user", content=text)
    return ctx


@pytest.fixture
async def make_llm(upstream):
    made: list[tuple[OpenRouterLLM, FallbackRouter]] = []

    def make(models: list[str], **kwargs: Any) -> OpenRouterLLM:
        router = FallbackRouter(models=models, api_key=TEST_KEY, base_url=upstream.base_url, app_name="llm-tests",
                                first_token_timeout=0.5, stall_timeout=0.5, final_first_token_timeout=1.0)
        made.append((OpenRouterLLM(router=router, **kwargs), router))
        return made[-1][0]

    yield make
    for or_llm, router in made:
        await or_llm.aclose()
        await router.aclose()


async def collect(stream: llm.LLMStream) -> list[llm.ChatChunk]:
    async with stream:
        return [chunk async for chunk in stream]


async def test_text_streams_as_deltas_and_usage_is_reported(make_llm, upstream):
    or_llm = make_llm(["a/model"])
    upstream.script("a/model", Script(text="It is twelve degrees in Paris today.",
                                      usage={"prompt_tokens": 20, "completion_tokens": 8, "cost": 0.0001}))
    chunks = await collect(or_llm.chat(chat_ctx=user_says("Weather?"), conn_options=SESSION_DEFAULT))
    texts = [c.delta.content for c in chunks if c.delta and c.delta.content]
    assert len(texts) > 3  # word by word, not one final blob
    assert "".join(texts) == "It is twelve degrees in Paris today."
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and (usage[0].prompt_tokens, usage[0].completion_tokens) == (20, 8)
    assert or_llm.stats.usage.cost == pytest.approx(0.0001)


async def test_tool_calls_arrive_once_and_complete(make_llm, upstream):
    or_llm = make_llm(["a/model"])
    upstream.script("a/model", Script(text="", tool_calls=[("get_weather", {"location": "Springfield, Illinois"})]))
    chunks = await collect(or_llm.chat(chat_ctx=user_says("Weather in Springfield?"), tools=[get_weather],
                                       conn_options=SESSION_DEFAULT))
    calls = [call for c in chunks if c.delta for call in c.delta.tool_calls]
    assert len(calls) == 1
    assert calls[0].name == "get_weather" and json.loads(calls[0].arguments) == {"location": "Springfield, Illinois"}
    sent = upstream.requests[0].body
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"]


async def test_without_the_apology_a_failed_chain_raises_once_and_livekit_does_not_retry(make_llm, upstream):
    or_llm = make_llm(["a/one", "b/two"], apology=None)
    upstream.script("a/one", Script(status=500))
    upstream.script("b/two", Script(status=503))
    errors: list[llm.LLMError] = []
    or_llm.on("error", errors.append)
    with pytest.raises(APIConnectionError) as info:
        await collect(or_llm.chat(chat_ctx=user_says("Hello?"), conn_options=SESSION_DEFAULT))
    # One request per model: the router tried the chain once; LiveKit did not re-send it.
    assert [r.model for r in upstream.requests] == ["a/one", "b/two"]
    assert info.value.retryable is False
    assert "all models failed" in str(info.value) and TEST_KEY not in str(info.value)
    assert [e.recoverable for e in errors] == [False]


async def test_without_the_apology_a_failure_after_text_is_not_repeated(make_llm, upstream):
    or_llm = make_llm(["a/one", "b/two"], apology=None)
    upstream.script("a/one", Script(text="The answer is forty two, of course.", error_after_tokens=3))
    upstream.script("b/two", Script(status=503))
    stream = or_llm.chat(chat_ctx=user_says("What is the answer?"), conn_options=SESSION_DEFAULT)
    said: list[str] = []

    async def listen() -> None:
        async with stream:
            async for chunk in stream:
                if chunk.delta and chunk.delta.content:
                    said.append(chunk.delta.content)

    with pytest.raises(APIConnectionError) as info:
        await listen()
    assert info.value.retryable is False
    assert "".join(said) == "The answer is"  # sent once, never restarted
    assert [r.model for r in upstream.requests] == ["a/one", "b/two"]


async def test_an_unexpected_error_becomes_the_apology(make_llm, upstream, monkeypatch, caplog):
    or_llm = make_llm(["a/model"])

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug in the router")

    monkeypatch.setattr(or_llm.router, "stream", broken)
    chunks = await collect(or_llm.chat(chat_ctx=user_says("Hi"), conn_options=SESSION_DEFAULT))
    assert [c.delta.content for c in chunks if c.delta] == [or_llm.apology]
    assert any(r.exc_info and "bug in the router" in str(r.exc_info[1]) for r in caplog.records)
    assert or_llm.stats.apologies == 1


async def test_update_options_and_switch_model_reorder_the_chain(make_llm, upstream):
    or_llm = make_llm(["a/one", "b/two", "c/three"])
    or_llm.switch_model("c/three")
    assert [t.model for t in or_llm.router.models] == ["c/three", "a/one", "b/two"]
    assert or_llm.model == "c/three" and or_llm.provider == "openrouter"
    or_llm.update_options(models=["b/two"], temperature=0.2)
    await collect(or_llm.chat(chat_ctx=user_says("Hi"), conn_options=SESSION_DEFAULT))
    assert upstream.requests[-1].model == "b/two" and upstream.requests[-1].body["temperature"] == 0.2


@pytest.mark.parametrize("spoken", [True, False])
async def test_a_spoken_turn_is_continued_when_the_first_sentence_dribbles(upstream, spoken):
    # A LiveKit session speaks what the LLM says: it waits for a whole first sentence. The text chat
    # (spoken=False) shows each word as it comes, so the same reply is not cut there.
    answer = "It is twelve degrees in Paris with a light breeze. Bring a coat."
    upstream.script("a/dribbles", Script(text=answer, tokens_per_second=100, dribble_after_tokens=2,
                                         dribble_interval=0.25))
    upstream.script("b/backup", Script(text=answer, tokens_per_second=200))
    router = FallbackRouter(models=["a/dribbles", "b/backup"], api_key=TEST_KEY, base_url=upstream.base_url,
                            app_name="llm-tests", first_token_timeout=0.5, stall_timeout=1.5,
                            dribble_words_per_second=0, first_sentence_timeout=0.3)
    or_llm = OpenRouterLLM(router=router, spoken=spoken)
    try:
        chunks = await collect(or_llm.chat(chat_ctx=user_says("Weather?"), conn_options=SESSION_DEFAULT))
    finally:
        await or_llm.aclose()
        await router.aclose()
    assert "".join(c.delta.content for c in chunks if c.delta and c.delta.content) == answer  # no repeats
    assert or_llm.last_completion is not None
    assert or_llm.last_completion.model == ("b/backup" if spoken else "a/dribbles")


@pytest.mark.parametrize(("answer", "cut_after", "flushed"), [
    ("It is sunny and mild today.", 3, "It is sunny"),  # broke inside the first sentence: said at once
    ("It is sunny and mild today. Bring a light coat.", 8, None),  # a sentence was said: the TTS is busy
])
async def test_words_cut_before_their_sentence_ended_are_spoken_at_the_break(make_llm, upstream, answer, cut_after,
                                                                              flushed):
    or_llm = make_llm(["a/primary", "b/backup"])
    upstream.script("a/primary", Script(text=answer, error_after_tokens=cut_after))
    upstream.script("b/backup", continuing(answer))
    async with or_llm.chat(chat_ctx=user_says("Weather?"), conn_options=SESSION_DEFAULT) as stream:
        spoken = [c async for c in spoken_at_breaks(stream)]
    texts = ["|" if isinstance(c, FlushSentinel) else (c.delta.content or "") if c.delta else "" for c in spoken]
    assert "".join(texts).replace("|", "") == answer  # no word lost, none said twice
    assert "".join(texts).split("|")[:-1] == ([flushed] if flushed else [])  # the cut words alone, before the rest
