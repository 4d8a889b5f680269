"""The worker's Prometheus endpoint, scraped over real HTTP from a running worker-like process: the chain
is there from start-up, and a turn run in a job process shows up once it ended."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from openrouter_voice.testing import Script
from tests.conftest import TEST_KEY

ROOT = Path(__file__).resolve().parents[2]
PRIMARY, BACKUP = "a/primary", "b/backup"
COST = 0.00042137


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def value(scraped: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float | None:
    found = [v for n, lab, v in scraped if n == name and all(lab.get(k) == w for k, w in labels.items())]
    return sum(found) if found else None


class Worker:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process, self.port = process, port

    async def line(self) -> str:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), 120)
        return raw.decode().strip()

    async def scrape(self) -> str:
        async with httpx2.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{self.port}/metrics", timeout=10)
        assert response.status_code == 200
        return response.text


@pytest.fixture
async def worker(upstream, tmp_path) -> AsyncIterator[Worker]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OPENROUTER", "LIVEKIT"))}
    env.update(OPENROUTER_VOICE_METRICS_PORT=str(port), OPENROUTER_API_KEY=TEST_KEY,
               OPENROUTER_BASE_URL=upstream.base_url, OPENROUTER_DEFAULT_MODEL=PRIMARY,
               OPENROUTER_FALLBACK_MODELS=BACKUP, OPENROUTER_VOICE_LOCAL_FALLBACK="false",
               OPENROUTER_HEDGE_AFTER="0", PYTHONPATH=str(ROOT))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.telemetry.worker_like", cwd=tmp_path, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    running = Worker(process, port)
    try:
        assert await running.line() == "READY"
        yield running
    finally:
        if process.returncode is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


async def test_scrape_shows_the_chain_at_start_up_then_each_turn(worker, upstream):
    upstream.script(PRIMARY, Script(status=429, retry_after=30))
    upstream.script(BACKUP, Script(text="Backup answers.", usage={"prompt_tokens": 12, "completion_tokens": 5,
                                                                   "cost": COST}))
    # Before any call: each chain model's circuit, closed.
    before = samples(await worker.scrape())
    assert value(before, "openrouter_voice_router_circuit_state", openrouter_voice_model=PRIMARY) == 0
    assert value(before, "openrouter_voice_router_circuit_state", openrouter_voice_model=BACKUP) == 0
    assert value(before, "gen_ai_client_operation_duration_seconds_count") is None

    assert worker.process.stdin is not None
    worker.process.stdin.write(b"turn\n")
    await worker.process.stdin.drain()
    assert await worker.line() == "RECORDED 1"

    text = await worker.scrape()
    after = samples(text)
    assert value(after, "gen_ai_client_operation_duration_seconds_count", gen_ai_request_model=PRIMARY,
                 gen_ai_response_model=BACKUP, gen_ai_operation_name="chat", gen_ai_provider_name="openrouter") == 1
    assert value(after, "gen_ai_client_operation_time_to_first_chunk_seconds_count") == 1
    assert value(after, "openrouter_voice_router_fallbacks_total", openrouter_voice_fallback_from=PRIMARY,
                 openrouter_voice_fallback_to=BACKUP, openrouter_voice_reason="429") == 1
    assert value(after, "openrouter_voice_router_attempts_total", openrouter_voice_model=PRIMARY,
                 openrouter_voice_outcome="http_error", openrouter_voice_reason="429") == 1
    assert math.isclose(value(after, "openrouter_voice_router_cost_USD_total", openrouter_voice_model=BACKUP) or 0,
                        COST)
    assert value(after, "openrouter_voice_router_circuit_state", openrouter_voice_model=PRIMARY) == 2
    assert 0 < (value(after, "openrouter_voice_router_cooldown_remaining_seconds",
                      openrouter_voice_model=PRIMARY) or 0) <= 30
    assert TEST_KEY not in text and "zebra-quokka" not in text


DASHBOARD = ROOT / "grafana" / "openrouter-voice.json"
METRIC = re.compile(r"\b((?:openrouter_voice|gen_ai)_[A-Za-z0-9_]+)\b")
GROUPED = re.compile(r"\bby \(([^)]*)\)")
SELECTOR = re.compile(r"\{([^}]*)\}")


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["templating"]["list"][0]["type"] == "datasource"  # imported as is: pick a Prometheus
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    return [t["expr"] for p in panels for t in p["targets"]]


async def test_every_metric_and_label_the_dashboard_queries_is_in_the_scrape(worker, upstream):
    upstream.script(PRIMARY, Script(status=429, retry_after=30))
    upstream.script(BACKUP, Script(text="Backup answers.", usage={"prompt_tokens": 12, "completion_tokens": 5,
                                                                   "cost": COST}))
    assert worker.process.stdin is not None
    worker.process.stdin.write(b"turn\n")
    await worker.process.stdin.drain()
    assert await worker.line() == "RECORDED 1"
    scraped = samples(await worker.scrape())
    labels_of: dict[str, set[str]] = {}
    for name, labels, _ in scraped:
        labels_of.setdefault(name, set()).update(labels)

    queries = dashboard_queries()
    assert any("time_to_first_audio" in q for q in queries) and any("cost_USD" in q for q in queries)
    for expr in queries:
        names = METRIC.findall(SELECTOR.sub("", GROUPED.sub("", expr)))  # labels out: metric names left
        assert names, expr
        used = {label.strip() for group in GROUPED.findall(expr) for label in group.split(",")} - {"le", ""}
        used |= {m.split("!=")[0].split("=")[0].strip() for s in SELECTOR.findall(expr) for m in s.split(",") if m}
        for name in names:
            assert name in labels_of, f"{name} (queried by {expr!r}) is not in the scrape"
            assert used <= labels_of[name] | {"le"}, (name, used - labels_of[name])
