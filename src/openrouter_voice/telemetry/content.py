"""Message content in LiveKit's spans: off unless the user opts in.

LiveKit Agents 1.8.9, once it has a tracer provider, records the conversation in its spans by default
(``lk.pii.user_input``, ``lk.pii.chat_ctx``, ``gen_ai.input.messages``...): its PII filter lets
content through unless ``set_tracer_provider(..., allow_pii=False)``, and it captures GenAI message
payloads unless ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` is false. A voice agent's
traces go to operators, not to the caller, so here content is off unless that standard variable is
explicitly true.

>>> capture_content({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}), capture_content({})
(True, False)
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry.trace import TracerProvider

CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_TRUE = ("1", "true", "yes", "on")


def capture_content(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the user opted in to message content in spans (the GenAI conventions' own variable)."""
    return environ.get(CAPTURE_ENV, "").strip().lower() in _TRUE


def hand_to_livekit(provider: TracerProvider, *, content: bool) -> None:
    """Give LiveKit's spans ``provider``, with its content recording and PII filter set by ``content``.

    The PII filter is LiveKit's own span processor, put ahead of every exporter of ``provider``; the
    capture switch stops the GenAI payloads from being built at all.
    """
    from livekit.agents.telemetry import gen_ai, set_tracer_provider

    gen_ai.set_capture_content(content)
    set_tracer_provider(provider, allow_pii=content)
