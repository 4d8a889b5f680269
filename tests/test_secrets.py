"""Secrets never leave: all output of failing runs (at DEBUG), exceptions, doctor and metrics."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from livekit.agents import AgentSession

from openrouter_voice.agent import Assistant, OpenRouterLLM
from openrouter_voice.router import AllModelsFailedError, FallbackRouter
from openrouter_voice.testing import Script, ScriptedUpstream

KEY = "sk-or-v1-secretsecret0123456789abcdef"
OTHER_SECRETS = {"DEEPGRAM_API_KEY": "dg-secret-0123456789", "CARTESIA_API_KEY": "sk_car_secret_0123456789",
                 "LIVEKIT_API_SECRET": "lk-secret-0123456789abcdef"}


def leaks(text: str) -> list[str]:
    return [s for s in (KEY, *OTHER_SECRETS.values()) if s in text]


# A real llama.cpp server: in the xdist group of tests/test_local_model.py, so one runs at a time
# (two servers' threads spinning against each other on 2 cores slow both down tenfold).
@pytest.mark.xdist_group("local_model")
def test_failing_chat_run_at_debug_leaks_no_secret(tmp_path):
    with ScriptedUpstream() as up:
        # The upstream echoes the key back in its error, as a misbehaving proxy might.
        up.script("google/gemini-2.5-flash-lite", Script(status=500, error_message=f"bad key {KEY}"))
        up.script("openai/gpt-4o-mini", Script(error_after_tokens=1, text="partial answer",
                                               error_message=f"Authorization: Bearer {KEY}"))
        env = {**os.environ, **OTHER_SECRETS, "OPENROUTER_API_KEY": KEY, "OPENROUTER_BASE_URL": up.base_url,
               "OPENROUTER_DEBUG": "true", "OPENROUTER_VOICE_LOCAL_FALLBACK": "false",
               "OPENROUTER_FALLBACK_MODELS": "openai/gpt-4o-mini", "OPENROUTER_VOICE_CACHE_DIR": str(tmp_path),
               "OPENROUTER_FIRST_TOKEN_TIMEOUT": "0.5"}
        chat = subprocess.run([sys.executable, "-m", "openrouter_voice", "chat", "--verbose", "Hello?"],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        doctor = subprocess.run([sys.executable, "-m", "openrouter_voice", "doctor"], capture_output=True,
                                text=True, env=env, cwd=tmp_path, timeout=120)
    output = chat.stdout + chat.stderr
    assert chat.returncode == 1  # it apologised
    assert "DEBUG" in output and "attempt 1 model=google/gemini-2.5-flash-lite" in output  # it did log a lot
    assert "bad key ***" in output
    assert leaks(output) == []
    assert leaks(doctor.stdout + doctor.stderr) == []
    assert "DEEPGRAM_API_KEY" in doctor.stdout


async def test_exceptions_and_metrics_carry_no_secret(upstream, caplog):
    caplog.set_level(logging.DEBUG)
    upstream.script("a/x", Script(status=503, error_message=f"key={KEY}"))
    router = FallbackRouter(models=["a/x"], api_key=KEY, base_url=upstream.base_url, first_token_timeout=0.5,
                            stall_timeout=0.5, app_name="t")
    try:
        try:
            await router.complete([{"role": "user", "content": "hi"}])
        except AllModelsFailedError as exc:
            assert leaks(str(exc)) == [] and leaks(repr(exc.attempts)) == []
        upstream.script("a/x", Script(text="ok"))
        router.health.reset()
        llm = OpenRouterLLM(router=router)
        metrics: list[object] = []
        llm.on("metrics_collected", metrics.append)
        async with AgentSession(llm=llm) as session:
            await session.start(Assistant(llm=llm))
            await session.run(user_input="hi")
        assert metrics and leaks(repr(metrics)) == []
        assert leaks(repr(router)) == [] and leaks(repr(router.models)) == []
    finally:
        await router.aclose()
    assert leaks(caplog.text) == []
