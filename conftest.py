"""Doctests of the package run with the test suite (``--doctest-modules`` over ``src``), in a clean
environment: no OPENROUTER_*/LIVEKIT_* variables or ``.env`` from the developer's shell."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

collect_ignore_glob = ["src/openrouter_voice/__main__.py", "src/openrouter_voice/testing/__main__.py"]

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
