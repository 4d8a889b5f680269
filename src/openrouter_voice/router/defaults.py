"""The router's defaults, defined once: :class:`~.fallback.FallbackRouter`'s constructor and the
settings (``config.py``) both take them from here.

>>> FIRST_TOKEN_TIMEOUT, STALL_TIMEOUT, HEDGE_AFTER, DRIBBLE_WORDS_PER_SECOND, DRIBBLE_WINDOW
(2.0, 1.5, 1.0, 2.0, 2.0)
"""

OPENROUTER = "openrouter"
"""The endpoint name of OpenRouter itself (model ids without ``@endpoint``)."""
OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
APP_NAME = "openrouter-voice"
"""Sent as ``X-Title`` / ``X-OpenRouter-Title`` (OpenRouter's app attribution)."""
APP_URL = "http://localhost:3000"
"""Sent as ``HTTP-Referer``, the app's identifier in OpenRouter's attribution, on every request. The
original design's default: the app runs on the user's machine and has no public site of its own, and
OpenRouter tracks a localhost app by its title, which is always sent with it. A deployment sets its
own URL (``OPENROUTER_APP_URL`` or ``app_url=``)."""

FIRST_TOKEN_TIMEOUT = 2.0
"""Seconds from sending a request to its first content token before the next model is tried."""
FINAL_FIRST_TOKEN_TIMEOUT = 10.0
"""The same for the last model a turn can try: cutting it off could only end in silence."""
STALL_TIMEOUT = 1.5
"""Longest silence between content tokens once a reply streams."""
HEDGE_AFTER = 1.0
"""Seconds without a first token after which the next model is asked too (None or 0: never)."""
DRIBBLE_WORDS_PER_SECOND = 2.0
"""A reply streaming fewer words per second than this (over ``DRIBBLE_WINDOW``) is too slow for speech
(people speak about 2.5 words/s): the next model continues it. 0 turns the check off."""
DRIBBLE_WINDOW = 2.0
"""Seconds of streamed text over which the word rate is measured."""
FIRST_SENTENCE_TIMEOUT = 0.5
"""In a spoken reply (``stream(spoken=True)``), seconds from the first token to the end of the first
speakable sentence before the next model continues the reply, until the model has history (then its
own p95 plus a margin, see :func:`~.deadlines.first_sentence_bound`). 0 turns the check off."""
FIRST_SENTENCE_WORDS_PER_SECOND = 8.0
"""A spoken reply still streaming faster than this many words a second (since its first token) is given
the time to end its first sentence, however long (healthy models stream 20 to 100 words a second)."""
HEDGE_BUDGET = 0.1
"""At most this share of the requests in flight may hedge at once (at least one)."""
TOTAL_TIMEOUT = 90.0
"""Hard bound on any one upstream call."""
MAX_CONNECTIONS = 1000
MAX_REPLY_CHARS = 200_000
MAX_TOOL_ARGS_CHARS = 100_000
RETRY_AFTER_WAIT = 1.0
"""When every model was told to wait (Retry-After), a turn waits up to this long for the soonest one
rather than failing at once."""
