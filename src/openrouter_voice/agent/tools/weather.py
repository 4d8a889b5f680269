"""Current weather from Open-Meteo (geocoding + forecast APIs, no key needed).

>>> client = WeatherClient()
>>> report = await client.current("Paris")  # doctest: +SKIP
>>> report.spoken()  # doctest: +SKIP
'In Paris, France it is 18 degrees Celsius and partly cloudy, with wind at 12 kilometres per hour.'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx2

from ...fetch import fetch

if TYPE_CHECKING:
    from ...config import Settings

GEOCODING_URL = "https://geocoding-api.open-meteo.com/v1/search"
FORECAST_URL = "https://api.open-meteo.com/v1/forecast"
MAX_LOCATION_CHARS = 100
MAX_RESPONSE_BYTES = 1 << 20  # Open-Meteo's answers for one place are a few kB

# WMO weather interpretation codes, as Open-Meteo documents them, in words fit for speech.
WMO_CODES = {
    0: "clear", 1: "mostly clear", 2: "partly cloudy", 3: "overcast", 45: "foggy", 48: "foggy with rime",
    51: "drizzling lightly", 53: "drizzling", 55: "drizzling heavily", 56: "freezing drizzle",
    57: "heavy freezing drizzle", 61: "raining lightly", 63: "raining", 65: "raining heavily",
    66: "freezing rain", 67: "heavy freezing rain", 71: "snowing lightly", 73: "snowing",
    75: "snowing heavily", 77: "snow grains", 80: "light showers", 81: "showers", 82: "violent showers",
    85: "snow showers", 86: "heavy snow showers", 95: "thunderstorms", 96: "thunderstorms with hail",
    99: "thunderstorms with heavy hail",
}


class WeatherError(Exception):
    """A failure with a short sentence fit to be spoken (``str(error)``)."""


@dataclass(frozen=True, slots=True)
class WeatherReport:
    place: str
    temperature_c: float
    feels_like_c: float | None
    description: str
    wind_kmh: float | None
    humidity: float | None

    def spoken(self) -> str:
        """A short sentence for text-to-speech: no symbols, units in words."""
        text = f"In {self.place} it is {round(self.temperature_c)} degrees Celsius and {self.description}"
        if self.feels_like_c is not None and abs(self.feels_like_c - self.temperature_c) >= 3:
            text += f", feeling like {round(self.feels_like_c)}"
        if self.wind_kmh is not None:
            text += f", with wind at {round(self.wind_kmh)} kilometres per hour"
        return text + "."


class WeatherClient:
    """Looks a place up, then its current conditions. Base URLs are configurable for tests."""

    def __init__(self, *, geocoding_url: str = GEOCODING_URL, forecast_url: str = FORECAST_URL,
                 timeout: float = 4.0, http_client: httpx2.AsyncClient | None = None) -> None:
        self.geocoding_url = geocoding_url
        self.forecast_url = forecast_url
        self.timeout = timeout
        self._client = http_client

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> WeatherClient:
        """A client on ``OPENROUTER_VOICE_GEOCODING_URL`` / ``OPENROUTER_VOICE_FORECAST_URL``.

        >>> from openrouter_voice.config import load_settings
        >>> WeatherClient.from_settings(load_settings(weather_forecast_url="http://127.0.0.1:9/v1/forecast")).forecast_url
        'http://127.0.0.1:9/v1/forecast'
        """
        return cls(geocoding_url=settings.weather_geocoding_url, forecast_url=settings.weather_forecast_url,
                   **overrides)

    async def _get(self, url: str, params: dict[str, Any]) -> Any:
        try:
            # A whole-call deadline: a tool call runs inside a voice turn, and LiveKit gives tools no timeout.
            response = await fetch(self._client, url, params=params, seconds=self.timeout, max_bytes=MAX_RESPONSE_BYTES)
            response.raise_for_status()
            return response.json()
        except (httpx2.HTTPError, ValueError):
            raise WeatherError("I couldn't reach the weather service right now. Please try again shortly.") from None

    async def current(self, location: str) -> WeatherReport:
        """Current conditions for ``location``; raises :class:`WeatherError` with a speakable message."""
        location = " ".join(str(location).split())[:MAX_LOCATION_CHARS]
        if not location:
            raise WeatherError("Which place would you like the weather for?")
        geo = await self._get(self.geocoding_url, {"name": location, "count": 1, "language": "en",
                                                   "format": "json"})
        results = geo.get("results") if isinstance(geo, dict) else None
        if not results or not isinstance(results, list) or not isinstance(results[0], dict):
            raise WeatherError(f"I couldn't find a place called {location}. Could you say it another way?")
        place = results[0]
        try:
            latitude, longitude = float(place["latitude"]), float(place["longitude"])
        except (KeyError, TypeError, ValueError):
            raise WeatherError(f"I couldn't find a place called {location}.") from None
        name = ", ".join(str(p) for p in (place.get("name"), place.get("country")) if p) or location
        forecast = await self._get(self.forecast_url, {
            "latitude": latitude, "longitude": longitude, "timezone": "auto",
            "current": "temperature_2m,apparent_temperature,relative_humidity_2m,weather_code,wind_speed_10m",
        })
        current = forecast.get("current") if isinstance(forecast, dict) else None
        if not isinstance(current, dict) or not isinstance(current.get("temperature_2m"), int | float):
            raise WeatherError("The weather service sent an answer I couldn't read. Please try again.")

        def number(key: str) -> float | None:
            value = current.get(key)
            return float(value) if isinstance(value, int | float) else None

        code = current.get("weather_code")
        return WeatherReport(
            place=name,
            temperature_c=float(current["temperature_2m"]),
            feels_like_c=number("apparent_temperature"),
            description=WMO_CODES.get(int(code), "changeable") if isinstance(code, int | float) else "changeable",
            wind_kmh=number("wind_speed_10m"),
            humidity=number("relative_humidity_2m"),
        )
