"""The cells: what the scripted services do for the whole cell (the first of a chain fails, the rest work)."""

from __future__ import annotations

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
# as in the failover benchmark: a realistic voice model
VOICE_LLM: dict[str, Any] = {"ttft": 0.3, "tokens_per_second": 75.0}


@dataclass
class Services:
    upstream: ScriptedUpstream
    deepgram: ScriptedDeepgram
    cartesia: ScriptedCartesia
    tts_times: list[float]  # when text reached the scripted Cartesia (monotonic seconds)
    whole_replies: bool = False  # the system asks with stream false: the reply comes when generated


def model(s: Services, **fault: Any) -> Script:
    """The scripted model's behaviour. The scripted upstream answers a non-streaming request at the
    first token; a real one answers when the whole reply is generated, and a reply that breaks
    mid-way is an error status: :attr:`Services.whole_replies` makes it so.

    >>> model(Services(None, None, None, [], whole_replies=True)).ttft
    0.38
    """
    options = {**VOICE_LLM, **fault}
    if s.whole_replies:
        tokens = len(Script(text=ANSWER).tokens())
        if options.pop("error_after_tokens", None) is not None:
            tokens, options["status"] = 3, 502
        options["ttft"] = options["ttft"] + tokens / options["tokens_per_second"]
    return Script(text=ANSWER, **options)


def _healthy(s: Services) -> None:
    s.upstream.script(PRIMARY, model(s))
    s.upstream.script(BACKUP, model(s))
    s.deepgram.script(DeepgramScript())
    s.cartesia.script(CartesiaScript())


def _llm(fault: dict[str, Any]) -> Callable[[Services], None]:
    def apply(s: Services) -> None:
        _healthy(s)
        s.upstream.script(PRIMARY, model(s, **fault))
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
    "STT primary handshake hangs": _stt(DeepgramScript(hang=True)),
    "TTS primary down (503)": _tts(CartesiaScript(status=503)),
    "TTS primary hangs (silent socket)": _tts(CartesiaScript(silent=True)),
    "TTS primary drops mid-sentence": _tts(CartesiaScript(drop_after_chunks=2)),
}


def mix(turns: int, seed: int = 7) -> list[str]:
    """The random mix: ``turns`` cell names drawn with a fixed seed (the same sequence for every system).

    >>> mix(3) == mix(3) and len(mix(3)) == 3
    True
    """
    rng = random.Random(seed)
    return [rng.choice(sorted(CELLS)) for _ in range(turns)]
