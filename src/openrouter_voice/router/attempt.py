"""One streamed request to one model: the I/O half (deadlines, reading, closing).

:func:`stream_attempt` sends the request (:func:`.sending.open_stream` judges the status), reads
its events (:mod:`.sse`) under the deadlines (:mod:`.watchdog`), hands their data to the pure
:class:`~.chunks.ChunkParser`, and yields text deltas as they arrive and finally an
:class:`AttemptDone`. Deadlines are measured from the moment the request is sent and cover only
*content* (text or tool-call deltas): headers, role-only deltas, empty chunks and
``: OPENROUTER PROCESSING`` keep-alive comments do not count, so a model that only keeps the
connection warm is cut off on time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import httpx2
from httpx2 import SSEError

from ..redact import redact
from .chunks import MAX_TEXT_CHARS, MAX_TOOL_ARGS_CHARS, AttemptDone, ChunkError, ChunkParser
from .dribble import DribbleWatch, count_words
from .errors import ErrorInfo
from .first_sentence import FirstSentenceWatch
from .sending import AttemptFailed, close_response, failure, open_stream
from .sse import event_data
from .types import Outcome, Target
from .watchdog import ReadDeadline

__all__ = ["AttemptDone", "AttemptFailed", "Deadlines", "stream_attempt"]

_DRAIN_WAIT = 0.05  # seconds to read the rest of a finished reply's body (the trailer after [DONE])
_ARRIVED_GRACE = 0.005  # seconds to read an event already received once the first-sentence deadline passed


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Time limits for one attempt, in seconds."""

    first_token: float  # send -> first content token
    stall: float  # gap between content tokens once streaming
    total: float  # whole attempt, a hard bound on any upstream call
    max_text_chars: int = MAX_TEXT_CHARS
    max_tool_args_chars: int = MAX_TOOL_ARGS_CHARS
    dribble_words_per_second: float = 0.0  # text slower than this over dribble_window fails like a stall (0: off)
    dribble_window: float = 2.0


async def stream_attempt(client: httpx2.AsyncClient, target: Target, body: dict[str, Any], headers: dict[str, str],
                         deadlines: Deadlines, gaps: list[float] | None = None,
                         sentence: FirstSentenceWatch | None = None) -> AsyncGenerator[str | AttemptDone, None]:
    """Send one streaming chat request; yield text deltas, then one :class:`AttemptDone`.

    Raises :class:`AttemptFailed` on HTTP errors, in-stream error events, deadlines, a reply too slow for
    speech (``deadlines.dribble_words_per_second``, or no first speakable sentence by the deadline of a
    ``sentence`` watch), broken or truncated streams and invalid tool calls. Closing the generator closes
    the HTTP stream. ``gaps`` gets the seconds between content chunks (kept only if the attempt ends well).
    """
    loop = asyncio.get_running_loop()
    started = loop.time()
    hard_stop = started + deadlines.total
    deadline = min(started + deadlines.first_token, hard_stop)
    ttft: float | None = None
    last_content = 0.0
    parser, dribble = _readers(target, deadlines)

    def fail(outcome: Outcome, info: ErrorInfo) -> AttemptFailed:
        return AttemptFailed(outcome, info, ttft=ttft, usage=parser.usage, served_model=parser.served_model)

    watchdog = ReadDeadline(loop)
    response = await _open(client, target, body, headers, deadline, hard_stop, deadlines.first_token, watchdog)
    # Per chunk this loop is the router's overhead over bare httpx: locals, no allocation it can avoid.
    events = event_data(response)
    read, feed = watchdog.read, parser.feed
    budget = watchdog.allowance = deadlines.first_token  # what a read gets again after our own pause
    looked = 0.0  # when the current read began (kept only while the first sentence has a deadline)
    try:
        while True:
            speak_by = None
            if sentence is not None:
                speak_by, looked = _sentence_read(sentence, parser.finish_reason is None, watchdog, budget, deadline,
                                                  last_content, looked, loop)
            try:
                data = await read(anext(events), deadline if speak_by is None else min(deadline, speak_by))
            except StopAsyncIteration:
                break
            except TimeoutError:
                if parser.finish_reason is not None:
                    break  # the reply is complete; only the trailer (usage, [DONE]) is late
                raise fail(*_missed(sentence, speak_by, deadline, ttft is None, loop.time() >= hard_stop,
                                    deadlines)) from None
            except (SSEError, httpx2.HTTPError) as exc:
                raise fail(*_broken(exc)) from None
            try:
                parsed = feed(data)
            except ChunkError as exc:
                raise fail(exc.outcome, exc.info) from None
            if parsed.done:
                await _drain(events, watchdog, loop.time() + _DRAIN_WAIT)  # the connection goes back to the pool warm
                break
            dribbled = None
            if parsed.content:
                now = loop.time()
                if ttft is None:
                    ttft = now - started
                    budget = watchdog.allowance = deadlines.stall
                elif gaps is not None:
                    gaps.append(now - last_content)
                last_content = now
                if dribble is not None or sentence is not None:
                    dribbled = _too_slow(dribble, sentence, now, parsed.text, _held(speak_by, watchdog.late_at, looked))
            if parsed.text:
                yield parsed.text
            if parsed.error is not None:  # reported with the text just spoken: the next model continues
                raise fail(parsed.error.outcome, parsed.error.info)
            if dribbled:  # after yielding: the words that came are kept, the next model continues after them
                raise fail(Outcome.STALL, failure(dribbled))
            if parsed.content or (parsed.choice and parser.finish_reason is not None):
                deadline = min(loop.time() + deadlines.stall, hard_stop)
    finally:
        watchdog.close()
        await close_response(response, events)
    try:
        done = _finish(parser, ttft, sentence)
    except ChunkError as exc:
        raise fail(exc.outcome, exc.info) from None
    yield done


async def _open(client: httpx2.AsyncClient, target: Target, body: dict[str, Any], headers: dict[str, str],
                deadline: float, hard_stop: float, first_token: float, watchdog: ReadDeadline) -> httpx2.Response:
    """:func:`.sending.open_stream`, its wait for the headers kept by the attempt's ``watchdog`` (closed if no
    stream opens): one timer serves the send and the reads."""
    try:
        return await open_stream(client, target, body, headers, deadline=deadline, hard_stop=hard_stop,
                                 first_token=first_token, watchdog=watchdog)
    except BaseException:
        watchdog.close()
        raise


def _readers(target: Target, deadlines: Deadlines) -> tuple[ChunkParser, DribbleWatch | None]:
    """The attempt's chunk parser, and its pace check when one is asked for."""
    dribble = (DribbleWatch(deadlines.dribble_words_per_second, deadlines.dribble_window)
               if deadlines.dribble_words_per_second > 0 else None)
    return ChunkParser(target.model, max_text_chars=deadlines.max_text_chars,
                       max_tool_args_chars=deadlines.max_tool_args_chars), dribble


def _sentence_read(sentence: FirstSentenceWatch, unfinished: bool, watchdog: ReadDeadline, budget: float,
                   deadline: float, last_content: float, looked: float,
                   loop: asyncio.AbstractEventLoop) -> tuple[float | None, float]:
    """A spoken reply's next read: the first sentence's deadline while it has one (None after it, or once the
    reply is finished), and when this read began; the watchdog gets the matching budget."""
    speak_by = sentence.deadline() if unfinished else None
    if speak_by is None:
        watchdog.allowance = budget
        return None, looked
    looked = loop.time()  # only until the first sentence ends: no clock read per chunk after it
    speak_by = _speak_by(sentence, speak_by, looked, last_content)
    watchdog.allowance = min(deadline, speak_by) - looked
    return speak_by, looked


def _finish(parser: ChunkParser, ttft: float | None, sentence: FirstSentenceWatch | None) -> AttemptDone:
    """The whole reply (:class:`ChunkError` if it is unusable); a spoken one's last words end its sentence."""
    done = parser.finish(ttft)
    if sentence is not None and not done.tool_calls:
        sentence.finish()
    return done


def _speak_by(sentence: FirstSentenceWatch, speak_by: float, looked: float, last_content: float) -> float:
    """A spoken reply's first sentence has its own deadline, often sooner than the stall's. One that
    passed while the router was not reading (a slow consumer, a pause of our process) is moved on by
    the time since the last chunk was read: the model keeps the time it had left when we stopped
    looking. A last floor lets an event already received be read."""
    if looked >= speak_by:
        speak_by = sentence.forgive(looked - last_content) or speak_by
    return max(speak_by, looked + _ARRIVED_GRACE)


def _missed(sentence: FirstSentenceWatch | None, speak_by: float | None, deadline: float, before_first_token: bool,
            past_hard_stop: bool, deadlines: Deadlines) -> tuple[Outcome, ErrorInfo]:
    """Which deadline a read missed: the first sentence's when it was the sooner one, else the stream's."""
    if sentence is not None and speak_by is not None and speak_by < deadline:
        return Outcome.STALL, failure(sentence.describe())
    return _timed_out(before_first_token, past_hard_stop, deadlines)


def _held(speak_by: float | None, late_at: float, looked: float) -> float:
    """Seconds the router was held up during a read watched for the first sentence (ours, not the model's)."""
    return 0.0 if speak_by is None or late_at < looked else late_at - looked


def _too_slow(dribble: DribbleWatch | None, sentence: FirstSentenceWatch | None, now: float, text: str,
              held: float) -> str | None:
    """Feed a content chunk to the pace checks; why the reply is cut if it is too slow to speak."""
    if dribble is not None and text and dribble.feed(now, count_words(text)):
        return dribble.describe()
    return _too_slow_to_speak(sentence, now, text, held) if sentence is not None else None


def _broken(exc: Exception) -> tuple[Outcome, ErrorInfo]:
    """What a stream that broke while being read means."""
    if isinstance(exc, SSEError):
        return Outcome.BAD_RESPONSE, failure(f"malformed stream: {redact(str(exc))[:200]}")
    return Outcome.CONNECTION_ERROR, failure(f"stream broke: {type(exc).__name__}: {redact(str(exc))[:200]}")


def _too_slow_to_speak(sentence: FirstSentenceWatch, now: float, text: str, held: float) -> str | None:
    """Feed a content chunk to the first-sentence watch; why the reply is cut if it came too late.

    A chunk read after our process was ``held`` up during the read (the watchdog woke up late) came at
    an unknown time: it is taken, and the deadline moves on by that time (see
    :meth:`FirstSentenceWatch.forgive`)."""
    if not text:  # tool-call deltas: the reply turns to a tool, it has nothing more to say first
        sentence.stop()
        return None
    if held:
        sentence.forgive(held)
    sentence.feed(now, text)
    speak_by = sentence.deadline()
    return sentence.describe() if not held and speak_by is not None and now >= speak_by else None


def _timed_out(before_first_token: bool, past_hard_stop: bool, deadlines: Deadlines) -> tuple[Outcome, ErrorInfo]:
    """Which deadline an attempt missed."""
    if before_first_token:
        limit = min(deadlines.first_token, deadlines.total)
        return Outcome.FIRST_TOKEN_TIMEOUT, failure(f"no first token within {limit:g}s")
    if past_hard_stop:
        return Outcome.STALL, failure(f"reply exceeded the {deadlines.total:g}s total limit")
    return Outcome.STALL, failure(f"stream stalled for {deadlines.stall:g}s")


async def _drain(events: AsyncGenerator[str, None], watchdog: ReadDeadline, until: float) -> None:
    """Read to the end of the body by loop time ``until`` (under the attempt's own read deadline: no
    timeout context of its own)."""
    with contextlib.suppress(StopAsyncIteration, TimeoutError, httpx2.HTTPError, SSEError):
        while True:
            await watchdog.read(anext(events), until)
