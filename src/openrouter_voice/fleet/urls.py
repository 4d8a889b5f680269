"""Checking a Redis/Valkey URL once, at start-up, and showing it without its password.

>>> check_redis_url("redis://:s3cret-pass@cache.internal:6380/2")
'redis://:s3cret-pass@cache.internal:6380/2'
>>> masked("redis://default:s3cret-pass@cache.internal:6380/2")
'redis://default:***@cache.internal:6380/2'
>>> check_redis_url("unix:///run/voice/valkey.sock?db=0")
'unix:///run/voice/valkey.sock?db=0'
>>> check_redis_url("http://cache:6379")
Traceback (most recent call last):
...
ValueError: 'http://cache:6379' is not a Redis URL: use redis://[:password@]host[:port][/db], rediss:// for TLS, or unix:///path/to/socket
"""

from __future__ import annotations

import urllib.parse

from ..redact import MASK, register_secret

SCHEMES = ("redis", "rediss", "unix")
_FORM = "use redis://[:password@]host[:port][/db], rediss:// for TLS, or unix:///path/to/socket"


def check_redis_url(url: str) -> str:
    """``url`` stripped, if it is a usable ``redis://`` or ``rediss://`` URL; else :class:`ValueError`
    saying why (its password masked). The password is registered so no log line shows it."""
    url = url.strip()
    try:
        parts = urllib.parse.urlsplit(url)
        register_secret(parts.password)
        port = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise ValueError(f"{masked(url)!r} is not a Redis URL: {_FORM}") from None
    if parts.scheme == "unix":  # a local socket (the agent worker's embedded store): the path is the socket
        if not parts.path.startswith("/") or parts.hostname:
            raise ValueError(f"{masked(url)!r} is not a Redis URL: {_FORM}")
        db = urllib.parse.parse_qs(parts.query).get("db", [""])[0]
    elif parts.scheme not in SCHEMES or not parts.hostname:
        raise ValueError(f"{masked(url)!r} is not a Redis URL: {_FORM}")
    else:
        db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError(f"{masked(url)!r}: the database {db!r} must be a number (e.g. /0)")
    del port
    return url


def masked(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and errors)."""
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:
        return MASK
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def check_prefix(prefix: str) -> str:
    """A key prefix: printable ASCII without spaces, 1-64 characters.

    >>> check_prefix("openrouter-voice")
    'openrouter-voice'
    """
    prefix = prefix.strip()
    if not (0 < len(prefix) <= 64 and prefix.isascii() and prefix.isprintable() and " " not in prefix):
        raise ValueError(f"{prefix!r} is not a key prefix: use 1-64 printable ASCII characters without spaces")
    return prefix
