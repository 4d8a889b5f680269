"""How the tests wait and bound time without depending on the machine's speed (see README, Tests).

- Wait for an explicit condition (:func:`until`), never for a guessed while.
- Bound a duration halfway between what the right behaviour costs and what the wrong one would
  (:func:`halfway`): a wide margin under load that still fails the wrong behaviour.

>>> halfway(0.25, 1.5)
0.875
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def halfway(right: float, wrong: float) -> float:
    """The bound between the right behaviour's duration and the wrong one's (seconds)."""
    return (right + wrong) / 2


async def until(condition: Callable[[], object], what: str, limit: float = 10.0) -> None:
    """Return once ``condition()`` is true; fail naming ``what`` after ``limit`` seconds (a hang)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {limit} s for {what}")
        await asyncio.sleep(0.01)
