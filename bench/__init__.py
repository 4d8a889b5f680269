"""Failover benchmark: this router vs LiveKit's FallbackAdapter, LiteLLM's Router and a naive loop.

Run it with ``make bench`` (or ``python -m bench [--quick] [--runs N]`` from the repository root).
"""

import os

# LiteLLM downloads its price list from GitHub at import unless told to use its bundled copy; the
# benchmark talks to 127.0.0.1 only. Set here so every bench process (and import order) gets it.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
