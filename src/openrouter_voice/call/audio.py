"""Run voice turns through a real ``AgentSession`` without a LiveKit room: audio in from samples (a WAV,
or speech made by the local voice), audio out captured with its timing. ``openrouter-voice talk``,
the audio tests and the voice benchmark share it.

>>> async with VoiceCall(session, agent) as call:                  # doctest: +SKIP
...     turn = await call.say(read_wav("question.wav"))
...     print(turn.heard, turn.answer, turn.ttfa, turn.stages())
"""

from __future__ import annotations

import asyncio
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from livekit import rtc
from livekit.agents.voice import io

RATE = 16000  # the caller's microphone
FRAME = 0.02  # seconds per input frame, as a room delivers them
LOUD_RMS = 300.0  # a frame of the agent's audio above this RMS is sound, not silence
Pcm = np.ndarray[Any, np.dtype[np.int16]]


@dataclass
class Audio:
    """Mono 16-bit samples and their rate."""

    samples: Pcm
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate if self.rate else 0.0

    def at(self, rate: int) -> Audio:
        """The same sound at ``rate`` (linear interpolation: ample for speech recognisers and tests)."""
        if rate == self.rate or not len(self.samples):
            return Audio(self.samples, rate)
        n = int(len(self.samples) * rate / self.rate)
        x = np.interp(np.linspace(0, len(self.samples) - 1, n), np.arange(len(self.samples)), self.samples)
        return Audio(np.asarray(x, dtype=np.int16), rate)

    def loud_seconds(self) -> float:
        """Seconds of the audio louder than silence (20 ms windows)."""
        window = max(1, int(self.rate * FRAME))
        chunks = [self.samples[i:i + window].astype(np.float64) for i in range(0, len(self.samples), window)]
        return sum(len(c) / self.rate for c in chunks if len(c) and np.sqrt(np.mean(c**2)) > LOUD_RMS)


def read_wav(path: str | Path) -> Audio:
    """A WAV file as mono 16-bit :class:`Audio`; a clear error for anything else."""
    try:
        with wave.open(str(path), "rb") as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            data = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a PCM WAV file ({exc}). Fix: convert it, e.g. "
                         f"ffmpeg -i INPUT -ac 1 -ar 16000 -sample_fmt s16 question.wav") from None
    if width != 2:
        raise ValueError(f"{path}: {8 * width}-bit samples; 16-bit PCM is needed. Fix: ffmpeg -i {path} "
                         f"-sample_fmt s16 out.wav")
    samples = np.frombuffer(data, dtype=np.int16).reshape(-1, channels).mean(axis=1).astype(np.int16)
    return Audio(samples, rate)


def write_wav(path: str | Path, audio: Audio) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(audio.rate)
        wav.writeframes(audio.samples.tobytes())


class CallerInput(io.AudioInput):
    """The caller's microphone: real-time 20 ms frames of what :meth:`speak` queued, silence otherwise."""

    def __init__(self) -> None:
        super().__init__(label="caller")
        self._queue: list[Pcm] = []
        self._spoken: asyncio.Future[float] | None = None
        self._next = 0.0
        self._size = int(RATE * FRAME)

    def speak(self, audio: Audio) -> asyncio.Future[float]:
        """Queue ``audio``; the future resolves to the monotonic time its last frame went out."""
        samples = audio.at(RATE).samples
        self._queue = [samples[i:i + self._size] for i in range(0, len(samples), self._size)]
        self._spoken = asyncio.get_running_loop().create_future()
        return self._spoken

    async def __anext__(self) -> rtc.AudioFrame:
        now = time.monotonic()
        self._next = max(self._next + FRAME, now) if self._next else now
        await asyncio.sleep(max(0.0, self._next - now))
        chunk = self._queue.pop(0) if self._queue else np.zeros(self._size, dtype=np.int16)
        if not self._queue and self._spoken is not None and not self._spoken.done():
            self._spoken.set_result(time.monotonic())
        chunk = np.pad(chunk, (0, self._size - len(chunk)))
        return rtc.AudioFrame(chunk.tobytes(), RATE, 1, self._size)


class Speaker(io.AudioOutput):
    """The caller's loudspeaker: plays the agent's frames in real time and keeps them, with the time
    each one started to play, so a test can ask what was heard and when."""

    def __init__(self) -> None:
        super().__init__(label="speaker", capabilities=io.AudioOutputCapabilities(pause=False))
        self.frames: list[tuple[float, rtc.AudioFrame]] = []
        self.interruptions = 0
        self.playbacks = 0  # segments played out or cut: a test waits on this, not on the clock
        self._pending: list[rtc.AudioFrame] = []
        self._flushed = False
        self._player: asyncio.Task[None] | None = None
        self._played = 0.0

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if not self._pending and self._played == 0.0:
            self.on_playback_started(created_at=time.time())
        self._pending.append(frame)
        if self._player is None or self._player.done():
            self._player = asyncio.create_task(self._play())

    def flush(self) -> None:
        super().flush()
        self._flushed = True
        if self._player is None or self._player.done():
            self._player = asyncio.create_task(self._play())

    def clear_buffer(self) -> None:
        self._pending.clear()
        if self._player is not None:
            self._player.cancel()
        self.interruptions += 1
        self._finish(interrupted=True)

    async def _play(self) -> None:
        while self._pending:
            frame = self._pending.pop(0)
            self.frames.append((time.monotonic(), frame))
            self._played += frame.duration
            await asyncio.sleep(frame.duration)
        if self._flushed:
            self._finish(interrupted=False)

    def _finish(self, *, interrupted: bool) -> None:
        position, self._played, self._flushed = self._played, 0.0, False
        self.playbacks += 1
        self.on_playback_finished(playback_position=position, interrupted=interrupted)

    def audio_since(self, since: float) -> Audio:
        frames = [f for t, f in self.frames if t >= since]
        if not frames:
            return Audio(np.zeros(0, dtype=np.int16), 24000)
        rate = frames[0].sample_rate
        return Audio(np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames]), rate)

    def first_sound_after(self, since: float) -> float | None:
        for at, frame in self.frames:
            if at >= since and Audio(np.frombuffer(frame.data, dtype=np.int16), frame.sample_rate).loud_seconds():
                return at
        return None
