"""OpenRouter's app attribution: ``HTTP-Referer`` and ``X-Title`` (and ``X-OpenRouter-Title``) on every
request to OpenRouter by default, however the router is built; overridable by settings and arguments.
The oracle is what the scripted upstream received."""

from __future__ import annotations

import pytest

from openrouter_voice.config import load_settings
from openrouter_voice.router import FallbackRouter, defaults
from openrouter_voice.testing import Script
from tests.conftest import TEST_KEY, USER

ATTRIBUTION = ("http-referer", "x-title", "x-openrouter-title")


def attribution(headers: dict[str, str]) -> dict[str, str | None]:
    lowered = {name.lower(): value for name, value in headers.items()}
    return {name: lowered.get(name) for name in ATTRIBUTION}


DEFAULT = {"http-referer": defaults.APP_URL, "x-title": defaults.APP_NAME, "x-openrouter-title": defaults.APP_NAME}


@pytest.fixture
def clean_settings(monkeypatch, tmp_path):
    """No OPENROUTER_APP_* from the developer's shell or .env."""
    monkeypatch.chdir(tmp_path)
    for name in ("OPENROUTER_APP_URL", "OPENROUTER_APP_NAME", "OPENROUTER_VOICE_ENDPOINTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)


async def test_a_router_built_directly_sends_both_headers_on_every_request(upstream):
    upstream.script("a/limited", Script(status=429, retry_after=30))
    router = FallbackRouter(["a/limited", "b/ok"], api_key=TEST_KEY, base_url=upstream.base_url, hedge_after=None)
    try:
        await router.complete(USER)
        async with router.stream(USER) as stream:
            async for _ in stream:
                pass
    finally:
        await router.aclose()
    assert len(upstream.requests) == 3  # the 429, the fallback, the streamed turn
    assert [attribution(r.headers) for r in upstream.requests] == [DEFAULT] * 3
    assert defaults.APP_URL == "http://localhost:3000"


async def test_a_router_from_settings_without_an_app_url_sends_the_default(upstream, clean_settings, monkeypatch):
    monkeypatch.setenv("OPENROUTER_APP_URL", "")  # as in a copied .env.example left unchanged
    router = FallbackRouter.from_settings(load_settings(), ["b/ok"], base_url=upstream.base_url)
    try:
        await router.complete(USER)
    finally:
        await router.aclose()
    assert attribution(upstream.requests[0].headers) == DEFAULT


async def test_settings_override_both(upstream, clean_settings, monkeypatch):
    monkeypatch.setenv("OPENROUTER_APP_URL", "https://voice.example.com")
    monkeypatch.setenv("OPENROUTER_APP_NAME", "Front Desk")
    router = FallbackRouter.from_settings(load_settings(), ["b/ok"], base_url=upstream.base_url)
    try:
        await router.complete(USER)
    finally:
        await router.aclose()
    assert attribution(upstream.requests[0].headers) == {
        "http-referer": "https://voice.example.com", "x-title": "Front Desk", "x-openrouter-title": "Front Desk"}


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"app_url": "https://a.example", "app_name": "A"},
     {"http-referer": "https://a.example", "x-title": "A", "x-openrouter-title": "A"}),
    ({"app_url": None}, {**DEFAULT, "http-referer": None}),
    ({"app_name": None}, {"http-referer": defaults.APP_URL, "x-title": None, "x-openrouter-title": None}),
])
async def test_constructor_arguments_override_or_turn_off_each_header(upstream, kwargs, expected):
    router = FallbackRouter(["b/ok"], api_key=TEST_KEY, base_url=upstream.base_url, **kwargs)
    try:
        await router.complete(USER)
    finally:
        await router.aclose()
    assert attribution(upstream.requests[0].headers) == expected


async def test_other_endpoints_get_no_openrouter_attribution(upstream):
    router = FallbackRouter(["gemma@local"], endpoints={"local": (upstream.base_url, None)})
    try:
        await router.complete(USER)
    finally:
        await router.aclose()
    assert attribution(upstream.requests[0].headers) == dict.fromkeys(ATTRIBUTION)
