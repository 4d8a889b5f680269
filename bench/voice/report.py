"""The voice section of BENCHMARKS.md (between markers, the rest of the file untouched), its targets
checked (met / **MISSED**), and its plot."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..sections import replace_section
from .harness import TurnRecord

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- voice-benchmark:begin -->", "<!-- voice-benchmark:end -->"
STAGES = ("eou_delay", "stt_final", "llm_ttft", "llm_ttfs", "tts_ttfb")
OURS, STOCK, ORIGINAL, FLOOR = "ours", "LiveKit stock", "original design", "physical limit"
Runs = list[list[TurnRecord]]  # one list of turns per repeat (session)
Results = dict[str, dict[str, Runs]]  # row label -> system -> runs


def flat(runs: Runs) -> list[TurnRecord]:
    return [t for run in runs for t in run]


def ttfas(turns: Sequence[TurnRecord]) -> list[float]:
    return [t.ttfa for t in turns if t.ttfa is not None and not t.cutoff]


def pct(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile, nearest rank (as the first cut of this benchmark).

    >>> pct([1.0, 2.0, 3.0, 4.0], 0.5), pct([], 0.5)
    (3.0, None)
    """
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.0f} ms"


def silent(turns: Sequence[TurnRecord]) -> int:
    """Turns that ended with no audible answer or apology, or never ran (the session closed)."""
    return sum(1 for t in turns if t.ttfa is None and not t.cutoff)


def spread(runs: Runs) -> str:
    """Each repeat's TTFA p50, as min-max: a change smaller than this is noise."""
    p50s = [p for p in (pct(ttfas(run), 0.5) for run in runs) if p is not None]
    if len(p50s) < 2:
        return "–"
    return f"{min(p50s) * 1000:.0f}-{max(p50s) * 1000:.0f}"


def median_of(turns: Sequence[TurnRecord], get: Any) -> float | None:
    values = [v for v in (get(t) for t in turns) if v is not None]
    return statistics.median(values) if values else None


def stage(turns: Sequence[TurnRecord], name: str) -> float | None:
    return median_of(turns, lambda t: t.stages.get(name))


def summary(runs: Runs) -> str:
    turns = flat(runs)
    values = ttfas(turns)
    return (f"TTFA p50 {ms(pct(values, 0.5))} p95 {ms(pct(values, 0.95))} (n={len(values)}) "
            f"repeats {spread(runs)} silent {silent(turns)}/{len(turns)}")


def targets(results: Results) -> list[tuple[str, str, bool]]:
    """(what, measured, met) for each of the issue's targets."""
    out: list[tuple[str, str, bool]] = []
    healthy = results.get("healthy", {})
    ours_h, stock_h = ttfas(flat(healthy.get(OURS, []))), ttfas(flat(healthy.get(STOCK, [])))
    p50_ours, p50_stock = pct(ours_h, 0.5), pct(stock_h, 0.5)
    if p50_ours is not None and p50_stock is not None:
        out.append(("our layer adds <= 5 ms to healthy TTFA p50 over LiveKit stock (same turn settings)",
                    f"{(p50_ours - p50_stock) * 1000:+.0f} ms", p50_ours - p50_stock <= 0.005))
    # The LLM stage's cost in a voice turn is its time to the first text the TTS synthesises (TTFS), not
    # its first token: a reply that breaks or dribbles mid-sentence has its first token on time.
    llm_h = stage(flat(healthy.get(OURS, [])), "llm_ttfs")
    for cell, by_system in results.items():
        turns = flat(by_system.get(OURS, []))
        p50, p95 = pct(ttfas(turns), 0.5), pct(ttfas(turns), 0.95)
        if cell.startswith("LLM") and p50 is not None and p50_ours is not None and llm_h is not None:
            llm = stage(turns, "llm_ttfs")
            budget = (llm - llm_h if llm is not None else 0.0) + 0.05
            out.append((f"{cell}: TTFA cost <= the LLM stage's own failover cost (LLM TTFS) + 50 ms",
                        f"{(p50 - p50_ours) * 1000:+.0f} ms vs {budget * 1000:.0f} ms", p50 - p50_ours <= budget))
        elif cell.startswith(("STT", "TTS")):
            p95_h = pct(ours_h, 0.95)
            ok = p95 is not None and p95_h is not None and p95 <= p95_h + 1.0 and silent(turns) == 0
            out.append((f"{cell}: TTFA p95 <= healthy p95 + 1 s, no silent turn",
                        f"{ms(p95)} vs {ms(None if p95_h is None else p95_h + 1.0)}, {silent(turns)} silent", ok))
    if "random mix" in results:
        turns = flat(results["random mix"].get(OURS, []))
        out.append(("zero silent turns in the random mix", f"{silent(turns)}/{len(turns)}", silent(turns) == 0))
    return out


def main_table(results: Results) -> list[str]:
    floor = pct(ttfas(flat(results.get("healthy", {}).get(FLOOR, []))), 0.5)
    lines = ["| cell | system | TTFA p50 | TTFA p95 (n) | repeats' p50 | × limit | silent | EOU delay | STT final "
             "| LLM TTFT | LLM TTFS | TTS TTFB | VAD lag | to speaker |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for cell, by_system in results.items():
        for system, runs in by_system.items():
            turns = flat(runs)
            values = ttfas(turns)
            p50 = pct(values, 0.5)
            ratio = f"{p50 / floor:.2f}" if p50 is not None and floor else "–"
            cols = [ms(stage(turns, s)) for s in STAGES]
            cols += [ms(median_of(turns, lambda t: t.vad_lag)), ms(median_of(turns, lambda t: t.to_speaker))]
            lines.append(f"| {cell} | {system} | {ms(p50)} | {ms(pct(values, 0.95))} ({len(values)}) | "
                         f"{spread(runs)} | {ratio} | {silent(turns)}/{len(turns)} | " + " | ".join(cols) + " |")
    return lines


def cutoff_table(cutoffs: dict[str, dict[str, Runs]], chosen: str) -> list[str]:
    lines = ["| turn setting | TTFA p50 (whole questions) | TTFA p95 (n) | repeats' p50 | false cut-offs, paused "
             "| false cut-offs, whole | LLM requests per turn | TTS requests per turn |",
             "|---|---|---|---|---|---|---|---|"]
    for setting, parts in cutoffs.items():
        whole, paused = flat(parts.get("whole", [])), flat(parts.get("paused", []))
        values = ttfas(whole)
        requests = [t.llm_requests for t in whole + paused]
        tts = [t.tts_requests for t in whole + paused]
        name = f"**{setting}** (chosen)" if setting == chosen else setting
        lines.append(f"| {name} | {ms(pct(values, 0.5))} | {ms(pct(values, 0.95))} ({len(values)}) | "
                     f"{spread(parts.get('whole', []))} | {sum(t.cutoff for t in paused)}/{len(paused)} | "
                     f"{sum(t.cutoff for t in whole)}/{len(whole)} | "
                     f"{statistics.mean(requests) if requests else 0:.2f} | {statistics.mean(tts) if tts else 0:.2f} |")
    return lines


def fast_turn(cutoffs: dict[str, dict[str, Runs]], baseline: str) -> tuple[str, str, bool]:
    """The issue's target for the turn settings: TTFA p50 <= 600 ms, false cut-offs <= LiveKit's defaults'."""
    def cut(setting: str) -> int:
        return sum(t.cutoff for t in flat(cutoffs[setting].get("paused", [])))

    scored = [(pct(ttfas(flat(parts.get("whole", []))), 0.5), cut(name), name) for name, parts in cutoffs.items()]
    allowed = [(p50, name) for p50, cuts, name in scored if p50 is not None and cuts <= cut(baseline)]
    best = min(allowed, default=(None, ""))
    return ("a turn setting with TTFA p50 <= 600 ms and no more false cut-offs than LiveKit's defaults",
            f"best without more cut-offs: {best[1]}, {ms(best[0])}", best[0] is not None and best[0] <= 0.6)


def render(results: Results, cutoffs: dict[str, dict[str, Runs]], meta: dict[str, Any]) -> str:
    lines = [BEGIN, "## Voice: time to first audio", "", meta["header"], "",
             "TTFA = from the end of the caller's speech (the last audible input frame) to the first audible frame "
             "the agent plays, real-time input and playback. p95 is nearest-rank, n the turns it is over; "
             "\"repeats' p50\" is the min-max of each session's p50: differences inside it are noise. "
             "× limit = TTFA p50 / the physical limit's. EOU delay, STT final, LLM TTFT, LLM TTFS, TTS TTFB are "
             "LiveKit's own metrics (medians; TTFS = LLM request to the first text the TTS synthesises, "
             "LiveKit's llm_node_ttfs: an LLM fault's cost to a voice turn is measured there, since a reply "
             "that breaks or dribbles mid-sentence has its first token on time); VAD lag = the agent's VAD "
             "reporting the end of speech minus the speech end and its own silence wait (CPU backlog shows "
             "here); to speaker = text reaching the TTS to the first audible "
             "frame. A silent turn had no audible answer or apology within 8 s, or never ran (session closed); "
             "the harness then interrupts what the agent is still doing, as the caller's next question would.",
             "", *main_table(results), "", "### Targets", "", "| target | measured | verdict |", "|---|---|---|"]
    goals = targets(results) + ([fast_turn(cutoffs, meta["baseline"])] if meta.get("baseline") in cutoffs else [])
    lines += [f"| {what} | {measured} | {'met' if ok else '**MISSED**'} |" for what, measured, ok in goals]
    if cutoffs:
        lines += ["", "### Turn taking: TTFA against false cut-offs", "", meta["cutoff_header"], "",
                  *cutoff_table(cutoffs, meta.get("chosen", "")), "", meta.get("cutoff_notes", "")]
    lines += ["", "Settings:", "", *meta["settings"], "", "![TTFA per cell](bench/voice_ttfa.png)", END]
    return "\n".join(lines) + "\n"


def plot(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels: list[str] = []
    data: list[list[float]] = []
    for cell, by_system in results.items():
        for system, runs in by_system.items():
            labels.append(f"{cell} · {system}")
            data.append(ttfas(flat(runs)) or [float("nan")])
    fig, ax = plt.subplots(figsize=(11, 0.35 * len(labels) + 1.5))
    ax.boxplot(data, orientation="horizontal", tick_labels=labels, showfliers=True)
    ax.set_xlabel("time to first audio (s)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(section: str, results: Results, target: Path, image: Path) -> None:
    replace_section(target, BEGIN, END, section)
    if results:
        plot(results, image)
