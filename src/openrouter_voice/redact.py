"""Keep secrets out of logs and error messages.

Keys are registered as they are configured (:func:`register_secret`); :func:`redact` masks
every registered key and anything shaped like a bearer token or an OpenRouter key, including the
part of a key left at either end of a text that was cut through it. :class:`RedactingFilter`
applies the same to log records on any handler it is attached to, and :func:`install` (done when
the package is imported) to every record of this package's and the HTTP library's loggers, whatever
handlers the application installed.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

_PATTERNS = [
    re.compile(r"sk-or-[A-Za-z0-9_\-]{6,}"),
    re.compile(r"sk-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-\.=:]{8,}"),
]
_secrets: set[str] = set()
_lock = threading.Lock()
MASK = "***"
MIN_FRAGMENT = 6
"""A piece of a registered key this long, left at the start or end of a cut text, is masked too."""
LOGGERS = ("openrouter_voice", "httpx2", "httpcore2", "redis")
"""Whose records :func:`install` redacts: this package's, and the HTTP library's (its DEBUG records
carry response status lines and headers, which a hostile server can make echo the key)."""


def register_secret(value: str | None) -> None:
    """Remember a secret so :func:`redact` masks it wherever it shows up. Short values are ignored."""
    if value and len(value) >= 6:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Return ``text`` with registered secrets and key-shaped tokens replaced by ``***``.

    >>> redact("Authorization: Bearer sk-or-v1-abcdef0123456789")
    'Authorization: Bearer ***'
    >>> register_secret("xq-9f8e7d6c5b4a3928")
    >>> redact("...key xq-9f8e7d"), redact("7d6c5b4a3928 and more")
    ('...key ***', '*** and more')
    """
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    for secret in secrets:
        text = _mask_cut_ends(text, secret)
    for pattern in _PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        else:
            text = pattern.sub(MASK, text)
    return text


def _mask_cut_ends(text: str, secret: str) -> str:
    """Mask the start of ``secret`` at the end of ``text`` and its end at the start (a cut through it)."""
    for size in range(min(len(secret) - 1, len(text)), MIN_FRAGMENT - 1, -1):
        if text.endswith(secret[:size]):
            text = text[:-size] + MASK
            break
    for size in range(min(len(secret) - 1, len(text)), MIN_FRAGMENT - 1, -1):
        if text.startswith(secret[-size:]):
            text = MASK + text[size:]
            break
    return text


def redact_record(record: logging.LogRecord) -> None:
    """Mask secrets in a record's message (formatted with its arguments) and exception text."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string is the logger's problem, not ours
        return
    cleaned = redact(message)
    if cleaned != message or record.args:
        record.msg = cleaned
        record.args = None
    if record.exc_info and record.exc_info[1] is not None:
        exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_text = redact(exc_text)


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message and exception text.

    >>> handler = logging.StreamHandler()
    >>> handler.addFilter(RedactingFilter())
    """

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def install() -> None:
    """Redact every record of the :data:`LOGGERS` as it is created (idempotent).

    A record factory rather than filters: a filter on a logger applies only to records created by
    that very logger (not its children, nor records that propagate), so every logger of the package
    and of httpx2/httpcore2 (named per module) would need one; a handler filter depends on handlers
    the application owns. The factory runs once per emitted record, before any handler, and wraps
    the factory in place before it, so other factories keep working.

    >>> install()
    >>> logging.getLogger("openrouter_voice.x").makeRecord(
    ...     "openrouter_voice.x", 10, "f", 1, "key %s", ("sk-or-v1-0123456789abcdef",), None).getMessage()
    'key ***'
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_openrouter_voice_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.name.startswith(LOGGERS):
            redact_record(record)
        return record

    factory._openrouter_voice_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
