"""AgentSession text runs with OpenRouterLLM against the scripted upstream and a fake Open-Meteo."""

from __future__ import annotations

from typing import Any

from livekit.agents import AgentSession, FlushSentinel, ModelSettings
from livekit.agents.llm import ChatContext
from livekit.agents.metrics import LLMMetrics

from openrouter_voice.agent import APOLOGY, FallbackEvent
from openrouter_voice.agent.llm import APOLOGY_AFTER_PARTIAL
from openrouter_voice.testing import Script
from tests.conftest import continuing


def last_tool_output(body: dict[str, Any]) -> str | None:
    messages = body["messages"]
    return messages[-1]["content"] if messages and messages[-1]["role"] == "tool" else None


def tool_then_echo(name: str, arguments: dict[str, Any], prefix: str = "") -> Any:
    """A model that calls ``name`` once, then says the tool's output (so the test sees it flow through)."""

    def script(body: dict[str, Any]) -> Script:
        output = last_tool_output(body)
        if output is None:
            return Script(text="", tool_calls=[(name, arguments)])
        return Script(text=prefix + output)

    return script


async def test_weather_question_calls_the_tool_and_speaks_the_temperature(make_agent, open_meteo):
    kit = make_agent(["google/gemini-2.5-flash-lite"])
    kit.upstream.script("google/gemini-2.5-flash-lite", tool_then_echo("get_weather", {"location": "Paris"}))
    async with AgentSession(llm=kit.llm) as session:
        await session.start(kit.assistant())
        result = await session.run(user_input="What's the weather like in Paris?")
        result.expect.next_event().is_function_call(name="get_weather", arguments={"location": "Paris"})
        output = result.expect.next_event().is_function_call_output()
        assert "18 degrees Celsius" in output.event().item.output
        message = result.expect.next_event().is_message(role="assistant")
        assert "In Paris, France it is 18 degrees Celsius and partly cloudy" in message.event().item.text_content
        result.expect.no_more_events()
    assert {"name": "Paris", "count": "1", "language": "en", "format": "json"}.items() <= open_meteo.queries[0].items()
    # The tool schema went to OpenRouter, and the tool result came back in the second request.
    first, second = kit.upstream.requests
    assert sorted(t["function"]["name"] for t in first.body["tools"]) == ["get_model_info", "get_weather", "switch_model"]
    assert second.messages[-1]["role"] == "tool"


async def test_unknown_place_gets_a_spoken_explanation(make_agent):
    kit = make_agent(["a/model"])
    kit.upstream.script("a/model", tool_then_echo("get_weather", {"location": "Qwxzzy"}))
    async with AgentSession(llm=kit.llm) as session:
        await session.start(kit.assistant())
        result = await session.run(user_input="Weather in Qwxzzy?")
        result.expect.next_event().is_function_call(name="get_weather")
        output = result.expect.next_event().is_function_call_output().event().item
        assert not output.is_error
        assert output.output == "I couldn't find a place called Qwxzzy. Could you say it another way?"


async def test_switch_model_resolves_spoken_name_and_next_turn_uses_it(make_agent):
    kit = make_agent(["google/gemini-2.5-flash-lite", "openai/gpt-4o-mini"])
    kit.upstream.script("google/gemini-2.5-flash-lite",
                        tool_then_echo("switch_model", {"name": "claude haiku four point five"}))
    kit.upstream.script("anthropic/claude-haiku-4.5", Script(text="Hello from Haiku."))
    async with AgentSession(llm=kit.llm) as session:
        await session.start(kit.assistant())
        result = await session.run(user_input="Switch to Claude Haiku four point five")
        result.expect.next_event().is_function_call(name="switch_model")
        output = result.expect.next_event().is_function_call_output().event().item.output
        assert output == "Switched to Claude Haiku 4.5."
        result.expect.next_event().is_message(role="assistant")
        result = await session.run(user_input="Who are you?")
        result.expect.next_event().is_message(role="assistant")
    assert kit.upstream.requests[-1].model == "anthropic/claude-haiku-4.5"
    assert [t.model for t in kit.llm.router.models] == [
        "anthropic/claude-haiku-4.5", "google/gemini-2.5-flash-lite", "openai/gpt-4o-mini"]


async def test_switching_to_a_model_without_tools_really_switches(make_agent):
    kit = make_agent(["google/gemini-2.5-flash-lite", "openai/gpt-4o-mini"])
    assistant = kit.assistant()
    said = await assistant.switch_model("mistral 7b instruct")
    assert said == "Switched to Mistral 7B Instruct. It can't use tools, so I may not be able to check things."
    kit.upstream.script("mistralai/mistral-7b-instruct", Script(text="Mistral here."))
    async with AgentSession(llm=kit.llm) as session:
        await session.start(assistant)
        result = await session.run(user_input="Who are you?")
        assert result.expect.next_event().is_message(role="assistant").event().item.text_content == "Mistral here."
    request = kit.upstream.requests[-1]
    assert request.model == "mistralai/mistral-7b-instruct"
    assert "tools" not in request.body  # sent none, so no "no endpoints support tool use" 404


async def test_ambiguous_or_unknown_model_names_get_a_question(make_agent):
    kit = make_agent(["a/model"])
    assistant = kit.assistant()
    ambiguous = await assistant.switch_model("Claude Haiku")
    assert ambiguous.startswith("There are a few models called Claude Haiku. Did you mean")
    assert "Claude 3.5 Haiku" in ambiguous and "Claude Haiku 4.5" in ambiguous
    unknown = await assistant.switch_model("unicorn nine thousand")
    assert unknown.startswith("I couldn't find a model called unicorn nine thousand")
    assert [t.model for t in kit.llm.router.models] == ["a/model"]  # unchanged


async def test_primary_429_mid_conversation_backup_answers_with_full_context(make_agent):
    kit = make_agent(["a/primary", "b/backup"])
    kit.upstream.script("a/primary", [Script(text="Nice to meet you, Ada."), Script(status=429, retry_after=30)])
    kit.upstream.script("b/backup", Script(text="Your name is Ada."))
    fallbacks: list[FallbackEvent] = []
    kit.llm.on("fallback", fallbacks.append)
    async with AgentSession(llm=kit.llm) as session:
        await session.start(kit.assistant())
        first = await session.run(user_input="Hi, I'm Ada.")
        first.expect.next_event().is_message(role="assistant")
        result = await session.run(user_input="What's my name?")
        message = result.expect.next_event().is_message(role="assistant").event().item
        assert message.text_content == "Your name is Ada."
        result.expect.no_more_events()  # exactly one assistant message
    backup = kit.upstream.requests_for("b/backup")[0]
    contents = [(m["role"], m.get("content")) for m in backup.messages if m["role"] != "system"]
    assert contents == [("user", "Hi, I'm Ada."), ("assistant", "Nice to meet you, Ada."),
                        ("user", "What's my name?")]
    assert len(fallbacks) == 1
    assert fallbacks[0].served_by == "b/backup" and "429" in fallbacks[0].reason


async def test_all_models_failing_gives_the_apology_and_the_session_recovers(make_agent):
    kit = make_agent(["a/one", "b/two"])
    kit.upstream.script("a/one", [Script(status=500), Script(text="I'm back.")])
    kit.upstream.script("b/two", Script(status=503))
    async with AgentSession(llm=kit.llm) as session:
        await session.start(kit.assistant())
        result = await session.run(user_input="Hello?")
        apology = result.expect.next_event().is_message(role="assistant").event().item
        assert apology.text_content == APOLOGY
        result.expect.no_more_events()
        # The session's default LLM max_retry is 3: LiveKit must not have re-sent the failed chain.
        assert [r.model for r in kit.upstream.requests] == ["a/one", "b/two"]
        kit.llm.router.health.reset()  # the upstream recovered; don't wait out the cooldown
        result = await session.run(user_input="Hello again?")
        message = result.expect.next_event().is_message(role="assistant").event().item
        assert message.text_content == "I'm back."
    assert kit.llm.stats.apologies == 1 and kit.llm.stats.turns == 2
    assert [r.model for r in kit.upstream.requests] == ["a/one", "b/two", "a/one"]


async def test_failure_after_some_words_ends_with_one_short_apology_not_a_repeat(make_agent):
    kit = make_agent(["a/one", "b/two"])
    kit.upstream.script("a/one", Script(text="The capital of Australia is Canberra, not Sydney.", error_after_tokens=4))
    kit.upstream.script("b/two", Script(status=503))
    async with AgentSession(llm=kit.llm) as session:
        await session.start(kit.assistant())
        result = await session.run(user_input="What's the capital of Australia?")
        message = result.expect.next_event().is_message(role="assistant").event().item
        result.expect.no_more_events()
    assert message.text_content == "The capital of Australia" + APOLOGY_AFTER_PARTIAL
    assert [r.model for r in kit.upstream.requests] == ["a/one", "b/two"]


async def test_metrics_carry_served_model_and_real_usage(make_agent):
    kit = make_agent(["a/primary", "b/backup"])
    kit.upstream.script("a/primary", Script(status=502))
    kit.upstream.script("b/backup", Script(text="Fine, thanks.", served_model="b/backup-2026-01",
                                           usage={"prompt_tokens": 42, "completion_tokens": 3, "cost": 0.0005}))
    metrics: list[LLMMetrics] = []
    kit.llm.on("metrics_collected", metrics.append)
    async with AgentSession(llm=kit.llm) as session:
        await session.start(kit.assistant())
        await session.run(user_input="How are you?")
    assert len(metrics) == 1
    assert metrics[0].metadata is not None and metrics[0].metadata.model_name == "b/backup-2026-01"
    assert (metrics[0].prompt_tokens, metrics[0].completion_tokens) == (42, 3)
    assert kit.llm.stats.usage.cost == 0.0005


async def test_get_model_info_reports_primary_last_model_cooldowns_and_cost(make_agent):
    kit = make_agent(["a/primary", "b/backup"])
    kit.upstream.script("a/primary", Script(status=429, retry_after=60))
    kit.upstream.script("b/backup", tool_then_echo("get_model_info", {}))
    async with AgentSession(llm=kit.llm) as session:
        await session.start(kit.assistant())
        await session.run(user_input="Hi")
        result = await session.run(user_input="Which model are you?")
        result.expect.next_event().is_function_call(name="get_model_info")
        info = result.expect.next_event().is_function_call_output().event().item.output
    assert "My primary model is a/primary." in info
    assert "The last answer came from b/backup, because a/primary: skipped (cooling down for" in info
    assert "a/primary for" in info and "more seconds" in info
    assert "This session has cost" in info
    # The backup has answered: its recent time to first token is shown; the primary's is unknown.
    assert "Time to first word lately: b/backup " in info and "at the 95th percentile over 3 replies" in info
    assert "a/primary 0." not in info


async def test_tool_arguments_garbage_is_handled(make_agent):
    kit = make_agent(["a/model"])
    kit.upstream.script("a/model", tool_then_echo("get_weather", {"location": ""}))
    async with AgentSession(llm=kit.llm) as session:
        await session.start(kit.assistant())
        result = await session.run(user_input="weather?")
        result.expect.next_event().is_function_call(name="get_weather")
        output = result.expect.next_event().is_function_call_output().event().item.output
    assert output == "Which place would you like the weather for?"


async def test_the_assistant_speaks_the_words_a_model_said_before_it_broke_mid_sentence_at_once(make_agent):
    # The TTS gets "It is sunny" to say while the backup starts, not when the backup completes the sentence.
    answer = "It is sunny and mild today."
    kit = make_agent(["a/one", "b/two"])
    kit.upstream.script("a/one", Script(text=answer, error_after_tokens=3))
    kit.upstream.script("b/two", continuing(answer))
    assistant = kit.assistant()
    ctx = ChatContext.empty()
    ctx.add_message(role="user", content="What is the weather like?")
    async with AgentSession(llm=kit.llm) as session:
        await session.start(assistant)
        node = assistant.llm_node(ctx, [], ModelSettings())
        spoken = ["|" if isinstance(c, FlushSentinel) else c.delta.content or "" if c.delta else "" async for c in node]
    assert "".join(spoken) == "It is sunny|" + answer[len("It is sunny"):]
