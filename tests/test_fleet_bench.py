"""Scenario 9's accounting (bench/fleet_scenario.py): which turns paid a failure, what was wasted, how fast
the fleet learnt it. Synthetic phases, so each promise is checked against a known answer."""

from __future__ import annotations

from typing import Any

from bench.fleet_report import section, targets
from bench.fleet_scenario import PROCESSES, Phase, paid
from bench.fleet_worker import EMBEDDED, FLEET_SYSTEMS, REDIS

T0 = 1000.0


def turn(tag: int, started: float, ttft: float | None, error: str | None = None) -> dict[str, Any]:
    return {"tag": tag, "started": T0 + started, "ttft": ttft, "served_by": "lane/backup", "error": error}


def phase() -> Phase:
    """Process 0: a healthy turn before t0, one that hedged past the hanging primary, one that is slow
    without ever calling the primary (machine noise), one that failed outright. Process 1: learnt the
    verdict 12 ms after process 0 took it, then a turn it started after that paid anyway."""
    turns = [
        [turn(1, -1.0, 0.30), turn(2, 0.1, 0.70), turn(3, 0.2, 0.50), turn(4, 0.3, None, "RouterError")],
        [turn(11, -0.8, 0.30), turn(12, 2.5, 0.90)],
    ]
    calls = [("primary", 0.0, 2), ("backup", 0.0, 2), ("backup", 0.0, 3), ("primary", 0.0, 4), ("backup", 0.0, 4),
             ("primary", 0.0, 12), ("backup", 0.0, 12)]
    watch = [[T0 + 2.001, T0 + 2.0], [T0 + 2.012, T0 + 2.0], None, None]
    return Phase(t0=T0, turns=turns, calls=calls, watch=watch)


def test_only_turns_that_called_the_failing_primary_and_were_slow_paid() -> None:
    row = paid(phase())
    assert row["turns"] == 3 + 1  # the turns answered before t0 are the baseline, not counted
    assert row["paid"] == 3  # tags 2, 4 and 12; tag 3 was slow without touching the primary
    assert row["max_per_process"] == 2
    assert row["paid_after_known"] == 1  # tag 12 started after the verdict + 100 ms
    assert row["waste"] == 1 + 2 + 1  # the hedged primary, both calls of the failed turn, the late one's primary


def test_propagation_counts_the_processes_that_learnt_it_not_the_one_that_took_the_verdict() -> None:
    row = paid(phase())
    assert row["learnt_by"] == 2
    assert [round(s, 3) for s in row["propagation"]] == [0.012]


def fleet(trial_calls: int, late_payers: int) -> dict[str, Any]:
    rows = {"turns": 10, "paid": 1, "max_per_process": 1, "paid_after_known": late_payers, "waste": 1,
            "propagation": [0.01, 0.02], "learnt_by": PROCESSES}
    return {"sessions": 3, "hang": dict.fromkeys(FLEET_SYSTEMS, rows), "429": dict.fromkeys(FLEET_SYSTEMS, rows),
            "trial": {system: trial_calls for system in FLEET_SYSTEMS}}


def test_targets_miss_when_sharing_lets_duplicate_trials_or_late_payers_through() -> None:
    assert all(ok for _, ok in targets(fleet(trial_calls=1, late_payers=0)).values())
    missed = {key for key, (_, ok) in targets(fleet(trial_calls=2, late_payers=1)).items() if not ok}
    assert missed == {"9 half-open trials", "9 hang, nobody pays once the fleet knows"}
    text = "\n".join(section(fleet(trial_calls=2, late_payers=0), lambda ok: "met" if ok else "MISSED"))
    assert f"{EMBEDDED} 2 (1 duplicates)" in text
    assert f"{REDIS} 2 (1 duplicates)" in text
