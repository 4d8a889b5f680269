"""A TTS chain that never drops the rest of an answer: when a voice fails mid-answer, the next one
speaks the rest, from the first sentence whose audio was not all forwarded to the caller.

LiveKit's ``tts.FallbackAdapter`` (1.8.9) gives up on a segment once the failing provider produced
any audio ("ignoring the current segment for the tts fallback"): the rest of that answer is never
spoken. No library replays it, so this chain does, sentence by sentence:

- the answer's text is cut into sentences here (LiveKit's blingfire tokenizer), and each sentence is
  synthesized by one provider on a stream of its own, so the audio of each sentence is known exactly
  (whatever the provider, with or without word timings);
- a sentence whose audio was only partly forwarded when its provider failed is spoken by the next
  provider from its first word not heard whole, when the provider gave word timings (Cartesia does:
  :mod:`.played_words`), else from its start: what the caller hears twice is at most the start of that
  one word (of that one sentence without timings);
- each provider has a first-audio deadline learnt from its own recent sentences
  (:mod:`.first_audio`): a provider that is silent past it is replaced, so a silent Cartesia costs
  about its p95 plus a margin instead of a fixed 3 s; before anything is learnt (the first sentences
  of a call), the next voice starts on the sentence alongside after a short cold bound, and whichever
  has audio first is heard (:mod:`.hedge`): never both, never a word twice;
- a failed provider is skipped and probed in the background (one probe at a time, with the sentence
  it failed on), and takes over again, from the next answer on, once a probe is spoken;
- an answer with no text (an LLM step that only calls a tool) touches no provider: it is not a
  failure (the JS SDK's fallback took it for one and stormed, livekit/agents-js#1454);
- :meth:`FailoverTTS.acknowledge` puts a short phrase ("One moment.") before a still-silent answer,
  in a voice that is working (see :mod:`.dead_air`).

>>> voices = FailoverTTS([cartesia.TTS(api_key=key), LocalTTS()])       # doctest: +SKIP
>>> voices.on("failover", lambda ev: print(ev.failed, ev.reason, ev.sentence))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from livekit import rtc
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectionError, APIConnectOptions, tokenize, tts, utils
from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT

from .first_audio import COLD, FirstAudioDeadline
from .hedge import Speaker, hedge
from .played_words import PlayedWords, rest_of

logger = logging.getLogger("openrouter_voice.speech")

Emit = Callable[[rtc.AudioFrame], Awaitable[None]]


@dataclass(frozen=True)
class TTSFailover:
    """A provider failed on sentence ``sentence`` (0-based) of an answer after ``forwarded`` seconds of
    its audio of that sentence; the next provider speaks from that sentence's word ``word`` (0-based: its
    start, unless the provider's word timings showed words before it heard whole)."""

    failed: str
    reason: str
    sentence: int
    forwarded: float
    word: int = 0


@dataclass(frozen=True)
class Acknowledged:
    """The acknowledgement was spoken before a silent answer, by ``voice``."""

    voice: str


class VoiceFailed(Exception):
    """One provider could not speak one sentence; ``forwarded`` seconds of it had been forwarded, in
    which the words ``heard`` were heard whole (as the provider timed them; none without timings)."""

    def __init__(self, reason: str, forwarded: float, heard: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason, self.forwarded, self.heard = reason, forwarded, heard or []


@dataclass
class Voice:
    """One provider of the chain and what is known of it."""

    tts: tts.TTS[Any]
    deadline: FirstAudioDeadline
    available: bool = True
    probe: asyncio.Task[None] | None = None
    last_first_audio: float | None = None  # seconds its latest sentence took to its first audio

    @property
    def label(self) -> str:
        return self.tts.label

    async def speak(self, text: str, *, rate: int, conn_options: APIConnectOptions, emit: Emit, last: bool = False,
                    on_first_audio: Callable[[], None] = lambda: None) -> None:
        """``text`` as audio at ``rate``, each frame through ``emit``; :class:`VoiceFailed` when the
        provider errs, or has no audio by its first-audio deadline (none for the ``last`` voice: cutting
        it off could only end in silence)."""
        options = APIConnectOptions(max_retry=0, timeout=conn_options.timeout,
                                    retry_interval=conn_options.retry_interval)
        engine = self.tts
        stream: tts.SynthesizeStream | tts.ChunkedStream
        if engine.capabilities.streaming:
            stream = engine.stream(conn_options=options)
            stream.push_text(text)
            stream.end_input()
        else:
            stream = engine.synthesize(text, conn_options=options)
        resampler = (rtc.AudioResampler(input_rate=engine.sample_rate, output_rate=rate)
                     if engine.sample_rate != rate else None)
        forwarded, played = 0.0, PlayedWords()

        async def out(frame: rtc.AudioFrame) -> None:
            nonlocal forwarded
            if timed := frame.userdata.get(USERDATA_TIMED_TRANSCRIPT):  # the provider's word timings
                played.timings((str(w), w.start_time, w.end_time) for w in timed
                               if utils.is_given(w.start_time) and utils.is_given(w.end_time))
            for part in resampler.push(frame) if resampler is not None else [frame]:
                await emit(part)
                forwarded += part.duration
                played.forwarded(forwarded)

        deadline, started = None if last else self.deadline.seconds(), time.perf_counter()
        try:
            async with stream:
                events = aiter(stream)
                try:
                    first = await asyncio.wait_for(anext(events), deadline)
                except TimeoutError:
                    raise VoiceFailed(f"no audio within {deadline or 0:.2f} s", 0.0) from None
                except StopAsyncIteration:
                    raise VoiceFailed("no audio for the text", 0.0) from None
                self.last_first_audio = time.perf_counter() - started
                self.deadline.add(self.last_first_audio)
                on_first_audio()
                await out(first.frame)
                async for event in events:
                    await out(event.frame)
                for part in resampler.flush() if resampler is not None else []:
                    await emit(part)
        except VoiceFailed as failure:
            failure.forwarded, failure.heard = forwarded, played.words()
            raise
        except Exception as exc:  # any provider error: the next voice speaks
            raise VoiceFailed(f"{type(exc).__name__}: {exc}", forwarded, played.words()) from exc


class FailoverTTS(tts.TTS[Literal["failover", "acknowledged"]]):
    """``voices`` in order (a provider first, the local voice last), failing over sentence by sentence.

    ``floor``/``ceiling``/``margin`` bound each provider's learnt first-audio deadline.
    """

    def __init__(self, voices: list[tts.TTS[Any]], *, floor: float = 0.4, ceiling: float = 3.0,
                 margin: float = 0.25, cold: float = COLD) -> None:
        if not voices:
            raise ValueError("FailoverTTS needs at least one voice")
        if len({v.num_channels for v in voices}) != 1:
            raise ValueError("every voice of a FailoverTTS must have the same number of channels")
        super().__init__(capabilities=tts.TTSCapabilities(streaming=True),
                         sample_rate=max(v.sample_rate for v in voices), num_channels=voices[0].num_channels)
        self.voices = [Voice(v, FirstAudioDeadline(floor=floor, ceiling=ceiling, margin=margin,
                                                   cold=min(cold, ceiling))) for v in voices]
        self._open: list[_FailoverStream] = []
        self._closed = False

    @property
    def model(self) -> str:
        return self._first_available().tts.model

    @property
    def provider(self) -> str:
        return self._first_available().tts.provider

    def _first_available(self) -> Voice:
        return next((v for v in self.voices if v.available), self.voices[0])

    def stream(self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> tts.SynthesizeStream:
        return _FailoverStream(owner=self, conn_options=conn_options)

    def synthesize(self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
                   ) -> tts.ChunkedStream:
        return self._synthesize_with_stream(text, conn_options=conn_options)

    def prewarm(self) -> None:
        """Prewarm every voice, not only the first (LiveKit's adapter prewarms the first one only, so
        the first fallback would load the local voice on the caller's time)."""
        for voice in self.voices:
            voice.tts.prewarm()

    def acknowledge(self, text: str) -> bool:
        """Speak ``text`` now at the head of an answer that has produced no audio yet; False if there is
        no such answer open (the caller then says it some other way)."""
        for stream in self._open:
            if stream.silent():
                stream.acknowledge(text)
                return True
        return False

    def _failed(self, voice: Voice, failure: VoiceFailed, *, sentence: int, text: str, word: int = 0) -> None:
        logger.warning("%s failed on sentence %d (%s); the next voice speaks from its word %d",
                       voice.label, sentence + 1, failure.reason, word + 1)
        voice.available = False
        self.emit("failover", TTSFailover(voice.label, failure.reason, sentence, failure.forwarded, word))
        self._probe(voice, text)

    def _probe(self, voice: Voice, text: str) -> None:
        """Try ``voice`` again in the background (one probe at a time); it is used again once it speaks."""
        if self._closed or (voice.probe is not None and not voice.probe.done()):
            return

        async def discard(frame: rtc.AudioFrame) -> None:
            return None

        async def probe() -> None:
            try:
                await voice.speak(text, rate=self.sample_rate, conn_options=DEFAULT_API_CONNECT_OPTIONS, emit=discard)
            except VoiceFailed:
                return
            voice.available = True
            logger.info("%s answers again", voice.label)

        voice.probe = asyncio.create_task(probe(), name=f"FailoverTTS.probe({voice.label})")

    async def aclose(self) -> None:
        self._closed = True
        await utils.aio.cancel_and_wait(*[v.probe for v in self.voices if v.probe is not None])


class _FailoverStream(tts.SynthesizeStream):
    def __init__(self, *, owner: FailoverTTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=owner, conn_options=conn_options)
        self._owner = owner
        self._current = 0  # the voice speaking this answer: never moves back up within it
        self._awaiting: int | None = None  # the voice whose first audio of a sentence is awaited
        self._forwarded = 0.0  # seconds of audio forwarded to the caller
        self._out = asyncio.Lock()  # the acknowledgement's audio goes out whole, before the answer's
        self._emitter: tts.AudioEmitter | None = None
        self._ack: asyncio.Task[None] | None = None

    def silent(self) -> bool:
        return self._emitter is not None and self._forwarded == 0.0 and self._ack is None

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(request_id=utils.shortuuid(), sample_rate=self._owner.sample_rate,
                                  num_channels=self._owner.num_channels, mime_type="audio/pcm", stream=True)
        output_emitter.start_segment(segment_id=utils.shortuuid())
        self._emitter = output_emitter
        sentences = tokenize.blingfire.SentenceTokenizer(retain_format=True).stream()

        async def forward_input() -> None:
            async for data in self._input_ch:
                if isinstance(data, self._FlushSentinel):
                    sentences.flush()
                else:
                    sentences.push_text(data)
            sentences.end_input()

        async def speak_all() -> None:
            index = 0
            async for sentence in sentences:
                if text := sentence.token.strip():
                    self._mark_started()
                    await self._say(index, text)
                    index += 1

        self._owner._open.append(self)
        tasks = [asyncio.create_task(forward_input()), asyncio.create_task(speak_all())]
        try:
            await asyncio.gather(*tasks)
            if self._ack is not None:
                await self._ack  # an acknowledgement under way ends before the answer does
        finally:
            self._owner._open.remove(self)
            await sentences.aclose()
            await utils.aio.cancel_and_wait(*tasks, *([self._ack] if self._ack is not None else []))

    async def _emit(self, frame: rtc.AudioFrame) -> None:
        async with self._out:
            self._push(frame)

    def _push(self, frame: rtc.AudioFrame) -> None:
        assert self._emitter is not None
        self._emitter.push_frame(frame)
        self._forwarded += frame.duration

    async def _say(self, index: int, text: str) -> None:
        """Sentence ``index`` spoken by this answer's voice, hedged on the next one (:mod:`.hedge`), or by
        the next ones from its first word not heard whole (its start without word timings)."""
        voices, owner = self._owner.voices, self._owner
        every_voice_down = not any(v.available for v in voices)
        i, rest, word = self._current, text, 0
        while i < len(voices):
            voice = voices[i]
            if not (voice.available or every_voice_down):
                owner._probe(voice, text)
                i += 1
                continue
            backup = next((k for k in range(i + 1, len(voices)) if voices[k].available), None)
            self._current, self._awaiting = i, i
            try:
                result = await hedge(self._speaker(i, rest), None if backup is None else self._speaker(backup, rest),
                                     after=voice.deadline.hedge_after())
            finally:
                self._awaiting = None
            for k, error in zip((i, backup), result.errors, strict=True):
                if isinstance(error, VoiceFailed) and k is not None:
                    resumed = rest_of(rest, error.heard)  # only the voice heard has words heard
                    word, rest = word + len(rest.split()) - len(resumed.split()), resumed
                    owner._failed(voices[k], error, sentence=index, text=text, word=word)
                elif error is not None:
                    raise error
            if result.winner == 1 and backup is not None:  # the backup spoke first: this voice is too slow
                if result.errors[0] is None:
                    slow = VoiceFailed(f"no audio within {voice.deadline.hedge_after():.2f} s, "
                                       f"before {voices[backup].label}'s", 0.0)
                    owner._failed(voice, slow, sentence=index, text=text, word=word)
                i = self._current = backup
            if (result.winner is not None and result.errors[result.winner] is None) or not rest:
                return  # spoken, or every word was heard before the voice failed
            i = (backup if result.winner == 0 and backup is not None else i + 1)
        raise APIConnectionError(f"every voice failed on sentence {index + 1} "
                                 f"({', '.join(v.label for v in voices)})", retryable=False)

    def _speaker(self, i: int, text: str) -> Speaker:
        voices = self._owner.voices

        async def speak(first_audio: Callable[[], None]) -> None:
            def heard() -> None:
                first_audio()
                self._current = i
                self._heard()
            await voices[i].speak(text, rate=self._owner.sample_rate, conn_options=self._conn_options, emit=self._emit,
                                  last=i == len(voices) - 1, on_first_audio=heard)
        return speak

    def _heard(self) -> None:
        self._awaiting = None

    def acknowledge(self, text: str) -> None:
        self._ack = asyncio.create_task(self._acknowledge(text), name="FailoverTTS.acknowledge")

    async def _acknowledge(self, text: str) -> None:
        voices = self._owner.voices
        # a voice that works: not the one this answer is waiting on, an available one first
        start = self._current + 1 if self._awaiting is not None else self._current
        order = [v for v in voices[start:] if v.available] + [v for v in voices[start:] if not v.available]

        async def push(frame: rtc.AudioFrame) -> None:
            self._push(frame)

        async with self._out:
            for voice in order:
                if self._forwarded:
                    return  # the answer spoke first: no acknowledgement needed
                try:
                    await voice.speak(text, rate=self._owner.sample_rate, conn_options=self._conn_options, emit=push,
                                      last=voice is voices[-1])
                except VoiceFailed:
                    continue
                self._owner.emit("acknowledged", Acknowledged(voice.label))
                return
