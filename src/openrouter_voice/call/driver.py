"""A call: an ``AgentSession`` wired to a :class:`~.audio.CallerInput` and a :class:`~.audio.Speaker`,
turn by turn, with what LiveKit measured for each turn. A turn never waits for an answer that cannot
come: it ends when every speech recogniser failed on it (:attr:`Turn.failure`), and :meth:`VoiceCall.say`
raises :class:`CallClosed` when the session has closed (LiveKit closes it after a stage fails on
every engine 4 times in a row)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from livekit.agents import Agent, AgentSession
from livekit.agents.metrics import EOUMetrics, LLMMetrics, STTMetrics, TTSMetrics
from livekit.agents.utils import http_context

from .audio import Audio, CallerInput, Speaker


@dataclass
class Turn:
    """One voice turn: what the agent heard and said, its audio and its timing (monotonic seconds)."""

    heard: str
    answer: str
    audio: Audio
    speech_end: float
    first_audio: float | None
    interrupted: bool
    metrics: list[Any] = field(default_factory=list)
    failure: str | None = None  # why nothing could be answered (every speech recogniser failed), if so

    @property
    def ttfa(self) -> float | None:
        """Seconds from the end of the caller's speech to the agent's first sound (None: silent turn)."""
        return None if self.first_audio is None else self.first_audio - self.speech_end

    def stages(self) -> dict[str, float]:
        """LiveKit's own per-stage figures for the turn (seconds): end of utterance, STT, LLM TTFT, TTS TTFB."""
        out: dict[str, float] = {}
        for m in self.metrics:
            if isinstance(m, EOUMetrics):
                out.setdefault("eou_delay", m.end_of_utterance_delay)
                out.setdefault("stt_final", m.transcription_delay)
            elif isinstance(m, LLMMetrics) and m.ttft >= 0:
                out.setdefault("llm_ttft", m.ttft)
            elif isinstance(m, TTSMetrics) and m.ttfb >= 0:
                out.setdefault("tts_ttfb", m.ttfb)
            elif isinstance(m, STTMetrics):
                out["stt_audio"] = out.get("stt_audio", 0.0) + m.audio_duration
        return out


class CallClosed(RuntimeError):
    """The session closed mid-call, so no turn can be answered any more; the message says why."""


STAGES = {"stt_error": "speech recognition", "tts_error": "speech synthesis", "llm_error": "the language model"}
_UNANSWERED_SETTLE = 0.25  # seconds: metrics of a turn with no answer (see VoiceCall.say)


def failure_text(error: Any) -> str:
    """An ``STTError`` / ``TTSError`` / ``LLMError`` as one line for the caller.

    >>> from livekit.agents import APIConnectionError, stt
    >>> failure_text(stt.STTError(timestamp=0, label="FallbackAdapter", recoverable=False,
    ...                           error=APIConnectionError("all STTs failed (deepgram, local)")))
    'speech recognition failed on every engine: all STTs failed (deepgram, local)'
    """
    stage = STAGES.get(getattr(error, "type", ""), "a speech stage")
    cause = getattr(error, "error", error)
    return f"{stage} failed on every engine: {getattr(cause, 'message', None) or cause}"


class VoiceCall:
    """Drive ``session`` (built with STT, TTS, VAD and LLM) by voice, with ``agent`` answering."""

    def __init__(self, session: AgentSession[Any], agent: Agent) -> None:
        self.session, self.agent = session, agent
        self.mic, self.speaker = CallerInput(), Speaker()
        self.heard: list[str] = []
        self.answers: list[tuple[str, bool]] = []
        self.metrics: list[Any] = []
        self.closed: list[Any] = []
        self.stt_failures: list[tuple[float, str]] = []  # (monotonic time, what failed) per unrecoverable STT error
        self._answered = asyncio.Event()  # an answer, a failure or the session's close: say() looks again
        self._measured = asyncio.Event()
        self._closing = asyncio.Event()
        self._http: Any = None
        self._http_session: Any = None
        session.on("user_input_transcribed", self._on_transcript)
        session.on("conversation_item_added", self._on_item)
        session.on("metrics_collected", self._on_metrics)
        session.on("close", self._on_close)
        session.on("error", self._on_error)

    def _on_close(self, ev: Any) -> None:
        self.closed.append(ev)
        self._closing.set()
        self._answered.set()

    def _on_error(self, ev: Any) -> None:
        error = ev.error
        if getattr(error, "type", "") == "stt_error" and not getattr(error, "recoverable", True):
            self.stt_failures.append((time.monotonic(), failure_text(error)))
            self._answered.set()

    def close_reason(self) -> str | None:
        """Why the session closed (None while it is open)."""
        if not self.closed:
            return None
        ev = self.closed[0]
        reason = getattr(getattr(ev, "reason", None), "value", None) or str(getattr(ev, "reason", "closed"))
        return failure_text(ev.error) if getattr(ev, "error", None) is not None else f"the session closed ({reason})"

    def _on_transcript(self, ev: Any) -> None:
        if ev.is_final and ev.transcript.strip():
            self.heard.append(ev.transcript.strip())

    def _on_metrics(self, ev: Any) -> None:
        self.metrics.append(ev.metrics)
        self._measured.set()

    def _on_item(self, ev: Any) -> None:
        item = ev.item
        if getattr(item, "role", None) == "assistant":
            self.answers.append((item.text_content or "", bool(getattr(item, "interrupted", False))))
            self._answered.set()

    async def __aenter__(self) -> Self:
        # the provider plugins take their HTTP session from LiveKit's job context; outside a job, open one
        self._http = http_context.open()
        self._http_session = await self._http.__aenter__()
        self.session.input.audio = self.mic
        self.session.output.audio = self.speaker
        await self.session.start(self.agent)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        # nothing is left to transcribe once the last turn is answered: LiveKit's 2 s wait for a last
        # transcript at close would only delay the end of every call
        self.session._opts.session_close_transcript_timeout = 0.2
        try:
            await self.session.aclose()
        finally:
            await self._http.__aexit__(exc_type, exc, tb)
            # a test fixture may close the call in another context than it opened it, where LiveKit's
            # context variable is unset and its own exit closes nothing
            await self._http_session.close()

    async def _wait_for_metrics(self, since: int, limit: float) -> None:
        deadline = time.monotonic() + limit
        while not ({LLMMetrics, TTSMetrics} <= {type(m) for m in self.metrics[since:]}):
            self._measured.clear()
            try:
                await asyncio.wait_for(self._measured.wait(), deadline - time.monotonic())
            except TimeoutError:
                return  # a turn without them (no answer, or cut before speech)

    async def say(self, audio: Audio, *, wait: float = 30.0, settle: float = 2.0) -> Turn:
        """Speak ``audio`` and wait for the agent's whole answer (at most ``wait`` s) and for LiveKit's
        LLM and TTS metrics of the turn (at most ``settle`` s more); the turn as heard.

        The wait ends early when every speech recogniser failed on the turn with nothing heard (the
        turn's ``failure`` says so); :class:`CallClosed` if the session closes (or had closed).
        """
        if (reason := self.close_reason()) is not None:
            raise CallClosed(reason)
        started = time.monotonic()
        heard_before, answers_before, metrics_before = len(self.heard), len(self.answers), len(self.metrics)
        self._answered.clear()
        speech = self.mic.speak(audio)
        closing: asyncio.Future[Any] = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait([speech, closing], return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
        if not speech.done():  # the session closed while the caller spoke
            speech.cancel()
            raise CallClosed(self.close_reason() or "the session closed")
        speech_end = speech.result()
        deadline = speech_end + wait
        failure: str | None = None
        while len(self.answers) == answers_before and time.monotonic() < deadline:
            if (reason := self.close_reason()) is not None:
                raise CallClosed(reason)
            failed = [what for at, what in self.stt_failures if at >= started]
            if failed and len(self.heard) == heard_before:  # the question cannot be heard any more
                failure = failed[-1]
                break
            self._answered.clear()
            try:
                await asyncio.wait_for(self._answered.wait(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
        # they may arrive just after the turn's item; a turn with no answer has had its stages' metrics
        # by now (those that ran), and waiting for the missing ones would only lengthen a failed turn
        answered = len(self.answers) > answers_before
        await self._wait_for_metrics(metrics_before, settle if answered else min(settle, _UNANSWERED_SETTLE))
        answers = self.answers[answers_before:]
        return Turn(heard=" ".join(self.heard[heard_before:]), answer=" ".join(a for a, _ in answers),
                    audio=self.speaker.audio_since(started), speech_end=speech_end,
                    first_audio=self.speaker.first_sound_after(speech_end),
                    interrupted=any(i for _, i in answers), metrics=self.metrics[metrics_before:], failure=failure)
