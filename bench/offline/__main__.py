"""Offline answers: ``make bench-offline`` (``python -m bench.offline [--rounds N]``).

Asks the 40 everyday questions of :mod:`bench.offline.questions` to the embedded local model the way
``make chat`` does with no key (the assistant's instructions and tools, the router, the live-data
guard), in two configurations served side by side and asked in turn, so both see the same CPU load:

* before: the previous setup (llama.cpp's ``snoozy`` prompt, temperature 0.3, repeat penalty 1.3, a
  guard for weather only);
* after: the few-shot ``Q: / A:`` prompt (:mod:`openrouter_voice.local.prompt`), greedy decoding, the
  guard for every live topic.

Prints and writes (between markers in BENCHMARKS.md) the share answered correctly or honestly, every
answer, and the time to first token of each. With ``--rounds`` > 1 the set is asked again and the
answers must not change (greedy decoding is deterministic).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livekit.agents import llm

from openrouter_voice.agent import Assistant, OpenRouterLLM
from openrouter_voice.agent.assistant import INSTRUCTIONS
from openrouter_voice.agent.honesty import LIVE_TOPICS, WEATHER, LiveLookupGuard, LiveTopic
from openrouter_voice.local import REQUEST_OPTIONS, LocalModelServer
from openrouter_voice.router import FallbackRouter

from ..sections import replace_section
from .questions import QUESTIONS

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- offline-answers:begin -->", "<!-- offline-answers:end -->"
BEFORE_OPTIONS: dict[str, Any] = {"temperature": 0.3, "repeat_penalty": 1.3, "max_tokens": 120,
                                  "stop": ["\n\n", "###", "\nUser", "\nUSER"], "seed": 0}
"""The local model's request options before the few-shot prompt (seeded here, so a run repeats)."""


@dataclass
class System:
    name: str
    server_args: list[str]
    options: dict[str, Any]
    topics: tuple[LiveTopic, ...]
    answers: list[list[str]] = field(default_factory=list)  # per round, per question
    ttfts: list[float] = field(default_factory=list)
    cold_ttft: float = 0.0
    router: FallbackRouter | None = None


SYSTEMS = [
    System("before (snoozy prompt, T=0.3, weather guard)", ["--chat_format", "snoozy"], BEFORE_OPTIONS, (WEATHER,)),
    System("after (few-shot Q/A prompt, greedy, live-data guard)", [], REQUEST_OPTIONS, LIVE_TOPICS),
]


async def ask(system: System, question: str, tools: list[dict[str, Any]]) -> tuple[str, float]:
    """The answer as ``chat`` gives it (instructions, tools, the guard), and the seconds to its first text."""
    assert system.router is not None
    messages = [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": question}]
    guard = LiveLookupGuard(question, carried_tools=True, tool_less=lambda _: True, topics=system.topics)
    started = time.perf_counter()
    first, text = 0.0, ""
    async with system.router.stream(messages, tools=tools) as stream:
        async for chunk in stream:
            if chunk.text:
                first = first or time.perf_counter() - started
                text += guard.filter(chunk.text, chunk.model, spoke=bool(text))
    return text.strip(), first


def share(system: System, kind: str | None = None) -> tuple[int, int]:
    pairs = [(q, a) for q, a in zip(QUESTIONS, system.answers[0], strict=True) if kind in (None, q.kind)]
    return sum(q.judge(a) for q, a in pairs), len(pairs)


async def run(rounds: int) -> list[System]:
    servers = [LocalModelServer(extra_args=s.server_args) for s in SYSTEMS]
    for server in servers:
        await server.astart()
    try:
        probe = OpenRouterLLM(models=["openai/gpt-4o-mini"], api_key=None)
        assistant = Assistant(llm=probe)
        tools = llm.ToolContext(assistant.tools).parse_function_tools("openai", strict=False)
        await probe.aclose()
        for system, server in zip(SYSTEMS, servers, strict=True):
            label = f"{server.model}@local"
            system.router = FallbackRouter(models=[label], endpoints={"local": (server.base_url, None)},
                                           endpoint_options={"local": system.options}, api_key=None,
                                           base_url="http://127.0.0.1:9/api/v1", first_token_timeout=60,
                                           stall_timeout=30, hedge_after=None, app_name="bench")
            system.router.set_tool_support({label: False})
            _, system.cold_ttft = await ask(system, "Hello there.", tools)  # the first request evaluates it all
        for _ in range(rounds):
            for system in SYSTEMS:
                system.answers.append([])
            for question in QUESTIONS:  # both systems in turn: the same CPU load for each
                for system in SYSTEMS:
                    answer, ttft = await ask(system, question.text, tools)
                    system.answers[-1].append(answer)
                    system.ttfts.append(ttft)
    finally:
        for system in SYSTEMS:
            if system.router is not None:
                await system.router.aclose()
        for server in servers:
            await server.astop()
    return SYSTEMS


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def render(systems: list[System], rounds: int, seconds: float) -> str:
    before, after = systems
    lines = [BEGIN, "## Offline answers (the local model, no key)", "",
             f"`make bench-offline`: the {len(QUESTIONS)} everyday questions of `bench/offline/questions.py` asked "
             "as `make chat` asks them with no key (the assistant's instructions and tools, the router, the "
             "live-data guard), before and after the few-shot prompt, served side by side on this machine and "
             f"asked in turn; {rounds} round(s), {seconds:.0f} s. Correct for greetings, facts and sums; honest "
             "(\"not sure\", \"can't look that up\", no number) for live data and what nobody could know.", "",
             "| | before | after |", "|---|---|---|"]
    for kind in (None, "greeting", "fact", "arithmetic", "live", "unknowable"):
        cells = []
        for system in systems:
            good, total = share(system, kind)
            cells.append(f"{good}/{total} ({good / total:.0%})" if kind else f"**{good}/{total} ({good / total:.0%})**")
        lines.append(f"| {kind or 'correct or honest'} | {cells[0]} | {cells[1]} |")
    for label, q in (("first token, median", 50), ("first token, p90", 90)):
        b, a = percentile(before.ttfts, q), percentile(after.ttfts, q)
        lines.append(f"| {label} | {b * 1000:.0f} ms | {a * 1000:.0f} ms ({a / b:.2f}x) |")
    lines.append(f"| first token of the first request | {before.cold_ttft * 1000:.0f} ms | "
                 f"{after.cold_ttft * 1000:.0f} ms |")
    same = [all(r == s.answers[0] for r in s.answers) for s in systems]
    lines.append(f"| same answers every round | {'yes' if same[0] else 'no'} | {'yes' if same[1] else 'no'} |")
    lines += ["", "Times are wall-clock on a shared machine (other work was using the CPU): compare the two "
              "columns, measured in the same run, rather than the absolute figures.", "",
              "| question | before | after |", "|---|---|---|"]
    for i, q in enumerate(QUESTIONS):
        cells = [f"{'✓' if q.judge(s.answers[0][i]) else '✗'} {s.answers[0][i][:90]}".replace("|", "/")
                 for s in systems]
        lines.append(f"| {q.text} | {cells[0]} | {cells[1]} |")
    return "\n".join([*lines, END]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="times the whole set is asked (default 2)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    started = time.monotonic()
    systems = asyncio.run(run(args.rounds))
    section = render(systems, args.rounds, time.monotonic() - started)
    print(section)
    if not args.no_write:
        replace_section(ROOT / "BENCHMARKS.md", BEGIN, END, section)


if __name__ == "__main__":
    main()
