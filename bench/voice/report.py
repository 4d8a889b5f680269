"""The voice section of BENCHMARKS.md (between markers, the rest of the file untouched) and its plot."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from importlib import metadata
from pathlib import Path

from openrouter_voice.call.driver import Turn

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- voice-benchmark:begin -->", "<!-- voice-benchmark:end -->"
STAGES = ("eou_delay", "stt_final", "llm_ttft", "tts_ttfb")


def ttfas(turns: list[Turn | None]) -> list[float]:
    return [t.ttfa for t in turns if t is not None and t.ttfa is not None]


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.0f} ms"


def silent(turns: list[Turn | None]) -> int:
    """Turns that ended with no audible audio (no answer, no apology), or never ran (session closed)."""
    return sum(1 for t in turns if t is None or t.ttfa is None)


def summary(turns: list[Turn | None]) -> str:
    values = ttfas(turns)
    return f"TTFA p50 {ms(pct(values, 0.5))} p95 {ms(pct(values, 0.95))} silent {silent(turns)}/{len(turns)}"


def stage(turns: list[Turn | None], name: str) -> str:
    values = [t.stages()[name] for t in turns if t is not None and name in t.stages()]
    return ms(statistics.median(values)) if values else "–"


def render(results: dict[str, dict[str, list[Turn | None]]], args: argparse.Namespace, seconds: float) -> str:
    from .systems import SYSTEMS

    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("livekit-agents", "livekit-plugins-deepgram",
                                                                "livekit-plugins-cartesia", "pocketsphinx"))
    lines = [BEGIN, "## Voice: time to first audio", "",
             f"`make bench-voice` ({seconds / 60:.0f} min): {args.turns} turns per cell"
             + (f", {args.mix} in the random mix" if args.mix else "") + f", on {platform.machine()} with "
             f"{os.cpu_count()} cores, Python {platform.python_version()}; {versions}.",
             "TTFA = from the end of the caller's speech in the input audio to the first non-silent frame the agent "
             "plays (real-time input and playback); stages are LiveKit's own metrics (medians). A silent turn "
             "ended with no audible answer or apology within 15 s, or was never run because the session closed.",
             "", "| cell | system | TTFA p50 | TTFA p95 | silent turns | EOU delay | STT final | LLM TTFT | TTS TTFB |",
             "|---|---|---|---|---|---|---|---|---|"]
    cells = list(next(iter(results.values())))
    for cell in cells:
        for system, by_cell in results.items():
            turns = by_cell.get(cell, [])
            values = ttfas(turns)
            lines.append(f"| {cell} | {system} | {ms(pct(values, 0.5))} | {ms(pct(values, 0.95))} | "
                         f"{silent(turns)}/{len(turns)} | " + " | ".join(stage(turns, s) for s in STAGES) + " |")
    lines += ["", "Settings:", ""] + [f"- **{name}**: {settings}" for name, (_, settings) in SYSTEMS.items()]
    lines += ["- Scripted services: LLM first token 300 ms then 75 tokens/s; Deepgram answers at the audio's "
              "offsets (utterance end after 0.3 s of quiet, words by PocketSphinx); Cartesia sends a tone in "
              "100 ms chunks at once. Faults hit the first provider of each chain for the whole cell.",
              "", "![TTFA per cell](bench/voice_ttfa.png)", END]
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict[str, list[Turn | None]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = list(next(iter(results.values())))
    fig, ax = plt.subplots(figsize=(11, 0.5 * len(cells) * len(results) + 1.5))
    labels: list[str] = []
    data: list[list[float]] = []
    for cell in cells:
        for system, by_cell in results.items():
            labels.append(f"{cell} · {system}")
            data.append(ttfas(by_cell.get(cell, [])) or [float("nan")])
    ax.boxplot(data, orientation="horizontal", tick_labels=labels, showfliers=True)
    ax.set_xlabel("time to first audio (s)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(results: dict[str, dict[str, list[Turn | None]]], args: argparse.Namespace, seconds: float) -> None:
    section = render(results, args, seconds)
    target = ROOT / "BENCHMARKS.md"
    text = target.read_text() if target.exists() else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    target.write_text(text)
    plot(results, ROOT / "bench" / "voice_ttfa.png")
    print(section)

