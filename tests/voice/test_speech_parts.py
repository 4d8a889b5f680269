"""The speech parts on their own: the local engines, the Deepgram watchdog, WAV input, `talk`, and the
session staying up on a TTS that refuses every request (livekit/agents-js#2399)."""

from __future__ import annotations

import asyncio
import wave

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import AgentSession, APIConnectionError, stt
from rich.console import Console

from openrouter_voice.call.audio import read_wav, write_wav
from openrouter_voice.config import Settings
from openrouter_voice.speech.watchdog import WatchedSTT
from openrouter_voice.testing import Script
from openrouter_voice.testing.cartesia import CartesiaScript
from tests.conftest import TEST_KEY
from tests.timing import until
from tests.voice.conftest import local_stt, local_tts, speech


@pytest.mark.no_session
async def test_the_local_stt_understands_the_local_voice():
    audio = await speech("What is the weather in Tokyo?")
    assert audio.rate == 22050 and audio.loud_seconds() > 1.0
    frame = rtc.AudioFrame(audio.samples.tobytes(), audio.rate, 1, len(audio.samples))
    event = await local_stt().recognize([frame])
    assert event.alternatives[0].text == "what is the weather in tokyo"


@pytest.mark.no_session
async def test_the_deterministic_local_voice_says_a_text_the_same_way_every_time():
    from openrouter_voice.speech.local_tts import LocalTTS

    text = "Hello, can you hear me?"
    lively = LocalTTS()  # Piper's own sampling: each take differs, which is what made tests flaky
    takes = [await lively.pcm(text) for _ in range(3)]
    assert not all(np.array_equal(takes[0], take) for take in takes[1:])
    steady = [await local_tts().pcm(text) for _ in range(3)]
    assert len(steady[0]) > 0 and all(np.array_equal(steady[0], take) for take in steady[1:])


@pytest.mark.no_session
async def test_the_local_voice_says_nothing_for_text_without_words():
    assert len(await local_tts().pcm(" ... ")) == 0


class _Deaf(stt.STT):
    """A streaming STT that takes audio and never answers (a silent Deepgram socket)."""

    def __init__(self) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=True))

    async def _recognize_impl(self, buffer, *, language=None, conn_options=None):  # type: ignore[override]
        raise NotImplementedError

    def stream(self, *, language=None, conn_options=None):  # type: ignore[override]
        outer = self

        class _Stream(stt.RecognizeStream):
            async def _run(self) -> None:
                async for _ in self._input_ch:
                    pass

        from livekit.agents import DEFAULT_API_CONNECT_OPTIONS

        return _Stream(stt=outer, conn_options=conn_options or DEFAULT_API_CONNECT_OPTIONS)


@pytest.mark.no_session
async def test_the_watchdog_gives_up_on_a_deaf_stt_after_speech_not_after_silence():
    watched = WatchedSTT(_Deaf(), stall_after=0.5)
    stream = watched.stream()
    silence = rtc.AudioFrame(np.zeros(320, np.int16).tobytes(), 16000, 1, 320)
    for _ in range(100):  # two seconds of silence: nothing to answer, no failure
        stream.push_frame(silence)
    await asyncio.sleep(0.2)
    loud = (await speech("Hello there, anyone?")).at(16000).samples
    for i in range(0, len(loud) - 320, 320):
        stream.push_frame(rtc.AudioFrame(loud[i:i + 320].tobytes(), 16000, 1, 320))
    stream.end_input()
    with pytest.raises(APIConnectionError, match=r"no transcript after 0\.5 s of speech"):
        async for _ in stream:
            pass
    await stream.aclose()


def _sound(seconds: float, *, loud: bool) -> list[rtc.AudioFrame]:
    """20 ms frames of a 440 Hz tone (loud) or of silence."""
    t = np.arange(int(seconds * 16000)) / 16000
    samples = (3000 * np.sin(2 * np.pi * 440 * t) if loud else 0 * t).astype(np.int16)
    return [rtc.AudioFrame(samples[i:i + 320].tobytes(), 16000, 1, 320) for i in range(0, len(samples), 320)]


@pytest.mark.no_session
async def test_the_watchdog_judges_each_question_on_its_own():
    """A click left unanswered is forgotten once over (it does not cut the next question short), and a
    question too short to reach ``stall_after`` still fails the STT once it ends unanswered."""
    watched = WatchedSTT(_Deaf(), stall_after=2.0, answer_within=1.2, min_speech=0.5)
    stream = watched.stream()
    for frame in [*_sound(0.3, loud=True), *_sound(1.5, loud=False), *_sound(1.9, loud=True),
                  *_sound(1.5, loud=False)]:
        stream.push_frame(frame)
    stream.end_input()
    # carried over, the click would have made it 2.2 s of speech, failing mid-question
    with pytest.raises(APIConnectionError, match=r"no transcript 1\.2 s after 1\.9 s of speech"):
        async for _ in stream:
            pass
    await stream.aclose()


@pytest.mark.no_session
def test_the_utterance_audio_holds_what_no_stt_has_finalised():
    from openrouter_voice.speech.replay import UtteranceAudio

    audio = UtteranceAudio(pre_roll=0.1, limit=1.0)
    for frame in _sound(0.2, loud=False):
        audio.push(frame)
    assert not audio.speaking and audio.seconds == pytest.approx(0.1)  # only the pre-roll before speech
    for frame in _sound(0.6, loud=True):
        audio.push(frame)
    assert audio.speaking and audio.start == pytest.approx(0.1) and audio.seconds == pytest.approx(0.7)
    audio.heard_until(0.5)  # a streaming STT finalised the speech up to 0.5 s
    assert audio.speaking and audio.start == pytest.approx(0.5)
    for frame in _sound(1.2, loud=True):  # a caller who talks on and on: bounded
        audio.push(frame)
    assert audio.seconds == pytest.approx(1.0)
    audio.heard_until(None)
    assert not audio.speaking and audio.seconds == 0.0


@pytest.mark.no_session
def test_a_wav_that_is_not_pcm_is_refused_with_the_fix(tmp_path):
    bad = tmp_path / "q.wav"
    bad.write_bytes(b"RIFF....not a wav")
    with pytest.raises(ValueError, match=r"not a PCM WAV file.*ffmpeg"):
        read_wav(bad)
    wide = tmp_path / "wide.wav"
    with wave.open(str(wide), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(4)
        wav.setframerate(16000)
        wav.writeframes(b"\0" * 64)
    with pytest.raises(ValueError, match="32-bit samples; 16-bit PCM is needed"):
        read_wav(wide)


async def test_talk_answers_a_recorded_question_aloud(upstream, tmp_path, monkeypatch):
    from openrouter_voice.cli.talk import run_talk

    monkeypatch.chdir(tmp_path)  # no stray .env
    question, reply = tmp_path / "question.wav", tmp_path / "reply.wav"
    write_wav(question, await speech("Can you hear me now?"))
    upstream.script("openai/gpt-4o-mini", Script(text="Loud and clear."))
    settings = Settings(openrouter_api_key=TEST_KEY, openrouter_base_url=upstream.base_url,
                        openrouter_default_model="openai/gpt-4o-mini", openrouter_fallback_models=[], local_fallback=False,
                        _env_file=None)  # type: ignore[call-arg]
    console = Console(record=True, width=200)
    code = await run_talk(settings, [question], out=reply, console=console)
    text = console.export_text()
    assert code == 0, text
    assert "heard: can you hear me now" in text
    assert "answer: Loud and clear." in text and "model openai/gpt-4o-mini" in text
    assert "first audio after" in text and "llm_ttft" in text
    assert read_wav(reply).loud_seconds() > 0.5


async def test_talk_says_when_nothing_can_be_heard_and_stops_when_the_session_closes(upstream, tmp_path, monkeypatch):
    """Issue 20, items 6 and 7d: every speech recogniser failing (here the only one, after the first
    question) is reported on its turn at once, with no model printed for it, and when LiveKit closes
    the session (the 4th failure in a row) talk says so and exits non-zero instead of waiting."""
    import time

    from openrouter_voice.cli.talk import run_talk
    from openrouter_voice.speech.local_stt import LocalSTT

    monkeypatch.chdir(tmp_path)
    decode, decoded = LocalSTT._decode, []

    def breaks_after_one(self: LocalSTT, pcm: bytes) -> str:  # the first question, then never again
        if decoded:
            raise RuntimeError("the recogniser's model is corrupt")
        if any(pcm):  # not the prewarming's silence
            decoded.append(pcm)
        return decode(self, pcm)

    monkeypatch.setattr(LocalSTT, "_decode", breaks_after_one)
    question = await speech("Can you hear me now?")
    files = [tmp_path / f"q{k}.wav" for k in range(7)]
    for path in files:
        write_wav(path, question)
    upstream.script("openai/gpt-4o-mini", Script(text="Loud and clear."))
    settings = Settings(openrouter_api_key=TEST_KEY, openrouter_base_url=upstream.base_url,
                        openrouter_default_model="openai/gpt-4o-mini", openrouter_fallback_models=[], local_fallback=False,
                        _env_file=None)  # type: ignore[call-arg]
    console = Console(record=True, width=300)
    started = time.monotonic()
    code = await run_talk(settings, files, out=None, console=console)
    elapsed = time.monotonic() - started
    text = console.export_text()
    turns = text.split("> ")[1:]
    assert "answer: Loud and clear." in turns[0] and "model openai/gpt-4o-mini" in turns[0]
    deaf = turns[1:-1]  # after the first question, before the close
    assert len(deaf) >= 3 and all("speech recognition failed on every engine" in t for t in deaf), text
    assert all("heard: (nothing)" in t and "model none" in t for t in deaf), text  # not the first turn's model
    assert code == 3 and "The call ended" in turns[-1], text
    assert len(turns) < len(files)  # it stopped at the close instead of playing the rest
    # no turn waited for an answer that could not come (say() waits up to 30 s for one)
    assert elapsed < len(turns) * (question.seconds + 30) / 3, (elapsed, text)
    assert len(upstream.requests) == 1


async def test_a_tts_refusing_every_request_never_closes_the_session(upstream, cartesia, make_agent):
    """The JS SDK closed the session while its TTS provider answered 401 (livekit/agents-js#2399):
    here more turns than LiveKit's max_unrecoverable_errors (3) all get spoken answers."""
    from openrouter_voice.call.driver import VoiceCall
    from openrouter_voice.speech.chains import TTS_CONN_OPTIONS, build_tts

    cartesia.script(CartesiaScript(status=401))
    kit = make_agent(["a/model"])
    upstream.script("a/model", Script(text="Still here."))
    settings = Settings(cartesia_api_key="ca-test-key", cartesia_base_url=cartesia.base_url,
                        _env_file=None)  # type: ignore[call-arg]
    from livekit.agents.voice.agent_session import SessionConnectOptions

    session: AgentSession[None] = AgentSession(llm=kit.llm, tts=build_tts(settings, local=local_tts()),
                                               conn_options=SessionConnectOptions(tts_conn_options=TTS_CONN_OPTIONS))
    async with VoiceCall(session, kit.assistant()) as call:
        for turn in range(5):
            start = len(call.speaker.frames)
            await session.run(user_input=f"Are you there? ({turn})")
            await until(lambda n=turn: call.speaker.playbacks > n, f"answer {turn} to play out", limit=30)
            spoken = call.speaker.audio_since(0)
            assert len(call.speaker.frames) > start and spoken.loud_seconds() > 0.3 * (turn + 1)
        assert not call.closed
    assert cartesia.chunks_sent == 0 and cartesia.handshakes >= 1
