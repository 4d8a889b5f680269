"""A voice call without a LiveKit room: an ``AgentSession`` driven by audio (a real-time caller
microphone and loudspeaker), turn by turn, with what LiveKit measured. ``openrouter-voice talk`` runs
on it; the audio tests and the voice benchmark use it too.

>>> from openrouter_voice.call import VoiceCall, read_wav
>>> async with VoiceCall(session, agent) as call:                  # doctest: +SKIP
...     turn = await call.say(read_wav("question.wav"))
"""

from .audio import Audio, CallerInput, Speaker, read_wav, write_wav
from .driver import CallClosed, Turn, VoiceCall

__all__ = ["Audio", "CallClosed", "CallerInput", "Speaker", "Turn", "VoiceCall", "read_wav", "write_wav"]
