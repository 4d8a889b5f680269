"""Fixtures for agent tests: a fake Open-Meteo on 127.0.0.1 and an OpenRouterLLM on the scripted upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from openrouter_voice.agent import Assistant, OpenRouterLLM
from openrouter_voice.agent.tools.weather import WeatherClient
from openrouter_voice.router import FallbackRouter
from openrouter_voice.router.catalog import Catalog
from openrouter_voice.testing import ScriptedUpstream
from tests.conftest import TEST_KEY

PLACES = {
    "paris": {"name": "Paris", "country": "France", "latitude": 48.85, "longitude": 2.35},
    "tokyo": {"name": "Tokyo", "country": "Japan", "latitude": 35.69, "longitude": 139.69},
}
CURRENT = {
    (48.85, 2.35): {"temperature_2m": 18.4, "apparent_temperature": 17.9, "relative_humidity_2m": 60,
                    "weather_code": 2, "wind_speed_10m": 12.2},
    (35.69, 139.69): {"temperature_2m": 7.0, "apparent_temperature": 2.5, "relative_humidity_2m": 40,
                      "weather_code": 61, "wind_speed_10m": 20.0},
}


@dataclass
class FakeOpenMeteo:
    base: str = ""
    queries: list[dict[str, str]] = field(default_factory=list)
    broken: bool = False
    gate: asyncio.Event | None = None  # when set, forecasts wait for it: a tool as slow as a test needs

    @property
    def geocoding_url(self) -> str:
        return f"{self.base}/v1/search"

    @property
    def forecast_url(self) -> str:
        return f"{self.base}/v1/forecast"


@pytest.fixture
async def open_meteo() -> AsyncIterator[FakeOpenMeteo]:
    fake = FakeOpenMeteo()

    async def search(request: web.Request) -> web.Response:
        fake.queries.append(dict(request.query))
        if fake.broken:
            return web.Response(status=500, text="boom")
        place = PLACES.get(request.query.get("name", "").lower())
        return web.json_response({"results": [place]} if place else {"generationtime_ms": 0.1})

    async def forecast(request: web.Request) -> web.Response:
        fake.queries.append(dict(request.query))
        if fake.gate is not None:
            await fake.gate.wait()
        key = (float(request.query["latitude"]), float(request.query["longitude"]))
        return web.json_response({"current": CURRENT[key], "current_units": {"temperature_2m": "°C"}})

    app = web.Application()
    app.router.add_get("/v1/search", search)
    app.router.add_get("/v1/forecast", forecast)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.base = f"http://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


@dataclass
class AgentKit:
    upstream: ScriptedUpstream
    llm: OpenRouterLLM
    weather: WeatherClient
    catalog: Catalog

    def assistant(self) -> Assistant:
        return Assistant(llm=self.llm, weather=self.weather, catalog=self.catalog)


@pytest.fixture
async def make_agent(upstream: ScriptedUpstream, open_meteo: FakeOpenMeteo, tmp_path) -> AsyncIterator[Any]:
    made: list[OpenRouterLLM] = []

    def make(models: list[str], **router_kwargs: Any) -> AgentKit:
        router_kwargs.setdefault("first_token_timeout", 0.5)
        router_kwargs.setdefault("stall_timeout", 0.5)
        router_kwargs.setdefault("final_first_token_timeout", 1.0)
        router = FallbackRouter(models=models, api_key=TEST_KEY, base_url=upstream.base_url, app_name="agent-tests",
                                **router_kwargs)
        llm = OpenRouterLLM(router=router)
        made.append(llm)
        return AgentKit(upstream, llm, WeatherClient(geocoding_url=open_meteo.geocoding_url,
                                                     forecast_url=open_meteo.forecast_url),
                        Catalog(upstream.base_url, cache_dir=tmp_path))

    yield make
    for llm in made:
        await llm.router.aclose()
        await llm.aclose()
