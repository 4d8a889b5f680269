"""Run the voice benchmark: ``make bench-voice`` (``python -m bench.voice``; ``--quick`` for ~10 minutes).

Each job is one session of one system (Silero VAD, LiveKit's turn detector, STT, LLM, TTS in an
AgentSession) fed real speech in real time, its output played in real time, against scripted services
of its own; ``--jobs`` sessions run side by side in worker processes. Every cell's turns are split into
``--repeats`` sessions so the table shows the spread between them. Then the false cut-off set: the same
pipeline under several turn settings. Writes the voice section of BENCHMARKS.md and bench/voice_ttfa.png.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import UTC, datetime
from importlib import metadata
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from . import cutoff, report
from .cells import CELLS, mix
from .harness import TurnRecord
from .jobs import Job, Utterance, run
from .systems import FLOOR, SYSTEMS
from .turns import BASELINE, CHOSEN, SETTINGS, worker_turn

QUESTION = "What is the weather like today?"
MIX_SESSION = 25  # turns of the random mix per session at most


def split(items: list[Any], parts: int) -> list[list[Any]]:
    """``items`` in ``parts`` contiguous chunks as even as can be (none empty).

    >>> split(list(range(5)), 2)
    [[0, 1, 2], [3, 4]]
    """
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


async def speech(args: argparse.Namespace) -> tuple[Utterance, list[tuple[Utterance, Utterance]]]:
    from openrouter_voice.speech.local_tts import LocalTTS

    tts = LocalTTS(deterministic=True)  # the same caller audio every run, so runs compare
    question = Utterance(await cutoff.spoken(tts, QUESTION), (QUESTION,))
    pairs = []
    count = 0 if args.only or args.part == "main" else args.cutoff
    for q, pause in zip(cutoff.QUESTIONS[:count], cutoff.pauses(count), strict=False):
        pairs.append((Utterance(await cutoff.paused(tts, q, pause), q),
                      Utterance(await cutoff.whole(tts, q), (f"{q[0]} {q[1]}",))))
    return question, pairs


def plan(args: argparse.Namespace, question: Utterance, pairs: list[tuple[Utterance, Utterance]]) -> list[Job]:
    turn, silence = worker_turn()
    systems = [s for s in SYSTEMS if not args.system or s == args.system]
    cells = [c for c in CELLS if not args.only or any(part in c for part in args.only.split(","))]
    jobs: list[Job] = []
    if args.part == "cutoff":
        cells, args.mix = [], 0
    for repeat, chunk in enumerate(split(list(range(args.turns)), args.repeats)):
        for cell in cells:
            for system in systems + ([FLOOR] if cell == "healthy" else []):
                jobs.append(Job(system, cell, repeat, [cell] * len(chunk), [question] * len(chunk), turn, silence))
    if args.mix and not args.only:
        # short sessions: the pool packs them evenly, and a system that goes silent (~12 s a turn) does not
        # hold one worker for much of the run
        sessions = max(args.repeats, -(-args.mix // MIX_SESSION))
        for repeat, chunk in enumerate(split(mix(args.mix), sessions)):
            for system in systems:
                jobs.append(Job(system, "random mix", repeat, chunk, [question] * len(chunk), turn, silence))
    if pairs and not args.only and args.part != "main":
        for name, (setting, vad_silence) in SETTINGS.items():
            for kind, index in (("paused", 0), ("whole", 1)):
                for repeat, chunk in enumerate(split(pairs, args.repeats)):
                    jobs.append(Job("ours", f"cutoff|{name}|{kind}", repeat, ["healthy"] * len(chunk),
                                    [p[index] for p in chunk], setting, vad_silence))
    return jobs


def collect(jobs: list[Job], records: list[list[TurnRecord]]) -> tuple[report.Results, dict[str, dict[str, Any]]]:
    results: report.Results = {}
    cutoffs: dict[str, dict[str, Any]] = {}
    for job, turns in zip(jobs, records, strict=True):
        if job.label.startswith("cutoff|"):
            _, name, kind = job.label.split("|")
            cutoffs.setdefault(name, {}).setdefault(kind, []).append(turns)
        else:
            results.setdefault(job.label, {}).setdefault(job.system, []).append(turns)
    return results, cutoffs


def main(args: argparse.Namespace) -> None:
    started, load_before = time.time(), os.getloadavg()
    question, pairs = asyncio.run(speech(args))
    jobs = plan(args, question, pairs)
    print(f"{len(jobs)} sessions, {sum(len(j.cells) for j in jobs)} turns, {args.jobs} side by side", flush=True)
    records: list[list[TurnRecord]] = [[] for _ in jobs]
    failed = 0
    with LoadSampler() as load, ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        # the longest sessions first: none of them is left running alone at the end
        longest_first = sorted(range(len(jobs)), key=lambda i: -len(jobs[i].cells))
        index = {pool.submit(run, jobs[i]): i for i in longest_first}
        for done, future in enumerate(as_completed(index), 1):
            i = index[future]
            job, progress = jobs[i], f"[{done}/{len(jobs)} {(time.time() - started) / 60:4.1f} min]"
            try:
                records[i], seconds = future.result()
            except Exception as exc:  # a broken session is reported and left out, not counted as silent turns
                failed += 1
                print(f"{progress} {job.system:16} {job.label:40} #{job.repeat} FAILED: {type(exc).__name__}: "
                      f"{exc}", flush=True)
                continue
            print(f"{progress} {job.system:16} {job.label:40} #{job.repeat} {report.summary([records[i]])} "
                  f"({seconds:.0f} s)", flush=True)
    results, cutoffs = collect(jobs, records)
    seconds = time.time() - started
    meta = header(args, seconds, load_before, load.figures())
    if failed:
        meta["header"] += f" **{failed} of {len(jobs)} sessions failed** and are left out (see the run's output)."
    section = report.render(results, cutoffs, meta)
    print(section)
    out = Path(args.out)
    default = out.resolve() == (report.ROOT / "BENCHMARKS.md").resolve()
    report.write(section, results, out, report.ROOT / "bench" / "voice_ttfa.png" if default
                 else out.with_name("voice_ttfa.png"))


class LoadSampler:
    """The machine's 1-minute load average sampled while the sessions run (how loaded the run was)."""

    def __init__(self, every: float = 10.0) -> None:
        self.every, self.samples = every, [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self) -> tuple[float, float]:
        """The mean and the peak of the samples.

        >>> s = LoadSampler(); s.samples = [1.0, 3.0]; s.figures()
        (2.0, 3.0)
        """
        return statistics.mean(self.samples), max(self.samples)


def header(args: argparse.Namespace, seconds: float, load_before: tuple[float, float, float],
           load_during: tuple[float, float]) -> dict[str, Any]:
    from .turns import describe

    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("livekit-agents", "livekit-plugins-deepgram",
                                                                "livekit-plugins-cartesia", "livekit-plugins-silero"))
    load = os.getloadavg()
    command = "make bench-voice" + (f" ARGS='{args.argv}'" if args.argv else "")
    return {
        "header": f"`{command}` on {datetime.now(UTC):%Y-%m-%d} ({seconds / 60:.0f} min, {args.jobs} sessions side "
                  f"by side): {args.turns} turns per cell in {args.repeats} sessions"
                  + (f", {args.mix} in the random mix (seed 7)" if args.mix and not args.only else "")
                  + f"; {platform.machine()}, {os.cpu_count()} cores, load average {load_before[0]:.1f} before, "
                  f"{load_during[0]:.1f} on average while the sessions ran (peak {load_during[1]:.1f}) and "
                  f"{load[0]:.1f} after; Python {platform.python_version()}; {versions}. Every system has the "
                  "worker's turn settings (below).",
        "cutoff_header": f"{len(cutoff.QUESTIONS[: args.cutoff])} questions, each said with one mid-sentence pause "
                         "of 300-900 ms (fixed seed; the local voice, silence inserted) and said whole; our wiring, "
                         "healthy scripted services, LiveKit's turn detector v1-mini as shipped. A false cut-off is "
                         "an answer audible before the caller finished the question. LLM requests per turn counts "
                         "every request the upstream received, preemptive ones included.",
        "chosen": CHOSEN, "cutoff_notes": describe(), "baseline": BASELINE,
        "settings": [f"- **{name}**: {settings}" for name, (_, settings) in SYSTEMS.items()]
        + [f"- **{FLOOR}**: {report_floor()}",
           "- Scripted services: LLM first token 300 ms then 75 tokens/s (non-streaming: the whole answer at "
           "300 ms); Deepgram finds utterances in the audio (end after 0.3 s of quiet) and returns the words "
           "being said; Cartesia sends a tone (15 ms per character) in 100 ms chunks at once. Faults hit the "
           "first provider of each chain for the whole cell."],
    }


def report_floor() -> str:
    from .systems import FLOOR_SETTINGS

    return FLOOR_SETTINGS


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.voice")
    parser.add_argument("--quick", action="store_true", help="about 10 minutes: 6 turns per cell, 30 mixed, "
                                                             "20 cut-off questions")
    parser.add_argument("--turns", type=int, default=None, help="turns per cell (default 30)")
    parser.add_argument("--mix", type=int, default=None, help="turns of the random mix (default 200; 0: none)")
    parser.add_argument("--cutoff", type=int, default=None, help="questions of the false cut-off set (default all "
                                                                 f"{len(cutoff.QUESTIONS)}; 0: none)")
    parser.add_argument("--repeats", type=int, default=None, help="sessions each cell is split into (default 3)")
    parser.add_argument("--jobs", type=int, default=8, help="sessions side by side (default 8: a session uses "
                        "~0.1 core and spends most of its time in real-time audio and waits; if the VAD lag column "
                        "passes ~0.25 s the machine is short of CPU: fewer)")
    parser.add_argument("--only", default="",
                        help="run only cells whose name contains this (or, comma-separated, any of these; "
                        "no mix, no cut-offs)")
    parser.add_argument("--system", default="", choices=["", *SYSTEMS], help="run only this system")
    parser.add_argument("--part", default="all", choices=["all", "main", "cutoff"],
                        help="main: the fault cells and the mix; cutoff: the false cut-off table")
    parser.add_argument("--out", default=str(report.ROOT / "BENCHMARKS.md"), help="the file to write the section to")
    args = parser.parse_args(argv)
    quick = {"turns": 6, "mix": 30, "cutoff": 20, "repeats": 2}
    full = {"turns": 30, "mix": 200, "cutoff": len(cutoff.QUESTIONS), "repeats": 3}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    import sys

    args.argv = " ".join(sys.argv[1:] if argv is None else argv)
    return args


if __name__ == "__main__":
    main(parse())
