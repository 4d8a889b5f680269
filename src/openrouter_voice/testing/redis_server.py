"""A real ``redis-server`` on 127.0.0.1 on a free port, for tests and benchmarks that share health.

No persistence (a restart starts empty, like a cache node that lost its memory); ready when the
server says so on its output, never after a guessed sleep; :meth:`RedisServer.kill` and
:meth:`RedisServer.start` again on the same port simulate an outage.

>>> with RedisServer() as server:  # doctest: +SKIP
...     server.url
'redis://127.0.0.1:40123/0'
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from types import TracebackType
from typing import Self

FIX = ("redis-server is not installed: the fleet health tests need a real one. "
       "Fix: sudo apt-get install redis-server (`.ci/run` and `make test` install it)")
READY = "Ready to accept connections"


class RedisServerMissing(RuntimeError):
    """No ``redis-server`` on the PATH; the message says how to install it."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process (start, kill, start again on the same port)."""

    def __init__(self, port: int | None = None, *, ready_within: float = 20.0) -> None:
        binary = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")
        if binary is None:
            raise RedisServerMissing(FIX)
        self.binary = binary
        self.port = port or free_port()
        self.ready_within = ready_within
        self._process: subprocess.Popen[str] | None = None
        self._output: list[str] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Self:
        """Start (or restart) the server and return once it accepts connections."""
        if self._process is not None and self._process.poll() is None:
            return self
        process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "notice"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._process = process
        ready = threading.Event()

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self._output.append(line.rstrip())
                if READY in line:
                    ready.set()
            ready.set()  # it exited: stop waiting

        threading.Thread(target=read, daemon=True, name=f"redis-server-{self.port}").start()
        if not ready.wait(self.ready_within) or process.poll() is not None:
            self.kill()
            raise RuntimeError(f"redis-server on port {self.port} did not become ready within {self.ready_within}s: "
                               + " | ".join(self._output[-5:]))
        return self

    def kill(self) -> None:
        """Stop the server at once (SIGKILL, as in a crash); its data is lost."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(10)
        if process is not None and process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.kill()
