"""One benchmark job (a session of one system: some turns), run in a worker process of its own.

Each job starts its own scripted OpenRouter, Deepgram and Cartesia on 127.0.0.1, so jobs run side by
side without sharing anything but the CPU. The scripted Deepgram returns the words the harness is
saying (it finds utterances in the audio it receives, as before, but no longer runs PocketSphinx in
the agent's process: that CPU is the real Deepgram's, not the caller's machine's).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openrouter_voice.call.audio import Audio
from openrouter_voice.call.driver import CallClosed, VoiceCall
from openrouter_voice.testing import ScriptedCartesia, ScriptedDeepgram, ScriptedUpstream

from .cells import CELLS, Services
from .harness import Probe, TurnRecord
from .report import ORIGINAL
from .systems import FLOOR, SYSTEMS, floor

WAIT = 8.0  # seconds after the caller's speech with no audible answer: a silent turn


async def short_tone(text: str, rate: int) -> bytes:
    """The scripted Cartesia's voice: a 220 Hz tone, 15 ms per character (0.3 s at least). Shorter than
    speech, so turns end sooner; TTFA only needs its first frame."""
    t = np.arange(int(max(0.3, 0.015 * len(text.strip())) * rate)) / rate
    return (0.3 * 32767 * np.sin(2 * np.pi * 220 * t)).astype(np.int16).tobytes()


@dataclass(frozen=True)
class Utterance:
    """What the caller says in one turn: the audio and the words of each of its parts (one per pause)."""

    audio: Audio
    parts: tuple[str, ...]


@dataclass
class Job:
    """``system`` answers ``utterances`` in one session; ``cells`` names each turn's fault cell."""

    system: str
    label: str  # the table row this job feeds: a cell name, "random mix", or a turn setting
    repeat: int
    cells: list[str]
    utterances: list[Utterance]
    turn: dict[str, Any] = field(default_factory=dict)
    vad_silence: float = 0.55


_local: dict[str, Any] = {}


def _engines() -> dict[str, Any]:
    """The local STT and TTS, loaded once per worker process."""
    if not _local:
        from openrouter_voice.speech.local_stt import LocalSTT
        from openrouter_voice.speech.local_tts import LocalTTS

        _local["stt"], _local["tts"] = LocalSTT(), LocalTTS()
        _local["stt"].prewarm()
        _local["tts"].prewarm()
    return _local


def run(job: Job) -> tuple[list[TurnRecord], float]:
    """The process pool's entry point: the job's turns and its wall time in seconds (the schedule's unit)."""
    started = time.monotonic()
    logging.basicConfig(level=logging.WARNING if os.environ.get("BENCH_DEBUG") else logging.CRITICAL)
    for name in ("livekit", "livekit.agents", "livekit.plugins", "openrouter_voice"):
        logging.getLogger(name).setLevel(logging.WARNING if os.environ.get("BENCH_DEBUG") else logging.CRITICAL)
    return asyncio.run(_run(job)), time.monotonic() - started


async def _run(job: Job) -> list[TurnRecord]:
    from openrouter_voice.agent.worker import load_turn_detection, load_vad

    local = _engines()
    vad, detector = load_vad(job.vad_silence), load_turn_detection()
    tts_times: list[float] = []

    async def voice(text: str, rate: int) -> bytes:
        tts_times.append(time.monotonic())
        return await short_tone(text, rate)

    async with ScriptedUpstream() as upstream, ScriptedDeepgram(transcripts=[""]) as deepgram, \
            ScriptedCartesia(voice=voice) as cartesia:
        services = Services(upstream, deepgram, cartesia, tts_times, whole_replies=job.system == ORIGINAL)
        CELLS[job.cells[0]](services)
        build = floor if job.system == FLOOR else SYSTEMS[job.system][0]
        session, agent, close = await build(services, vad, detector, local, job.turn)
        records: list[TurnRecord] = []
        try:
            call = VoiceCall(session, agent)
            probe = Probe(call, vad_silence=job.vad_silence, tts_times=tts_times, upstream=upstream)
            async with call:
                for cell, utterance in zip(job.cells, job.utterances, strict=True):
                    CELLS[cell](services)
                    deepgram.transcripts, deepgram._said = list(utterance.parts), 0
                    try:
                        record = await probe.turn(utterance.audio, wait=WAIT)
                    except CallClosed:  # the session closed during the turn (a stage failed with no fallback)
                        record = TurnRecord(ttfa=None)
                    records.append(record)
                    if os.environ.get("BENCH_DEBUG"):
                        print(f"  {job.system} {cell}: {record}", flush=True)
                    if call.closed:  # a closed session answers no more turns: the rest are silent
                        records += [TurnRecord(ttfa=None)] * (len(job.cells) - len(records))
                        break
        finally:
            await close()
    return records
