"""One benchmark turn measured end to end, with the stages LiveKit does not report.

TTFA runs from the caller's *end of speech* (the last audible input frame, not the end of the audio
buffer: the local voice leaves 100-250 ms of varying silence after its words) to the agent's first
audible frame. Two stages LiveKit's metrics miss are measured here:

- ``vad_lag``: when the agent's VAD reported the end of speech, minus the speech end and the VAD's own
  silence wait. Silero smooths over ~100 ms; anything beyond is a backlog of audio waiting for CPU
  (the first cut of this benchmark lost 300-450 ms here to PocketSphinx transcribing for the scripted
  Deepgram in the agent's own process).
- ``to_speaker``: from the text reaching the scripted Cartesia to the first audible frame played
  (the TTS's first chunk, LiveKit's forwarding and the harness's real-time playout).

And one LiveKit reports only on the assistant's message, not as a metrics event: ``llm_ttfs``
(LiveKit's ``llm_node_ttfs``), from the LLM request to the first text the TTS synthesises. In a voice
turn that is the LLM stage's real cost: a reply whose first token comes on time but whose first
sentence does not (a model that breaks or dribbles mid-sentence) keeps the caller waiting just the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from livekit import rtc

from openrouter_voice.call.audio import LOUD_RMS, CallerInput
from openrouter_voice.call.driver import VoiceCall

INTERRUPT_WAIT = 2.0  # seconds for LiveKit to process an interruption (it takes milliseconds)


class LoudInput(CallerInput):
    """The caller's microphone, noting when its last audible frame went out."""

    def __init__(self) -> None:
        super().__init__()
        self.last_loud = 0.0

    async def __anext__(self) -> rtc.AudioFrame:
        frame = await super().__anext__()
        samples = np.frombuffer(frame.data, dtype=np.int16).astype(np.float64)
        if samples.size and float(np.sqrt(np.mean(samples**2))) > LOUD_RMS:
            self.last_loud = time.monotonic()
        return frame


@dataclass
class TurnRecord:
    """What one turn measured (seconds; None when it did not happen). Plain data: it crosses processes."""

    ttfa: float | None
    stages: dict[str, float] = field(default_factory=dict)
    vad_lag: float | None = None
    to_speaker: float | None = None
    llm_requests: int = 0
    tts_requests: int = 0
    cutoff: bool = False
    heard: str = ""
    answer: str = ""


class Probe:
    """Wire the probes into ``call`` (before it starts): the microphone, the session's user state and the
    times text reached the scripted Cartesia (``tts_times``, appended to by the bench's Cartesia voice)."""

    def __init__(self, call: VoiceCall, *, vad_silence: float, tts_times: list[float], upstream: Any) -> None:
        self.call, self.vad_silence, self.tts_times, self.upstream = call, vad_silence, tts_times, upstream
        self.mic = LoudInput()
        call.mic = self.mic
        self.listening: list[float] = []
        self.agent_state = "initializing"
        self._idle = asyncio.Event()
        self.ttfs: list[tuple[float, float]] = []  # (when the assistant's message came, its llm_node_ttfs)
        call.session.on("conversation_item_added", self._on_item)
        call.session.on("user_state_changed", self._on_user)
        call.session.on("agent_state_changed", self._on_agent)

    def _on_user(self, ev: Any) -> None:
        if ev.new_state == "listening":
            self.listening.append(time.monotonic())

    def _on_item(self, ev: Any) -> None:
        metrics = getattr(ev.item, "metrics", None) or {}
        if getattr(ev.item, "role", "") == "assistant" and "llm_node_ttfs" in metrics:
            self.ttfs.append((time.monotonic(), metrics["llm_node_ttfs"]))

    def _on_agent(self, ev: Any) -> None:
        self.agent_state = ev.new_state
        if ev.new_state == "listening":
            self._idle.set()
        else:
            self._idle.clear()

    async def turn(self, audio: Any, *, wait: float) -> TurnRecord:
        """Say ``audio``, wait for the answer (``wait`` s at most after the speech), measure the turn."""
        requests_before, tts_before = len(self.upstream.requests), len(self.tts_times)
        started = time.monotonic()
        turn = await self.call.say(audio, wait=wait)
        end = self.mic.last_loud if self.mic.last_loud > started else turn.speech_end
        first = self.call.speaker.first_sound_after(started)
        cutoff = first is not None and first < end
        audible = first if first is not None and first >= end else self.call.speaker.first_sound_after(end)
        if audible is None and self.agent_state != "listening":
            await self.interrupt()
        # after a cut-off the whole question is answered again once its end is heard: wait that out too
        await self.quiet(wait, stable=1.5 if cutoff else 0.2)
        heard_end = next((t for t in self.listening if t >= end), None)
        stages = turn.stages()
        ttfs = next((v for t, v in self.ttfs if t >= started), None)
        if ttfs is not None:
            stages["llm_ttfs"] = ttfs
        tts_in = max((t for t in self.tts_times if audible is not None and started <= t <= audible), default=None)
        return TurnRecord(
            ttfa=None if audible is None else audible - end, stages=stages,
            vad_lag=None if heard_end is None else heard_end - end - self.vad_silence,
            to_speaker=None if audible is None or tts_in is None else audible - tts_in,
            llm_requests=len(self.upstream.requests) - requests_before,
            tts_requests=len(self.tts_times) - tts_before, cutoff=cutoff,
            heard=turn.heard, answer=turn.answer)

    async def interrupt(self) -> None:
        """End a silent turn's work (a request that hangs, a voice that never speaks) at once: the caller's
        next question would interrupt it anyway, after another ``wait`` s; an answer later than ``wait`` is
        a silent turn either way, and must not play into the next turn."""
        with contextlib.suppress(RuntimeError, TimeoutError):  # not running, or nothing left to interrupt
            await asyncio.wait_for(self.call.session.interrupt(force=True), INTERRUPT_WAIT)

    async def quiet(self, wait: float, stable: float) -> None:
        """Wait until the agent has been listening for ``stable`` s (at most ``wait`` s): no reply of this
        turn leaks into the next."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.agent_state == "listening":
                await asyncio.sleep(stable)
                if self.agent_state == "listening":
                    return
            try:
                await asyncio.wait_for(self._idle.wait(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                return
