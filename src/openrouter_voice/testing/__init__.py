"""Scripted services for tests, benchmarks and rehearsing a fallback chain: an OpenRouter-compatible
upstream, and Deepgram- and Cartesia-compatible speech servers.

>>> from openrouter_voice.testing import ScriptedUpstream, Script
>>> async with ScriptedUpstream() as up:  # doctest: +SKIP
...     up.script("openai/gpt-4o-mini", Script(status=429, retry_after=5))
"""

from .cartesia import CartesiaScript, ScriptedCartesia
from .chaos import FAULTS, ChaosScript, intended_reply
from .deepgram import DeepgramScript, ScriptedDeepgram
from .lag import LoopLagMonitor
from .script import RecordedRequest, Script, default_catalog
from .upstream import ScriptedUpstream

__all__ = ["FAULTS", "CartesiaScript", "ChaosScript", "DeepgramScript", "LoopLagMonitor", "RecordedRequest", "Script",
           "ScriptedCartesia", "ScriptedDeepgram", "ScriptedUpstream", "default_catalog", "intended_reply"]
