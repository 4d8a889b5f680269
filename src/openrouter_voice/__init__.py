"""openrouter-voice: a LiveKit voice agent on a resilient OpenRouter fallback router."""

__version__ = "0.1.0"
