"""Run the voice benchmark: ``make bench-voice`` (``python -m bench.voice [--turns N] [--mix N]``).

One process, the scripted OpenRouter upstream, Deepgram and Cartesia on 127.0.0.1, and each system's
whole voice pipeline (Silero VAD, LiveKit's turn detector, STT, LLM, TTS) in an AgentSession fed real
speech in real time (the local voice saying a question), its output played in real time. Per turn:
TTFA = end of the caller's speech in the input audio -> first non-silent frame of the agent's audio,
with LiveKit's own stage metrics. Writes the voice section of BENCHMARKS.md and bench/voice_ttfa.png.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import time
from typing import Any

from openrouter_voice.agent.worker import load_turn_detection
from openrouter_voice.call.audio import Audio
from openrouter_voice.call.driver import Turn, VoiceCall
from openrouter_voice.speech.local_stt import LocalSTT
from openrouter_voice.speech.local_tts import LocalTTS
from openrouter_voice.testing import ScriptedCartesia, ScriptedDeepgram, ScriptedUpstream

from . import report
from .cells import CELLS, Services, mix
from .systems import SYSTEMS

QUESTION = "What is the weather like today?"
WAIT = 15.0  # seconds a turn may take before it counts as silent


async def run_cell(system: str, cell: str, turns: int, services: Services, question: Audio,
                   shared: dict[str, Any], rng: random.Random | None = None) -> list[Turn | None]:
    build = SYSTEMS[system][0]
    CELLS.get(cell, CELLS["healthy"])(services)
    session, agent, close = await build(services, shared["vad"], shared["turn"], shared)
    results: list[Turn | None] = []
    try:
        async with VoiceCall(session, agent) as call:
            for _ in range(turns):
                if rng is not None:
                    mix(rng)(services)
                turn = await call.say(question, wait=WAIT)
                results.append(turn)
                if os.environ.get("BENCH_DEBUG"):
                    print(f"  heard={turn.heard!r} answer={turn.answer!r} ttfa={turn.ttfa} {turn.stages()}",
                          flush=True)
                if call.closed:  # a closed session answers no more turns: the rest are silent
                    results += [None] * (turns - len(results))
                    break
            await asyncio.sleep(0.5)
    finally:
        await close()
    return results


async def main(args: argparse.Namespace) -> None:
    from livekit.plugins import silero

    logging.basicConfig(level=logging.WARNING if os.environ.get("BENCH_DEBUG") else logging.ERROR)
    tts, stt = LocalTTS(), LocalSTT()
    question = Audio(await tts.pcm(QUESTION), tts.sample_rate)
    shared = {"vad": silero.VAD.load(), "turn": load_turn_detection(), "stt": stt, "tts": tts}
    results: dict[str, dict[str, list[Turn | None]]] = {}
    started = time.time()
    async with ScriptedUpstream() as upstream, ScriptedDeepgram(transcribe=lambda pcm, _: stt._decode(pcm)) as dg, \
            ScriptedCartesia() as ct:
        services = Services(upstream, dg, ct)
        for system in [s for s in SYSTEMS if not args.system or s == args.system]:
            results[system] = {}
            cells = [c for c in CELLS if not args.only or any(part in c for part in args.only.split(","))]
            for cell in cells:
                results[system][cell] = await run_cell(system, cell, args.turns, services, question, shared)
                print(f"{system:14} {cell:36} {report.summary(results[system][cell])}", flush=True)
            if args.mix:
                results[system]["random mix"] = await run_cell(system, "mix", args.mix, services, question, shared,
                                                               random.Random(7))
                print(f"{system:14} {'random mix':36} {report.summary(results[system]['random mix'])}", flush=True)
    report.write(results, args, time.time() - started)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.voice")
    parser.add_argument("--turns", type=int, default=30, help="turns per cell (default 30)")
    parser.add_argument("--mix", type=int, default=200, help="turns of the random mix (0: none)")
    parser.add_argument("--only", default="", help="run only cells whose name contains this (or, comma-separated, "
                        "any of these)")
    parser.add_argument("--system", default="", choices=["", *SYSTEMS], help="run only this system")
    asyncio.run(main(parser.parse_args()))
