"""A worker-like process for the scrape test: the worker's own main-process telemetry
(:func:`openrouter_voice.agent.worker.serve_metrics`), and for each ``turn`` line on stdin a job process
started the way LiveKit starts them (spawned, inheriting the environment) that runs its setup
(``start_job_telemetry``) and one turn through ``app.build_router``. Prints ``READY`` once serving and
``RECORDED n`` once the main process has recorded what n jobs relayed."""

from __future__ import annotations

import asyncio
import multiprocessing
import sys

from openrouter_voice import app
from openrouter_voice.agent.worker import serve_metrics
from openrouter_voice.config import load_settings
from openrouter_voice.telemetry.voice import SpeechFallback, VoiceTurn
from openrouter_voice.telemetry.worker import start_job_telemetry

PROMPT = "Tell me about the zebra-quokka-7731 password"


def job() -> None:
    telemetry = start_job_telemetry()

    async def turn() -> None:
        router = await app.build_router(load_settings(), check=False)
        try:
            await router.complete([{"role": "user", "content": PROMPT}])
        finally:
            await router.aclose()

    asyncio.run(turn())
    # What the session watch reports for a voice turn (tests/voice covers the watch on a real call).
    for sink in telemetry.voice_sinks:
        sink(SpeechFallback("tts", "cartesia.TTS"))
        sink(VoiceTurn("answered", time_to_first_audio=0.8, end_of_turn_delay=0.3))


def main() -> None:
    metrics = serve_metrics(load_settings(), ["start"])
    assert metrics is not None, "OPENROUTER_VOICE_METRICS_PORT is not set"
    print("READY", flush=True)
    for turns, line in enumerate(sys.stdin, start=1):
        if line.strip() != "turn":
            break
        process = multiprocessing.get_context("spawn").Process(target=job)
        process.start()
        process.join(60)
        # each job relays its router turn and two voice events
        if process.exitcode != 0 or not metrics.wait_relayed(3 * turns, timeout=30):
            print(f"FAILED exit={process.exitcode} relayed={metrics.relayed}", flush=True)
            break
        print(f"RECORDED {turns}", flush=True)
    metrics.close()


if __name__ == "__main__":
    main()
