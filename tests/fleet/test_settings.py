"""OPENROUTER_VOICE_REDIS_URL: checked at start-up, masked everywhere, used by every router from settings."""

from __future__ import annotations

import logging

import pytest

from openrouter_voice import app
from openrouter_voice.config import ConfigError, Settings, load_settings
from openrouter_voice.fleet import store_of
from openrouter_voice.router import FallbackRouter
from openrouter_voice.testing.redis_server import RedisServer
from tests.conftest import TEST_KEY, USER


@pytest.mark.parametrize("url", ["http://cache:6379", "redis://", "redis://cache:port/0", "redis://cache:6379/zero",
                                 "memcached://:hunter2-secret@cache", "unix://relative/valkey.sock",
                                 "unix:///run/valkey.sock?db=zero"])
def test_a_bad_url_names_the_variable_and_the_fix_and_never_shows_the_password(monkeypatch, url):
    monkeypatch.setenv("OPENROUTER_VOICE_REDIS_URL", url)
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None)
    message = str(raised.value)
    assert "OPENROUTER_VOICE_REDIS_URL" in message and "redis://" in message and "Fix:" in message
    assert "hunter2-secret" not in message


def test_a_unix_socket_url_is_accepted_as_the_worker_hands_its_embedded_store_to_jobs(monkeypatch):
    monkeypatch.setenv("OPENROUTER_VOICE_REDIS_URL", "unix:///tmp/openrouter-voice-health-x/valkey.sock?db=0")
    settings = load_settings(_env_file=None)
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == "unix:///tmp/openrouter-voice-health-x/valkey.sock?db=0"


def test_the_embedded_store_setting_is_a_boolean_named_with_its_fix(monkeypatch):
    monkeypatch.delenv("OPENROUTER_VOICE_EMBEDDED_HEALTH", raising=False)
    assert load_settings(_env_file=None).embedded_health is True  # on by default
    monkeypatch.setenv("OPENROUTER_VOICE_EMBEDDED_HEALTH", "false")
    assert load_settings(_env_file=None).embedded_health is False
    monkeypatch.setenv("OPENROUTER_VOICE_EMBEDDED_HEALTH", "sometimes")
    with pytest.raises(ConfigError, match=r"OPENROUTER_VOICE_EMBEDDED_HEALTH.*use true or false"):
        load_settings(_env_file=None)


def test_a_bad_prefix_is_refused(monkeypatch):
    monkeypatch.setenv("OPENROUTER_VOICE_REDIS_PREFIX", "has spaces")
    with pytest.raises(ConfigError, match="OPENROUTER_VOICE_REDIS_PREFIX"):
        load_settings(_env_file=None)


async def test_every_router_from_settings_shares_one_tracker_and_the_password_stays_out_of_logs(
        upstream, caplog, prefix):
    # A server with a password that is then stopped: the warning about the outage names the server,
    # masked, and the turn still gets its answer.
    server = RedisServer()
    url = f"redis://:pw-0123456789-topsecret@127.0.0.1:{server.port}/0"
    settings = Settings(_env_file=None, openrouter_api_key=TEST_KEY, openrouter_base_url=upstream.base_url,  # type: ignore[call-arg]
                        local_fallback=False, redis_url=url, redis_prefix=prefix)
    caplog.set_level(logging.DEBUG)
    first = FallbackRouter.from_settings(settings, ["a/x"])
    second = await app.build_router(settings, models=["a/x"], check=False)
    try:
        assert first.health is second.health and store_of(first.health) is not None
        store = store_of(first.health)
        assert store is not None
        assert not await store.wait_synced(0.3)  # nothing listens on that port
        reply = await first.complete(USER)  # fail open: the turn never waits on Redis
        assert reply.model == "a/x"
    finally:
        await first.aclose()
        await second.aclose()
        from openrouter_voice.fleet import aclose_all

        await aclose_all()
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "unreachable" in text and "redis://:***@127.0.0.1" in text
    assert "topsecret" not in text


def test_the_router_never_imports_redis():
    import subprocess
    import sys
    from pathlib import Path

    from tests.test_app import runtime_imports

    code = ("import sys, openrouter_voice.router, openrouter_voice.router.health, openrouter_voice.router.sharing; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'redis' or m.startswith('openrouter_voice.fleet')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"
    import ast

    router = Path(__file__).resolve().parents[2] / "src" / "openrouter_voice" / "router"
    for path in router.glob("*.py"):
        for module in runtime_imports(ast.parse(path.read_text())):
            assert not module.startswith("redis") and "fleet" not in module.split("."), (path.name, module)
