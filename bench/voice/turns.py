"""The turn settings the false cut-off table compares, and the worker's own (the ones every system gets
in the main table).

With LiveKit's turn detector the end of a turn is decided in two steps: Silero reports the end of
speech after ``min_silence_duration`` (0.55 s by default), then the detector runs and the endpointing
delay (``min_delay``, counted from the last speech) or, when the detector thinks the caller is not
done, ``max_delay`` applies. While Silero waits 0.55 s, a ``min_delay`` below that changes nothing: the
settings below lower Silero's wait (0.25 s is the least LiveKit accepts with the turn detector) so that
endpointing decides.
"""

from __future__ import annotations

from typing import Any

from openrouter_voice.agent.worker import TURN_HANDLING, VAD_MIN_SILENCE

# LiveKit 1.8.9's resolved defaults with a streaming turn detector, spelled out (they are the baseline)
LIVEKIT: dict[str, Any] = {"endpointing": {"mode": "fixed", "min_delay": 0.3, "max_delay": 2.5},
                           "preemptive_generation": {"enabled": True, "preemptive_tts": False}}
PREEMPTIVE_TTS = {"enabled": True, "preemptive_tts": True}


def _fixed(delay: float) -> dict[str, Any]:
    return {"endpointing": {"mode": "fixed", "min_delay": delay, "max_delay": 2.5},
            "preemptive_generation": LIVEKIT["preemptive_generation"]}


SETTINGS: dict[str, tuple[dict[str, Any], float]] = {
    "LiveKit defaults (VAD 0.55 s, fixed 0.3 s)": (LIVEKIT, 0.55),
    "preemptive TTS": ({**LIVEKIT, "preemptive_generation": PREEMPTIVE_TTS}, 0.55),
    "VAD 0.25 s, fixed 0.2 s": (_fixed(0.2), 0.25),
    "VAD 0.25 s, fixed 0.35 s": (_fixed(0.35), 0.25),
    "VAD 0.25 s, fixed 0.5 s": (_fixed(0.5), 0.25),
    "VAD 0.25 s, dynamic 0.3-2.5 s": ({"endpointing": {"mode": "dynamic", "min_delay": 0.3, "max_delay": 2.5},
                                        "preemptive_generation": LIVEKIT["preemptive_generation"]}, 0.25),
}
BASELINE = "LiveKit defaults (VAD 0.55 s, fixed 0.3 s)"
CHOSEN = BASELINE  # what the worker runs (agent/worker.py): the table's best trade-off


def worker_turn() -> tuple[dict[str, Any], float]:
    """The worker's turn handling and VAD silence: what ``build_session`` and ``load_vad`` use."""
    return {**LIVEKIT, **TURN_HANDLING}, VAD_MIN_SILENCE


def describe() -> str:
    turn, silence = worker_turn()
    return ("Reading the table: LiveKit starts the LLM on STT's final transcript (preemptive generation), so a "
            "healthy turn waits for the later of the end-of-turn decision and STT final + LLM first sentence; "
            "on the scripted services the second is the physical limit above, so a shorter end-of-turn wait can "
            "only add false cut-offs. A paused question costs a second LLM request (the preemptive one for its "
            "first half is cancelled when the caller goes on); preemptive TTS also synthesises that thrown-away "
            "half (TTS requests per turn). Thrown-away work is never played: audio waits for the committed turn. "
            f"The worker runs: VAD min_silence_duration {silence} s, turn_handling {turn} "
            "(openrouter_voice.agent.worker.VAD_MIN_SILENCE / TURN_HANDLING).")
