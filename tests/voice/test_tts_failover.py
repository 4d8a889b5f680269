"""The answer in flight survives a TTS failover: Cartesia (scripted, speaking with the local voice so
its audio can be transcribed) refused, silent, dropped after its first chunk or in the second
sentence; the next voice speaks the rest from the first sentence not all forwarded. Checked on the
audio: transcribed back by the local STT it holds every word of the answer in order (allowing the
recogniser's confusions), and it lasts no longer than the answer plus the one interrupted start."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import pytest
from livekit.agents import tokenize
from livekit.plugins import cartesia
from rapidfuzz.distance import LCSseq

from openrouter_voice.call.audio import Audio
from openrouter_voice.speech.dead_air import DeadAirGuard
from openrouter_voice.speech.tts_failover import FailoverTTS, TTSFailover
from openrouter_voice.testing import Script
from openrouter_voice.testing.cartesia import CHUNK_SECONDS, CartesiaScript, ScriptedCartesia
from tests.voice.conftest import local_stt, local_tts, speech

SENTENCES = ["The weather in Paris is sunny today.", "It will reach twenty degrees this afternoon.",
             "Take a light jacket for the evening."]
ANSWER = " ".join(SENTENCES)


async def spoken_voice(text: str, rate: int) -> bytes:
    """The scripted Cartesia speaks with the local voice (one take per sentence, cached): real speech."""
    return (await speech(text.strip())).at(rate).samples.tobytes() if text.strip() else b""


async def warm(*texts: str) -> None:
    """Make the scripted Cartesia's speech for ``texts`` now, sentence by sentence as the chain sends them:
    it then answers at once, as the real one does (~0.1 s), not after a local synthesis on a busy CPU."""
    for text in texts:
        for sentence in tokenize.blingfire.SentenceTokenizer(retain_format=True).tokenize(text):
            await speech(sentence.strip())


@pytest.fixture
async def spoken_cartesia() -> AsyncIterator[ScriptedCartesia]:
    async with ScriptedCartesia(voice=spoken_voice) as server:
        yield server


@dataclass
class Reply:
    audio: Audio
    failovers: list[TTSFailover]


def words(text: str) -> list[str]:
    return [w.strip(".,?!'").lower() for w in text.split() if w.strip(".,?!'")]


def heard(audio: Audio) -> list[str]:
    return words(local_stt()._decode(audio.at(16000).samples.tobytes()))




def in_order(expected: list[str], got: list[str]) -> float:
    """Share of ``expected`` words found in ``got`` in the same order."""
    return LCSseq.similarity(expected, got) / len(expected)


async def synthesize(voices: FailoverTTS, text: str) -> Reply:
    """``text`` pushed word by word (as an LLM streams it) through the chain; all its audio."""
    failovers: list[TTSFailover] = []
    voices.on("failover", failovers.append)
    frames = []
    async with voices.stream() as stream:
        for word in text.split(" "):
            stream.push_text(word + " ")
        stream.end_input()
        async for event in stream:
            frames.append(event.frame)
    voices.off("failover", failovers.append)
    samples = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames])
    return Reply(Audio(samples, voices.sample_rate), failovers)


async def chunks_of(sentence: str) -> int:
    return int(np.ceil((await speech(sentence)).seconds / CHUNK_SECONDS))


@pytest.fixture
async def chain(spoken_cartesia: ScriptedCartesia) -> AsyncIterator[FailoverTTS]:
    async with aiohttp.ClientSession() as http:
        voices = FailoverTTS([cartesia.TTS(api_key="ca-test-key", base_url=spoken_cartesia.base_url, http_session=http),
                              local_tts()])
        yield voices
        await voices.aclose()


FAULTS = {
    "refused": lambda first: CartesiaScript(status=401),
    "silent": lambda first: CartesiaScript(silent=True),
    "dropped-after-first-chunk": lambda first: CartesiaScript(drop_after_chunks=1),
    "dropped-in-second-sentence": lambda first: CartesiaScript(drop_after_total_chunks=first + 2),
}


@pytest.mark.no_session  # the chain alone, no real-time session
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_the_next_voice_speaks_the_rest_of_the_answer_from_the_interrupted_sentence(
        chain: FailoverTTS, spoken_cartesia: ScriptedCartesia, fault: str) -> None:
    expected = words(ANSWER)
    await warm(ANSWER)
    healthy = await synthesize(chain, ANSWER)
    assert not healthy.failovers and spoken_cartesia.chunks_sent > 0
    baseline = in_order(expected, heard(healthy.audio))  # the recogniser's own confusions on this answer

    # the open socket takes the fault at its next message; new ones are refused
    spoken_cartesia.script([FAULTS[fault](await chunks_of(SENTENCES[0])), CartesiaScript(status=503)])
    broken = await synthesize(chain, ANSWER)

    assert len(broken.failovers) == 1, broken.failovers
    failover = broken.failovers[0]
    expected_sentence = 1 if fault == "dropped-in-second-sentence" else 0
    assert failover.sentence == expected_sentence
    # the words, in order, as the recogniser hears them (it hears 0.7 to 0.9 of a healthy answer's words;
    # a lost sentence is a third of them, which the length check below catches for certain)
    assert in_order(expected, heard(broken.audio)) >= min(0.6, baseline), (heard(broken.audio), expected)
    # nothing said twice beyond the interrupted sentence's start: the answer's length, plus at most
    # what was forwarded of that sentence before the failure (the local voice varies its pace ~10%)
    by_cartesia = sum([(await speech(s)).seconds for s in SENTENCES[:failover.sentence]])
    by_local = sum([(await speech(s)).seconds for s in SENTENCES[failover.sentence:]])
    assert broken.audio.seconds <= by_cartesia + failover.forwarded + 1.15 * by_local + 0.2
    assert broken.audio.seconds >= by_cartesia + 0.85 * by_local - 0.2
    assert failover.forwarded < (await speech(SENTENCES[failover.sentence])).seconds


@pytest.mark.no_session  # the chain alone, no real-time session
async def test_a_failed_voice_takes_over_again_once_a_probe_is_spoken(chain, spoken_cartesia):
    await warm(ANSWER)
    spoken_cartesia.script([CartesiaScript(drop_after_chunks=1), CartesiaScript()])  # one socket dies, then fine
    broken = await synthesize(chain, ANSWER)
    assert len(broken.failovers) == 1
    probe = chain.voices[0].probe
    assert probe is not None
    await probe  # the background probe speaks on a fresh socket
    assert chain.voices[0].available
    before = spoken_cartesia.chunks_sent
    again = await synthesize(chain, ANSWER)
    assert not again.failovers and spoken_cartesia.chunks_sent > before


@pytest.mark.no_session  # the chain alone, no real-time session
async def test_an_answer_without_text_touches_no_voice(chain, spoken_cartesia):
    """An LLM step that only calls a tool has no text: not a TTS failure (livekit/agents-js#1454)."""
    reply_frames = []
    failovers: list[TTSFailover] = []
    chain.on("failover", failovers.append)
    async with chain.stream() as stream:
        stream.end_input()
        async for event in stream:
            reply_frames.append(event)
    assert not reply_frames and not failovers
    assert spoken_cartesia.handshakes == 0 and all(v.available for v in chain.voices)


async def answering(call: Any, upstream: Any, cartesia: ScriptedCartesia, answer: str) -> tuple[Any, FailoverTTS]:
    """A call whose model says ``answer``, and its voices: without "One moment." (the turn's other stages
    are slow on a busy machine), so that the voice alone is measured."""
    await warm(answer)
    upstream.script("a/model", Script(text=answer))
    voice = await call(["a/model"], cartesia=cartesia)
    assert isinstance(voice.session.tts, FailoverTTS)
    return voice, voice.session.tts


async def test_a_silent_cartesia_costs_its_learnt_deadline_not_three_seconds(call, upstream, spoken_cartesia):
    answer = "Sure, I can hear you. What would you like to know?"
    voice, voices = await answering(call, upstream, spoken_cartesia, answer)
    question = await speech("Hello, can you hear me?")
    # the deadline is learnt from Cartesia's first audio on five sentences: three answers of two pushed
    # through the call's own voices (the same chain, learning the same way as in a turn), without three
    # real-time turns around them
    for _ in range(3):
        assert not (await synthesize(voices, answer)).failovers
    deadline = voices.voices[0].deadline.seconds()
    assert deadline < 1.5  # learnt from Cartesia's own first audio, far below the 3 s ceiling
    spoken_cartesia.script(CartesiaScript(silent=True))
    silent = await voice.say(question)
    assert silent.answer == answer and silent.ttfa is not None
    tts_first_audio = silent.stages()["tts_ttfb"]  # LiveKit's own figure: text in, first audio out
    local_first = voices.voices[1].last_first_audio  # what the local voice took for that sentence, this turn
    assert local_first is not None
    print(f"silent Cartesia TTFA {silent.ttfa:.2f} s; TTS first audio {tts_first_audio:.2f} s: deadline "
          f"{deadline:.2f} s, then the local voice {local_first:.2f} s")
    # the deadline, then the local voice's first sentence, and little else (the hand-over's own event-loop
    # hops slow down with the machine, as the local voice does: up to half of it, plus 0.3 s); the turn's
    # other stages (end of turn, STT) vary by seconds on a loaded machine, so they are not judged
    assert tts_first_audio <= deadline + 1.5 * local_first + 0.3


async def test_a_silent_cartesia_on_the_first_answers_of_a_call_costs_the_cold_bound_not_three_seconds(
        call, upstream, spoken_cartesia):
    """Nothing is learnt yet (fewer than five sentences): the local voice starts alongside after the cold
    bound and is heard, alone, with every word of the answer once."""
    answer = "Sure, I can hear you. What would you like to know?"
    voice, voices = await answering(call, upstream, spoken_cartesia, answer)
    failovers: list[TTSFailover] = []
    voices.on("failover", failovers.append)
    question = await speech("Hello, can you hear me?")
    # one healthy answer through the call's own voices (not a real-time turn): two sentences, still cold
    # (five are needed), and the recogniser's own confusions on Cartesia's take of it
    healthy = await synthesize(voices, answer)
    assert not healthy.failovers and not failovers and voices.voices[0].deadline.p95() is None
    baseline = in_order(words(answer), heard(healthy.audio))

    spoken_cartesia.script(CartesiaScript(silent=True))
    silent = await voice.say(question)
    assert silent.answer == answer and silent.ttfa is not None
    assert len(failovers) == 1 and failovers[0].sentence == 0 and failovers[0].forwarded == 0.0
    tts_first_audio = silent.stages()["tts_ttfb"]
    local_first = voices.voices[1].last_first_audio
    cold = voices.voices[0].deadline.hedge_after()
    assert local_first is not None and cold < voices.voices[0].deadline.seconds()
    print(f"silent Cartesia TTFA {silent.ttfa:.2f} s; TTS first audio {tts_first_audio:.2f} s: cold bound "
          f"{cold:.2f} s, then the local voice {local_first:.2f} s")
    assert "before" in failovers[0].reason  # the local voice, started alongside, spoke first
    # the cold bound, then the local voice's first audio (started at the bound), not the 3 s ceiling and then
    # the local voice: half the difference is the margin for the event loop's hops on a loaded machine
    ceiling = voices.voices[0].deadline.ceiling
    assert tts_first_audio <= cold + local_first + (ceiling - cold) / 2
    # every word once, in order, in the local voice alone: never both voices, nothing said twice
    assert in_order(words(answer), heard(silent.audio)) >= min(0.6, baseline), heard(silent.audio)
    local_answer = sum([(await speech(s)).seconds for s in ["Sure, I can hear you.", "What would you like to know?"]])
    assert silent.audio.seconds <= 1.15 * local_answer + 0.2


async def test_the_apology_survives_cartesia_dropping_mid_sentence(call, upstream, spoken_cartesia):
    from openrouter_voice.agent import APOLOGY

    spoken_cartesia.script([CartesiaScript(drop_after_chunks=5), CartesiaScript(status=503)])
    upstream.script("a/model", Script(status=503))
    await warm(APOLOGY)
    voice = await call(["a/model"], cartesia=spoken_cartesia)  # no "One moment.": the apology alone is measured
    failovers: list[TTSFailover] = []
    voice.session.tts.on("failover", failovers.append)
    turn = await voice.say(await speech("Hello, can you hear me?"))
    assert turn.answer == APOLOGY
    assert len(failovers) == 1 and failovers[0].forwarded > 0  # Cartesia started it, the local voice finished
    expected = heard(await speech(APOLOGY))
    assert in_order(expected, heard(turn.audio)) >= 0.6, (heard(turn.audio), expected)
    whole = (await speech(APOLOGY)).seconds
    assert turn.audio.seconds <= failovers[0].forwarded + 1.15 * whole + 0.2


async def test_a_slow_tool_is_acknowledged_once_and_is_not_a_tts_failure(call, upstream, spoken_cartesia,
                                                                         open_meteo):
    from openrouter_voice.agent.tools.weather import WeatherClient
    from tests.agent.test_agent_session import tool_then_echo

    forecast = await WeatherClient(geocoding_url=open_meteo.geocoding_url,
                                   forecast_url=open_meteo.forecast_url).current("Paris")
    await warm(forecast.spoken(), "One moment.")
    open_meteo.gate = asyncio.Event()  # the weather lookup answers when the test says so
    upstream.script("a/model", tool_then_echo("get_weather", {"location": "Paris"}))
    voice = await call(["a/model"], cartesia=spoken_cartesia, ack_after=2.0)
    failovers: list[TTSFailover] = []
    voice.session.tts.on("failover", failovers.append)
    guard = DeadAirGuard.of(voice.session)
    assert guard is not None

    speaking = asyncio.Event()  # the agent's first audio of the turn: with the tool blocked, the acknowledgement
    voice.session.on("agent_state_changed", lambda ev: ev.new_state == "speaking" and speaking.set())

    async def release_after_the_acknowledgement() -> None:
        with contextlib.suppress(TimeoutError):  # never heard: the tool answers after 20 s, the test fails
            await asyncio.wait_for(speaking.wait(), 20)
        acknowledged_while_blocked.append(guard.acknowledged)
        open_meteo.gate.set()

    acknowledged_while_blocked: list[int] = []
    releaser = asyncio.create_task(release_after_the_acknowledgement())
    turn = await voice.say(await speech("What is the weather in Paris today?"))
    await releaser
    assert acknowledged_while_blocked == [1]  # heard while the tool was still running
    assert "18 degrees Celsius" in turn.answer
    assert guard.acknowledged == 1 and not failovers  # said once; the tool-only step was no TTS failure
    assert all(v.available for v in voice.session.tts.voices)
    said = heard(turn.audio)
    assert "moment" in said and said.count("moment") == 1, said
    assert spoken_cartesia.chunks_sent > 0 and voice.session.tts.voices[0].available


@pytest.mark.parametrize("ack_after", [2.0, 0.0], ids=["on", "off"])
async def test_a_slow_model_is_acknowledged_before_its_answer_unless_turned_off(call, upstream, spoken_cartesia,
                                                                                ack_after):
    upstream.script("a/model", Script(text="Here is the answer.", ttft=3.5))  # slower than the 2 s bound
    await warm("Here is the answer.", "One moment.")
    voice = await call(["a/model"], cartesia=spoken_cartesia, ack_after=ack_after, first_token_timeout=6.0,
                       final_first_token_timeout=6.0)
    turn = await voice.say(await speech("Hello, can you hear me?"))
    said = heard(turn.audio)
    guard = DeadAirGuard.of(voice.session)
    assert guard is not None
    if ack_after:  # the reply's first words, said while the model is still silent
        assert turn.answer == "One moment. Here is the answer."
        assert guard.acknowledged == 1 and said[:2] == ["one", "moment"], said
        assert guard.turn_started is not None and turn.first_audio is not None
        assert turn.first_audio - guard.turn_started < 3.5  # heard before the model's first word
    else:
        assert turn.answer == "Here is the answer."
        assert guard.acknowledged == 0 and "moment" not in said, said


@pytest.mark.no_session  # the chain alone, no real-time session
async def test_cartesia_dropping_mid_sentence_is_resumed_at_the_first_word_not_heard_whole() -> None:
    """With Cartesia's word timings, the local voice speaks the rest of the interrupted sentence from its
    first word whose audio was not all forwarded: no word lost, none said twice but the start of that one."""
    async with ScriptedCartesia(voice=spoken_voice, word_timestamps=True) as server, aiohttp.ClientSession() as http:
        voices = FailoverTTS([cartesia.TTS(api_key="ca-test-key", base_url=server.base_url, http_session=http),
                              local_tts()])
        try:
            await warm(*ANSWER.split())  # the scripted Cartesia speaks word by word: each word's take made now
            expected = words(ANSWER)
            healthy = await synthesize(voices, ANSWER)
            assert not healthy.failovers
            baseline = in_order(expected, heard(healthy.audio))
            rate = voices.voices[0].tts.sample_rate
            first, _ = await server.words_of(SENTENCES[0], rate)
            second, timings = await server.words_of(SENTENCES[1], rate)
            step = int(CHUNK_SECONDS * rate) * 2
            # the socket dies halfway through the second sentence; new ones are refused
            server.script([CartesiaScript(drop_after_total_chunks=-(-len(first) // step) + len(second) // step // 2),
                           CartesiaScript(status=503)])
            broken = await synthesize(voices, ANSWER)
        finally:
            await voices.aclose()

    assert len(broken.failovers) == 1, broken.failovers
    failover = broken.failovers[0]
    print(f"resumed at word {failover.word + 1} of {SENTENCES[1]!r} after {failover.forwarded:.2f} s; heard "
          f"{' '.join(heard(broken.audio))!r} (healthy: {' '.join(heard(healthy.audio))!r})")
    assert failover.sentence == 1 and 0 < failover.word < len(timings), failover
    assert timings[failover.word - 1][2] <= failover.forwarded + 1e-3  # the words skipped were all heard whole
    assert failover.forwarded < timings[failover.word][2]  # the word resumed at was not: none heard twice whole
    assert in_order(expected, heard(broken.audio)) >= min(0.6, baseline), (heard(broken.audio), expected)
    # the audio holds the first sentence, what was forwarded of the second, and the local voice's rest only
    rest = " ".join(SENTENCES[1].split()[failover.word:])
    by_cartesia = len(first) / 2 / rate + failover.forwarded
    by_local = (await speech(rest)).seconds + (await speech(SENTENCES[2])).seconds
    assert by_cartesia + 0.85 * by_local - 0.2 <= broken.audio.seconds <= by_cartesia + 1.15 * by_local + 0.2
