"""The repeat guard is linear: a long reply cut and continued never blocks the event loop.

A quadratic guard (every word-suffix of the reply built and compared) took ~30 s and ~4 GB for a
200,000-character reply, with the loop blocked the whole time; every other session in the process
stalled with it.
"""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from openrouter_voice.router.continuation import MAX_OVERLAP_WORDS, MIN_OVERLAP_WORDS, RepeatGuard
from openrouter_voice.testing import LoopLagMonitor, Script
from tests.conftest import USER
from tests.timing import halfway

LONG = " ".join(f"word{i}" for i in range(20_500))  # ~194,000 characters: near the reply cap
CUT = LONG.index(" ", 150_000)  # the primary fails after ~150,000 characters


class QuadraticGuard:
    """The original algorithm (every word-suffix of what was said, compared whole): the reference
    the linear guard must agree with wherever its window covers every suffix."""

    def __init__(self, already_said: str) -> None:
        said = already_said.lstrip()
        starts = [0] + [i for i in range(1, len(said)) if said[i - 1].isspace() and not said[i].isspace()]
        self._repeats = [said[i:] for i in starts if i == 0 or len(said[i:].split()) >= MIN_OVERLAP_WORDS]
        self._repeats = [r for r in self._repeats if r.strip()]
        self._buffer = ""
        self._checking = bool(self._repeats)

    def feed(self, delta: str) -> str:
        if not self._checking:
            return delta
        self._buffer += delta
        probe = self._buffer.lstrip()
        if not probe:
            return ""
        if any(len(repeat) > len(probe) and repeat.startswith(probe) for repeat in self._repeats):
            return ""
        return self._release()

    def flush(self) -> str:
        if not self._checking:
            return ""
        probe = self._buffer.lstrip()
        if probe and any(repeat.startswith(probe) for repeat in self._repeats):
            self._checking, self._buffer = False, ""
            return ""
        return self._release()

    def _release(self) -> str:
        self._checking = False
        held, self._buffer = self._buffer, ""
        probe = held.lstrip()
        for repeat in self._repeats:
            if probe.startswith(repeat):
                return probe[len(repeat):]
        return held


def run(guard: RepeatGuard | QuadraticGuard, deltas: list[str]) -> list[str]:
    return [guard.feed(d) for d in deltas] + [guard.flush()]


_words = st.lists(st.sampled_from(["I", "can", "help", "it", "is", "sunny", "in", "Paris", "a", "the"]),
                  max_size=MAX_OVERLAP_WORDS)
_spaces = st.sampled_from([" ", "  ", "\n", " \t"])


@st.composite
def said_and_continuation(draw: st.DrawFn) -> tuple[str, list[str]]:
    words = draw(_words)
    said = draw(st.sampled_from(["", " ", "\n"])) + draw(_spaces).join(words) + draw(st.sampled_from(["", " "]))
    # A continuation that restarts, picks up some words back, or is new; then cut into deltas.
    back = draw(st.integers(0, len(words)))
    kind = draw(st.sampled_from(["restart", "overlap", "new"]))
    head = said if kind == "restart" else " ".join(words[len(words) - back:]) if kind == "overlap" else ""
    text = draw(st.sampled_from(["", " "])) + head + draw(st.text(" abcIPs.", max_size=12))
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=6)))
    deltas = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    return said, deltas


@settings(max_examples=400, deadline=None)
@given(said_and_continuation())
def test_linear_guard_agrees_with_the_quadratic_one_on_short_replies(case):
    said, deltas = case
    assert run(RepeatGuard(said), deltas) == run(QuadraticGuard(said), deltas)


def test_guard_on_a_reply_near_the_cap_is_linear_in_time_and_memory():
    said = LONG[:CUT]
    cases = {
        "restart": (LONG, LONG[CUT:]),  # the backup starts over: what was said is held, then dropped
        "overlap": (LONG[LONG.rindex(" ", 0, LONG.rindex(" ", 0, CUT)):].lstrip(), LONG[CUT:]),  # 2 words back
        "continues": (LONG[CUT:], LONG[CUT:]),
    }
    for name, (continuation, expected) in cases.items():
        deltas = [continuation[i:i + 20] for i in range(0, len(continuation), 20)]  # like a fast model's
        guard, worst, out = RepeatGuard(said), 0.0, []
        for delta in deltas:
            started = time.thread_time()  # CPU time: a busy machine's preemption is not the guard's
            out.append(guard.feed(delta))
            worst = max(worst, time.thread_time() - started)
        out.append(guard.flush())
        assert "".join(out) == expected, name
        assert worst < 0.02, f"{name}: one step took {worst * 1000:.0f} ms"
        tracemalloc.start()
        guard = RepeatGuard(said)
        for delta in deltas:
            guard.feed(delta)
        guard.flush()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 4 * len(LONG) * 4, f"{name}: peak {peak / 2**20:.1f} MB"  # a few copies of the text at most


def _events(text: str, *, finish: bool) -> list[str]:
    events = [json.dumps({"choices": [{"delta": {"content": text[i:i + 2000]}}]}) for i in range(0, len(text), 2000)]
    return [*events, '{"choices":[{"delta":{},"finish_reason":"stop"}]}', "[DONE]"] if finish else events


async def test_long_reply_cut_and_restarted_never_blocks_the_loop(upstream, make_router):
    # The primary says ~150,000 characters, then its stream ends unfinished; the backup starts over.
    upstream.script("a/primary", Script(raw_events=_events(LONG[:CUT], finish=False)))
    upstream.script("b/backup", Script(raw_events=_events(LONG, finish=True)))
    router = make_router(["a/primary", "b/backup"])
    async with LoopLagMonitor() as lag:
        started = time.monotonic()
        reply = await router.complete(USER)
        elapsed = time.monotonic() - started
    assert reply.text == LONG and reply.model == "b/backup"
    assert lag.samples > 0
    # CPU time of the longest step (a busy machine's preemption is not ours), and the whole turn far
    # below the quadratic guard's ~30 s
    assert lag.worst_steps < 0.05, f"the event loop was blocked for {lag.worst_steps * 1000:.0f} ms"
    assert elapsed < halfway(0.0, 30.0)
    await asyncio.sleep(0)
