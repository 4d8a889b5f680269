"""The router's data-only SSE reader against httpx2's EventSource: the same data for any stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openrouter_voice.router.sse import DataDecoder, event_data

# Field lines an OpenAI-style stream (or a hostile one) may send; values avoid line breaks.
_value = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12)
_line = st.one_of(
    _value.map(lambda v: f"data: {v}"), _value.map(lambda v: f"data:{v}"), st.just("data"),
    _value.map(lambda v: f": {v}"), _value.map(lambda v: f"event: {v}"), _value.map(lambda v: f"id: {v}"),
    st.just("retry: 10"), _value.map(lambda v: f"x{v}"))
_event = st.lists(_line, max_size=4)


def _stream(events: list[list[str]], endings: list[str], tail: str) -> str:
    text, i = "", 0
    for event in events:
        for line in [*event, ""]:
            text += line + endings[i % len(endings)]
            i += 1
    return text + tail


def _split(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts})
    return [raw[a:b] for a, b in zip([0, *points], [*points, len(raw)], strict=True) if b > a]


def _response(pieces: list[bytes]) -> httpx2.Response:
    async def body() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    return httpx2.Response(200, headers={"content-type": "text/event-stream; charset=utf-8"}, content=body(),
                           request=httpx2.Request("POST", "http://127.0.0.1/chat/completions"))


@settings(max_examples=300, deadline=None)
@given(events=st.lists(_event, max_size=6), endings=st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=1),
       tail=st.sampled_from(["", "data: unfinished", "data: cr-ended\r"]), cuts=st.lists(st.integers(0, 10_000)))
async def test_the_router_reads_the_data_eventsource_reads(events: list[list[str]], endings: list[str], tail: str,
                                                           cuts: list[int]) -> None:
    """Whatever the line endings and however the network splits the bytes (even inside a CRLF or a
    UTF-8 character), the router sees every event's data as EventSource gives it (an event without
    data has nothing for the chunk parser, which skips empty data)."""
    pieces = _split(_stream(events, endings, tail).encode(), cuts)
    ours = [data async for data in event_data(_response(pieces))]
    theirs = [event.data async for event in httpx2.EventSource(_response(pieces))]
    assert [d for d in ours if d] == [d for d in theirs if d]


def test_an_event_over_the_size_limit_is_refused_as_eventsource_refuses_it() -> None:
    decoder = DataDecoder(max_event_size=100)
    assert decoder.feed("data: " + "x" * 90 + "\n\n") == ["x" * 90]
    with pytest.raises(httpx2.SSEError, match="100 byte limit"):
        decoder.feed("data: " + "x" * 60 + "\ndata: " + "y" * 60)  # one event, two lines, never ended


def test_an_unterminated_line_over_the_limit_is_refused_before_it_ends() -> None:
    decoder = DataDecoder(max_event_size=100)
    decoder.feed("data: " + "x" * 50)
    with pytest.raises(httpx2.SSEError):
        decoder.feed("x" * 60)  # a hostile upstream never sending a line end must not grow memory


async def test_a_stream_that_is_not_declared_an_event_stream_is_malformed() -> None:
    response = httpx2.Response(200, headers={"content-type": "text/plain"}, content=b"data: x\n\n",
                               request=httpx2.Request("POST", "http://127.0.0.1/chat/completions"))
    with pytest.raises(httpx2.SSEError, match="text/event-stream"):
        [data async for data in event_data(response)]
