"""Numbers from upstream JSON, read safely.

Valid JSON can carry ``1e999`` (infinity to Python), ``NaN``, ``Infinity`` or a 400-digit integer;
``int()`` of the first raises ``OverflowError`` and arithmetic on the others spreads nonsense. These
helpers return a plain finite value within stated bounds, or None: the caller decides whether
that means "absent" (usage, prices) or a clamp (cooldowns).

>>> finite(1e999), finite(float("nan")), finite("0.5"), finite(True)
(None, None, 0.5, None)
>>> count(10**400), count(12.7), count(-3), count("7")
(None, 12, None, None)
"""

from __future__ import annotations

import math
from typing import Any

MAX_COUNT = 10**12
"""More tokens (or a context longer) than any model has: a larger count is a bogus value."""


def finite(value: Any, *, low: float = 0.0, high: float = math.inf, strings: bool = True) -> float | None:
    """``value`` as a float if it is a number (or, with ``strings``, a numeric string) within
    [``low``, ``high``]; None for booleans, non-finite, out-of-range or non-numeric values."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and strings:
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too big for a float
        return None
    if not math.isfinite(number) or not low <= number <= high:
        return None
    return number


def count(value: Any, *, high: int = MAX_COUNT) -> int | None:
    """A non-negative whole count (tokens, context length) from a JSON number; None when absurd."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= high else None
    number = finite(value, high=float(high))
    return None if number is None else int(number)
