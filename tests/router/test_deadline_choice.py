"""The deadline chooser (pure) and the dribble watch, without any I/O."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from openrouter_voice.router.deadlines import (
    HEDGE_FLOOR,
    HEDGE_MARGIN,
    MIN_GAP_SAMPLES,
    MIN_TTFT_SAMPLES,
    STALL_FACTOR,
    STALL_FLOOR,
    hedge_delay,
    stall_deadline,
)
from openrouter_voice.router.dribble import DribbleWatch, count_words
from openrouter_voice.router.latency import ModelLatency


def with_ttft(samples: list[float]) -> ModelLatency:
    latency = ModelLatency()
    latency.ttft.extend(samples)
    return latency


def with_gaps(samples: list[float]) -> ModelLatency:
    latency = ModelLatency()
    latency.gap.extend(samples)
    return latency


def test_too_little_history_uses_the_configured_hedge_delay():
    chosen = hedge_delay(with_ttft([0.3] * (MIN_TTFT_SAMPLES - 1)), 1.0)
    assert chosen is not None and chosen.seconds == 1.0 and "configured" in chosen.why


def test_hedge_follows_the_p95_plus_margin():
    samples = [0.30] * 57 + [0.55, 0.60, 0.62] + [1.2] * 3  # 63 samples: nearest-rank p95 is the 60th
    chosen = hedge_delay(with_ttft(samples), 1.0)
    assert chosen is not None
    assert chosen.seconds == 0.62 + HEDGE_MARGIN
    assert "p95 TTFT 0.620s" in chosen.why


def test_hedge_is_clamped_between_the_floor_and_the_configured_ceiling():
    fast = hedge_delay(with_ttft([0.02] * 30), 1.0)
    assert fast is not None and fast.seconds == HEDGE_FLOOR and fast.why.startswith("floor")
    slow = hedge_delay(with_ttft([2.0] * 30), 1.0)
    assert slow is not None and slow.seconds == 1.0 and slow.why.startswith("configured ceiling")
    # A configured value below the floor is the user's choice: it wins.
    tight = hedge_delay(with_ttft([0.02] * 30), 0.2)
    assert tight is not None and tight.seconds == 0.2


def test_no_hedge_when_hedging_is_off():
    assert hedge_delay(with_ttft([0.3] * 30), None) is None
    assert hedge_delay(with_ttft([0.3] * 30), 0.0) is None


def test_stall_follows_the_p99_gap_times_the_factor():
    assert stall_deadline(with_gaps([0.2] * (MIN_GAP_SAMPLES - 1)), 1.5).seconds == 1.5
    rhythm = stall_deadline(with_gaps([0.05] * 200 + [0.2] * 3), 1.5)  # p99 of 203 samples: 0.2 s
    assert rhythm.seconds == STALL_FACTOR * 0.2 and "p99 gap 0.200s" in rhythm.why
    assert stall_deadline(with_gaps([0.01] * 100), 1.5).seconds == STALL_FLOOR
    assert stall_deadline(with_gaps([0.9] * 100), 1.5).seconds == 1.5


@given(st.lists(st.floats(min_value=0.0, max_value=30.0), max_size=80),
       st.floats(min_value=0.05, max_value=10.0))
def test_chosen_deadlines_never_leave_their_bounds(samples, configured):
    hedge = hedge_delay(with_ttft(samples), configured)
    stall = stall_deadline(with_gaps(samples), configured)
    assert hedge is not None
    for chosen, floor in ((hedge, HEDGE_FLOOR), (stall, STALL_FLOOR)):
        assert min(floor, configured) <= chosen.seconds <= configured


def test_a_steady_voice_stream_never_dribbles():
    watch = DribbleWatch(2.0, 2.0)
    assert not any(watch.feed(i / 75, 1) for i in range(600))  # 75 tokens/s for 8 s


def test_big_chunks_with_pauses_are_not_dribbling():
    # Some providers batch: 12 words every 1.2 s is 10 words/s, far above speech.
    watch = DribbleWatch(2.0, 2.0)
    assert not any(watch.feed(i * 1.2, 12) for i in range(10))


def test_one_word_every_0_7_s_dribbles_after_a_window():
    watch = DribbleWatch(2.0, 2.0)
    flags = [watch.feed(t, n) for t, n in [(0.0, 1), (0.05, 3), (0.1, 4)]]  # a fast start
    flags += [watch.feed(0.1 + 0.7 * k, 1) for k in range(1, 6)]
    first = flags.index(True)
    assert 0.1 + 0.7 * (first - 2) >= 2.0  # not before a whole window of text
    assert "too slow for speech" in watch.describe()


def test_word_counts_of_streamed_deltas():
    assert [count_words(t) for t in ("Today", " will", " be mostly", "", ".")] == [1, 1, 2, 0, 1]
