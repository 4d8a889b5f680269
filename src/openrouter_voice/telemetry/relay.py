"""From the worker's job processes to its Prometheus endpoint: finished turns as datagrams.

LiveKit runs each session in a job process, while the scrape endpoint lives in the worker's main
process (one port per worker). Each job process sends every finished turn's record, with its chain's
circuits, as one JSON datagram to 127.0.0.1; the main process records it as if the turn had run there.
A datagram is never waited for: when the main process is gone or slow, a turn's metrics are lost, not
the turn's time. (OTLP export needs none of this: each process exports its own.)

Hand-rolled because no library does this for the OpenTelemetry SDK: the Prometheus client's
multiprocess mode works only with its own instruments, and a local OTLP receiver would need a
collector beside the worker.

>>> receiver = RelayReceiver(lambda turn, circuits: print(turn.primary, circuits))
>>> RelaySender(receiver.address).send(TurnRecord("a/x", (), "a/x", 1.0, 1.5, None), [("a/x", "closed", 0.0)])
>>> receiver.receive_one(timeout=5.0)
a/x [('a/x', 'closed', 0.0)]
>>> receiver.close()
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from typing import Any

from .names import CIRCUIT_VALUES
from .record import AttemptRecord, TurnRecord
from .voice import RESULTS, SpeechFallback, VoiceEvent, VoiceTurn

logger = logging.getLogger("openrouter_voice.telemetry")

RELAY_ENV = "OPENROUTER_VOICE_TELEMETRY_RELAY"
"""Set by the worker's main process for its job processes (which inherit it): ``127.0.0.1:PORT``."""

Circuits = list[tuple[str, str, float]]
_MAX_DATAGRAM = 65_000
_MAX_ATTEMPTS = 64
_ATTEMPT_FIELDS = {f.name: f for f in fields(AttemptRecord)}


class RelayError(ValueError):
    """A datagram that is not a turn record (dropped, never recorded)."""


def encode(turn: TurnRecord, circuits: Sequence[tuple[str, str, float]]) -> bytes:
    return json.dumps({"v": 1, "turn": asdict(turn), "circuits": [list(c) for c in circuits]},
                      separators=(",", ":")).encode()


def encode_voice(event: VoiceEvent) -> bytes:
    kind = "fallback" if isinstance(event, SpeechFallback) else "turn"
    return json.dumps({"v": 1, "voice": {"kind": kind, **asdict(event)}}, separators=(",", ":")).encode()


def decode_voice(voice: Any) -> VoiceEvent:
    if not isinstance(voice, dict):
        raise RelayError("voice is not an object")
    if voice.get("kind") == "fallback":
        stage = voice.get("stage")
        if stage not in ("stt", "tts"):
            raise RelayError("a speech fallback's stage is not stt or tts")
        return SpeechFallback(stage, _text(voice.get("engine"), "engine"))
    if voice.get("kind") != "turn" or voice.get("result") not in RESULTS:
        raise RelayError("a voice turn's result is not answered, apology or silent")
    return VoiceTurn(voice["result"], _number(voice.get("time_to_first_audio"), "ttfa", optional=True),
                     _number(voice.get("end_of_turn_delay"), "end_of_turn_delay", optional=True))


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 300:
        raise RelayError(f"{what} is not a short string")
    return value


def _number(value: Any, what: str, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RelayError(f"{what} is not a finite number")
    return float(value)


def decode(data: bytes) -> tuple[TurnRecord, Circuits] | VoiceEvent:
    """A datagram back to a router turn and its circuits, or a voice event; :class:`RelayError` names
    what is wrong with a bad one."""
    try:
        message = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise RelayError("not JSON") from None
    if isinstance(message, dict) and message.get("v") == 1 and "voice" in message:
        return decode_voice(message["voice"])
    if not isinstance(message, dict) or message.get("v") != 1 or not isinstance(message.get("turn"), dict):
        raise RelayError("not a version-1 turn message")
    turn = message["turn"]
    attempts = turn.get("attempts")
    if not isinstance(attempts, list) or len(attempts) > _MAX_ATTEMPTS:
        raise RelayError("attempts is not a list of at most 64")
    records = tuple(_attempt(a) for a in attempts)
    served = turn.get("served")
    error_type = turn.get("error_type")
    record = TurnRecord(
        _text(turn.get("primary"), "primary"), records, None if served is None else _text(served, "served"),
        _number(turn.get("started"), "started") or 0.0, _number(turn.get("ended"), "ended") or 0.0,
        None if error_type is None else _text(error_type, "error_type"))
    circuits: Circuits = []
    for item in message.get("circuits") or []:
        if not (isinstance(item, list) and len(item) == 3 and item[1] in CIRCUIT_VALUES):
            raise RelayError("a circuit is not [model, state, cooldown]")
        circuits.append((_text(item[0], "circuit model"), item[1], _number(item[2], "cooldown") or 0.0))
    return record, circuits


def _attempt(data: Any) -> AttemptRecord:
    if not isinstance(data, dict) or set(data) != set(_ATTEMPT_FIELDS):
        raise RelayError("an attempt has the wrong fields")
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name in ("model", "outcome", "reason"):
            values[name] = _text(value, name)
        elif name in ("hedge", "continuation", "emitted_text"):
            if not isinstance(value, bool):
                raise RelayError(f"{name} is not a boolean")
            values[name] = value
        elif name in ("status", "input_tokens", "output_tokens"):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise RelayError(f"{name} is not a count")
            values[name] = value
        else:
            values[name] = _number(value, name, optional=name in ("ttft", "cost"))
    return AttemptRecord(**values)


class RelaySender:
    """Sends turn records to ``address`` (``host:port``); never blocks, never raises."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._address = (host, int(port))
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.setblocking(False)

    def send(self, turn: TurnRecord, circuits: Sequence[tuple[str, str, float]]) -> None:
        self._send(encode(turn, circuits))

    def voice(self, event: VoiceEvent) -> None:
        """A voice sink (:mod:`.voice`): relays the event."""
        self._send(encode_voice(event))

    def _send(self, data: bytes) -> None:
        if len(data) > _MAX_DATAGRAM:
            logger.debug("turn record too large to relay (%d bytes)", len(data))
            return
        try:
            self._socket.sendto(data, self._address)
        except OSError as exc:  # full buffer, receiver gone: the metrics of one turn, not the turn
            logger.debug("turn record not relayed: %s", exc)

    def __call__(self, turn: TurnRecord, chain: Callable[[], Circuits | None]) -> None:
        self.send(turn, chain() or [])

    def close(self) -> None:
        self._socket.close()


class RelayReceiver:
    """Receives on 127.0.0.1 (a free port, :attr:`address`): router turns go to ``handle``, voice
    events to ``handle_voice``."""

    def __init__(self, handle: Callable[[TurnRecord, Circuits], None],
                 handle_voice: Callable[[VoiceEvent], None] | None = None) -> None:
        self._handle = handle
        self._handle_voice = handle_voice
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        host, port = self._socket.getsockname()
        self.address = f"{host}:{port}"
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> RelayReceiver:
        """Receive on a daemon thread until :meth:`close`."""
        self._thread = threading.Thread(target=self._loop, name="telemetry-relay", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._closed:
            try:
                self.receive_one(timeout=None)
            except OSError:
                return  # closed under it

    def receive_one(self, timeout: float | None) -> None:
        """Receive and handle one datagram (a bad one is logged and dropped)."""
        self._socket.settimeout(timeout)
        data = self._socket.recv(_MAX_DATAGRAM + 1)
        if self._closed:
            return
        try:
            message = decode(data)
        except RelayError as exc:
            logger.warning("dropped a telemetry datagram that is not a turn record (%s)", exc)
            return
        try:
            if isinstance(message, tuple):
                self._handle(*message)
            elif self._handle_voice is not None:
                self._handle_voice(message)
        except Exception:
            logger.exception("recording a relayed turn failed")

    def close(self) -> None:
        """Stop receiving: an empty datagram wakes the thread blocked in ``recv``."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as wake:
                wake.sendto(b"", self._socket.getsockname())
            self._thread.join(timeout=5)
        self._socket.close()
