"""openrouter-voice: a LiveKit voice agent on a resilient OpenRouter fallback router."""

from .redact import install as _redact_logs

__version__ = "0.1.0"

# Records of this package's (and the HTTP library's) loggers never carry a key, whatever logging
# the application set up: see redact.install.
_redact_logs()
