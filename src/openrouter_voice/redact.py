"""Keep secrets out of logs and error messages.

Keys are registered as they are configured (:func:`register_secret`); :func:`redact` masks
every registered key and anything shaped like a bearer token or an OpenRouter key.
:class:`RedactingFilter` applies the same to log records on any handler it is attached to.
"""

from __future__ import annotations

import logging
import re
import threading

_PATTERNS = [
    re.compile(r"sk-or-[A-Za-z0-9_\-]{6,}"),
    re.compile(r"sk-[A-Za-z0-9_\-]{16,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9_\-\.=:]{8,}"),
]
_secrets: set[str] = set()
_lock = threading.Lock()
MASK = "***"


def register_secret(value: str | None) -> None:
    """Remember a secret so :func:`redact` masks it wherever it shows up. Short values are ignored."""
    if value and len(value) >= 6:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Return ``text`` with registered secrets and key-shaped tokens replaced by ``***``.

    >>> redact("Authorization: Bearer sk-or-v1-abcdef0123456789")
    'Authorization: Bearer ***'
    """
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        else:
            text = pattern.sub(MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the formatted message and exception text.

    >>> handler = logging.StreamHandler()
    >>> handler.addFilter(RedactingFilter())
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the logger's problem, not ours
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(exc_text)
        return True
