"""Voice tests: real audio through a real AgentSession (Silero VAD, LiveKit's turn detector, the STT
and TTS chains the worker builds), with the scripted OpenRouter upstream, Deepgram and Cartesia."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from livekit.agents import AgentSession

from openrouter_voice.agent import Assistant, OpenRouterLLM
from openrouter_voice.agent.tools.weather import WeatherClient
from openrouter_voice.agent.worker import build_session, load_turn_detection
from openrouter_voice.call.audio import Audio
from openrouter_voice.call.driver import VoiceCall
from openrouter_voice.config import Settings
from openrouter_voice.router import FallbackRouter
from openrouter_voice.speech.local_stt import LocalSTT
from openrouter_voice.speech.local_tts import LocalTTS
from openrouter_voice.testing import ScriptedUpstream
from openrouter_voice.testing.cartesia import ScriptedCartesia
from openrouter_voice.testing.deepgram import ScriptedDeepgram
from tests.agent.conftest import FakeOpenMeteo, make_agent, open_meteo  # noqa: F401  (fixtures)
from tests.conftest import TEST_KEY

_speech: dict[str, Audio] = {}
_shared: dict[str, Any] = {}


def shared(name: str, make: Callable[[], Any]) -> Any:
    """One VAD, turn detector and local engine per test run: loading them is most of a test's cost."""
    if name not in _shared:
        _shared[name] = make()
    return _shared[name]


def local_tts() -> LocalTTS:
    # without Piper's sampled noise: the caller's question (and the agent's local voice) sounds the same
    # every run, so what the recogniser hears and where the VAD cuts it are the same every run
    return shared("tts", lambda: LocalTTS(deterministic=True))  # type: ignore[no-any-return]


def local_stt() -> LocalSTT:
    return shared("stt", LocalSTT)  # type: ignore[no-any-return]


async def speech(text: str) -> Audio:
    """``text`` spoken by the local voice (made once per run), as the caller's audio."""
    if text not in _speech:
        tts = local_tts()
        _speech[text] = Audio(await tts.pcm(text), tts.sample_rate)
    return _speech[text]


async def piper_voice(text: str, rate: int) -> bytes:
    """The scripted Cartesia's voice: the local voice, so what it 'synthesizes' is real speech."""
    return (await speech(text)).at(rate).samples.tobytes()


@pytest.fixture
async def deepgram() -> AsyncIterator[ScriptedDeepgram]:
    stt = local_stt()

    def transcribe(pcm: bytes, rate: int) -> str:  # the scripted Deepgram really listens
        assert rate == 16000
        return stt._decode(pcm)

    async with ScriptedDeepgram(transcribe=transcribe) as server:
        yield server


@pytest.fixture
async def cartesia() -> AsyncIterator[ScriptedCartesia]:
    async with ScriptedCartesia() as server:
        yield server


@pytest.fixture
async def call(upstream: ScriptedUpstream, open_meteo: FakeOpenMeteo, tmp_path) -> AsyncIterator[Any]:  # noqa: F811
    """``await call(models, deepgram=None, cartesia=None, ack_after=0.0)``: a voice call on the worker's
    pipeline; "One moment." is off unless ``ack_after`` is given (on a busy machine it would otherwise
    lead answers whose exact text other tests check)."""
    from livekit.plugins import silero

    opened: list[VoiceCall] = []

    async def make(models: list[str], *, deepgram: ScriptedDeepgram | None = None,
                   cartesia: ScriptedCartesia | None = None, ack_after: float = 0.0, **router_kwargs: Any) -> VoiceCall:
        settings = Settings(
            deepgram_api_key="dg-test-key" if deepgram else None, cartesia_api_key="ca-test-key" if cartesia else None,
            deepgram_base_url=deepgram.base_url if deepgram else "https://api.deepgram.com",
            cartesia_base_url=cartesia.base_url if cartesia else "https://api.cartesia.ai",
            weather_geocoding_url=open_meteo.geocoding_url, weather_forecast_url=open_meteo.forecast_url,
            voice_ack_after=ack_after, _env_file=None)  # type: ignore[call-arg]
        router_kwargs.setdefault("first_token_timeout", 0.5)
        router_kwargs.setdefault("final_first_token_timeout", 1.0)
        router = FallbackRouter(models=models, api_key=TEST_KEY, base_url=upstream.base_url, **router_kwargs)
        llm = OpenRouterLLM(router=router)
        vad = shared("vad", silero.VAD.load)
        from openrouter_voice.speech.chains import build_stt, build_tts

        session: AgentSession[None] = build_session(
            settings, vad=vad, turn_detection=shared("turn", load_turn_detection), llm=llm,
            stt=build_stt(settings, vad=vad, local=local_stt()), tts=build_tts(settings, local=local_tts()))
        agent = Assistant(llm=llm, weather=WeatherClient(geocoding_url=open_meteo.geocoding_url,
                                                         forecast_url=open_meteo.forecast_url))
        voice_call = VoiceCall(session, agent)
        opened.append(voice_call)
        await voice_call.__aenter__()
        return voice_call

    yield make
    for voice_call in opened:
        await voice_call.__aexit__(None, None, None)
        llm_ = voice_call.agent.llm
        if isinstance(llm_, OpenRouterLLM):
            await llm_.router.aclose()
            await llm_.aclose()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "no_session: a voice test that runs no real-time audio session "
                                       "(it may run beside the audio group)")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every real-time audio test in one pytest-xdist worker, one at a time: two sessions decoding speech
    side by side on 2 cores starve each other's VAD (it falls behind real time and words are lost). A test
    marked ``no_session`` (speech through a TTS chain or a recogniser, no session playing in real time) is
    as CPU-bound as the rest of the suite, no more, and runs in either worker."""
    for item in items:
        if "tests/voice/" in item.nodeid.replace("\\", "/") and item.get_closest_marker("no_session") is None:
            item.add_marker(pytest.mark.xdist_group("audio"))
