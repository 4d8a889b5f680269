"""Voice-turn metrics on a real call (audio in, audio out), recorded as each turn ends, not at session
end: time to first audio, end-of-turn delay, what the caller heard, the TTS chain's fallback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from openrouter_voice.telemetry import names as n
from openrouter_voice.telemetry.voice import VoiceMetrics, watch_session
from openrouter_voice.testing import Script
from openrouter_voice.testing.cartesia import CartesiaScript
from tests.voice.conftest import speech

QUESTION = "Hello, can you hear me?"
ANSWER = "Yes, I can hear you."


@pytest.fixture
def recorded() -> Iterator[tuple[InMemoryMetricReader, VoiceMetrics]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield reader, VoiceMetrics(provider.get_meter("test"))
    provider.shutdown()


def points(reader: InMemoryMetricReader, name: str) -> list:
    data = reader.get_metrics_data()
    return [p for rm in (data.resource_metrics if data else []) for sm in rm.scope_metrics for m in sm.metrics
            if m.name == name for p in m.data.data_points]


async def test_each_voice_turn_is_recorded_as_it_ends(call, upstream, cartesia, recorded):
    reader, metrics = recorded
    cartesia.script(CartesiaScript(status=401))  # the TTS chain falls back to the local voice
    upstream.script("a/model", [Script(text=ANSWER), Script(status=503)])
    voice = await call(["a/model"], cartesia=cartesia)
    llm = voice.agent.llm
    watch_session(voice.session, llm, [metrics.record])

    answered = await voice.say(await speech(QUESTION))
    assert answered.answer == ANSWER and answered.first_audio is not None
    # the session is still open: the turn's figures are already there
    [ttfa] = points(reader, n.TIME_TO_FIRST_AUDIO)
    assert ttfa.count == 1 and 0 < ttfa.sum < 10
    assert dict(ttfa.attributes) == {n.TURN_RESULT: "answered"}
    [end_of_turn] = points(reader, n.END_OF_TURN_DELAY)
    assert end_of_turn.count == 1 and 0 <= end_of_turn.sum < ttfa.sum
    [fallback] = points(reader, n.SPEECH_FALLBACKS)
    assert fallback.attributes[n.STAGE] == "tts" and fallback.value >= 1

    apology = await voice.say(await speech(QUESTION))  # every model fails now: the apology is spoken
    assert apology.answer and "trouble reaching my language models" in apology.answer
    turns = {p.attributes[n.TURN_RESULT]: p.value for p in points(reader, n.VOICE_TURNS)}
    assert turns == {"answered": 1, "apology": 1, "silent": 0}
    assert not voice.closed
