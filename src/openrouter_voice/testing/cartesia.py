"""A scripted Cartesia TTS server (``/tts/websocket`` and ``/tts/bytes``) on 127.0.0.1.

It speaks the protocol ``livekit-plugins-cartesia`` uses: JSON requests with a ``context_id``, a
``transcript`` and ``continue``; base64 PCM ``chunk`` messages tagged with the context, then ``done``.
The audio is a real waveform: a tone whose length follows the text, or any ``voice(text, rate)``
(e.g. the local Piper voice, for audio a recogniser can understand).

With ``word_timestamps=True``, a request with ``add_timestamps`` (LiveKit's plugin sets it by default)
also gets Cartesia's ``timestamps`` messages (``word_timestamps``: ``words``, ``start``, ``end`` in
seconds of the context's audio), interleaved with the audio as the real service sends them: each
word's just before the chunk in which it starts. So that they are true, the audio is then spoken word
by word (each word its own take, with a short pause between): the timings are where its audio lies.

>>> async with ScriptedCartesia() as ct:                                      # doctest: +SKIP
...     tts = cartesia.TTS(api_key="test", base_url=ct.base_url)
...     ct.script(CartesiaScript(drop_after_chunks=2))   # the socket dies mid-sentence
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from .speech_server import Fault, SpeechServer, abort, refusal

CHUNK_SECONDS = 0.1  # audio per chunk message, as Cartesia streams it
WORD_GAP = 0.06  # seconds of silence between words spoken word by word
Voice = Callable[[str, int], Awaitable[bytes]]


async def tone(text: str, rate: int) -> bytes:
    """A 220 Hz tone, 60 ms per character (0.3 s at least): audible, and as long as speech would be."""
    seconds = max(0.3, 0.06 * len(text.strip()))
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * 32767 * np.sin(2 * np.pi * 220 * t)).astype(np.int16).tobytes()


@dataclass
class CartesiaScript(Fault):
    """One connection's behaviour. Besides the handshake faults: ``first_audio_delay`` (seconds before
    each context's first chunk), ``silent`` (take the text, never answer), ``drop_after_chunks``
    (abort the socket after that many chunks of a context), ``drop_after_total_chunks`` (after that
    many chunks over the connection, whatever the context: e.g. in an answer's second sentence),
    ``error`` (answer with an error message)."""

    first_audio_delay: float = 0.0
    silent: bool = False
    drop_after_chunks: int | None = None
    drop_after_total_chunks: int | None = None
    error: str | None = None


@dataclass
class CartesiaConnection:
    """What one connection received: every request, and the text of each context."""

    query: dict[str, str]
    requests: list[dict[str, Any]] = field(default_factory=list)
    contexts: dict[str, str] = field(default_factory=dict)
    chunks: int = 0


class ScriptedCartesia(SpeechServer[CartesiaScript]):
    """The server; ``base_url`` is the TTS plugin's ``base_url``."""

    default = CartesiaScript()

    def __init__(self, *, voice: Voice = tone, host: str = "127.0.0.1", port: int = 0,
                 word_timestamps: bool = False) -> None:
        super().__init__(host, port)
        self.voice = voice
        self.word_timestamps = word_timestamps
        self.connections: list[CartesiaConnection] = []
        self.chunks_sent = 0

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/tts/websocket", self._websocket)
        app.router.add_post("/tts/bytes", self._bytes)

    def spoken(self) -> list[str]:
        """The text of every context, in order, over all connections."""
        return [text.strip() for conn in self.connections for text in conn.contexts.values()]

    async def _bytes(self, request: web.Request) -> web.StreamResponse:
        self.handshakes += 1
        self.auth.append(request.headers.get("X-API-Key"))
        script, _ = self._take()
        if script.hang:
            await asyncio.Event().wait()
        if script.status is not None:
            return refusal(script.status)
        body = await request.json()
        conn = CartesiaConnection(dict(request.query), [body], {"bytes": body.get("transcript", "")})
        self.connections.append(conn)
        await asyncio.sleep(script.first_audio_delay)
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await response.prepare(request)
        await response.write(await self.voice(body.get("transcript", ""), _rate(body)))
        await response.write_eof()
        return response

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws, script, generation = await self._handshake(request, "X-API-Key")
        if ws is None:
            return refusal(script.status or 500)
        conn = CartesiaConnection(dict(request.query))
        self.connections.append(conn)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                conn.requests.append(data)
                script, changed = self._current(script, generation)
                if changed != generation:  # a new script counts its chunks afresh
                    conn.chunks, generation = 0, changed
                if not await self._answer(ws, conn, data, script):
                    break
        finally:
            self._open.discard(ws)
        return ws

    async def _answer(self, ws: web.WebSocketResponse, conn: CartesiaConnection, data: dict[str, Any],
                      script: CartesiaScript) -> bool:
        context = str(data.get("context_id", ""))
        if data.get("cancel"):
            return True
        text = str(data.get("transcript", ""))
        first = context not in conn.contexts
        conn.contexts[context] = conn.contexts.get(context, "") + text
        if script.status is not None:  # the service went down under an open socket: it closes it
            await ws.close(code=1011, message=f"scripted failure {script.status}".encode())
            return False
        if script.silent or script.hang:
            return True  # hung mid-call: takes the text, says nothing
        if script.error:
            await ws.send_str(json.dumps({"type": "error", "context_id": context, "status_code": 500,
                                          "error": script.error, "done": True}))
            return True
        if first and script.first_audio_delay:
            await asyncio.sleep(script.first_audio_delay)
        rate = _rate(data)
        timed = self.word_timestamps and bool(data.get("add_timestamps"))
        audio, words = await self.words_of(text, rate) if timed else (
            await self.voice(text, rate) if text.strip() else b"", [])
        step = int(CHUNK_SECONDS * rate) * 2
        for sent, i in enumerate(range(0, len(audio), step)):
            if (script.drop_after_chunks is not None and sent >= script.drop_after_chunks) or (
                    script.drop_after_total_chunks is not None and conn.chunks >= script.drop_after_total_chunks):
                abort(ws)  # the socket dies mid-sentence
                return False
            conn.chunks += 1
            starting = [w for w in words if w[1] * rate * 2 < i + step]
            if starting:  # the timings of the words whose audio starts in this chunk, just before it
                del words[:len(starting)]
                await ws.send_str(json.dumps({
                    "type": "timestamps", "context_id": context, "status_code": 206, "done": False,
                    "word_timestamps": {"words": [w[0] for w in starting], "start": [w[1] for w in starting],
                                        "end": [w[2] for w in starting]}}))
            await ws.send_str(json.dumps({"type": "chunk", "context_id": context, "status_code": 206, "done": False,
                                          "data": base64.b64encode(audio[i:i + step]).decode(), "step_time": 1.0}))
            self.chunks_sent += 1
        if not data.get("continue", False):
            await ws.send_str(json.dumps({"type": "done", "context_id": context, "status_code": 200, "done": True}))
        return True


    async def words_of(self, text: str, rate: int) -> tuple[bytes, list[tuple[str, float, float]]]:
        """``text`` spoken word by word, and each word's (text, start, end) in seconds of that audio."""
        gap, parts, words, at = bytes(int(WORD_GAP * rate) * 2), [], [], 0
        for word in text.split():
            audio = await self.voice(word, rate)
            words.append((word, at / 2 / rate, (at + len(audio)) / 2 / rate))
            parts += [audio, gap]
            at += len(audio) + len(gap)
        return b"".join(parts), words


def _rate(request: dict[str, Any]) -> int:
    return int(request.get("output_format", {}).get("sample_rate", 24000))
