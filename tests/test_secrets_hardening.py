"""Secrets stay secret: masked before any cut, in every record of the package's and the HTTP
library's loggers whatever handlers the application installed, and malformed keys refused at start."""

from __future__ import annotations

import asyncio
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openrouter_voice.config import ConfigError, load_settings
from openrouter_voice.redact import redact, register_secret
from openrouter_voice.router import ConfigurationError, FallbackRouter
from openrouter_voice.testing import Script
from tests.conftest import USER
from tests.fuzzing import examples

ENDPOINT_KEY = "ek-live-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH"  # 52 characters, no well-known shape


def pieces(secret: str, size: int = 8) -> list[str]:
    return [secret[i:i + size] for i in range(len(secret) - size + 1)]


def leaked(text: str, secret: str = ENDPOINT_KEY) -> list[str]:
    return [p for p in pieces(secret) if p in text]


class Collect(logging.Handler):
    """A handler as an application might install: no filter of ours on it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def app_handler():
    handler = Collect()
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in ("openrouter_voice", "httpx2", "httpcore2"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old_level)
    for name in ("httpx2", "httpcore2"):
        logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.mark.parametrize("offset", [270, 285, 295, 299])
async def test_an_error_body_echoing_a_key_at_the_cut_leaks_no_part_of_it(upstream, make_router, app_handler, offset):
    register_secret(ENDPOINT_KEY)
    upstream.script("a/x", Script(status=500, error_body="e" * offset + ENDPOINT_KEY + " trailing text"))
    upstream.script("b/y", Script(text="Fine."))
    reply = await make_router(["a/x", "b/y"]).complete(USER)
    assert reply.text == "Fine."
    assert leaked(reply.attempts[0].error or "") == []
    assert leaked("\n".join(app_handler.lines)) == []


def test_redact_masks_what_is_left_of_a_key_cut_at_either_end():
    register_secret(ENDPOINT_KEY)
    cut = ("x" * 20 + ENDPOINT_KEY)[:40]  # cut through the key
    assert leaked(redact(cut)) == [] and redact(cut).startswith("x" * 20)
    assert leaked(redact(ENDPOINT_KEY[30:] + " rest")) == []


async def test_records_of_the_package_are_redacted_without_our_handler_filter(app_handler):
    register_secret(ENDPOINT_KEY)
    logging.getLogger("openrouter_voice.router").warning("upstream said %s", f"key={ENDPOINT_KEY}")
    logging.getLogger("openrouter_voice.some.new.module").error("boom %r", {"k": ENDPOINT_KEY})
    try:
        raise RuntimeError(ENDPOINT_KEY)
    except RuntimeError:
        logging.getLogger("openrouter_voice.agent").exception("failed")
    text = "\n".join(app_handler.lines)
    assert "upstream said key=***" in text
    assert leaked(text) == []


async def _hostile_status_line_server(key: str) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 429 Bearer {key}\r\nContent-Length: 0\r\nX-Echo: Bearer {key}\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_http_library_debug_records_do_not_carry_a_key_echoed_in_the_status_line(app_handler):
    key = "plainkey0123456789abcdefXYZ"  # a key with no well-known shape, registered as configured
    server = await _hostile_status_line_server(key)
    port = server.sockets[0].getsockname()[1]
    router = FallbackRouter(["a/x"], api_key=key, base_url=f"http://127.0.0.1:{port}/api/v1",
                            first_token_timeout=1, stall_timeout=1, hedge_after=None)
    try:
        with pytest.raises(Exception) as info:
            await router.complete(USER)
    finally:
        await router.aclose()
        server.close()
        await server.wait_closed()
    lines = [line for line in app_handler.lines if line.startswith(("httpx2", "httpcore2"))]
    assert any("429" in line for line in lines)  # the HTTP library did log the status line
    assert leaked("\n".join(app_handler.lines), key) == []
    assert leaked(str(info.value), key) == []


@pytest.mark.parametrize("bad", ["sk-or-v1-abc\r\nX-Injected: 1", "sk-or-v1-abc\ndef", "sk-or-v1-\x1babc", "sk-or-v1-é"])
def test_a_key_with_control_characters_is_refused_at_start_up(monkeypatch, tmp_path, bad):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENROUTER_API_KEY", bad)
    with pytest.raises(ConfigError, match="OPENROUTER_API_KEY") as info:
        load_settings()
    assert bad.strip() not in str(info.value)
    with pytest.raises(ConfigurationError, match=r"api_key \(OPENROUTER_API_KEY\)"):
        FallbackRouter(["a/x"], api_key=bad)
    with pytest.raises(ConfigurationError, match="endpoint 'ollama'"):
        FallbackRouter(["a/x"], endpoints={"ollama": ("http://127.0.0.1:11434/v1", bad)})


def test_an_endpoint_key_with_a_line_break_is_refused_naming_the_variable(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENROUTER_VOICE_ENDPOINTS",
                       '{"ollama": {"base_url": "http://127.0.0.1:11434/v1", "api_key": "abc\\r\\ndefghij"}}')
    with pytest.raises(ConfigError, match=r"OPENROUTER_VOICE_ENDPOINTS \(ollama.api_key\)") as info:
        load_settings()
    assert "defghij" not in str(info.value)


@settings(max_examples=examples(300))
@given(st.text(max_size=60), st.text(max_size=60), st.integers(0, 400), st.booleans())
def test_no_cut_through_a_registered_key_leaves_a_readable_part_of_it(before, after, cut, keep_end):
    register_secret(ENDPOINT_KEY)
    text = before + ENDPOINT_KEY + after
    piece = text[cut:] if keep_end else text[:cut]
    assert leaked(redact(piece)) == []
