"""``openrouter-voice talk QUESTION.wav [MORE.wav ...] [--out REPLY.wav]``: voice turns through exactly
the worker's pipeline (Silero VAD, the turn detector, the STT chain, the router, the TTS chain), without
a LiveKit room. Several files are one conversation. With no keys it runs offline: the local STT and
voice, and the local model. It never waits for a turn that cannot come: a question no speech recogniser
could hear is reported at once, and if the session closes mid-call (a stage failing on every engine)
talk says so and exits with code 3.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape

from .. import app, telemetry
from ..agent import OpenRouterLLM
from ..agent.worker import build_session, load_turn_detection
from ..call.audio import Audio, read_wav, write_wav
from ..call.driver import CallClosed, Turn, VoiceCall
from ..config import Settings
from ..router.catalog import Catalog
from ..router.types import Completion
from .chat import build_router


def describe(turn: Turn, completion: Completion | None) -> str:
    """The turn as printed: what was heard, the answer, the model that served this turn (``completion``,
    None when no model was asked) and the stage timings."""
    model = completion.model if completion else "none"
    if completion and completion.fell_back and completion.fallback_reason:
        model += f" (fallback: {completion.fallback_reason})"
    stages = " · ".join(f"{name} {value * 1000:.0f} ms" for name, value in turn.stages().items()
                        if name != "stt_audio")
    ttfa = f"{turn.ttfa * 1000:.0f} ms" if turn.ttfa is not None else "no sound"
    failure = f"\n[red]{escape(turn.failure)}[/red]" if turn.failure else ""
    return (f"[bold]heard:[/bold] {escape(turn.heard or '(nothing)')}\n[bold]answer:[/bold] "
            f"{escape(turn.answer or '(none)')}\n[dim]model {escape(model)} · first audio after {ttfa}"
            f"{' · ' + stages if stages else ''}[/dim]{failure}")


async def run_talk(settings: Settings, files: list[Path], *, out: Path | None, console: Console) -> int:
    """Run one voice turn per file; returns the exit code (0 answered aloud, 1 a silent turn, 2 cannot
    start, 3 the session closed mid-call)."""
    try:
        questions = [read_wav(path) for path in files]
    except (OSError, ValueError) as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        return 2
    from livekit.plugins import silero

    from ..speech.local_tts import ESPEAK_HINT

    if shutil.which("espeak-ng") is None:  # the local voice is the TTS's last resort: say so before starting
        console.print(f"[red]{escape(ESPEAK_HINT)}[/red]")
        if settings.cartesia_api_key is None:
            return 2
    async with contextlib.AsyncExitStack() as stack:
        catalog = Catalog.from_settings(settings)
        router = await build_router(settings, stack, console, local_only=False, model=None, catalog=catalog)
        if router is None:
            return 2
        llm = OpenRouterLLM(router=router)
        stack.push_async_callback(llm.aclose)
        with console.status("Loading the voice pipeline (VAD, turn detector, speech engines)..."):
            session = build_session(settings, vad=silero.VAD.load(), turn_detection=load_turn_detection(), llm=llm)
        telemetry.current().watch_session(session, llm)
        call = await stack.enter_async_context(VoiceCall(session, app.build_assistant(settings, llm, catalog=catalog)))
        replies: list[Audio] = []
        code = 0
        for path, question in zip(files, questions, strict=True):
            console.print(f"[bold]>[/bold] {escape(str(path))} ({question.seconds:.1f} s)")
            before = llm.last_completion
            try:
                turn = await call.say(question)
            except CallClosed as exc:
                console.print(f"[red]The call ended before this question could be answered: {escape(str(exc))}. "
                              f"Fix: check the keys and services named above, or run without keys (offline).[/red]")
                code = 3
                break
            # a turn with no new completion was not served by any model: not the previous turn's one
            console.print(describe(turn, llm.last_completion if llm.last_completion is not before else None))
            replies.append(turn.audio)
            if turn.first_audio is None:
                code = 1
        if out is not None:
            rate = next((r.rate for r in replies if len(r.samples)), 24000)
            audio = Audio(np.concatenate([r.at(rate).samples for r in replies] or [np.zeros(0, np.int16)]), rate)
            write_wav(out, audio)
            console.print(f"reply audio: {escape(str(out))} ({audio.seconds:.1f} s)")
        return code
