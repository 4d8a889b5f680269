"""The framework-free OpenRouter fallback router (no LiveKit imports here).

>>> from openrouter_voice.router import FallbackRouter
>>> router = FallbackRouter(models=["openai/gpt-4o-mini", "google/gemini-2.5-flash-lite"])
>>> reply = await router.complete([{"role": "user", "content": "Hello"}])  # doctest: +SKIP
"""

from .errors import (
    AllModelsFailedError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    InsufficientCreditsError,
    RouterError,
)
from .fallback import FallbackRouter
from .health import CircuitState, HealthSnapshot, HealthTracker
from .stream import RouterStream
from .types import Attempt, Completion, Message, Outcome, StreamChunk, Target, ToolCall, ToolSpec, Usage

__all__ = [
    "AllModelsFailedError",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "CircuitState",
    "Completion",
    "ConfigurationError",
    "FallbackRouter",
    "HealthSnapshot",
    "HealthTracker",
    "InsufficientCreditsError",
    "Message",
    "Outcome",
    "RouterError",
    "RouterStream",
    "StreamChunk",
    "Target",
    "ToolCall",
    "ToolSpec",
    "Usage",
]
