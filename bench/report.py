"""BENCHMARKS.md and the TTFT plot from the measured figures."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .scenarios import CUT_AT, VOICE, Cell, Table
from .systems import PEERS, SYSTEMS, LiveKitRetryOnChunk, Ours

OURS = Ours.name


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def p95(values: list[float]) -> float | None:
    """Nearest-rank 95th percentile (with fewer than 20 samples, the largest or close to it)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-95 * len(ordered) // 100) - 1))]


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


def timing(cell: Cell) -> str:
    return f"{ms(median(cell.values))} (p95 {ms(p95(cell.values))})"


def outcome(cell: Cell | None, scenario: str) -> str:
    """One table cell: median (p95), waste, and how many requests got no (whole) answer."""
    if cell is None:
        return "n/a"
    if not cell.values:
        text = (cell.failures[0] if cell.failures else "no reply") + f" in {len(cell.failures)}/{cell.requests}"
        if cell.not_repeated:
            text += f"; {cell.not_repeated}"
        return text.replace("|", "/")
    label = "gap " if scenario.startswith("5") else "reply in " if scenario.startswith("8") else ""
    parts = [label + timing(cell)]
    if scenario.startswith("8") and cell.extra.get("ratio"):
        parts.append(f"{median(cell.extra['ratio']):.1f}x healthy")
    if scenario.startswith(("5", "8")):
        repeated = cell.extra.get("repeated", [])
        parts.append(f"{max(repeated):.0f} repeated words" if repeated and max(repeated) else "0 repeated")
    if scenario.startswith("1b"):
        parts.append(f"{statistics.mean(cell.extra['hedged']) * 100:.1f}% of {cell.requests} turns hedged, "
                     f"{statistics.mean(cell.waste):.3f} extra calls/turn")
        return ", ".join(parts)
    if scenario.startswith("6"):
        parts.append(f"{statistics.mean(cell.extra['back_to_primary']) * 100:.0f}% back to primary")
    parts.append(f"waste {statistics.mean(cell.waste):.1f}")
    if cell.failures:
        parts.append(f"{len(cell.failures)}/{cell.requests} failed: {cell.failures[0]}")
    return ", ".join(parts).replace("|", "/")


def targets(table: Table, limit: float, first_token_timeout: float,
            overhead: dict[str, dict[str, float]]) -> dict[str, tuple[str, bool | None]]:
    """Per scenario: the issue's target for us, and whether we met it."""
    out: dict[str, tuple[str, bool | None]] = {}

    def bound(scenario: str, limit_s: float, label: str) -> None:
        cell = table.get(scenario, {}).get(OURS)
        value = median(cell.values) if cell else None
        ok = value is not None and value <= limit_s and not (cell and cell.failures)
        out[scenario] = (f"<= {ms(limit_s)} ({label})", ok)

    for scenario in table:
        if scenario.startswith("2"):
            bound(scenario, 1.1 * limit, "1.1 x backup TTFT")
        elif scenario.startswith(("3", "4")):
            bound(scenario, 2.5 * limit, "2.5 x backup TTFT")
        elif scenario.startswith(("5", "8")):
            cell = table[scenario].get(OURS)
            repeats = cell.extra.get("repeated", []) if cell else []
            ok = bool(cell and cell.values and not cell.failures and max(repeats) == 0)
            goal = "0 repeated words"
            if cell and scenario.startswith(("5c", "5d")):
                goal += ", gap <= 0.8 s"
                ok = ok and (median(cell.values) or 99.0) <= 0.8
            if cell and scenario.startswith("8"):
                goal += ", whole reply <= 2 x healthy"
                ok = ok and (median(cell.extra.get("ratio", [])) or 99.0) <= 2.0
            out[scenario] = (goal, ok)
        elif scenario.startswith("1b"):
            cell = table[scenario].get(OURS)
            extra = statistics.mean(cell.waste) if cell and cell.waste else None
            out[scenario] = ("<= 0.05 extra calls per turn", extra is not None and extra <= 0.05)
    if "bare httpx" in overhead and OURS in overhead:
        bare, ours = overhead["bare httpx"], overhead[OURS]
        out["overhead per request"] = ("< 1 ms over bare httpx", ours["ms_per_request"] - bare["ms_per_request"] < 1.0)
        out["overhead per chunk"] = ("< 20 us over bare httpx", ours["us_per_chunk"] - bare["us_per_chunk"] < 20.0)
    metered = overhead.get(OURS + ", metrics on")
    if "bare httpx2" in overhead and metered is not None:
        base = overhead["bare httpx2"]
        out["overhead per request, metrics on"] = (
            "within +0.3 ms of bare httpx2", over_httpx2(metered, base) <= 0.3)
    return out


def verdict(ok: bool | None) -> str:
    return "met" if ok else "**MISSED**"


def render(table: Table, limit_values: list[float], overhead: dict[str, dict[str, float]],
           load: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    limit = median(limit_values) or VOICE["ttft"]
    systems = [cls.name for cls in SYSTEMS]
    goals = targets(table, limit, meta["first_token_timeout"], overhead)
    scenario_names = [s for s in table if s != "1 bare httpx"]
    lines = [
        "# Failover benchmark",
        "",
        f"`make bench` (= `{meta['command']}`) measured this on {meta['date']} in {meta['elapsed']:.0f} s: every "
        f"system against the same scripted upstream (`openrouter_voice.testing`, in its own process on 127.0.0.1), "
        f"{meta['runs']} runs per cell (each run a fresh, warmed-up system), medians with nearest-rank p95. "
        f"Healthy models answer with the first token at {VOICE['ttft'] * 1000:.0f} ms (at the median: varied per "
        f"request where learning matters, see the notes) and stream {VOICE['tokens_per_second']:.0f} tokens/s. "
        f"Any single request is capped at {meta['cap']:g} s and reported "
        f"as \"> {meta['cap']:g} s (timed out)\"; a system that timed out is not repeated in that scenario (it would "
        "time out again), nor is one that failed alike twice.",
        "",
        f"Machine: {meta['machine']}. Versions: {meta['versions']}.",
        "",
        f"**Physical limit** (the healthy backup's own TTFT over a bare httpx stream): **{ms(limit)}** "
        f"(p95 {ms(p95(limit_values))}).",
        "",
        "TTFT = time to the first token of the answer the user gets. In scenario 5 the figure is the *gap*: the "
        "longest silence inside the reply, i.e. from the failure to the first continuation token. Waste = upstream "
        "calls per request that did not serve it (failed attempts, hedges that lost, background probes), counted "
        "by the upstream itself from a tag in each request.",
        "",
        "## Results",
        "",
        "| scenario | target for us | " + " | ".join(systems) + " |",
        "|---|---|" + "---|" * len(systems),
    ]
    for name in scenario_names:
        goal = goals.get(name)
        goal_text = f"{goal[0]}: {verdict(goal[1])}" if goal else "-"
        row = [outcome(table[name].get(s), name) for s in systems]
        lines.append(f"| {name} | {goal_text} | " + " | ".join(row) + " |")
    bare = table.get("1 bare httpx", {}).get("bare httpx")
    if bare is not None:
        lines += ["", f"Bare httpx stream to the healthy primary (scenario 1's baseline): {outcome(bare, '1')}."]

    lines += ["", "## Ratios", "", "Our median over each peer's (below 1: we are faster; \"peer failed\": it gave "
              "no whole answer) and over the physical limit:", "",
              "| scenario | " + " | ".join(f"vs {cls.name}" for cls in PEERS) + " | vs physical limit |",
              "|---|" + "---|" * (len(PEERS) + 1)]
    for name in scenario_names:
        ours = table[name].get(OURS)
        value = median(ours.values) if ours else None
        if value is None:
            continue
        ratios = []
        for cls in PEERS:
            peer = table[name].get(cls.name)
            peer_value = median(peer.values) if peer and peer.values else None
            ratios.append(f"{value / peer_value:.2f}" if peer_value else "peer failed")
        lines.append(f"| {name} | " + " | ".join(ratios) + f" | {value / limit:.2f} |")

    lines += ["", "## Mid-stream failures (5)", "",
              f"The primary says {CUT_AT} words, then sends an in-stream error event (5a, 5b) or goes silent with "
              "the connection open (5c, 5d). The backup either honours the prefill (continues the partial reply) or "
              "ignores it and starts from scratch, as real models do both. LiveKit's opt-in `retry_on_chunk_sent=True` "
              "is shown too.", "",
              "| scenario | system | whole reply exact | repeated words (max) | missing words (max) | gap to "
              "continuation | outcome |", "|---|---|---|---|---|---|---|"]
    for name in [s for s in scenario_names if s.startswith("5")]:
        for system in [*systems, LiveKitRetryOnChunk.name]:
            cell = table[name].get(system)
            if cell is None:
                continue
            exact = cell.extra.get("exact", [])
            repeated = cell.extra.get("repeated", [])
            missing = cell.extra.get("missing", [])
            lines.append(
                f"| {name} | {system} | {sum(exact):.0f}/{cell.requests} | "
                f"{max(repeated) if repeated else 0:.0f} | {max(missing) if missing else 0:.0f} | "
                f"{timing(cell) if cell.values else '-'} | {outcome(cell, name)} |")

    lines += ["", "## Overhead", "",
              "Client CPU per request and per streamed chunk (fast replies of 10 and 400 tokens, interleaved batches, "
              "least disturbed batch, fitted as fixed + per chunk), in a fresh process; the median of "
              f"{meta.get('overhead_rounds', 1)} such processes, with the range of their per-request figures over bare "
              "httpx2 in brackets (the spread between runs):", "",
              "| system | CPU per request | CPU per chunk | over bare httpx | over bare httpx2 |",
              "|---|---|---|---|---|"]
    for system, cost in overhead.items():
        extras = []
        for baseline in ("bare httpx", "bare httpx2"):
            base = overhead.get(baseline)
            extras.append("-" if base is None or system.startswith("bare ") else
                          (f"{over_httpx2(cost, base):+.3f} ms/request{_spread(cost.get('over_httpx2_runs'))}"
                           if baseline == "bare httpx2" else
                           f"{cost['ms_per_request'] - base['ms_per_request']:+.3f} ms/request")
                          + f", {cost['us_per_chunk'] - base['us_per_chunk']:+.1f} us/chunk")
        lines.append(f"| {system} | {cost['ms_per_request']:.3f} ms | {cost['us_per_chunk']:.1f} us | "
                     f"{' | '.join(extras)} |")
    for key in ("overhead per request", "overhead per chunk", "overhead per request, metrics on"):
        if key in goals:
            lines.append(f"\nTarget {key} {goals[key][0]}: {verdict(goals[key][1])}.")

    lines += ["", f"## {meta['streams']} concurrent streams (7)", "",
              f"{meta['streams']} streams started at once through one client process (each system in a fresh "
              f"process; the upstream, in its own process, shares the 2 cores), {meta['load_tokens']} tokens each at "
              "voice timing. Added latency = first token minus the scripted 300 ms, from the common start. CPU and "
              "peak RSS growth are the client process's.", "",
              "| system | completed | failed | wall | streams/s | p50 added | p99 added | CPU per 1,000 chunks | "
              "peak RSS growth | upstream calls |", "|---|---|---|---|---|---|---|---|---|---|"]
    for system, m in load.items():
        if "error" in m:
            lines.append(f"| {system} | - | - | - | - | - | - | - | - | {m['error']} |")
            continue
        failed = f"{m['failed']}" + (f" ({', '.join(f'{k}: {v}' for k, v in m['errors'].items())})"
                                      if m["errors"] else "")
        lines.append(
            f"| {system} | {m['completed']} | {failed} | {m['wall_s']:.1f} s | {m['streams_per_s']:.0f} | "
            f"{_ms(m['p50_added_ms'])} | {_ms(m['p99_added_ms'])} | {m['cpu_ms_per_1000_chunks']:.0f} ms | "
            f"{m['peak_rss_growth_mb']:.0f} MB | {m.get('calls', '-')} |")

    if meta.get("fleet"):
        from .fleet_report import section
        from .fleet_report import targets as fleet_targets

        lines += ["", *section(meta["fleet"], verdict)]
        goals.update(fleet_targets(meta["fleet"]))
    lines += ["", "## Targets", ""]
    for key, (goal, ok) in goals.items():
        lines.append(f"- {verdict(ok)}: {key}: {goal}")
    lines += ["", "## Settings", ""]
    for cls in meta["described"]:
        lines.append(f"- **{cls.name}**: {cls.describe()}")
    lines += ["", *meta["notes"], "", "![TTFT per scenario and system](bench/ttft.png)", ""]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def plot(table: Table, limit: float, cap: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = [cls.name for cls in SYSTEMS]
    names = [n for n in table if n != "1 bare httpx"]
    fig, ax = plt.subplots(figsize=(13, 5.5))
    width = 0.8 / len(systems)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
    for i, system in enumerate(systems):
        xs = [x + (i - (len(systems) - 1) / 2) * width for x in range(len(names))]
        for x, name in zip(xs, names, strict=True):
            cell = table[name].get(system)
            if cell is None:
                continue
            value = median(cell.values)
            if value is not None:
                high = p95(cell.values) or value
                ax.bar(x, value, width, color=colors[i], yerr=[[0], [max(0.0, high - value)]], capsize=2)
            elif cell.failures and "timed out" in cell.failures[0]:
                ax.bar(x, cap, width, color="white", edgecolor=colors[i], hatch="///")
                ax.text(x, cap * 1.05, "timeout", rotation=90, ha="center", va="bottom", fontsize=6)
            else:
                ax.text(x, 0.12, "no whole\nanswer", rotation=90, ha="center", va="bottom", fontsize=6,
                        color=colors[i])
    from matplotlib.patches import Patch

    handles: list[Any] = [Patch(facecolor=colors[i], label=system) for i, system in enumerate(systems)]
    handles.append(ax.axhline(limit, color="black", linestyle="--", linewidth=1,
                              label=f"physical limit ({limit * 1000:.0f} ms)"))
    ax.set_yscale("log")
    ax.set_ylim(0.1, cap * 2.5)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([_wrap(n) for n in names], fontsize=7)
    ax.set_ylabel("seconds (median, whisker to p95; log scale)")
    ax.set_title("Time to first token of the answer the user gets (scenario 5: gap from the failure to the "
                 "continuation)", fontsize=10)
    ax.legend(handles=handles, fontsize=8, loc="upper left")
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def _wrap(text: str, width: int = 18) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def _spread(runs: list[float] | None) -> str:
    """The range of the rounds' per-request figures, when there was more than one round.

    >>> _spread([0.31, 0.287, 0.35]), _spread([0.3])
    (' (+0.287 to +0.350)', '')
    """
    return f" ({min(runs):+.3f} to {max(runs):+.3f})" if runs and len(runs) > 1 else ""


def over_httpx2(cost: dict[str, Any], base: dict[str, Any]) -> float:
    """A system's CPU per request over bare httpx2: the median of the rounds' own differences when there
    were rounds (each round measured both in one process), else the difference of the two figures.

    >>> over_httpx2({"ms_per_request": 1.3, "over_httpx2_runs": [0.29, 0.33, 0.31]}, {"ms_per_request": 0.97})
    0.31
    """
    runs = cost.get("over_httpx2_runs")
    return float(statistics.median(runs)) if runs else float(cost["ms_per_request"] - base["ms_per_request"])
