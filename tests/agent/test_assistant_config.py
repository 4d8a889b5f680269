"""The assistant as the README builds it, and its answers when the model list cannot be read."""

from __future__ import annotations

from openrouter_voice.router import FallbackRouter
from openrouter_voice.router.catalog import Catalog


async def test_the_readme_assistant_takes_its_weather_urls_from_the_settings(monkeypatch, open_meteo):
    from openrouter_voice.agent import Assistant, OpenRouterLLM

    monkeypatch.setenv("OPENROUTER_VOICE_GEOCODING_URL", open_meteo.geocoding_url)
    monkeypatch.setenv("OPENROUTER_VOICE_FORECAST_URL", open_meteo.forecast_url)
    llm = OpenRouterLLM(router=FallbackRouter(["a/x"]))
    assistant = Assistant(llm=llm)  # as the README shows it
    try:
        said = await assistant.get_weather("Tokyo")
    finally:
        await llm.router.aclose()
    assert said.startswith("In Tokyo, Japan it is 7 degrees")
    assert open_meteo.queries  # the scripted service was asked, not the public one


async def test_switch_model_with_a_broken_catalog_says_so(upstream, tmp_path, make_agent):
    kit = make_agent(["a/x"])
    upstream.catalog_body = {"error": {"message": "nope"}}
    kit.catalog = Catalog(upstream.base_url, cache_dir=tmp_path / "empty")  # no cached copy either
    said = await kit.assistant().switch_model("gemini flash")
    assert said == "I can't reach the model list right now, so I'll stay on my current model."
