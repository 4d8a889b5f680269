"""The voice turn as it ends (not at session end, when LiveKit emits its own turn histograms): time to
first audio, end-of-turn delay, whether the caller heard an answer, the apology or nothing, and each
switch of the STT or TTS chain to its next engine. Watched from the session's and the LLM's events.

>>> from opentelemetry.sdk.metrics import MeterProvider
>>> metrics = VoiceMetrics(MeterProvider().get_meter("demo"))
>>> metrics.record(VoiceTurn("answered", time_to_first_audio=0.8, end_of_turn_delay=0.3))
>>> watch_session(session, llm, [metrics.record])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.metrics import Meter

from . import names as n

TTFA_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0)
"""Finer than the GenAI buckets where voice latency lives (a p95 between 0.64 and 1.28 s means little)."""
RESULTS = ("answered", "apology", "silent")


@dataclass(frozen=True, slots=True)
class VoiceTurn:
    """One agent reply as it was added to the conversation: ``answered`` (audio went out), ``apology``
    (every model failed; the apology was spoken) or ``silent`` (no audio), and LiveKit's timings (s)."""

    result: str
    time_to_first_audio: float | None = None
    end_of_turn_delay: float | None = None


@dataclass(frozen=True, slots=True)
class SpeechFallback:
    """The STT or TTS chain (``stage``) gave up on ``engine`` (LiveKit's label, e.g. ``deepgram.STT``)."""

    stage: str
    engine: str


VoiceEvent = VoiceTurn | SpeechFallback
VoiceSink = Callable[[VoiceEvent], None]


class VoiceMetrics:
    """The voice instruments on ``meter``; :meth:`record` takes each :data:`VoiceEvent`."""

    def __init__(self, meter: Meter) -> None:
        self.ttfa = meter.create_histogram(
            n.TIME_TO_FIRST_AUDIO, unit="s", explicit_bucket_boundaries_advisory=TTFA_BUCKETS,
            description="End of the caller's speech to the agent's first audio (LiveKit's e2e_latency)")
        self.end_of_turn = meter.create_histogram(
            n.END_OF_TURN_DELAY, unit="s", explicit_bucket_boundaries_advisory=TTFA_BUCKETS,
            description="End of the caller's speech to the decision that their turn ended")
        self.turns = meter.create_counter(n.VOICE_TURNS, unit="{turn}",
                                          description="Agent replies, by what the caller heard")
        self.fallbacks = meter.create_counter(n.SPEECH_FALLBACKS, unit="{fallback}",
                                              description="STT or TTS engines given up for the next one")
        for result in RESULTS:  # from start-up, so a dashboard reads 0 rather than "no data"
            self.turns.add(0, {n.TURN_RESULT: result})

    def record(self, event: VoiceEvent) -> None:
        if isinstance(event, SpeechFallback):
            self.fallbacks.add(1, {n.STAGE: event.stage, n.MODEL: event.engine})
            return
        self.turns.add(1, {n.TURN_RESULT: event.result})
        if event.time_to_first_audio is not None:
            self.ttfa.record(event.time_to_first_audio, {n.TURN_RESULT: event.result})
        if event.end_of_turn_delay is not None:
            self.end_of_turn.record(event.end_of_turn_delay)


def _seconds(metrics: Any, key: str) -> float | None:
    value = metrics.get(key) if isinstance(metrics, dict) else None
    return float(value) if isinstance(value, int | float) and value >= 0 else None


class _SessionWatch:
    def __init__(self, sinks: Sequence[VoiceSink], llm: Any) -> None:
        self.sinks = list(sinks)
        self.llm = llm
        self.end_of_turn: float | None = None
        self.apologies = self._apologies()

    def _apologies(self) -> int:
        """How many apologies the LLM has spoken so far (its running session stats)."""
        stats = getattr(self.llm, "stats", None)
        count = getattr(stats, "apologies", 0)
        return count if isinstance(count, int) else 0

    def emit(self, event: VoiceEvent) -> None:
        for sink in self.sinks:
            sink(event)

    def on_item(self, ev: Any) -> None:
        item = getattr(ev, "item", None)
        role = getattr(item, "role", None)
        metrics = getattr(item, "metrics", None)
        if role == "user":
            self.end_of_turn = _seconds(metrics, "end_of_turn_delay")
        elif role == "assistant":
            ttfa = _seconds(metrics, "e2e_latency")
            apologies = self._apologies()
            apologised, self.apologies = apologies > self.apologies, apologies
            result = "apology" if apologised else "answered" if ttfa is not None else "silent"
            self.emit(VoiceTurn(result, ttfa, self.end_of_turn))
            self.end_of_turn = None

    def on_availability(self, stage: str) -> Callable[[Any], None]:
        def handle(ev: Any) -> None:
            if not getattr(ev, "available", True):
                engine = getattr(getattr(ev, stage, None), "label", None) or "unknown"
                self.emit(SpeechFallback(stage, str(engine)[:100]))

        return handle

    def on_failover(self, ev: Any) -> None:
        """FailoverTTS (the worker's TTS chain) gave up a voice mid-answer or before it."""
        self.emit(SpeechFallback("tts", str(getattr(ev, "failed", None) or "unknown")[:100]))


def watch_session(session: Any, llm: Any, sinks: Sequence[VoiceSink]) -> None:
    """Report each of ``session``'s voice turns to ``sinks`` as it ends, with ``llm``'s apologies
    (an :class:`~openrouter_voice.agent.OpenRouterLLM`) and the STT/TTS chains' fallbacks."""
    watch = _SessionWatch(sinks, llm)
    session.on("conversation_item_added", watch.on_item)
    for stage in ("stt", "tts"):
        engine = getattr(session, stage, None)
        if engine is not None and hasattr(engine, "on"):
            engine.on(f"{stage}_availability_changed", watch.on_availability(stage))
    tts = getattr(session, "tts", None)
    if tts is not None and hasattr(tts, "on"):
        tts.on("failover", watch.on_failover)  # speech/tts_failover.FailoverTTS's own event
