"""The offline speech-to-text: PocketSphinx with the US-English model its wheel ships (BSD).

Non-streaming: LiveKit's ``stt.StreamAdapter`` (with the session's VAD) cuts the audio into
utterances and calls :meth:`LocalSTT.recognize` on each.

>>> stt = LocalSTT()                                            # doctest: +SKIP
>>> (await stt.recognize([frame])).alternatives[0].text         # doctest: +SKIP
'what is the weather in paris'
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import APIConnectionError, APIConnectOptions, stt, utils
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import AudioBuffer

SAMPLE_RATE = 16000  # the rate PocketSphinx's acoustic model was trained on
MODEL = "pocketsphinx-en-us"


class LocalSTT(stt.STT[Any]):
    """PocketSphinx behind LiveKit's STT interface; CPU only, nothing downloaded."""

    def __init__(self) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self._decoder: Any = None
        self._lock = threading.Lock()  # one decoder, one utterance at a time

    @property
    def model(self) -> str:
        return MODEL

    @property
    def provider(self) -> str:
        return "local"

    def _decode(self, pcm: bytes) -> str:
        with self._lock:
            if self._decoder is None:
                from pocketsphinx import Decoder

                self._decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")
            decoder = self._decoder
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            hyp = decoder.hyp()
            return str(hyp.hypstr) if hyp is not None else ""

    def prewarm(self) -> None:
        """Load the model now (about 0.5 s) rather than at the first utterance."""
        self._decode(b"\0\0" * 1600)

    async def _recognize_impl(self, buffer: AudioBuffer, *, language: NotGivenOr[str] = NOT_GIVEN,
                              conn_options: APIConnectOptions) -> stt.SpeechEvent:
        try:
            text = await asyncio.to_thread(self._decode, to_pcm16k(buffer))
        except Exception as exc:
            # as a provider's failure: LiveKit then counts it, restarts recognition and closes the
            # session after 4 in a row; any other exception stops recognition for good, leaving the
            # session open and deaf
            raise APIConnectionError(f"the local STT (PocketSphinx) failed: {exc}", retryable=False) from exc
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT, request_id=utils.shortuuid(),
            alternatives=[stt.SpeechData(language="en-US", text=text, confidence=1.0 if text else 0.0)],  # type: ignore[arg-type]
        )


def to_pcm16k(buffer: AudioBuffer) -> bytes:
    """Mono 16 kHz signed 16-bit PCM of ``buffer`` (any rate, any channel count)."""
    frame = rtc.combine_audio_frames(buffer)
    samples = np.frombuffer(frame.data, dtype=np.int16).reshape(-1, frame.num_channels).mean(axis=1)
    if frame.sample_rate != SAMPLE_RATE and len(samples):
        # linear interpolation is enough for an 8 kHz-band recogniser and avoids a resampler dependency
        n = int(len(samples) * SAMPLE_RATE / frame.sample_rate)
        samples = np.interp(np.linspace(0, len(samples) - 1, n), np.arange(len(samples)), samples)
    return np.asarray(samples, dtype=np.int16).tobytes()
