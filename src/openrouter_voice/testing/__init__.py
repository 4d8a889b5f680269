"""A scripted OpenRouter-compatible upstream for tests, benchmarks and rehearsing a fallback chain.

>>> from openrouter_voice.testing import ScriptedUpstream, Script
>>> async with ScriptedUpstream() as up:  # doctest: +SKIP
...     up.script("openai/gpt-4o-mini", Script(status=429, retry_after=5))
"""

from .chaos import FAULTS, ChaosScript, intended_reply
from .lag import LoopLagMonitor
from .upstream import RecordedRequest, Script, ScriptedUpstream, default_catalog

__all__ = ["FAULTS", "ChaosScript", "LoopLagMonitor", "RecordedRequest", "Script", "ScriptedUpstream",
           "default_catalog", "intended_reply"]
