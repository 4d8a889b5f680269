"""`openrouter-voice health --once / --json` on state a real router wrote to a real Redis."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from openrouter_voice.cli.main import app
from openrouter_voice.config import load_settings
from openrouter_voice.fleet import aclose_all, store_of
from openrouter_voice.fleet.embedded import EmbeddedStore, advertised
from openrouter_voice.router import AllModelsFailedError, FallbackRouter
from openrouter_voice.testing import Script, ScriptedUpstream
from tests.conftest import TEST_KEY, USER

CHAIN = ["a/limited", "b/fine", "c/retired"]


@pytest.fixture
def threaded_upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as up:
        yield up


@pytest.fixture
def env(monkeypatch, tmp_path, threaded_upstream, redis_server, prefix):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENROUTER_BASE_URL", threaded_upstream.base_url)
    monkeypatch.setenv("OPENROUTER_API_KEY", TEST_KEY)
    monkeypatch.setenv("OPENROUTER_DEFAULT_MODEL", CHAIN[0])
    monkeypatch.setenv("OPENROUTER_FALLBACK_MODELS", ",".join(CHAIN[1:]))
    monkeypatch.setenv("OPENROUTER_VOICE_REDIS_URL", redis_server.url)
    monkeypatch.setenv("OPENROUTER_VOICE_REDIS_PREFIX", prefix)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))  # no real worker's runtime file
    return monkeypatch


def write_state(upstream: ScriptedUpstream) -> None:
    """A router from settings serves turns: a 429 with Retry-After 30 on the primary, a 404 on the third."""
    upstream.script("a/limited", Script(status=429, retry_after=30))
    upstream.script("b/fine", [Script(text="Fine.", ttft=0.02)] * 5 + [Script(status=500)])
    upstream.script("c/retired", Script(status=404, error_message="No endpoints found for c/retired"))

    async def turns() -> None:
        router = FallbackRouter.from_settings(load_settings(local_fallback=False), first_token_timeout=1.0,
                                              hedge_after=None)
        try:
            for _ in range(5):
                await router.complete(USER)
            with pytest.raises(AllModelsFailedError):
                await router.complete(USER)  # b/fine 500, c/retired 404
            store = store_of(router.health)
            assert store is not None
            assert await store.flush(5.0), "Redis did not take the verdicts"
        finally:
            await router.aclose()
            await aclose_all()

    asyncio.run(turns())


def test_health_json_shows_each_chain_model_with_its_state_and_why(env, threaded_upstream):
    write_state(threaded_upstream)
    result = CliRunner().invoke(app, ["health", "--json"])
    assert result.exit_code == 0, result.output
    snapshot = json.loads(result.stdout)
    rows = {row["model"]: row for row in snapshot["models"]}
    assert [row["model"] for row in snapshot["models"]][:3] == CHAIN
    limited, fine, retired = rows["a/limited"], rows["b/fine"], rows["c/retired"]
    assert limited["state"] == "open" and 20 < limited["cooldown_left"] <= 30 and "Retry-After" in limited["why"]
    assert retired["state"] == "excluded" and retired["cooldown_left"] > 1800
    assert fine["state"] == "open" and fine["ttft_samples"] == 5 and fine["ttft_p50"] < 1.0
    assert sum(limited["recent_failures"].values()) == 1 and sum(fine["recent_failures"].values()) == 1
    assert TEST_KEY not in result.output


def test_health_once_prints_a_table(env, threaded_upstream):
    write_state(threaded_upstream)
    result = CliRunner().invoke(app, ["health", "--once"])
    assert result.exit_code == 0, result.output
    for model in CHAIN:
        assert model in result.stdout
    assert "excluded" in result.stdout and "open" in result.stdout and "Retry-After" in result.stdout


def test_health_shows_a_model_hedged_past_while_silent_as_suspect_with_why(env, threaded_upstream):
    threaded_upstream.script("a/limited", Script(hang=True))
    threaded_upstream.script("b/fine", Script(text="Fine."))

    async def turn() -> None:  # the hang is hedged past at once and judged only long after the check
        router = FallbackRouter.from_settings(load_settings(local_fallback=False), first_token_timeout=60.0,
                                              hedge_after=0.05)
        try:
            assert (await router.complete(USER)).model == "b/fine"
            store = store_of(router.health)
            assert store is not None and await store.flush(5.0), "Redis did not take the mark"
            result = await asyncio.to_thread(CliRunner().invoke, app, ["health", "--json"])  # it runs its own loop
            assert result.exit_code == 0, result.output
            rows = {row["model"]: row for row in json.loads(result.stdout)["models"]}
            assert rows["a/limited"]["state"] == "suspect" and "no first token" in rows["a/limited"]["why"]
            assert rows["b/fine"]["state"] == "closed"
        finally:
            await router.aclose()
            await aclose_all()

    asyncio.run(turn())


def test_health_says_so_when_there_is_nothing_to_show(env):
    env.delenv("OPENROUTER_VOICE_REDIS_URL")
    result = CliRunner().invoke(app, ["health", "--once"])
    assert result.exit_code == 0 and "Nothing to show" in result.output


def test_health_finds_a_running_workers_embedded_store_without_a_configured_url(env, threaded_upstream):
    with EmbeddedStore() as store:
        env.setenv("OPENROUTER_VOICE_REDIS_URL", store.url)  # the worker's job processes get it this way
        write_state(threaded_upstream)
        env.delenv("OPENROUTER_VOICE_REDIS_URL")  # `health` in another shell has none
        with advertised(store.url):  # what the worker writes while it runs
            result = CliRunner().invoke(app, ["health", "--once"])
        assert result.exit_code == 0, result.output
        assert "embedded store of the agent worker" in result.stdout and str(os.getpid()) in result.stdout
        assert "Retry-After" in result.stdout and "excluded" in result.stdout
        after = CliRunner().invoke(app, ["health", "--once"])  # the worker's file is gone with it
        assert after.exit_code == 0 and "Nothing to show" in after.output


def test_health_names_the_fix_when_redis_is_down(env, redis_server):
    env.setenv("OPENROUTER_VOICE_REDIS_URL", "redis://:pw-secret-0123456@127.0.0.1:1/0")
    result = CliRunner().invoke(app, ["health", "--once"])
    assert result.exit_code == 1 and "OPENROUTER_VOICE_REDIS_URL" in result.output
    assert "pw-secret-0123456" not in result.output
