"""Small GETs (catalog, weather, key check): a whole-call deadline and a size cap, over real sockets."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator

import httpx2
import pytest
from aiohttp import web

from openrouter_voice.agent.tools.weather import WeatherClient, WeatherError
from openrouter_voice.fetch import ResponseTooLargeError, fetch
from openrouter_voice.router.catalog import Catalog, CatalogUnavailableError
from tests.timing import halfway


async def drip(request: web.Request) -> web.StreamResponse:
    # Never idle long enough for a per-read timeout, never done.
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    while True:
        await response.write(b" ")
        await asyncio.sleep(0.05)


async def flood(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    for _ in range(100):
        await response.write(b"x" * 65536)
    return response


async def zipped(request: web.Request) -> web.Response:
    body = gzip.compress(json.dumps({"data": [{"id": "a/b"}], "q": request.query.get("q")}).encode())
    return web.Response(body=body, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})


@pytest.fixture
async def server() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_get("/drip", drip)
    app.router.add_get("/drip/models", drip)
    app.router.add_get("/flood", flood)
    app.router.add_get("/zipped", zipped)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def elapsed_since(started: float) -> float:
    return asyncio.get_running_loop().time() - started


async def test_a_dripping_server_is_cut_at_the_total_deadline(server):
    started = asyncio.get_running_loop().time()
    with pytest.raises(httpx2.TimeoutException, match=r"within 0\.4s"):
        await fetch(None, f"{server}/drip", seconds=0.4, max_bytes=1 << 20)
    assert elapsed_since(started) < halfway(0.4, 5.0)  # the drip never ends: only the deadline cuts it


async def test_an_endless_body_is_cut_at_the_size_cap(server):
    async with httpx2.AsyncClient() as client:
        with pytest.raises(ResponseTooLargeError, match="more than 1,048,576 bytes"):
            await fetch(client, f"{server}/flood", seconds=10, max_bytes=1 << 20)


async def test_a_compressed_body_is_decoded_once(server):
    response = await fetch(None, f"{server}/zipped", params={"q": "x"}, seconds=5, max_bytes=1 << 20)
    assert response.status_code == 200
    assert response.json() == {"data": [{"id": "a/b"}], "q": "x"}


async def test_the_weather_tool_gives_up_within_its_timeout(server):
    client = WeatherClient(geocoding_url=f"{server}/drip", forecast_url=f"{server}/drip", timeout=0.5)
    started = asyncio.get_running_loop().time()
    with pytest.raises(WeatherError, match="couldn't reach the weather service"):
        await client.current("Paris")
    assert elapsed_since(started) < halfway(0.5, 5.0)


async def test_the_catalog_gives_up_within_its_timeout(server, tmp_path):
    catalog = Catalog(f"{server}/drip", cache_dir=tmp_path, timeout=0.5)
    started = asyncio.get_running_loop().time()
    with pytest.raises(CatalogUnavailableError, match="ReadTimeout"):
        await catalog.models()
    assert elapsed_since(started) < halfway(0.5, 5.0)
