"""Example counts of the property tests, scaled by the active hypothesis profile (``conftest.py``):
the ``default`` profile (100 examples) runs each test's own count, ``fuzz`` (1000) ten times as many.

>>> examples(30) * 100 // settings.default.max_examples
30
"""

from __future__ import annotations

from hypothesis import settings

_BASE = 100  # the default profile's max_examples: scale 1


def examples(count: int) -> int:
    """``count`` scaled by the active profile (read when the test module is imported, after the
    profile is loaded: by ``conftest.py`` or ``--hypothesis-profile``)."""
    return max(1, count * settings.default.max_examples // _BASE)
