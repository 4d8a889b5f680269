"""Doctests of the package run with the test suite (``--doctest-modules`` over ``src``), in a clean
environment: no OPENROUTER_*/LIVEKIT_* variables or ``.env`` from the developer's shell.

Hypothesis profiles, for every property test:

- ``default`` (``make test``, CI, with or without ``CI`` set): derandomized, the same examples on every run
  of a commit, no example database, so the same commit always gives the same result; a failure prints
  its reproduction blob.
- ``fuzz`` (``make fuzz``): fresh random examples, ten times as many (tests scale their own counts
  with :func:`tests.fuzzing.examples`), failures kept in ``.hypothesis/`` and replayed first next time.
  A counterexample it finds becomes an ``@example`` on the test, so the default suite keeps it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

collect_ignore_glob = ["src/openrouter_voice/__main__.py", "src/openrouter_voice/testing/__main__.py"]

# Timing-based checks (per-example deadline, "too slow" health check) are off in both: under load they
# fail a correct test. Tests that set their own suppress_health_check list include too_slow again.
settings.register_profile("default", derandomize=True, database=None, print_blob=True, deadline=None,
                          max_examples=100, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", derandomize=False, database=DirectoryBasedExampleDatabase(".hypothesis/examples"),
                          print_blob=True, deadline=None, max_examples=1000,
                          suppress_health_check=[HealthCheck.too_slow])
# Explicit, so CI's environment (hypothesis loads its own "ci" profile when CI is set) changes nothing;
# `pytest --hypothesis-profile=fuzz` (make fuzz) overrides it.
settings.load_profile("default")

# pytest-xdist's workers inherit COLUMNS=80 from their start-up; rich's consoles, made when the CLI module
# is imported, would keep that width for good, and tests that set COLUMNS themselves (wide tables) would
# depend on which test imported the CLI first. Without it, as in a single process, width is read per call.
os.environ.pop("COLUMNS", None)

_OURS = ("OPENROUTER", "LIVEKIT", "DEEPGRAM", "CARTESIA")


@pytest.fixture(autouse=True)
def _clean_doctest_environment(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
                               tmp_path: Path) -> None:
    if not isinstance(request.node, pytest.DoctestItem):
        return
    for name in list(os.environ):
        if name.startswith(_OURS):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("OPENROUTER_VOICE_CACHE_DIR", str(tmp_path / "cache"))
