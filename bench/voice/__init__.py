"""The voice benchmark: time to first audio (TTFA) per turn, under every fault, on the audio pipeline.

``make bench-voice`` (``python -m bench.voice [--turns N]``): see ``__main__``.
"""
