"""A scripted Deepgram live-transcription server (``/v1/listen`` WebSocket) on 127.0.0.1.

It speaks the protocol ``livekit-plugins-deepgram`` uses: binary linear16 audio in; ``KeepAlive``,
``Finalize`` and ``CloseStream`` text messages; ``SpeechStarted``, interim and final ``Results``
(``is_final`` / ``speech_final``, words with start and end times), ``UtteranceEnd`` and ``Metadata``
out. Utterances are found by the energy of the audio it receives, so results come at the audio's
own offsets; each utterance's words come from ``transcripts`` (in order) or a ``transcribe`` callable.

>>> async with ScriptedDeepgram(transcripts=["what is the weather in paris"]) as dg:  # doctest: +SKIP
...     stt = deepgram.STT(api_key="test", base_url=dg.listen_url)
...     dg.script([DeepgramScript(drop_after_speech=0.5), DeepgramScript(status=503)])  # break it mid-call
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from .speech_server import Fault, SpeechServer, abort, refusal

SPEECH_RMS = 300.0  # int16 RMS above which a 20 ms window counts as speech (silence in tests is exact zeros)
END_SILENCE = 0.3  # seconds of quiet that end an utterance (Deepgram's endpointing, roughly)
INTERIM_EVERY = 0.5  # seconds of speech between interim results


@dataclass
class DeepgramScript(Fault):
    """One connection's behaviour. Besides the handshake faults: ``silent`` (accept the socket, take
    the audio, never answer), ``drop_after_speech`` (abort the socket after that many seconds of
    speech, counted from when the script applies), ``first_result_delay`` (seconds before the
    connection's first result)."""

    silent: bool = False
    drop_after_speech: float | None = None
    first_result_delay: float = 0.0


@dataclass
class DeepgramConnection:
    """What one connection received: its query, the audio seconds and the control messages."""

    query: dict[str, str]
    audio_seconds: float = 0.0
    controls: list[str] = field(default_factory=list)
    utterances: list[str] = field(default_factory=list)


class ScriptedDeepgram(SpeechServer[DeepgramScript]):
    """The server; ``listen_url`` is the STT plugin's ``base_url``."""

    default = DeepgramScript()

    def __init__(self, *, transcripts: Sequence[str] = (), transcribe: Callable[[bytes, int], str] | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.transcripts = list(transcripts)
        self.transcribe = transcribe
        self.connections: list[DeepgramConnection] = []
        self._said = 0

    @property
    def listen_url(self) -> str:
        return f"{self.base_url}/v1/listen"

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/listen", self._listen)

    def _words_for(self, pcm: bytes, rate: int) -> str:
        if self.transcripts:
            text = self.transcripts[min(self._said, len(self.transcripts) - 1)]
            self._said += 1
            return text
        return self.transcribe(pcm, rate) if self.transcribe else ""

    async def _listen(self, request: web.Request) -> web.StreamResponse:
        ws, script, generation = await self._handshake(request, "Authorization")
        if ws is None:
            return refusal(script.status or 500)
        conn = DeepgramConnection(dict(request.query))
        self.connections.append(conn)
        try:
            await _Session(self, ws, conn, script, generation).run()
        finally:
            self._open.discard(ws)
        return ws


class _Session:
    """One live connection: the utterance finder and the results it sends."""

    def __init__(self, server: ScriptedDeepgram, ws: web.WebSocketResponse, conn: DeepgramConnection,
                 script: DeepgramScript, generation: int) -> None:
        self.server, self.ws, self.conn = server, ws, conn
        self.script, self.generation = script, generation
        self.rate = int(conn.query.get("sample_rate", "16000"))
        self.request_id = str(uuid.uuid4())
        self.received = 0.0  # seconds of audio received
        self.utterance: bytearray | None = None
        self.start = 0.0
        self.quiet = 0.0
        self.spoken = 0.0  # seconds of speech on this connection (for drop_after_speech)
        self.next_interim = INTERIM_EVERY
        self.pending = b""
        self.answered = False

    def _live(self) -> DeepgramScript:
        script, self.generation = self.server._current(self.script, self.generation)
        if script is not self.script:  # a new script counts its speech from now (a drop mid-call is mid-utterance)
            self.script, self.spoken = script, 0.0
        return self.script

    async def run(self) -> None:
        async for msg in self.ws:
            if msg.type == WSMsgType.BINARY:
                if not await self._audio(msg.data):
                    return
            elif msg.type == WSMsgType.TEXT:
                kind = json.loads(msg.data).get("type", "")
                self.conn.controls.append(kind)
                if kind == "Finalize" and self.utterance is not None:
                    await self._end_utterance(from_finalize=True)
                elif kind == "CloseStream":
                    await self._send({"type": "Metadata", "request_id": self.request_id,
                                      "duration": self.received, "channels": 1})
                    await self.ws.close()
                    return

    async def _audio(self, data: bytes) -> bool:
        samples = np.frombuffer(self.pending + data[: len(data) - len(data) % 2], dtype=np.int16)
        self.pending = b""
        window = max(1, self.rate // 50)
        for i in range(0, len(samples), window):
            chunk = samples[i:i + window]
            seconds = len(chunk) / self.rate
            self.received += seconds
            self.conn.audio_seconds += seconds
            loud = float(np.sqrt(np.mean(chunk.astype(np.float64) ** 2))) > SPEECH_RMS if len(chunk) else False
            script = self._live()
            if script.status is not None:  # the service went down under an open socket: it closes it
                await self.ws.close(code=1011, message=f"scripted failure {script.status}".encode())
                return False
            if script.silent or script.hang:
                continue  # a connection whose service hung mid-call: takes audio, says nothing
            if not await self._step(chunk, seconds, loud):
                return False
            if script.drop_after_speech is not None and self.spoken >= script.drop_after_speech:
                abort(self.ws)  # the socket dies mid-utterance
                return False
        return True

    async def _step(self, chunk: np.ndarray[Any, np.dtype[np.int16]], seconds: float, loud: bool) -> bool:
        if self.utterance is None:
            if not loud:
                return True
            self.utterance, self.start, self.quiet = bytearray(), self.received - seconds, 0.0
            self.next_interim = INTERIM_EVERY
            await self._send({"type": "SpeechStarted", "channel": [0, 1], "timestamp": self.start})
        self.utterance += chunk.tobytes()
        self.spoken += seconds
        self.quiet = 0.0 if loud else self.quiet + seconds
        if self.quiet >= END_SILENCE:
            await self._end_utterance(from_finalize=False)
        elif self.received - self.start >= self.next_interim:
            self.next_interim += INTERIM_EVERY
            words = self._interim_words()
            if not words and self.server.transcribe is not None:  # what was said so far, as Deepgram would
                words = await asyncio.to_thread(self.server.transcribe, bytes(self.utterance), self.rate)
            await self._results(words, is_final=False)
        return True

    def _interim_words(self) -> str:
        # the first word or so of what is coming: enough for LiveKit to see the user talking
        upcoming = self.server.transcripts[min(self.server._said, len(self.server.transcripts) - 1)] \
            if self.server.transcripts else ""
        words = upcoming.split()
        return " ".join(words[: max(1, int(len(words) * (self.received - self.start) / 3.0))])

    async def _end_utterance(self, *, from_finalize: bool) -> None:
        assert self.utterance is not None
        pcm, self.utterance = bytes(self.utterance), None
        text = await asyncio.to_thread(self.server._words_for, pcm, self.rate)
        self.conn.utterances.append(text)
        await self._results(text, is_final=True, from_finalize=from_finalize)
        await self._send({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": self.received - self.quiet})

    async def _results(self, text: str, *, is_final: bool, from_finalize: bool = False) -> None:
        end = self.received - (self.quiet if is_final else 0.0)
        words = text.split()
        step = (end - self.start) / max(1, len(words))
        await self._send({
            "type": "Results", "channel_index": [0, 1], "start": self.start, "duration": end - self.start,
            "is_final": is_final, "speech_final": is_final, "from_finalize": from_finalize,
            "channel": {"alternatives": [{"transcript": text, "confidence": 0.98, "words": [
                {"word": w.lower().strip(".,?!"), "punctuated_word": w, "start": self.start + k * step,
                 "end": self.start + (k + 1) * step, "confidence": 0.98} for k, w in enumerate(words)]}]},
            "metadata": {"request_id": self.request_id, "model_info": {"name": "scripted", "version": "1"},
                         "model_uuid": "00000000-0000-0000-0000-000000000000"},
        })

    async def _send(self, message: dict[str, Any]) -> None:
        if not self.answered:
            self.answered = True
            if self._live().first_result_delay > 0:  # a slow service: its first word comes late
                await asyncio.sleep(self._live().first_result_delay)
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(message))
