"""Where openrouter-voice keeps its caches (the model catalog, the local model's weights).

>>> import os
>>> os.environ["OPENROUTER_VOICE_CACHE_DIR"] = "/tmp/orv-cache"
>>> str(cache_root())
'/tmp/orv-cache'
>>> del os.environ["OPENROUTER_VOICE_CACHE_DIR"]
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$OPENROUTER_VOICE_CACHE_DIR``, else ``$XDG_CACHE_HOME/openrouter-voice``, else
    ``~/.cache/openrouter-voice``. Read from the process environment, not ``.env``: caches are found
    before (and without) loading settings."""
    base = os.environ.get("OPENROUTER_VOICE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "openrouter-voice")
    return Path(base)
