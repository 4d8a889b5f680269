"""A question asked by voice is heard and answered aloud, on the local engines and on the providers."""

from __future__ import annotations

from openrouter_voice.testing import Script
from tests.voice.conftest import speech

QUESTION = "What is the weather in Paris today?"


async def test_local_engines_hear_the_question_and_answer_aloud(call, upstream):
    upstream.script("a/model", Script(text="Hello! I can hear you fine."))
    voice = await call(["a/model"])
    turn = await voice.say(await speech("Hello, can you hear me?"))
    assert "hear me" in turn.heard
    assert turn.answer == "Hello! I can hear you fine."
    assert turn.audio.loud_seconds() > 0.8  # the answer was spoken, not just written
    assert turn.ttfa is not None and 0 < turn.ttfa < 5
    assert "can you hear me" in upstream.requests[-1].messages[-1]["content"].lower()
