"""A question asked by voice is heard and answered aloud, on the local engines and on the providers."""

from __future__ import annotations

from rapidfuzz import fuzz

from openrouter_voice.testing import Script
from tests.timing import until
from tests.voice.conftest import speech

QUESTION = "What is the weather in Paris today?"


async def test_local_engines_hear_the_question_and_answer_aloud(call, upstream):
    upstream.script("a/model", Script(text="Hello! I can hear you fine."))
    voice = await call(["a/model"])
    turn = await voice.say(await speech("Hello, can you hear me?"))
    assert "hear me" in turn.heard
    assert turn.answer == "Hello! I can hear you fine."
    assert turn.audio.loud_seconds() > 0.5  # the answer was spoken, not just written
    # The first sound follows the pipeline's own stages as LiveKit measured them in this turn (end of
    # utterance, LLM first token, TTS first byte): no deadline or retry waited out in between.
    stages = turn.stages()
    pipeline = sum(stages.get(stage, 0.0) for stage in ("eou_delay", "llm_ttft", "tts_ttfb"))
    assert turn.ttfa is not None and 0 < turn.ttfa < 2 * pipeline + 2.0, (turn.ttfa, stages)
    assert "can you hear me" in upstream.requests[-1].messages[-1]["content"].lower()


async def test_weather_question_by_voice_runs_the_tool_and_speaks_the_forecast(call, upstream, open_meteo):
    from tests.agent.test_agent_session import tool_then_echo

    upstream.script("a/model", tool_then_echo("get_weather", {"location": "Paris"}))
    voice = await call(["a/model"])
    turn = await voice.say(await speech(QUESTION))
    # The local recogniser sometimes hears "pairs" or "and curse": the question was heard if it is close
    # enough (an unrelated sentence scores under 50)
    assert fuzz.partial_ratio("weather in paris", turn.heard) >= 70, turn.heard
    assert any(q.get("name") == "Paris" for q in open_meteo.queries)  # the tool ran
    assert "18 degrees Celsius" in turn.answer
    assert turn.audio.loud_seconds() > 1.5


async def test_every_model_failing_is_apologised_for_out_loud(call, upstream):
    from openrouter_voice.agent import APOLOGY

    upstream.script("a/model", Script(status=503))
    upstream.script("b/model", Script(status=500))
    voice = await call(["a/model", "b/model"])
    turn = await voice.say(await speech("Hello, can you hear me?"))
    assert turn.answer == APOLOGY
    assert turn.audio.loud_seconds() > 1.5  # said, not only written
    assert not voice.closed


async def test_the_apology_is_spoken_even_when_cartesia_is_down(call, upstream, cartesia):
    from openrouter_voice.agent import APOLOGY
    from openrouter_voice.testing.cartesia import CartesiaScript

    cartesia.script(CartesiaScript(status=503))
    upstream.script("a/model", Script(status=503))
    voice = await call(["a/model"], cartesia=cartesia)
    turn = await voice.say(await speech("Hello, can you hear me?"))
    assert turn.answer == APOLOGY
    assert turn.audio.loud_seconds() > 1.5
    assert cartesia.handshakes >= 1 and cartesia.chunks_sent == 0  # Cartesia was asked, the local voice spoke


async def test_caller_speaking_over_the_agent_stops_it_and_closes_the_llm_stream(call, upstream):
    long_reply = " ".join(["This is a long answer that goes on and on."] * 30)  # 30 s at 12 words a second
    upstream.script("a/model", [Script(text=long_reply, tokens_per_second=12), Script(text="Sure, go ahead.")])
    voice = await call(["a/model"])
    first = voice.mic.speak(await speech("Tell me a long story please."))
    await first
    # wait until the agent is audibly speaking, past LiveKit's echo-cancellation warm-up (3 s from the
    # agent's first words, when barge-in is ignored), then talk over it
    await until(lambda: voice.speaker.first_sound_after(0) is not None, "the agent to speak", limit=30)
    await until(lambda: voice.session._aec_warmup_remaining <= 0, "LiveKit's echo-cancellation warm-up to end",
                limit=30)
    assert upstream.open_streams == 1  # the reply is still streaming from the model
    await voice.say(await speech("Stop, wait a moment."))
    assert voice.speaker.interruptions >= 1
    assert any(interrupted for _, interrupted in voice.answers)
    await upstream.wait_until_idle()  # the interrupted reply's upstream stream was closed
    # the interrupted answer ended say(); the answer to the new question follows
    await until(lambda: len(voice.answers) >= 2, "the answer to the new question", limit=30)
    assert len(upstream.requests) == 2 and voice.answers[-1][0] == "Sure, go ahead."
    assert "moment" in upstream.requests[1].messages[-1]["content"].lower()
