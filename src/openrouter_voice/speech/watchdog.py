"""A streaming STT that fails, instead of staying deaf, when its service stops answering.

A Deepgram socket that is accepted and then never answers raises nothing: the plugin waits on it
(its heartbeat notices a dead TCP peer after 30 s, a live but silent one never), and LiveKit's
``stt.FallbackAdapter`` only moves on when a stream raises. No library watches for "speech went
in, no word came out", so this wrapper does: it raises ``APIConnectionError``, and the adapter
switches to the next STT, when ``stall_after`` seconds of loud audio got no event from the service, or
when a question of at least ``min_speech`` seconds ended ``answer_within`` seconds ago without one
(a short question would otherwise never reach ``stall_after``). Each question is judged on its own:
what a click or a breath left unanswered is forgotten once it is over, so it never cuts the next
question short.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectionError, APIConnectOptions, stt
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import AudioBuffer

SPEECH_RMS = 300.0  # int16 RMS of a frame that counts as speech (a quiet room is well below)


def is_loud(frame: rtc.AudioFrame, threshold: float = SPEECH_RMS) -> bool:
    """Whether ``frame`` holds sound above ``threshold`` (RMS of 16-bit samples)."""
    samples = np.frombuffer(frame.data, dtype=np.int16).astype(np.float64)
    return bool(samples.size) and float(np.sqrt(np.mean(samples**2))) > threshold


class WatchedSTT(stt.STT[Any]):
    """``inner`` (a streaming STT), failing after ``stall_after`` s of speech without any reply, or
    ``answer_within`` s after a question of ``min_speech`` s or more that got none.

    >>> primary = WatchedSTT(deepgram.STT(api_key=key), stall_after=2.0)  # doctest: +SKIP
    """

    def __init__(self, inner: stt.STT[Any], *, stall_after: float = 2.0, answer_within: float = 1.2,
                 min_speech: float = 0.5) -> None:
        super().__init__(capabilities=inner.capabilities)
        self.inner = inner
        self.stall_after, self.answer_within, self.min_speech = stall_after, answer_within, min_speech
        self._label = inner.label
        inner.on("metrics_collected", lambda *a: self.emit("metrics_collected", *a))

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def provider(self) -> str:
        return self.inner.provider

    async def _recognize_impl(self, buffer: AudioBuffer, *, language: NotGivenOr[str] = NOT_GIVEN,
                              conn_options: APIConnectOptions) -> stt.SpeechEvent:
        return await self.inner.recognize(buffer, language=language, conn_options=conn_options)

    def stream(self, *, language: NotGivenOr[str] = NOT_GIVEN,
               conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> stt.RecognizeStream:
        return _WatchedStream(self, language=language, conn_options=conn_options)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _WatchedStream(stt.RecognizeStream):
    def __init__(self, owner: WatchedSTT, *, language: NotGivenOr[str], conn_options: APIConnectOptions) -> None:
        # the inner stream retries by itself: this one must not retry on top
        super().__init__(stt=owner, conn_options=conn_options)
        self._owner = owner
        self._language = language
        self._unanswered = 0.0  # seconds of speech sent since the service last said anything
        self._quiet = 0.0  # seconds of quiet since that speech
        self._failure = ""

    def _heard(self, frame: rtc.AudioFrame) -> bool:
        """Count ``frame``; whether the service has now failed to answer."""
        owner = self._owner
        if is_loud(frame):
            self._unanswered += frame.duration
            self._quiet = 0.0
            if self._unanswered >= owner.stall_after:
                self._failure = f"no transcript after {owner.stall_after:.1f} s of speech"
        elif self._unanswered:
            self._quiet += frame.duration
            if self._quiet >= owner.answer_within:
                if self._unanswered >= owner.min_speech:
                    self._failure = (f"no transcript {owner.answer_within:.1f} s after "
                                     f"{self._unanswered:.1f} s of speech")
                self._unanswered = self._quiet = 0.0  # the question is over: the next one starts afresh
        return bool(self._failure)

    async def _run(self) -> None:
        inner = self._owner.inner.stream(language=self._language, conn_options=self._conn_options)
        inner.start_time_offset = self.start_time_offset  # the caller reads timestamps on its own timeline
        stalled = asyncio.Event()

        async def forward() -> None:
            async for data in self._input_ch:
                if isinstance(data, rtc.AudioFrame):
                    inner.push_frame(data)
                    if self._heard(data):
                        stalled.set()
                else:
                    inner.flush()
            inner.end_input()

        async def relay() -> None:
            async for event in inner:
                if event.type != stt.SpeechEventType.RECOGNITION_USAGE:  # usage is counted locally: not a reply
                    self._unanswered = self._quiet = 0.0
                self._event_ch.send_nowait(event)

        async with inner:
            tasks = [asyncio.create_task(forward()), asyncio.create_task(relay())]
            watch = asyncio.create_task(stalled.wait())
            try:
                await asyncio.wait([tasks[1], watch], return_when=asyncio.FIRST_COMPLETED)
                if watch.done():
                    raise APIConnectionError(f"{self._owner.inner.label}: {self._failure}", retryable=False)
                tasks[1].result()  # the inner stream's own error, if it ended with one
            finally:
                for task in [*tasks, watch]:
                    task.cancel()
                for task in [*tasks, watch]:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
