"""The question in flight survives an STT failover, and a recovered STT takes over again.

LiveKit's ``stt.FallbackAdapter`` moves to the next STT when one fails, but the next one hears only
from the moment of the switch: what the caller was saying is lost (a hung handshake loses its first
3 s, a silent socket 2 s of speech), and nobody replays it (LiveKit's adapters, Pipecat). Its stream
also stays on the fallback for the rest of the call: its one recovery probe marks the failed STT
available again, and nothing switches back. :class:`ReplayingFallbackAdapter` is LiveKit's adapter
with its own stream, which

- keeps the audio of the utterance in flight (:class:`UtteranceAudio`: from its first loud frame,
  with a short pre-roll, minus what the serving STT has finalised) and feeds it to the next STT
  first, whatever made the previous one fail (refused, hung handshake, silent socket, dropped socket);
- probes each failed STT again at the start of every utterance (with that utterance's audio, so a
  probe that answers proves it hears), and once one answers, goes back to it between utterances;
- hears each utterance alongside on the next STT until the serving one says anything about it
  (:class:`Alongside`): a provider whose handshake hangs or whose socket is silent has said nothing
  by the time the next STT has the whole utterance transcribed, and that transcript is used at once
  instead of waiting for the provider's timeout and then transcribing the replay. One final
  transcript per utterance: the serving STT's events are dropped from the moment the other's is used,
  and the other is closed as soon as the serving one says anything.

>>> stt = ReplayingFallbackAdapter([WatchedSTT(deepgram.STT()), LocalSTT()], vad=vad)  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from livekit import rtc
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectionError, APIConnectOptions, stt
from livekit.agents.stt.fallback_adapter import AvailabilityChangedEvent
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import aio

from .watchdog import is_loud

logger = logging.getLogger(__name__)

PRE_ROLL = 0.4  # seconds kept before an utterance's first loud frame (a soft first syllable)
LIMIT = 30.0  # seconds of one utterance kept at most (a caller talking on and on, or steady noise)
# LiveKit's adapters do not retry inside a provider: they move on (and so does this one)
FALLBACK_CONN_OPTIONS = APIConnectOptions(max_retry=0, timeout=DEFAULT_API_CONNECT_OPTIONS.timeout)


class UtteranceAudio:
    """The audio of the utterance in flight: from ``pre_roll`` s before its first loud frame, at most
    ``limit`` s, less what an STT has finalised. Positions are seconds of audio pushed so far.

    >>> silence = rtc.AudioFrame(bytes(640), 16000, 1, 320)             # 20 ms
    >>> loud = rtc.AudioFrame(b"\\x00\\x10" * 320, 16000, 1, 320)
    >>> audio = UtteranceAudio(pre_roll=0.04)
    >>> [audio.push(silence) for _ in range(5)] + [audio.push(loud), audio.push(loud)]
    [False, False, False, False, False, True, False]
    >>> round(audio.seconds, 2), audio.speaking                         # 2 frames of pre-roll, 2 loud
    (0.08, True)
    >>> audio.heard_until(None); audio.seconds, audio.speaking          # an STT finalised all of it
    (0.0, False)
    """

    def __init__(self, *, pre_roll: float = PRE_ROLL, limit: float = LIMIT) -> None:
        self.pre_roll, self.limit = pre_roll, limit
        self.position = 0.0
        self._frames: deque[tuple[float, rtc.AudioFrame, bool]] = deque()  # (start position, frame, loud)
        self._loud = 0  # loud frames held

    @property
    def speaking(self) -> bool:
        """Whether it holds speech no STT has finalised."""
        return self._loud > 0

    @property
    def start(self) -> float:
        """The position of the first frame held."""
        return self._frames[0][0] if self._frames else self.position

    @property
    def seconds(self) -> float:
        return self.position - self.start

    def frames(self) -> list[rtc.AudioFrame]:
        return [frame for _, frame, _ in self._frames]

    def push(self, frame: rtc.AudioFrame) -> bool:
        """Keep ``frame``; whether it starts an utterance (the first loud frame held)."""
        loud = is_loud(frame)
        started = loud and not self._loud
        self._frames.append((self.position, frame, loud))
        self.position += frame.duration
        self._loud += loud
        keep = self.limit if self._loud else self.pre_roll
        while self._frames and self.position - self._frames[0][0] > keep + 1e-9:
            self._loud -= self._frames.popleft()[2]
        return started

    def heard_until(self, position: float | None) -> None:
        """Forget the audio before ``position`` (None: all of it): an STT has finalised it."""
        end = self.position if position is None else position
        while self._frames and self._frames[0][0] + self._frames[0][1].duration <= end + 1e-9:
            self._loud -= self._frames.popleft()[2]


@dataclasses.dataclass
class Alongside:
    """STT ``index`` hearing the utterance in flight beside the serving one, ``base`` the position of
    the first frame it heard; ``held`` its events (None: the stream ended), forwarded only if it takes
    over. Its one reader is ``task`` for its whole life: cancelling a reader mid-read would end the
    stream's event iterator (LiveKit's tee), so an adopted stream is read through ``held``."""

    index: int
    stream: stt.RecognizeStream
    base: float
    held: asyncio.Queue[stt.SpeechEvent | BaseException | None] = dataclasses.field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None

    async def events(self) -> AsyncIterator[stt.SpeechEvent]:
        while (ev := await self.held.get()) is not None:
            if isinstance(ev, BaseException):
                raise ev
            yield ev


class Overtaken(APIConnectionError):
    """The STT heard alongside transcribed an utterance the serving one said nothing about."""


class ReplayingFallbackAdapter(stt.FallbackAdapter):
    """LiveKit's ``stt.FallbackAdapter`` (same arguments) whose stream replays the utterance in flight
    to the next STT on a failover and returns to a failed STT once it answers again."""

    # times the STT heard alongside took over, having heard the utterance in flight (the serving one said
    # nothing of it by the time it was transcribed, or failed first)
    adopted = 0

    def stream(self, *, language: NotGivenOr[str] = NOT_GIVEN,
               conn_options: APIConnectOptions = FALLBACK_CONN_OPTIONS) -> stt.RecognizeStream:
        return ReplayingStream(self, language=language, conn_options=conn_options)


class ReplayingStream(stt.RecognizeStream):
    """One call's recognition across the adapter's STTs (see the module docstring)."""

    def __init__(self, adapter: ReplayingFallbackAdapter, *, language: NotGivenOr[str],
                 conn_options: APIConnectOptions) -> None:
        super().__init__(stt=adapter, conn_options=conn_options, sample_rate=NOT_GIVEN)
        self._adapter, self._language = adapter, language
        self._audio = UtteranceAudio()  # kept across LiveKit's retries of the whole chain
        self._main: stt.RecognizeStream | None = None
        self._serving = 0  # index of the STT serving
        self._probes: dict[int, stt.RecognizeStream] = {}
        self._back = asyncio.Event()  # a better STT answers again and no speech is in flight
        self._ended_at: float | None = None  # position of the serving STT's last end of speech
        self._input_done = False
        self._alongside: Alongside | None = None
        self._answered = False  # the serving STT said something since the utterance in flight started
        self._overtaken = asyncio.Event()  # the STT alongside transcribed what the serving one did not
        self._closing: set[asyncio.Task[None]] = set()  # streams alongside being closed

    async def _metrics_monitor_task(self, event_aiter: AsyncIterable[stt.SpeechEvent]) -> None:
        async for _ in event_aiter:  # each STT reports its own metrics (as LiveKit's adapter does)
            pass

    async def _run(self) -> None:
        pump = asyncio.create_task(self._pump())
        try:
            await self._serve_chain()
        finally:
            tasks = [s.recovering_stream_task for i, s in enumerate(self._adapter._status) if i in self._probes]
            await aio.cancel_and_wait(pump, *[t for t in tasks if t is not None])
            await self._drop_alongside()
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def _serve_chain(self) -> None:
        engines, status = self._adapter._stt_instances, self._adapter._status
        started, all_failed = time.time(), not any(s.available for s in status)
        i = 0
        while i < len(engines):
            if not (status[i].available or all_failed):
                i += 1
                continue
            try:
                if not await self._serve(i):
                    return  # the input ended: the call is over
            except Exception as exc:  # any failure moves to the next STT, as in LiveKit
                logger.warning("%s failed, switching to the next STT with %.1f s of the utterance in flight: %s",
                               engines[i].label, self._audio.seconds if self._audio.speaking else 0.0, exc)
                if status[i].available:
                    status[i].available = False
                    self._adapter.emit("stt_availability_changed", AvailabilityChangedEvent(stt=engines[i],
                                                                                            available=False))
                i += 1
                continue
            i = next((k for k, s in enumerate(status) if s.available), 0)  # back to the STT that answers again
            logger.info("%s answers again: it serves the call from now on", engines[i].label)
        raise APIConnectionError(f"all STTs failed ({[e.label for e in engines]}) after "
                                 f"{time.time() - started:.1f} seconds")

    async def _serve(self, i: int) -> bool:
        """Serve the call with STT ``i`` until the input ends (False) or a better one is back (True)."""
        engine, adapter = self._adapter._stt_instances[i], self._adapter
        adopted = await self._adopt_alongside(i)
        if adopted is not None:  # it has heard the utterance in flight already
            stream, base, events = adopted.stream, adopted.base, adopted.events()
        else:
            stream = engine.stream(language=self._language, conn_options=dataclasses.replace(
                self._conn_options, max_retry=adapter._max_retry_per_stt, timeout=adapter._attempt_timeout,
                retry_interval=adapter._retry_interval))
            stream.start_time_offset = self.start_time_offset + (time.time() - self._start_time)
            base = self._audio.start  # the position of the first frame this stream hears
            self._feed(stream)
            events = aiter(stream)
        self._serving, self._ended_at, self._answered = i, None, adopted is not None
        self._back.clear()
        self._overtaken.clear()
        self._main = stream
        async with stream:
            relay = asyncio.create_task(self._relay(engine, stream, base, events))
            back = asyncio.create_task(self._back.wait())
            overtaken = asyncio.create_task(self._overtaken.wait())
            try:
                await asyncio.wait([relay, back, overtaken], return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._main = None
                await aio.cancel_and_wait(back, overtaken)
                if not relay.done():
                    await aio.cancel_and_wait(relay)
        if adopted is not None and adopted.task is not None:
            await aio.cancel_and_wait(adopted.task)  # its stream is closed: nothing more to read
        if self._overtaken.is_set():  # whatever the serving stream did meanwhile: it is given up
            if relay.done() and not relay.cancelled():
                relay.exception()
            raise Overtaken(f"{engine.label} said nothing of an utterance the next STT transcribed", retryable=False)
        if relay.done() and not relay.cancelled():
            relay.result()  # the STT's failure, if it ended on one
            return False
        return True

    async def _adopt_alongside(self, i: int) -> Alongside | None:
        """The STT heard alongside, if it is STT ``i`` (it then serves, its events so far first); any other
        one is closed."""
        alongside, self._alongside = self._alongside, None
        if alongside is None:
            return None
        if alongside.index == i:
            self._adapter.adopted += 1
            return alongside
        await aio.cancel_and_wait(*([alongside.task] if alongside.task is not None else []))
        await alongside.stream.aclose()
        return None

    async def _drop_alongside(self) -> None:
        alongside, self._alongside = self._alongside, None
        if alongside is not None:
            await aio.cancel_and_wait(*([alongside.task] if alongside.task is not None else []))
            await alongside.stream.aclose()

    def _hear_alongside(self) -> None:
        """At an utterance's start: the next STT hears it too, until the serving one says anything."""
        self._answered = False
        k = self._serving + 1
        if self._alongside is not None or self._main is None or k >= len(self._adapter._stt_instances) \
                or not self._adapter._status[k].available:
            return
        stream = self._adapter._stt_instances[k].stream(language=self._language, conn_options=dataclasses.replace(
            self._conn_options, max_retry=0, timeout=self._adapter._attempt_timeout))
        stream.start_time_offset = self.start_time_offset + (time.time() - self._start_time)
        alongside = Alongside(k, stream, self._audio.start)
        self._feed(stream)
        alongside.task = asyncio.create_task(self._listen_alongside(alongside), name="ReplayingStream.alongside")
        self._alongside = alongside

    async def _listen_alongside(self, alongside: Alongside) -> None:
        try:
            async for ev in alongside.stream:
                alongside.held.put_nowait(ev)
                if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT and ev.alternatives and ev.alternatives[0].text \
                        and not self._answered and self._alongside is alongside and self._main is not None:
                    engines = self._adapter._stt_instances
                    logger.warning("%s said nothing of an utterance %s transcribed: %s takes over",
                                   engines[self._serving].label, engines[alongside.index].label,
                                   engines[alongside.index].label)
                    self._main = None  # from now on the serving STT's events are dropped: one final per utterance
                    self._overtaken.set()
        except Exception as exc:  # its failure is the adopter's to handle, as a serving stream's would be
            alongside.held.put_nowait(exc)
        finally:
            alongside.held.put_nowait(None)

    def _answered_now(self) -> None:
        """The serving STT said something of the utterance: the one alongside is not needed."""
        self._answered = True
        alongside = self._alongside
        if alongside is not None and not self._overtaken.is_set():
            self._alongside = None
            if alongside.task is not None:
                alongside.task.cancel()
            closing = asyncio.create_task(alongside.stream.aclose())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    def _feed(self, stream: stt.RecognizeStream) -> None:
        """The utterance in flight, then (through the pump) what follows it."""
        for frame in self._audio.frames():
            stream.push_frame(frame)
        if self._input_done:
            stream.end_input()

    async def _relay(self, engine: stt.STT[Any], stream: stt.RecognizeStream, base: float,
                     events: AsyncIterator[stt.SpeechEvent]) -> None:
        async for ev in events:
            if self._main is not stream:
                return  # overtaken by the STT alongside: its transcript is the utterance's one
            self._adapter._active_instance = engine
            if ev.type != stt.SpeechEventType.RECOGNITION_USAGE:
                self._answered_now()
            if ev.type == stt.SpeechEventType.END_OF_SPEECH:
                self._ended_at = self._audio.position
            elif ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
                # a streaming STT says up to where it heard; a VAD-cut one heard up to its end of speech
                end = ev.alternatives[0].end_time if ev.alternatives else 0.0
                self._audio.heard_until(base + end - stream.start_time_offset if end > 0 else self._ended_at)
                self._maybe_back()
            self._event_ch.send_nowait(ev)

    def _maybe_back(self) -> None:
        better = any(s.available for s in self._adapter._status[:self._serving])
        if better and not self._audio.speaking:
            self._back.set()

    async def _pump(self) -> None:
        async for data in self._input_ch:
            if isinstance(data, rtc.AudioFrame) and self._audio.push(data):
                self._probe()
                self._hear_alongside()
            alongside = self._alongside.stream if self._alongside is not None else None
            for stream in [self._main, alongside, *self._probes.values()]:
                if stream is None:
                    continue
                with contextlib.suppress(Exception):  # a stream that failed: its STT is being replaced
                    if isinstance(data, rtc.AudioFrame):
                        stream.push_frame(data)
                    else:
                        stream.flush()
        self._input_done = True
        for stream in [self._main, self._alongside.stream if self._alongside else None, *self._probes.values()]:
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.end_input()

    def _probe(self) -> None:
        """At an utterance's start: ask each failed STT better than the serving one to hear it."""
        adapter = self._adapter
        for i in range(self._serving):
            status = adapter._status[i]
            if status.available or i in self._probes:
                continue
            stream = adapter._stt_instances[i].stream(language=self._language, conn_options=dataclasses.replace(
                self._conn_options, max_retry=0, timeout=adapter._attempt_timeout))
            self._feed(stream)
            self._probes[i] = stream
            status.recovering_stream_task = asyncio.create_task(self._run_probe(i, stream))

    async def _run_probe(self, i: int, stream: stt.RecognizeStream) -> None:
        engine, status = self._adapter._stt_instances[i], self._adapter._status[i]
        try:
            async with stream:
                async for ev in stream:
                    if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT and ev.alternatives and ev.alternatives[0].text:
                        status.available = True
                        logger.info("%s recovered", engine.label)
                        self._adapter.emit("stt_availability_changed",
                                           AvailabilityChangedEvent(stt=engine, available=True))
                        self._maybe_back()
                        return
        except Exception as exc:  # still failing: the next utterance probes again
            logger.info("%s still failing: %s", engine.label, exc)
        finally:
            self._probes.pop(i, None)
