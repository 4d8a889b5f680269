"""Metric and attribute names, units and bucket boundaries: the one list the README's table shows.

GenAI names follow OpenTelemetry's GenAI semantic conventions (client metrics); the router's own
and the voice turn's live under ``openrouter_voice.``. Attribute values are bounded: chain ids,
reasons from :func:`.record.reason`, outcomes; never prompts, replies, keys or user ids.

>>> OPERATION_DURATION, DURATION_BUCKETS[:3], DURATION_BUCKETS[-1]
('gen_ai.client.operation.duration', (0.01, 0.02, 0.04), 81.92)
"""

from __future__ import annotations

# -- GenAI semantic conventions -----------------------------------------------------------------
OPERATION_DURATION = "gen_ai.client.operation.duration"
TIME_TO_FIRST_CHUNK = "gen_ai.client.operation.time_to_first_chunk"
TOKEN_USAGE = "gen_ai.client.token.usage"

OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
TOKEN_TYPE = "gen_ai.token.type"
ERROR_TYPE = "error.type"
CHAT = "chat"

# The conventions' advised boundaries (seconds; tokens).
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)

# -- the router's own ---------------------------------------------------------------------------
ATTEMPTS = "openrouter_voice.router.attempts"
FALLBACKS = "openrouter_voice.router.fallbacks"
HEDGES = "openrouter_voice.router.hedges"
HEDGES_WON = "openrouter_voice.router.hedges.won"
CONTINUATIONS = "openrouter_voice.router.continuations"
CIRCUIT_STATE = "openrouter_voice.router.circuit.state"
COOLDOWN_REMAINING = "openrouter_voice.router.cooldown.remaining"
COST = "openrouter_voice.router.cost"

MODEL = "openrouter_voice.model"  # a chain id (``model`` or ``model@endpoint``)
OUTCOME = "openrouter_voice.outcome"
REASON = "openrouter_voice.reason"
FROM_MODEL = "openrouter_voice.fallback.from"
TO_MODEL = "openrouter_voice.fallback.to"

CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}
"""The circuit-state gauge's value per state."""

# -- the voice turn -----------------------------------------------------------------------------
TIME_TO_FIRST_AUDIO = "openrouter_voice.voice.time_to_first_audio"
END_OF_TURN_DELAY = "openrouter_voice.voice.end_of_turn_delay"
VOICE_TURNS = "openrouter_voice.voice.turns"
SPEECH_FALLBACKS = "openrouter_voice.voice.speech_fallbacks"
STAGE = "openrouter_voice.stage"  # stt | tts
TURN_RESULT = "openrouter_voice.turn.result"  # answered | apology | silent

# -- spans --------------------------------------------------------------------------------------
TURN_SPAN = "chat"  # the conventions' span name is "{operation} {request model}"
ATTEMPT_SPAN = "openrouter_voice.attempt"
