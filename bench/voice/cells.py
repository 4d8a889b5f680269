"""The cells: what the scripted services do for the whole cell (the first of a chain fails, the rest work)."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openrouter_voice.testing import (
    CartesiaScript,
    DeepgramScript,
    Script,
    ScriptedCartesia,
    ScriptedDeepgram,
    ScriptedUpstream,
)

PRIMARY, BACKUP = "openai/gpt-4o-mini", "google/gemini-2.5-flash-lite"
ANSWER = "It is sunny and mild today."
VOICE_LLM = {"ttft": 0.3, "tokens_per_second": 75.0}  # as in the failover benchmark: a realistic voice model


@dataclass
class Services:
    upstream: ScriptedUpstream
    deepgram: ScriptedDeepgram
    cartesia: ScriptedCartesia


def _healthy(s: Services) -> None:
    s.upstream.script(PRIMARY, Script(text=ANSWER, **VOICE_LLM))  # type: ignore[arg-type]
    s.upstream.script(BACKUP, Script(text=ANSWER, **VOICE_LLM))  # type: ignore[arg-type]
    s.deepgram.script(DeepgramScript())
    s.cartesia.script(CartesiaScript())


def _llm(fault: dict[str, Any]) -> Callable[[Services], None]:
    def apply(s: Services) -> None:
        _healthy(s)
        s.upstream.script(PRIMARY, Script(text=ANSWER, **{**VOICE_LLM, **fault}))  # type: ignore[arg-type]
    return apply


def _stt(script: DeepgramScript) -> Callable[[Services], None]:
    def apply(s: Services) -> None:
        _healthy(s)
        s.deepgram.script(script)
    return apply


def _tts(script: CartesiaScript) -> Callable[[Services], None]:
    def apply(s: Services) -> None:
        _healthy(s)
        s.cartesia.script(script)
    return apply


CELLS: dict[str, Callable[[Services], None]] = {
    "healthy": _healthy,
    "LLM primary 429": _llm({"status": 429, "retry_after": 0.1}),
    "LLM primary hangs": _llm({"hang": True}),
    "LLM primary errors mid-reply": _llm({"error_after_tokens": 3}),
    "LLM primary dribbles": _llm({"tokens_per_second": 2.0}),
    "STT primary down (503)": _stt(DeepgramScript(status=503)),
    "STT primary hangs (silent socket)": _stt(DeepgramScript(silent=True)),
    "TTS primary down (503)": _tts(CartesiaScript(status=503)),
    "TTS primary hangs (silent socket)": _tts(CartesiaScript(silent=True)),
    "TTS primary drops mid-sentence": _tts(CartesiaScript(drop_after_chunks=2)),
}


def mix(rng: random.Random) -> Callable[[Services], None]:
    """One random cell (the mix draws one per turn)."""
    name = rng.choice(sorted(CELLS))
    if os.environ.get("BENCH_DEBUG"):
        print(f"  mix: {name}", flush=True)
    return CELLS[name]
