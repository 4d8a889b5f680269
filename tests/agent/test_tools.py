"""The assistant's framework-free tools: Open-Meteo client and spoken model names."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openrouter_voice.agent.tools.weather import WeatherClient, WeatherError
from openrouter_voice.router.catalog import parse_models
from openrouter_voice.router.names import normalise, resolve_spoken_name
from openrouter_voice.testing import default_catalog
from tests.fuzzing import examples

MODELS = parse_models({"data": default_catalog()})


async def test_weather_report_is_speakable(open_meteo):
    client = WeatherClient(geocoding_url=open_meteo.geocoding_url, forecast_url=open_meteo.forecast_url)
    report = await client.current("  Tokyo ")
    assert report.spoken() == ("In Tokyo, Japan it is 7 degrees Celsius and raining lightly, feeling like 2, "
                               "with wind at 20 kilometres per hour.")


@pytest.mark.parametrize(("location", "expected"), [
    ("", "Which place would you like the weather for?"),
    ("   ", "Which place would you like the weather for?"),
    ("Atlantis-under-the-sea", "I couldn't find a place called Atlantis-under-the-sea."),
])
async def test_weather_bad_places(open_meteo, location, expected):
    client = WeatherClient(geocoding_url=open_meteo.geocoding_url, forecast_url=open_meteo.forecast_url)
    with pytest.raises(WeatherError) as info:
        await client.current(location)
    assert str(info.value).startswith(expected)


async def test_weather_huge_location_is_truncated_not_sent_whole(open_meteo):
    client = WeatherClient(geocoding_url=open_meteo.geocoding_url, forecast_url=open_meteo.forecast_url)
    with pytest.raises(WeatherError):
        await client.current("x" * 100_000)
    assert len(open_meteo.queries[-1]["name"]) == 100


async def test_weather_service_down_or_broken(open_meteo):
    open_meteo.broken = True
    client = WeatherClient(geocoding_url=open_meteo.geocoding_url, forecast_url=open_meteo.forecast_url)
    with pytest.raises(WeatherError, match="couldn't reach the weather service"):
        await client.current("Paris")
    offline = WeatherClient(geocoding_url="http://127.0.0.1:9/v1/search", forecast_url="http://127.0.0.1:9/v1/f",
                            timeout=0.5)
    with pytest.raises(WeatherError, match="couldn't reach the weather service"):
        await offline.current("Paris")


@pytest.mark.parametrize(("spoken", "model_id"), [
    ("gpt four o mini", "openai/gpt-4o-mini"),
    ("GPT four point one mini", "openai/gpt-4.1-mini"),
    ("Gemini Flash", "google/gemini-2.5-flash"),
    ("jemini flash light", "google/gemini-2.5-flash-lite"),
    ("claude haiku four point five", "anthropic/claude-haiku-4.5"),
    ("lama three point one", "meta-llama/llama-3.1-8b-instruct"),
    ("openai/gpt-4o-mini", "openai/gpt-4o-mini"),
    ("the mistral model", "mistralai/mistral-7b-instruct"),
])
def test_spoken_names_resolve(spoken, model_id):
    assert resolve_spoken_name(spoken, MODELS).model_id == model_id


def test_ambiguous_and_unknown_names():
    haiku = resolve_spoken_name("Claude Haiku", MODELS)
    assert haiku.model_id is None and haiku.ambiguous
    assert {m.id for m in haiku.candidates} == {"anthropic/claude-3.5-haiku", "anthropic/claude-haiku-4.5"}
    unknown = resolve_spoken_name("unicorn", MODELS)
    assert unknown.model_id is None and not unknown.ambiguous


def test_expired_models_are_not_chosen():
    import datetime as dt

    resolution = resolve_spoken_name("gpt four o mini", MODELS, today=dt.date(2027, 2, 1))
    assert resolution.model_id != "openai/gpt-4o-mini"


@settings(max_examples=examples(200))
@given(st.text(max_size=200))
def test_any_spoken_text_resolves_without_crashing(text):
    resolution = resolve_spoken_name(text, MODELS)
    assert resolution.model_id is None or resolution.model_id in {m.id for m in MODELS}
    assert all(isinstance(t, str) and t for t in normalise(text))
