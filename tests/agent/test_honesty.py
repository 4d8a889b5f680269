"""The live-data guard: which questions need a lookup, and what a tool-less model's answer becomes.

The phrasings here are not those of the offline benchmark's question set (``bench/offline``): the
patterns must catch how people ask, not one list of questions.
"""

from __future__ import annotations

import re

import pytest
from livekit.agents import AgentSession

from openrouter_voice.agent.honesty import (
    CLOCK,
    LIVE_LOOKUP_UNAVAILABLE,
    LIVE_TOPICS,
    MARKETS,
    MONEY,
    NEWS,
    SPORTS,
    WEATHER,
    LiveLookupGuard,
    live_topic,
    needs_live_lookup,
)
from openrouter_voice.testing import Script

LIVE = [
    ("Is it going to snow this weekend?", WEATHER), ("What's the temperature outside?", WEATHER),
    ("How cold is it in Chicago?", WEATHER), ("Do I need an umbrella, is it raining?", WEATHER),
    ("Any news today?", NEWS), ("Read me the top headlines.", NEWS), ("What's in the news about Mars?", NEWS),
    ("How are Tesla shares doing?", MARKETS), ("Is the Dow Jones up?", MARKETS),
    ("What's Microsoft's stock at?", MARKETS), ("How did the markets close?", MARKETS),
    ("Convert fifty euros to dollars.", MONEY), ("What's the price of gold?", MONEY),
    ("How much is ethereum?", MONEY), ("What are gas prices like?", MONEY),
    ("Did the Yankees win?", SPORTS), ("Who's winning the match?", SPORTS), ("Final score please.", SPORTS),
    ("Who won yesterday?", SPORTS), ("What's the score?", SPORTS),
    ("What's the time?", CLOCK), ("What day is it today?", CLOCK), ("What year is it?", CLOCK),
    ("Tell me the current time.", CLOCK), ("What is the date?", CLOCK),
]
NOT_LIVE = [
    "What is the capital of France?", "At what temperature does water freeze?", "How many degrees are in a circle?",
    "What causes a rainbow?", "How do I clean my windows?", "Who won the 1966 World Cup?",
    "Who shares my birthday?", "What is the time difference between Paris and London?", "Tell me a joke.",
    "How many days are in a week?", "What does a stockbroker do?", "How do I tell time on a clock?",
]


@pytest.mark.parametrize(("question", "topic"), LIVE)
def test_questions_that_need_a_lookup_are_recognised_by_topic(question, topic):
    assert live_topic(question) is topic
    assert needs_live_lookup(question)


@pytest.mark.parametrize("question", NOT_LIVE)
def test_questions_a_model_can_answer_are_left_alone(question):
    assert live_topic(question) is None


def test_every_topics_answer_is_honest_names_the_topic_and_invents_nothing():
    sentences = [topic.unavailable() for topic in LIVE_TOPICS]
    assert len(set(sentences)) == len(LIVE_TOPICS)
    for topic, sentence in zip(LIVE_TOPICS, sentences, strict=True):
        assert topic.what in sentence and "can't look up" in sentence
        assert not re.search(r"\d", sentence)
    assert WEATHER.unavailable() == LIVE_LOOKUP_UNAVAILABLE


def test_the_guard_replaces_only_a_tool_less_models_first_answer_to_a_live_question():
    def tool_less(model: str) -> bool:
        return model.endswith("@local")

    guard = LiveLookupGuard("What's the score of the Celtics game?", carried_tools=True, tool_less=tool_less)
    assert guard.filter("Celtics 101, Knicks 99.", "a/tools", spoke=False) == "Celtics 101, Knicks 99."
    replaced = LiveLookupGuard("What's the score of the Celtics game?", carried_tools=True, tool_less=tool_less)
    assert replaced.filter("Celtics 101", "gemma@local", spoke=False) == SPORTS.unavailable()
    assert replaced.filter(", Knicks 99.", "gemma@local", spoke=True) == ""  # the rest is dropped
    # A turn without tools was never promised a lookup; a question needing none is answered as it is.
    assert LiveLookupGuard("Any news?", carried_tools=False, tool_less=tool_less).filter(
        "No.", "gemma@local", spoke=False) == "No."
    assert LiveLookupGuard("Who wrote Hamlet?", carried_tools=True, tool_less=tool_less).filter(
        "Shakespeare.", "gemma@local", spoke=False) == "Shakespeare."


def test_the_guard_can_be_limited_to_some_topics():
    guard = LiveLookupGuard("Any news?", carried_tools=True, tool_less=lambda m: True, topics=(WEATHER,))
    assert guard.filter("Aliens landed.", "m", spoke=False) == "Aliens landed."


@pytest.mark.parametrize(("question", "invented", "topic"), [
    ("What's the latest headline?", "Aliens landed in Ohio.", NEWS),
    ("What is Apple's stock price?", "It is $10.83.", MARKETS),
    ("How much is a bitcoin?", "One bitcoin is $1000.", MONEY),
    ("What time is it?", "It's 10:00 am.", CLOCK),
])
async def test_voice_path_answers_every_live_topic_honestly_without_tools(make_agent, question, invented, topic):
    kit = make_agent(["a/tools", "b/toolless"])
    kit.upstream.script("a/tools", Script(status=503))
    kit.upstream.script("b/toolless", Script(text=invented))
    kit.llm.router.set_tool_support({"b/toolless": False})
    async with AgentSession(llm=kit.llm) as session:
        await session.start(kit.assistant())
        result = await session.run(user_input=question)
    said = [e.item.text_content for e in result.events if e.type == "message"]
    assert said == [topic.unavailable()]
