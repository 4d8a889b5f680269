"""How the tests wait and bound time without depending on the machine's speed (see README, Tests).

- Wait for an explicit condition (:func:`until`), never for a guessed while.
- Bound a duration halfway between what the right behaviour costs and what the wrong one would
  (:func:`halfway`): a wide margin under load that still fails the wrong behaviour.
- Give a router on a machine slower than idle all its time bounds scaled by that slowness
  (:func:`slowed`), measured in the same run.

>>> halfway(0.25, 1.5)
0.875
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from openrouter_voice.router import defaults


def halfway(right: float, wrong: float) -> float:
    """The bound between the right behaviour's duration and the wrong one's (seconds)."""
    return (right + wrong) / 2


def slowed(scale: float, **deadlines: float) -> dict[str, float]:
    """A router's time bounds on a machine ``scale`` times slower than idle: ``deadlines`` (seconds) and the
    spoken-reply checks left at their defaults, all scaled. Those checks are time bounds too: a healthy reply
    read late by a loaded process must look neither like a dribble nor like a first sentence too slow to speak.

    >>> slowed(2.0, first_token_timeout=0.3)["first_token_timeout"], slowed(2.0)["dribble_words_per_second"]
    (0.6, 1.0)
    """
    return {**{name: seconds * scale for name, seconds in deadlines.items()},
            "first_sentence_timeout": defaults.FIRST_SENTENCE_TIMEOUT * scale,
            "dribble_window": defaults.DRIBBLE_WINDOW * scale,
            "dribble_words_per_second": defaults.DRIBBLE_WORDS_PER_SECOND / scale}


async def until(condition: Callable[[], object], what: str, limit: float = 10.0) -> None:
    """Return once ``condition()`` is true; fail naming ``what`` after ``limit`` seconds (a hang)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {limit} s for {what}")
        await asyncio.sleep(0.01)
