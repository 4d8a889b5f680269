"""Settings from the environment and ``.env``, with errors that name the variable and the fix.

>>> settings = load_settings()          # reads OPENROUTER_* / LIVEKIT_* / ... and ./.env
>>> settings.chain()                    # primary first
['google/gemini-2.5-flash-lite', 'openai/gpt-4o-mini', 'meta-llama/llama-3.1-8b-instruct']
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from .redact import redact, register_secret
from .router import defaults
from .router.defaults import OPENROUTER_BASE_URL

if TYPE_CHECKING:
    from .router.health import HealthTracker

__all__ = ["OPENROUTER_BASE_URL", "ConfigError", "EndpointConfig", "Settings", "load_settings", "validate_model_id"]


# A current, cheap, fast voice chain (checked against OpenRouter's catalog in 2026; the 2024 seed
# list had retired ids). `doctor` and start-up catalog checks re-validate it against /api/v1/models.
DEFAULT_MODEL = "google/gemini-2.5-flash-lite"
DEFAULT_FALLBACK_MODELS = ("openai/gpt-4o-mini", "meta-llama/llama-3.1-8b-instruct")

# author/slug with an optional :variant (":free", ":nitro", ":floor"); or model@endpoint for an
# OpenAI-compatible endpoint configured in OPENROUTER_VOICE_ENDPOINTS (``@local`` is built in).
_OPENROUTER_ID = re.compile(r"^[a-z0-9][a-z0-9._\-]*/[A-Za-z0-9][A-Za-z0-9._\-]*(:[a-z0-9\-]+)?$")
_ENDPOINT_ID = re.compile(r"^[^\s@]+@[a-z0-9_\-]+$")


class ConfigError(ValueError):
    """A setting has a bad value. The message names the variable and how to fix it."""


def validate_model_id(value: str, *, variable: str = "model id") -> str:
    """Check the shape of a model id; raise :class:`ConfigError` naming ``variable`` if it is wrong.

    >>> validate_model_id("openai/gpt-4o-mini")
    'openai/gpt-4o-mini'
    """
    value = value.strip()
    if _OPENROUTER_ID.match(value) or _ENDPOINT_ID.match(value):
        return value
    raise ConfigError(
        f"{variable}: {value!r} is not a model id. Use OpenRouter's 'author/slug' form "
        f"(e.g. 'openai/gpt-4o-mini', optionally with ':free' or ':nitro'), or 'model@endpoint' for "
        f"an OpenAI-compatible endpoint; `openrouter-voice models` lists valid ids."
    )


class EndpointConfig(BaseModel):  # not BaseSettings: a stray API_KEY in the environment must not fill it
    """An extra OpenAI-compatible endpoint that models in the chain can name as ``model@name``."""

    base_url: str
    api_key: SecretStr | None = None

    @field_validator("api_key")
    @classmethod
    def _mask(cls, value: SecretStr | None) -> SecretStr | None:
        # Masked in every log line and error, like the OpenRouter key.
        return _registered(value)


def _registered(value: SecretStr | None) -> SecretStr | None:
    """Empty means unset; anything else is registered with the log/error redactor. A key goes in an
    HTTP header, so a line break or other control character (a copy-paste accident) is refused here,
    at start-up, rather than failing every request as a connection error."""
    if value is None or not value.get_secret_value().strip():
        return None
    secret = value.get_secret_value().strip()
    register_secret(secret)
    if not (secret.isascii() and secret.isprintable()):
        raise ValueError("contains a line break, control or non-ASCII character (it is sent as an HTTP header)")
    return SecretStr(secret)


class Settings(BaseSettings):
    """Every setting of openrouter-voice. Field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True,
    )

    openrouter_api_key: SecretStr | None = None
    openrouter_app_name: str = defaults.APP_NAME
    openrouter_app_url: str = defaults.APP_URL
    openrouter_default_model: str = DEFAULT_MODEL
    openrouter_fallback_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_FALLBACK_MODELS)
    )
    openrouter_base_url: str = OPENROUTER_BASE_URL
    first_token_timeout: float = Field(
        default=defaults.FIRST_TOKEN_TIMEOUT,
        validation_alias=AliasChoices("OPENROUTER_FIRST_TOKEN_TIMEOUT", "first_token_timeout"),
    )
    stall_timeout: float = Field(
        default=defaults.STALL_TIMEOUT, validation_alias=AliasChoices("OPENROUTER_STALL_TIMEOUT", "stall_timeout"),
    )
    # If the model has no first token after this long, also ask the next one (0 turns hedging off).
    hedge_after: float = Field(
        default=defaults.HEDGE_AFTER, validation_alias=AliasChoices("OPENROUTER_HEDGE_AFTER", "hedge_after"),
    )
    # A reply streaming fewer words/s than this over the window is too slow for speech (0 turns it off).
    dribble_words_per_second: float = Field(
        default=defaults.DRIBBLE_WORDS_PER_SECOND,
        validation_alias=AliasChoices("OPENROUTER_DRIBBLE_WORDS_PER_SECOND", "dribble_words_per_second"),
    )
    dribble_window: float = Field(
        default=defaults.DRIBBLE_WINDOW,
        validation_alias=AliasChoices("OPENROUTER_DRIBBLE_WINDOW", "dribble_window"),
    )
    # Spoken turns: seconds from the first token to the first sentence end (a model's own history
    # takes over once it has some); 0 turns the check off.
    first_sentence_timeout: float = Field(
        default=defaults.FIRST_SENTENCE_TIMEOUT,
        validation_alias=AliasChoices("OPENROUTER_FIRST_SENTENCE_TIMEOUT", "first_sentence_timeout"),
    )
    # Refresh OpenRouter's per-model endpoint statistics in the background; try failing models last.
    predictive_ranking: bool = Field(
        default=False, validation_alias=AliasChoices("OPENROUTER_PREDICTIVE_RANKING", "predictive_ranking"),
    )
    debug: bool = Field(default=False, validation_alias=AliasChoices("OPENROUTER_DEBUG", "debug"))
    # Extra OpenAI-compatible endpoints as JSON: {"ollama": {"base_url": "http://127.0.0.1:11434/v1"}}
    endpoints: dict[str, EndpointConfig] = Field(
        default_factory=dict, validation_alias=AliasChoices("OPENROUTER_VOICE_ENDPOINTS", "endpoints"),
    )
    # With a key, put the embedded local model at the end of the chain as the last resort.
    local_fallback: bool = Field(
        default=True, validation_alias=AliasChoices("OPENROUTER_VOICE_LOCAL_FALLBACK", "local_fallback"),
    )
    # The voice worker serves Prometheus metrics on this port (all interfaces); unset: no endpoint.
    metrics_port: int | None = Field(
        default=None, validation_alias=AliasChoices("OPENROUTER_VOICE_METRICS_PORT", "metrics_port"),
    )

    # Share model health with every process of the deployment through Redis/Valkey (redis://, rediss://).
    redis_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENROUTER_VOICE_REDIS_URL", "redis_url"),
    )
    redis_prefix: str = Field(
        default="openrouter-voice", validation_alias=AliasChoices("OPENROUTER_VOICE_REDIS_PREFIX", "redis_prefix"),
    )
    # Without a Redis URL, the voice worker shares health among its job processes through an embedded
    # Valkey server it starts (fleet/embedded.py); false: each job process keeps its own.
    embedded_health: bool = Field(
        default=True, validation_alias=AliasChoices("OPENROUTER_VOICE_EMBEDDED_HEALTH", "embedded_health"),
    )

    # Seconds a committed voice turn may stay silent before "One moment." is said (0 turns it off).
    voice_ack_after: float = Field(
        default=2.0, validation_alias=AliasChoices("OPENROUTER_VOICE_ACK_AFTER", "voice_ack_after"),
    )

    livekit_url: str | None = None
    livekit_api_key: str | None = None
    livekit_api_secret: SecretStr | None = None
    deepgram_api_key: SecretStr | None = None
    cartesia_api_key: SecretStr | None = None
    # Where the speech services are (a scripted server on 127.0.0.1 for tests and rehearsals).
    deepgram_base_url: str = Field(
        default="https://api.deepgram.com", validation_alias=AliasChoices("DEEPGRAM_BASE_URL", "deepgram_base_url"),
    )
    cartesia_base_url: str = Field(
        default="https://api.cartesia.ai", validation_alias=AliasChoices("CARTESIA_BASE_URL", "cartesia_base_url"),
    )

    weather_geocoding_url: str = Field(
        default="https://geocoding-api.open-meteo.com/v1/search",
        validation_alias=AliasChoices("OPENROUTER_VOICE_GEOCODING_URL", "weather_geocoding_url"),
    )
    weather_forecast_url: str = Field(
        default="https://api.open-meteo.com/v1/forecast",
        validation_alias=AliasChoices("OPENROUTER_VOICE_FORECAST_URL", "weather_forecast_url"),
    )

    @field_validator("openrouter_fallback_models", mode="before")
    @classmethod
    def _split_models(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("openrouter_fallback_models")
    @classmethod
    def _check_models(cls, value: list[str]) -> list[str]:
        return [validate_model_id(v, variable="OPENROUTER_FALLBACK_MODELS") for v in value]

    @field_validator("openrouter_default_model")
    @classmethod
    def _check_default(cls, value: str) -> str:
        return validate_model_id(value, variable="OPENROUTER_DEFAULT_MODEL")

    @field_validator("openrouter_base_url", "weather_geocoding_url", "weather_forecast_url", "deepgram_base_url",
                     "cartesia_base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        from .fleet.urls import check_redis_url

        if value is None or not value.get_secret_value().strip():
            return None
        return SecretStr(check_redis_url(value.get_secret_value()))

    @field_validator("redis_prefix")
    @classmethod
    def _check_redis_prefix(cls, value: str) -> str:
        from .fleet.urls import check_prefix

        return check_prefix(value)

    @field_validator("first_token_timeout", "stall_timeout")
    @classmethod
    def _check_timeout(cls, value: float) -> float:
        if not 0.05 <= value <= 120:
            raise ValueError(f"{value} is out of range: use seconds between 0.05 and 120 (e.g. 2.0)")
        return value

    @field_validator("hedge_after")
    @classmethod
    def _check_hedge(cls, value: float) -> float:
        if not 0 <= value <= 120:
            raise ValueError(f"{value} is out of range: use seconds (e.g. 1.0), or 0 to turn hedging off")
        return value

    @field_validator("metrics_port", mode="before")
    @classmethod
    def _check_metrics_port(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        try:
            port = int(str(value).strip())
        except ValueError:
            raise ValueError("not a port number") from None
        if not 1 <= port <= 65535:
            raise ValueError(f"{port} is not a TCP port (1-65535)")
        return port

    @field_validator("dribble_words_per_second")
    @classmethod
    def _check_dribble_rate(cls, value: float) -> float:
        if not 0 <= value <= 20:
            raise ValueError(f"{value} is out of range: use words per second (e.g. 2.0), or 0 to turn the check off")
        return value

    @field_validator("voice_ack_after")
    @classmethod
    def _check_ack_after(cls, value: float) -> float:
        if not 0 <= value <= 60:
            raise ValueError(f"{value} is out of range: use seconds (e.g. 2.0), or 0 to turn the acknowledgement off")
        return value

    @field_validator("dribble_window")
    @classmethod
    def _check_dribble_window(cls, value: float) -> float:
        if not 0.5 <= value <= 30:
            raise ValueError(f"{value} is out of range: use seconds between 0.5 and 30 (e.g. 2.0)")
        return value

    @field_validator("first_sentence_timeout")
    @classmethod
    def _check_first_sentence(cls, value: float) -> float:
        if not (value == 0 or 0.1 <= value <= 10):
            raise ValueError(f"{value} is out of range: use seconds between 0.1 and 10 (e.g. 0.5), or 0 to turn "
                             "the check off")
        return value

    @field_validator("openrouter_api_key", "deepgram_api_key", "cartesia_api_key", "livekit_api_secret")
    @classmethod
    def _empty_is_unset(cls, value: SecretStr | None) -> SecretStr | None:
        return _registered(value)

    @field_validator("openrouter_app_name", "openrouter_app_url")
    @classmethod
    def _check_header_value(cls, value: str, info: ValidationInfo) -> str:
        # Sent as HTTP headers (X-Title, HTTP-Referer), which carry ASCII only.
        if not (value.isascii() and value.isprintable()):
            raise ValueError("must be printable ASCII (it is sent as an HTTP header)")
        if not value.strip():  # empty, as in a copied .env.example: the default, attribution stays on
            return defaults.APP_NAME if info.field_name == "openrouter_app_name" else defaults.APP_URL
        return value

    @model_validator(mode="after")
    def _check_endpoint_names(self) -> Settings:
        # A chain entry 'model@name' needs OPENROUTER_VOICE_ENDPOINTS to define 'name'.
        for variable, models in (("OPENROUTER_DEFAULT_MODEL", [self.openrouter_default_model]),
                                 ("OPENROUTER_FALLBACK_MODELS", self.openrouter_fallback_models)):
            for model in models:
                name = model.rpartition("@")[2] if "@" in model else None
                if name == "local" and name not in self.endpoints:
                    raise ValueError(
                        f"{variable}: {model!r}: the embedded local model is added to the end of the chain by "
                        f"the app itself (OPENROUTER_VOICE_LOCAL_FALLBACK, on by default). Fix: remove it "
                        f"from {variable}")
                if name is not None and name not in self.endpoints:
                    raise ValueError(
                        f"{variable}: {model!r} names the endpoint {name!r}, which OPENROUTER_VOICE_ENDPOINTS "
                        f"does not define. Fix: add it, e.g. OPENROUTER_VOICE_ENDPOINTS="
                        f"'{{\"{name}\": {{\"base_url\": \"http://127.0.0.1:11434/v1\"}}}}'")
        return self

    def chain(self) -> list[str]:
        """The configured model chain, primary first, without duplicates."""
        seen: list[str] = []
        for model in [self.openrouter_default_model, *self.openrouter_fallback_models]:
            if model not in seen:
                seen.append(model)
        return seen

    def shared_health(self) -> HealthTracker | None:
        """The model health every router built from these settings in this process shares with the
        fleet (Redis when OPENROUTER_VOICE_REDIS_URL is set), or None: each router keeps its own."""
        if self.redis_url is None:
            return None  # without Redis, redis-py is not even imported
        from .fleet import health_for

        return health_for(self)

    @property
    def api_key(self) -> str | None:
        """The OpenRouter key as a plain string (never log it)."""
        return self.openrouter_api_key.get_secret_value() if self.openrouter_api_key else None


_ENV_NAMES = {
    "first_token_timeout": "OPENROUTER_FIRST_TOKEN_TIMEOUT",
    "stall_timeout": "OPENROUTER_STALL_TIMEOUT",
    "debug": "OPENROUTER_DEBUG",
    "hedge_after": "OPENROUTER_HEDGE_AFTER",
    "dribble_words_per_second": "OPENROUTER_DRIBBLE_WORDS_PER_SECOND",
    "dribble_window": "OPENROUTER_DRIBBLE_WINDOW",
    "first_sentence_timeout": "OPENROUTER_FIRST_SENTENCE_TIMEOUT",
    "predictive_ranking": "OPENROUTER_PREDICTIVE_RANKING",
    "endpoints": "OPENROUTER_VOICE_ENDPOINTS",
    "local_fallback": "OPENROUTER_VOICE_LOCAL_FALLBACK",
    "metrics_port": "OPENROUTER_VOICE_METRICS_PORT",
    "voice_ack_after": "OPENROUTER_VOICE_ACK_AFTER",
    "weather_geocoding_url": "OPENROUTER_VOICE_GEOCODING_URL",
    "weather_forecast_url": "OPENROUTER_VOICE_FORECAST_URL",
    "redis_url": "OPENROUTER_VOICE_REDIS_URL",
    "redis_prefix": "OPENROUTER_VOICE_REDIS_PREFIX",
    "embedded_health": "OPENROUTER_VOICE_EMBEDDED_HEALTH",
}
_FIXES = {
    "OPENROUTER_FIRST_TOKEN_TIMEOUT": "set it to seconds, e.g. OPENROUTER_FIRST_TOKEN_TIMEOUT=2.0",
    "OPENROUTER_STALL_TIMEOUT": "set it to seconds, e.g. OPENROUTER_STALL_TIMEOUT=1.5",
    "OPENROUTER_DEBUG": "use true or false",
    "OPENROUTER_DRIBBLE_WORDS_PER_SECOND": (
        "set it to words per second, e.g. OPENROUTER_DRIBBLE_WORDS_PER_SECOND=2.0, or 0 to turn the check off"),
    "OPENROUTER_DRIBBLE_WINDOW": "set it to seconds, e.g. OPENROUTER_DRIBBLE_WINDOW=2.0",
    "OPENROUTER_FIRST_SENTENCE_TIMEOUT": (
        "set it to seconds, e.g. OPENROUTER_FIRST_SENTENCE_TIMEOUT=0.5, or 0 to turn the check off"),
    "OPENROUTER_PREDICTIVE_RANKING": "use true or false",
    "OPENROUTER_HEDGE_AFTER": "set it to seconds, e.g. OPENROUTER_HEDGE_AFTER=1.0, or 0 to turn hedging off",
    "OPENROUTER_VOICE_ENDPOINTS": (
        'use JSON, e.g. OPENROUTER_VOICE_ENDPOINTS=\'{"ollama": {"base_url": "http://127.0.0.1:11434/v1"}}\''
    ),
    "OPENROUTER_VOICE_LOCAL_FALLBACK": "use true or false",
    "OPENROUTER_VOICE_EMBEDDED_HEALTH": "use true or false",
    "OPENROUTER_VOICE_METRICS_PORT": "set it to a free TCP port, e.g. OPENROUTER_VOICE_METRICS_PORT=9464, or unset it",
    "OPENROUTER_VOICE_ACK_AFTER": "set it to seconds, e.g. OPENROUTER_VOICE_ACK_AFTER=2.0, or 0 to turn it off",
    "OPENROUTER_BASE_URL": "use an http(s) URL, e.g. https://openrouter.ai/api/v1",
    "OPENROUTER_FALLBACK_MODELS": "use a comma list, e.g. openai/gpt-4o-mini,meta-llama/llama-3.1-8b-instruct",
    "OPENROUTER_DEFAULT_MODEL": "use an id such as google/gemini-2.5-flash-lite",
    "OPENROUTER_APP_NAME": "use plain ASCII, e.g. OPENROUTER_APP_NAME=My Voice App",
    "DEEPGRAM_BASE_URL": "use an http(s) URL, e.g. https://api.deepgram.com (or unset it)",
    "CARTESIA_BASE_URL": "use an http(s) URL, e.g. https://api.cartesia.ai (or unset it)",
    "OPENROUTER_APP_URL": "use an ASCII URL (percent-encode other characters), e.g. https://example.com",
    "OPENROUTER_API_KEY": "copy the key again from https://openrouter.ai/keys, on one line",
    "OPENROUTER_VOICE_REDIS_URL": ("use redis://[:password@]host[:port][/db] (rediss:// for TLS, unix:///path "
                                   "for a socket), e.g. "
                                   "OPENROUTER_VOICE_REDIS_URL=redis://127.0.0.1:6379/0, or unset it to keep "
                                   "health per worker"),
    "OPENROUTER_VOICE_REDIS_PREFIX": "use a short name without spaces, e.g. OPENROUTER_VOICE_REDIS_PREFIX=voice-prod",
}


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment and ``.env``; raise :class:`ConfigError` on bad values.

    >>> load_settings(first_token_timeout=1.5).first_token_timeout
    1.5
    """
    try:
        return Settings(**overrides)
    except SettingsError as exc:
        # Raised for values that must be JSON (e.g. OPENROUTER_VOICE_ENDPOINTS) and are not.
        match = re.search(r'field "([^"]+)"', str(exc))
        field = match.group(1) if match else "?"
        variable = _ENV_NAMES.get(field, field.upper())
        fix = _FIXES.get(variable, "fix the value or unset it to use the default")
        raise ConfigError(f"Invalid configuration:\n  {variable}: not valid JSON. Fix: {fix}.") from None
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            if not error["loc"]:  # a check across settings: its message names the variables and the fix
                problems.append(str(error["msg"]).removeprefix("Value error, ") + ".")
                continue
            field = str(error["loc"][0])
            variable = _ENV_NAMES.get(field, field.upper())
            inner = ".".join(str(part) for part in error["loc"][1:])
            message = str(error["msg"]).removeprefix("Value error, ").removeprefix(f"{variable}: ").rstrip(".")
            raw = error.get("input")
            secret = any("key" in str(part) or "secret" in str(part) or part == "redis_url" for part in error["loc"])
            shown = "" if secret or isinstance(raw, dict) else f" (got {raw!r})"
            fix = _FIXES.get(variable, "fix the value or unset it to use the default")
            where = f" ({inner})" if inner else ""
            problems.append(f"{variable}{where}{shown}: {message}. Fix: {fix}.")
        # Masked: a key pasted into the wrong variable would otherwise be echoed back as its value.
        raise ConfigError(redact("Invalid configuration:\n  " + "\n  ".join(problems))) from None
