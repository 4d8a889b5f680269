"""Degraded answers stay honest: a turn that carried tools, served by a model without them, never
presents made-up live data, in the router, the text chat and the voice LLM path."""

from __future__ import annotations

from livekit.agents import AgentSession
from typer.testing import CliRunner

from openrouter_voice.agent.honesty import LIVE_LOOKUP_UNAVAILABLE
from openrouter_voice.cli.main import app
from openrouter_voice.router.request import NO_TOOLS_INSTRUCTION
from openrouter_voice.testing import Script
from tests.cli.test_chat import env, up  # noqa: F401 (fixtures)

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]
WEATHER = [{"role": "system", "content": "You are a voice assistant."},
           {"role": "user", "content": "What's the weather in Paris?"}]
INVENTED = Script(text="It is twenty five degrees and sunny in Paris.")


def told_no_tools(request) -> bool:
    return "tools" not in request.body and any(
        m.get("role") == "system" and NO_TOOLS_INSTRUCTION in str(m.get("content")) for m in request.messages)


async def test_router_tells_a_tool_less_model_it_cannot_look_anything_up(upstream, make_router):
    upstream.script("a/tools", Script(status=500))
    upstream.script("b/toolless", INVENTED)
    router = make_router(["a/tools", "b/toolless"])
    router.set_tool_support({"b/toolless": False})
    await router.complete(WEATHER, tools=TOOLS)
    with_tools, without = upstream.requests_for("a/tools")[0], upstream.requests_for("b/toolless")[0]
    assert with_tools.body["tools"] and not told_no_tools(with_tools)
    assert told_no_tools(without)
    assert without.messages[0]["content"].startswith("You are a voice assistant.")  # one system message, first
    assert [m["role"] for m in without.messages] == ["system", "user"]


async def test_a_turn_without_tools_is_not_given_the_instruction(upstream, make_router):
    router = make_router(["b/toolless"])
    router.set_tool_support({"b/toolless": False})
    await router.complete(WEATHER)
    assert upstream.requests[-1].messages == WEATHER


async def test_voice_path_answers_a_live_question_honestly_without_tools(make_agent):
    kit = make_agent(["a/tools", "b/toolless"])
    kit.upstream.script("a/tools", Script(status=503))
    kit.upstream.script("b/toolless", INVENTED)
    kit.llm.router.set_tool_support({"b/toolless": False})
    async with AgentSession(llm=kit.llm) as session:
        await session.start(kit.assistant())
        result = await session.run(user_input="What's the weather in Paris?")
        said = [e.item.text_content for e in result.events if e.type == "message"]
        assert said == [LIVE_LOOKUP_UNAVAILABLE]
        assert told_no_tools(kit.upstream.requests_for("b/toolless")[-1])
        # A question that needs no lookup is answered by the same model as it is.
        kit.upstream.script("b/toolless", Script(text="Paris is the capital of France."))
        result = await session.run(user_input="What is the capital of France?")
        said = [e.item.text_content for e in result.events if e.type == "message"]
        assert said == ["Paris is the capital of France."]
    assert kit.llm.stats.apologies == 0


def test_chat_answers_a_live_question_honestly_without_tools(env, up):  # noqa: F811
    # mistralai/mistral-7b-instruct is listed without tool support in the catalog.
    env.setenv("OPENROUTER_FALLBACK_MODELS", "mistralai/mistral-7b-instruct")
    up.script("google/gemini-2.5-flash-lite", Script(status=500))
    up.script("mistralai/mistral-7b-instruct", INVENTED)
    result = CliRunner().invoke(app, ["chat", "What's the weather in Paris?"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == LIVE_LOOKUP_UNAVAILABLE
    assert told_no_tools(up.requests_for("mistralai/mistral-7b-instruct")[-1])
