"""Spoken turns: a model is judged by when its first speakable sentence ends (what the caller waits for)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from openrouter_voice.router import FallbackRouter, HealthTracker, Outcome
from openrouter_voice.router.deadlines import SENTENCE_CEILING, SENTENCE_FLOOR, first_sentence_bound
from openrouter_voice.router.first_sentence import FirstSentenceWatch, sentence_end
from openrouter_voice.router.latency import ModelLatency
from openrouter_voice.testing import Script
from tests.conftest import USER, continuing

FULL = ("Today will be mostly sunny with a light breeze from the west and a high of twenty two degrees. "
        "Enjoy the clear evening.")
FIRST_END = FULL.index(". ") + 1


def words_from(chunks: list[tuple[float, str, str]], model: str) -> int:
    return len("".join(text for _, text, label in chunks if label == model).split())


async def timed_stream(router: FallbackRouter, *, spoken: bool) -> tuple[list[tuple[float, str, str]], Any]:
    """The reply's text chunks with their arrival (seconds since the request) and model, and the result."""
    started = time.monotonic()
    chunks: list[tuple[float, str, str]] = []
    async with router.stream(USER, spoken=spoken) as stream:
        async for chunk in stream:
            if chunk.text:
                chunks.append((time.monotonic() - started, chunk.text, chunk.model or ""))
    return chunks, stream.result


def first_sentence_at(chunks: list[tuple[float, str, str]]) -> float:
    said = ""
    for at, text, _ in chunks:
        said += text
        if len(said) >= FIRST_END:
            return at
    raise AssertionError("the first sentence never arrived")


# -- the watch and the bound (pure) -------------------------------------------------------------


def test_sentence_ends_need_a_following_space_and_enough_text():
    assert sentence_end("It is 3.5 degrees") is None  # a decimal point is no sentence end
    assert sentence_end("It is sunny and mild today.") is None  # not yet confirmed: "today.5" could follow
    assert sentence_end("Sure. It is sunny today! More") == len("Sure. It is sunny today!")
    assert sentence_end('He said "it is sunny and mild." Then') is not None
    assert sentence_end("今日はとても良い天気です。明日も晴れるでしょう", min_chars=5) is not None


def test_a_fast_reply_is_given_the_time_to_end_a_long_sentence():
    watch = FirstSentenceWatch(0.5, words_per_second=8.0)
    watch.feed(0.0, "One")
    for step in range(1, 40):  # 20 words a second, no sentence end for 2 s
        watch.feed(step * 0.05, " word")
        deadline = watch.deadline()
        assert deadline is not None and deadline > step * 0.05
    watch.feed(2.0, " end. Next")
    assert watch.ended and watch.deadline() is None and watch.span == pytest.approx(2.0)


def test_a_slow_reply_is_due_at_the_bound():
    watch = FirstSentenceWatch(0.5, words_per_second=8.0)
    assert watch.deadline() is None  # nothing before the first token
    watch.feed(1.0, "One")
    watch.feed(1.4, " two")
    assert watch.deadline() == pytest.approx(1.5)
    assert "within 0.50s" in watch.describe()


def test_a_sentence_already_spoken_or_a_tool_call_ends_the_watch():
    assert FirstSentenceWatch(0.5, words_per_second=8.0, said="It is sunny and mild today. And").ended
    watch = FirstSentenceWatch(0.5, words_per_second=8.0)
    watch.feed(0.0, "Let me check")
    watch.stop()
    assert watch.deadline() is None
    watch.finish()
    assert watch.span is None  # a tool call teaches nothing about sentences


def test_the_reply_end_is_a_sentence_end_for_the_samples():
    watch = FirstSentenceWatch(None, words_per_second=8.0)  # measuring only (the last model)
    watch.feed(0.0, "Sure")
    watch.feed(0.3, " thing")
    assert watch.deadline() is None
    watch.finish()
    assert watch.span == pytest.approx(0.3)


def test_the_bound_follows_the_model_within_floor_and_ceiling():
    latency = ModelLatency()
    assert first_sentence_bound(latency, 0.5).seconds == 0.5
    latency.sentence.extend([0.05] * 10)
    assert first_sentence_bound(latency, 0.5).seconds == SENTENCE_FLOOR
    latency.sentence.extend([9.0] * 10)
    chosen = first_sentence_bound(latency, 0.5)
    assert chosen.seconds == SENTENCE_CEILING and "ceiling" in chosen.why


# -- on the scripted upstream --------------------------------------------------------------------


async def test_a_dribbling_primary_is_continued_by_the_backup_within_the_bound(upstream, make_router, caplog):
    # Two words at once, then a word every 0.7 s: each gap passes the stall deadline (1.5 s) and the
    # dribble check is off, yet the first sentence would take ~11 s.
    interval = 0.7
    upstream.script("a/dribbles", Script(text=FULL, tokens_per_second=100, dribble_after_tokens=2,
                                         dribble_interval=interval))
    upstream.script("b/backup", continuing(FULL, tokens_per_second=200))
    router = make_router(["a/dribbles", "b/backup"], stall_timeout=1.5, dribble_words_per_second=0,
                         first_sentence_timeout=0.5)
    with caplog.at_level(logging.DEBUG, logger="openrouter_voice.router"):
        chunks, result = await timed_stream(router, spoken=True)
    assert result.text == FULL and "".join(t for _, t, _ in chunks) == FULL  # no word repeated or lost
    first = result.attempts[0]
    assert first.outcome is Outcome.STALL and "no speakable sentence" in (first.error or "")
    assert result.model == "b/backup"
    assert words_from(chunks, "a/dribbles") <= 3  # cut before its fourth word (at 2.1 s)
    # The first sentence came before the dribbler could have said even its fourth word.
    assert first_sentence_at(chunks) < 3 * interval
    assert not router.health.is_available("a/dribbles")  # cooled down like a dribble
    assert "first sentence within 0.50s of the first token (configured (0 of 10" in caplog.text


async def test_text_turns_are_not_judged_by_sentences(upstream, make_router):
    upstream.script("a/slow", Script(text="One two three four five six. Done", tokens_per_second=100,
                                     dribble_after_tokens=2, dribble_interval=0.25))
    upstream.script("b/backup", Script(text="Backup."))
    router = make_router(["a/slow", "b/backup"], stall_timeout=1.5, dribble_words_per_second=0,
                         first_sentence_timeout=0.3)
    _, read = await timed_stream(router, spoken=False)
    assert read.model == "a/slow" and read.text == "One two three four five six. Done"
    _, heard = await timed_stream(router, spoken=True)  # the same reply, spoken: cut
    assert heard.attempts[0].outcome is Outcome.STALL and heard.model == "b/backup"


async def test_the_last_model_is_never_cut(upstream, make_router):
    upstream.script("a/only", Script(text="One two three four five six. Done", tokens_per_second=100,
                                     dribble_after_tokens=2, dribble_interval=0.15))
    router = make_router(["a/only"], stall_timeout=1.5, dribble_words_per_second=0, first_sentence_timeout=0.3)
    _, heard = await timed_stream(router, spoken=True)
    assert [a.outcome for a in heard.attempts] == [Outcome.OK]
    assert len(router.health.latency("a/only").sentence) == 1  # measured all the same


async def test_a_model_with_long_first_sentences_is_not_cut_once_learnt(upstream, make_router):
    # Slower than the 8 words/s that extends the bound, with a first sentence of 1.25 s: a model
    # nothing is known about is cut at the cold 0.5 s; one whose replies taught its bound is not.
    sentence = "Sunny and mild, twenty degrees. Enjoy"
    health = HealthTracker()
    upstream.script("a/long", Script(text=sentence, tokens_per_second=4))  # 5 gaps of 0.25 s to " Enjoy"
    teacher = make_router(["a/long"], stall_timeout=1.5, dribble_words_per_second=0, health=health)
    await asyncio.gather(*(timed_stream(teacher, spoken=True) for _ in range(10)))  # the last model: measured
    assert len(health.latency("a/long").sentence) == 10
    learnt = first_sentence_bound(health.latency("a/long"), 0.5)
    assert learnt.seconds > 1.25 and "p95 first sentence" in learnt.why

    upstream.script("a/long", Script(text=sentence, tokens_per_second=1 / 0.18))  # its first sentence in 0.9 s
    upstream.script("b/backup", Script(text=sentence, tokens_per_second=200))
    learnt_router = make_router(["a/long", "b/backup"], stall_timeout=1.5, dribble_words_per_second=0,
                                first_sentence_timeout=0.5, health=health)
    _, heard = await timed_stream(learnt_router, spoken=True)
    assert [a.outcome for a in heard.attempts] == [Outcome.OK] and heard.text == sentence

    cold = make_router(["a/long", "b/backup"], stall_timeout=1.5, dribble_words_per_second=0,
                       first_sentence_timeout=0.5)
    _, cut = await timed_stream(cold, spoken=True)
    assert cut.attempts[0].outcome is Outcome.STALL and cut.text == sentence  # continued, nothing repeated


async def test_a_tool_call_turn_is_not_cut(upstream, make_router):
    upstream.script("a/tools", Script(text="", ttft=0.05, tool_calls=[("get_weather", {"city": "Paris"})]))
    router = make_router(["a/tools", "b/backup"], first_sentence_timeout=0.3)
    _, result = await timed_stream(router, spoken=True)
    assert result.model == "a/tools" and [c.name for c in result.tool_calls] == ["get_weather"]


def test_first_sentence_timeout_must_not_be_negative():
    from openrouter_voice.router import ConfigurationError

    with pytest.raises(ConfigurationError, match="first_sentence_timeout"):
        FallbackRouter(["a/b"], first_sentence_timeout=-1)
