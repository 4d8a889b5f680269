"""The worker's STT and TTS: Deepgram then the local STT, with LiveKit's own ``stt.FallbackAdapter``;
Cartesia then the local TTS, with :class:`~.tts_failover.FailoverTTS` (LiveKit's ``tts.FallbackAdapter``
drops the rest of a half-spoken answer). Without a provider's key the chain is the local engine
alone, so the agent hears and speaks offline.

What was checked in livekit-agents 1.8.9 (the JS SDK's TTS fallback closed the session while the
provider returned 401, livekit/agents-js#2399): the Python adapters catch each child's error,
including non-retryable ones, mark the child unavailable, try the next one and probe the failed one
in the background; a child's ``error`` event is not forwarded to the session. The session closes
only when *every* child fails on more than ``max_unrecoverable_errors`` (3) turns in a row: with the
local engine last, that needs the local engine to fail too. The tests hold both to this.
Three gaps remain and are handled here: a Deepgram socket that is accepted and never answers
(:class:`~.watchdog.WatchedSTT`), long default timeouts (10 s per attempt, retries 5 s apart), which
are cut to voice scale below, and an STT failover that loses the question being spoken and never
returns to Deepgram (:class:`~.replay.ReplayingFallbackAdapter`).

>>> stt = build_stt(load_settings(), vad=silero.VAD.load())   # doctest: +SKIP
>>> tts = build_tts(load_settings())                          # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from livekit.agents import APIConnectOptions, stt, tts, vad

from ..config import Settings
from .local_stt import LocalSTT
from .local_tts import LocalTTS
from .replay import ReplayingFallbackAdapter
from .tts_failover import FailoverTTS
from .watchdog import WatchedSTT

STT_CONNECT_TIMEOUT = 3.0  # seconds for Deepgram's handshake before the local STT takes over
# seconds of speech with no word back from Deepgram before it is given up (it sends SpeechStarted at
# once and interim results about every second of speech)
STT_STALL_AFTER = 2.0
STT_ANSWER_WITHIN = 1.2  # seconds after a question with no word back from Deepgram before it is given up
# seconds Cartesia may stay silent between messages mid-sentence; its first audio of each sentence has a
# deadline learnt from its own recent sentences, at most this (speech/first_audio.py)
TTS_TIMEOUT = 3.0
# The session's connection options for speech: one attempt per provider inside the adapters (they
# move to the next provider rather than retry), and a voice-scale timeout.
TTS_CONN_OPTIONS = APIConnectOptions(max_retry=1, timeout=TTS_TIMEOUT, retry_interval=0.1)
STT_CONN_OPTIONS = APIConnectOptions(max_retry=1, timeout=STT_CONNECT_TIMEOUT, retry_interval=0.1)


def build_stt(settings: Settings, *, vad: vad.VAD, local: stt.STT[Any] | None = None) -> stt.STT[Any]:
    """Deepgram (watched) then ``local`` (PocketSphinx by default), or ``local`` alone without a key;
    a failover replays the utterance in flight to the next STT.

    The local STT is not streaming: LiveKit's adapters cut its audio into utterances with ``vad``.
    """
    local = local or LocalSTT()
    if settings.deepgram_api_key is None:
        return stt.StreamAdapter(stt=local, vad=vad)
    from livekit.plugins import deepgram

    primary = deepgram.STT(model="nova-3", api_key=settings.deepgram_api_key.get_secret_value(),
                           base_url=f"{settings.deepgram_base_url}/v1/listen")
    return ReplayingFallbackAdapter([WatchedSTT(primary, stall_after=STT_STALL_AFTER, answer_within=STT_ANSWER_WITHIN),
                                     local], vad=vad, attempt_timeout=STT_CONNECT_TIMEOUT, max_retry_per_stt=0,
                                    retry_interval=0.1)


def build_tts(settings: Settings, *, local: tts.TTS[Any] | None = None) -> tts.TTS[Any]:
    """Cartesia then ``local`` (Piper's "joe" voice by default), or ``local`` alone without a key.

    The chain is :class:`~.tts_failover.FailoverTTS`, not LiveKit's adapter: it speaks the rest of an
    answer on the next voice when one fails mid-answer, and learns each voice's first-audio deadline.
    """
    local = local or LocalTTS()
    if settings.cartesia_api_key is None:
        return local
    from livekit.plugins import cartesia

    primary = cartesia.TTS(api_key=settings.cartesia_api_key.get_secret_value(), base_url=settings.cartesia_base_url)
    return FailoverTTS([primary, local], ceiling=TTS_TIMEOUT)
